"""Export settings: which formats and quantizations, where, and how to measure them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rationalizer.config_checks import Range, check_settings
from rationalizer.errors import ConfigError

from .formats import GgufFloat, GgufQuant, GgufType, LoraDtype, OnnxType


GenaiAlgo = Literal["default", "rtn", "k_quant"]


@dataclass
class GenaiOptions:
    """How onnxruntime-genai's model builder quantizes the ``genai-int8`` and ``genai-int4`` exports."""

    algo: GenaiAlgo = field(default="default", metadata={
        "help": "Weight-only quantization method: default (the quantizer's RTN), rtn or k_quant. genai-int8 "
                "takes only default: the pinned builder writes 4-bit weights for -p int8 with rtn or k_quant."})
    block_size: int = field(default=32, metadata={
        "help": "Weights per quantization block (16, 32, 64, 128 or 256).", "range": Range(16, 256)})
    int8_head: bool = field(default=False, metadata={
        "help": "genai-int4: keep the LM head (and the embeddings it shares) at 8 bits, the body at 4."})
    accuracy_level: int | None = field(default=None, metadata={
        "help": "Compute type of the quantized MatMuls: 1 fp32, 2 fp16, 3 bf16, 4 int8 (None: the builder's, "
                "4 on the CPU).", "range": Range(1, 4)})
    symmetric: bool = field(default=True, metadata={
        "help": "Symmetric weights (int4/int8); --no-genai-symmetric: asymmetric (uint4/uint8 with zero points)."})
    shared_embeddings: bool = field(default=True, metadata={
        "help": "One matrix for the embeddings and the LM head when the model ties them (ignored otherwise, "
                "and for genai-int8, whose shared path the pinned builder writes broken)."})

    def __post_init__(self) -> None:
        """Refuse a block size the builder does not take."""
        check_settings(self)
        if self.block_size not in (16, 32, 64, 128, 256):
            raise ConfigError(type(self).__name__, "block_size", f"is {self.block_size}; choose 16, 32, 64, 128 or 256")


@dataclass
class ExportConfig:
    """One export run; it round-trips to JSON like every config of the project."""

    source: str | None = field(metadata={"help": "Bundle folder to export; None: the embedded default model."})
    out: str = field(metadata={"help": "Folder that receives one bundle folder per export (gguf-q8_0, onnx-int8...).",
                               "nonempty": True})
    gguf: list[GgufType] = field(default_factory=list, metadata={
        "help": "GGUF outputs: f32, f16, bf16, a llama.cpp quantization (q8_0, q4_k_m...), or lora (the adapter "
                "alone, applied over the base GGUF)."})
    onnx: list[OnnxType] = field(default_factory=list, metadata={
        "help": "ONNX outputs: fp32, int8 (dynamic: int8 weights and activations), int8w and int4 (weight-only "
                "MatMulNBits), all through optimum; genai-fp32, genai-fp16, genai-int8, genai-int4 through "
                "onnxruntime-genai's model builder (fused attention, runs in onnxruntime-genai too)."})
    genai: GenaiOptions = field(default_factory=GenaiOptions, metadata={
        "help": "Quantization settings of the genai-* exports."})
    lora_base: Literal[GgufFloat, GgufQuant] = field(default="f16", metadata={
        "help": "GGUF type of the base written next to a lora adapter when the base is not the embedded default."})
    adapter_dtype: LoraDtype = field(default="f32", metadata={
        "help": "Float type of a lora adapter's matrices: f32, or f16 for half the file (as the embedded default "
                "ships)."})
    threads: int | None = field(default=None, metadata={"help": "CPU threads (quantization, verification, report).",
                                                        "range": Range(1, 4096)})
    dev: str | None = field(default=None, metadata={
        "help": "Dev file for the fidelity report (answer agreement, accuracy, speed); None: no report."})
    dev_limit: int = field(default=50, metadata={"help": "Dev questions the fidelity report uses.",
                                                 "range": Range(1, 10**9)})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "Generation budget per dev question (default: the bundle's).", "range": Range(1, 4096)})

    def __post_init__(self) -> None:
        """Refuse unknown types and an empty request before any work starts."""
        check_settings(self)
        where = type(self).__name__
        if not self.gguf and not self.onnx:
            raise ConfigError(where, "gguf", "and onnx are both empty: nothing to export")
        for name in ("gguf", "onnx"):
            kinds = getattr(self, name)
            if len(set(kinds)) != len(kinds):
                raise ConfigError(where, name, f"lists a type twice ({', '.join(kinds)})")
