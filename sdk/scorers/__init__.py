"""Language models used as judges: simulators (consistency) and verifiers (plausibility).

``load_scorer(spec)`` opens a local model that scores continuations:
``default`` is the embedded default model, otherwise a bundle path. GGUF
bundles score through llama.cpp, HF bundles through transformers.
``load_verifier(spec)`` adds OpenAI-compatible endpoints (``http(s)://...``).
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence

from ..bundle import Bundle
from ..errors import UserError
from ..manifest import PromptTemplate
from ..metrics.simulation import plausibility_prompt, yes_probability
from ..prompting import build_chat


class Scorer(Protocol):
    """Scores continuations: (sum of log-probabilities, token count) for each (context, continuation)."""

    name: str
    template: PromptTemplate

    def loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]: ...

    def close(self) -> None: ...


class Verifier(Protocol):
    """Gives the probability that a rationale is true and supports the answer."""

    name: str

    def probabilities(self, items: Sequence[tuple[str, str, str]]) -> list[float | None]: ...


def load_scorer(spec: str = "default", threads: int | None = None, device: str = "cpu") -> Scorer:
    """Open ``default`` (the embedded base model, undistilled, so it judges the student from outside) or a
    bundle folder as a scorer."""
    bundle = Bundle.load("base" if spec == "default" else spec)
    formats = bundle.formats()
    if "gguf" in formats:
        bundle.verify("gguf")
        from .llamacpp_scorer import LlamaCppScorer

        return LlamaCppScorer(bundle, threads)
    torch_format = next((f for f in ("hf", "peft") if f in formats), None)
    if torch_format is not None:
        bundle.verify(torch_format)
        from .torch_scorer import TorchScorer

        return TorchScorer(bundle, device)
    raise UserError(f"{spec}: a scorer needs GGUF, HF or PEFT weights; this bundle has {', '.join(formats)}")


class ScorerVerifier:
    """A local LM as verifier: P(Yes) against P(No) after the verification question."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.name = scorer.name

    def probabilities(self, items: Sequence[tuple[str, str, str]]) -> list[float | None]:
        """One probability per (question, answer, rationale)."""
        template = self.scorer.template
        out: list[float | None] = []
        for question, answer, rationale in items:
            context = build_chat(template, plausibility_prompt(question, answer, rationale))
            out.append(yes_probability(self.scorer, context))
        return out


def load_verifier(spec: str = "default", threads: int | None = None, model: str | None = None,
                  api_key_env: str = "RATIONALIZER_API_KEY", scorer: Scorer | None = None) -> Verifier:
    """A verifier from ``default``, a bundle folder, or an OpenAI-compatible base URL.

    ``scorer``, when given, is reused instead of loading the same model twice.
    """
    if spec.startswith(("http://", "https://")):
        from .http_verifier import OpenAIVerifier

        return OpenAIVerifier(spec, model or "default", os.environ.get(api_key_env))
    return ScorerVerifier(scorer or load_scorer(spec, threads))
