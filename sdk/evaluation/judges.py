"""The models that judge rationales from outside: a simulator (consistency) and a verifier (plausibility).

A local judge is a backend, chosen for its bundle as :meth:`Rationalizer.load` chooses one, with
that bundle's name and chat template. It scores raw (context, continuation) pairs through
:meth:`Backend.loglikelihoods`; a student's control codes and answer parser never reach it.
``default`` is the embedded undistilled base model, so it judges the distilled default from
outside. A verifier can also be an OpenAI-compatible endpoint (:mod:`.http_verifier`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Sequence

from .. import base_model
from ..backends import Backend, choose_backend
from ..bundle import Bundle
from ..manifest import PromptTemplate
from ..metrics.simulation import plausibility_prompt, yes_probability
from ..prompting import build_chat
from .config import EvalConfig


@dataclass
class Judge:
    """A local model as judge: the backend that scores, and its own bundle's name and chat template."""

    name: str
    template: PromptTemplate
    backend: Backend

    def close(self) -> None:
        """Free the model."""
        self.backend.close()


def load_judge(spec: str = "default", threads: int | None = None, device: str = "cpu") -> Judge:
    """Open ``default`` (the embedded base model, undistilled) or a bundle folder as a judge.

    The backend is the one :meth:`Rationalizer.load` would choose (GGUF through llama.cpp first), the
    weights are verified, and the backend opens them for scoring (:meth:`Backend.open_judge`); a GGUF
    LoRA bundle scores with its adapter applied.
    """
    bundle = Bundle.load(base_model.SOURCE_BUNDLE if spec == base_model.DEFAULT else spec)
    backend_cls, fmt, concrete_device = choose_backend(bundle, "auto", device)
    bundle.verify(fmt)
    backend = backend_cls.open_judge(bundle, fmt, concrete_device, threads)
    return Judge(bundle.manifest.name, bundle.manifest.prompt, backend)


class Verifier(Protocol):
    """Gives the probability that a rationale is true and supports the answer."""

    name: str

    def probabilities(self, items: Sequence[tuple[str, str, str]]) -> list[float | None]: ...


class LocalVerifier:
    """A local judge as verifier: P(Yes) against P(No) after the verification question in its chat template."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.name = judge.name

    def probabilities(self, items: Sequence[tuple[str, str, str]]) -> list[float | None]:
        """One probability per (question, answer, rationale)."""
        return [self.probability(*item) for item in items]

    def probability(self, question: str, answer: str, rationale: str) -> float:
        """P(Yes) / (P(Yes) + P(No)) as the reply to the verification question about one rationale."""
        context = build_chat(self.judge.template, plausibility_prompt(question, answer, rationale))
        return yes_probability(self.judge.backend, context)


def load_verifier(spec: str = "default", threads: int | None = None, model: str | None = None,
                  api_key_env: str = "RATIONALIZER_API_KEY", judge: Judge | None = None) -> Verifier:
    """A verifier from ``default``, a bundle folder, or an OpenAI-compatible base URL.

    ``judge``, when given, is reused instead of loading the same model twice.
    """
    if spec.startswith(("http://", "https://")):
        from .http_verifier import OpenAIVerifier

        return OpenAIVerifier(spec, model or "default", os.environ.get(api_key_env))
    return LocalVerifier(judge or load_judge(spec, threads))


@dataclass
class Judges:
    """Loaded judges; either may be None when switched off."""

    simulator: Judge | None = None
    verifier: Verifier | None = None

    @classmethod
    def load(cls, config: EvalConfig, threads: int | None = None) -> "Judges":
        """Load the judges the config names, sharing one model when both name the same."""
        simulator = None if config.simulator == "none" else load_judge(config.simulator, threads)
        verifier = None
        if config.verifier != "none":
            shared = simulator if simulator is not None and config.verifier == config.simulator else None
            verifier = load_verifier(config.verifier, threads, config.verifier_model, judge=shared)
        return cls(simulator, verifier)

    def close(self) -> None:
        """Free the judges' models."""
        if self.simulator is not None:
            self.simulator.close()
        if isinstance(self.verifier, LocalVerifier) and self.verifier.judge is not self.simulator:
            self.verifier.judge.close()
