"""Export settings: which formats and quantizations, where, and how to measure them."""

from __future__ import annotations

from dataclasses import dataclass, field

from rationalizer.errors import UserError

from .gguf_convert import FLOAT_TYPES
from .gguf_quantize import GGUF_QUANTS
from .onnx_export import ONNX_TYPES

LORA = "lora"
"""The GGUF type that means "the LoRA adapter alone, over the base GGUF"."""


@dataclass
class ExportConfig:
    """One export run; it round-trips to JSON like every config of the project."""

    source: str | None
    """Bundle folder to export; None: the embedded default model."""
    out: str
    """Folder that receives one bundle folder per export (``gguf-q8_0``, ``onnx-int8``...)."""
    gguf: list[str] = field(default_factory=list)
    """GGUF outputs: f32, f16, bf16, a llama.cpp quantization (q8_0, q4_k_m...), or ``lora`` (adapter only)."""
    onnx: list[str] = field(default_factory=list)
    """ONNX outputs: fp32, int8 (dynamic), int8w and int4 (MatMulNBits weight-only)."""
    lora_base: str = "f16"
    """GGUF type of the base written next to a ``lora`` adapter when the base is not the embedded default."""
    threads: int | None = None
    dev: str | None = None
    """Dev file for the fidelity report (answer agreement, accuracy, speed); None: no report."""
    dev_limit: int = 50
    max_new_tokens: int | None = None
    """Generation budget per dev question (default: the bundle's)."""

    def validate(self) -> None:
        """Refuse unknown types and an empty request before any work starts."""
        known_gguf = (*FLOAT_TYPES, *GGUF_QUANTS, LORA)
        for kind in self.gguf:
            if kind not in known_gguf:
                raise UserError(f"unknown GGUF type {kind!r} (choose from {', '.join(known_gguf)})")
        for kind in self.onnx:
            if kind not in ONNX_TYPES:
                raise UserError(f"unknown ONNX type {kind!r} (choose from {', '.join(ONNX_TYPES)})")
        if self.lora_base not in (*FLOAT_TYPES, *GGUF_QUANTS):
            raise UserError(f"lora_base must be a GGUF float or quantized type, not {self.lora_base!r}")
        if not self.gguf and not self.onnx:
            raise UserError("nothing to export: ask for at least one GGUF or ONNX type")
        if len(set(self.gguf)) != len(self.gguf) or len(set(self.onnx)) != len(self.onnx):
            raise UserError("a type is listed twice")
        if self.dev_limit < 1:
            raise UserError("dev_limit must be at least 1")
