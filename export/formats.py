"""The export types a user can ask for, as ``Literal`` types and the tuples of their values.

A light module (no numpy, no converter): the CLI builds ``rationalize export``'s
options from :class:`~rationalizer.export.config.ExportConfig` at import time.
"""

from __future__ import annotations

from typing import Literal, get_args

GgufFloat = Literal["f32", "f16", "bf16"]
"""GGUF float types written by the converter."""
GgufQuant = Literal["q8_0", "q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_0"]
"""Quantizations of an f32 GGUF offered (llama.cpp's names, lower case)."""
GgufType = Literal[GgufFloat, GgufQuant, "lora"]
"""A GGUF output: a float type, a quantization, or ``lora`` (the adapter alone, over the base GGUF)."""
LoraDtype = Literal["f32", "f16"]
"""Float type of a GGUF LoRA adapter's A/B matrices (f16 halves the file; they are well inside its range)."""
OnnxQuant = Literal["fp32", "int8", "int8w", "int4"]
"""Through optimum, then onnxruntime's quantizers. fp32: as exported; int8: dynamic quantization (int8
weights and activations); int8w and int4: weight-only MatMulNBits (8 or 4 bits in blocks of 32,
activations stay float)."""
GenaiType = Literal["genai-fp32", "genai-fp16", "genai-int8", "genai-int4"]
"""Through onnxruntime-genai's model builder: fused GroupQueryAttention with rotary inside, fused QKV,
SkipSimplifiedLayerNorm, weight-only MatMulNBits for int8/int4, and a ``genai_config.json``."""
OnnxType = Literal[OnnxQuant, GenaiType]

FLOAT_TYPES: tuple[str, ...] = get_args(GgufFloat)
GGUF_QUANTS: tuple[str, ...] = get_args(GgufQuant)
ONNX_TYPES: tuple[str, ...] = get_args(OnnxQuant)
GENAI_TYPES: tuple[str, ...] = get_args(GenaiType)
LORA_DTYPES: tuple[str, ...] = get_args(LoraDtype)
LORA = "lora"
"""The GGUF type that means "the LoRA adapter alone, over the base GGUF"."""
