"""Settings of ``rationalize bench``, as a dataclass that round-trips to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config_checks import Range, check_settings


@dataclass
class BenchConfig:
    """What to measure and how; every field has a ``rationalize bench`` flag, and ``--config FILE`` reads them."""

    bundles: list[str] = field(default_factory=list, metadata={
        "help": "Bundle folders or folders of bundles (an export's --out); none or 'default': the embedded model."})
    tokens: int = field(default=128, metadata={"help": "Most tokens per decode run.", "range": Range(2, 2048)})
    reps: int = field(default=3, metadata={"help": "Decode runs per measurement.", "range": Range(1, 50)})
    threads: int | None = field(default=None, metadata={
        "help": "CPU threads (default: the idle cores this process may use; see the README).", "range": Range(1, 512)})
    device: Literal["all", "cpu", "cuda"] = field(default="all", metadata={
        "help": "Where to measure: all is the CPU and, where one is usable, the GPU."})
    peers: bool = field(default=True, metadata={
        "help": "Also run the raw peers (llama-cpp-python, optimum, onnxruntime-genai, transformers) on the same "
                "weights."})
    timeout_s: int = field(default=900, metadata={"help": "Seconds one measurement may take.",
                                                  "range": Range(1, 86_400)})

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def devices(self) -> list[str]:
        """The devices ``device`` stands for."""
        return ["cpu", "cuda"] if self.device == "all" else [self.device]
