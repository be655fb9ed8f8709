"""The models that judge rationales: a simulator (consistency) and a verifier (plausibility)."""

from __future__ import annotations

from dataclasses import dataclass

from ..scorers import Scorer, Verifier, load_scorer, load_verifier
from .config import EvalConfig


@dataclass
class Judges:
    """Loaded judges; either may be None when switched off."""

    simulator: Scorer | None = None
    verifier: Verifier | None = None

    @classmethod
    def load(cls, config: EvalConfig, threads: int | None = None) -> "Judges":
        """Load the judges the config names, sharing one model when both name the same."""
        simulator = None if config.simulator == "none" else load_scorer(config.simulator, threads)
        verifier = None
        if config.verifier != "none":
            shared = simulator if simulator is not None and config.verifier == config.simulator else None
            verifier = load_verifier(config.verifier, threads, config.verifier_model, scorer=shared)
        return cls(simulator, verifier)

    def close(self) -> None:
        """Free the judges' models."""
        if self.simulator is not None:
            self.simulator.close()
        inner = getattr(self.verifier, "scorer", None)
        if inner is not None and inner is not self.simulator:
            inner.close()
