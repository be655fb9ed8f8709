"""Export settings: which formats and quantizations, where, and how to measure them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rationalizer.config_checks import Range, check_settings
from rationalizer.errors import ConfigError

from .formats import GgufFloat, GgufQuant, GgufType, LoraDtype, OnnxType


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
                "MatMulNBits)."})
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
