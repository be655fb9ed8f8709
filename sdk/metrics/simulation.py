"""Metrics that need a language model: LAS-style consistency and verifier plausibility.

The judge is a backend (:class:`rationalizer.backends.Backend`): it gives the
log-likelihood of a continuation after a context. The simulator scores each
choice by its length-normalized log-likelihood and normalizes over the choices (MaRio).
"""

from __future__ import annotations

from typing import Sequence

from ..backends.base import Backend
from ..logprobs import softmax


def choice_probabilities(judge: Backend, context: str, choices: Sequence[str]) -> list[float]:
    """P(choice | context) over ``choices`` from length-normalized log-likelihoods."""
    scored = judge.loglikelihoods([(context, c) for c in choices])
    return softmax([ll / max(n, 1) for ll, n in scored])


def consistency(judge: Backend, with_rationale: str, without_rationale: str,
                choices: Sequence[str], gold: str) -> tuple[float, float, float]:
    """(P(gold | q, r) - P(gold | q), P(gold | q, r), P(gold | q)) under the simulator.

    ``with_rationale`` and ``without_rationale`` are the simulator's contexts up
    to the answer (ending in the answer marker); the caller builds them, and the choices as the text
    after the marker (:func:`rationalizer.evaluation.judged.consistency_of` does both for eval and rewards).
    """
    index = list(choices).index(gold)
    p_with = choice_probabilities(judge, with_rationale, choices)[index]
    p_without = choice_probabilities(judge, without_rationale, choices)[index]
    return p_with - p_without, p_with, p_without


def plausibility_prompt(question: str, answer: str, rationale: str) -> str:
    """The verifier's question about one rationale (the user turn of a chat model)."""
    return (
        f"Question: {question}\nAnswer: {answer}\nExplanation: {rationale}\n"
        "Is the explanation true, and does it support the answer to the question? Reply Yes or No."
    )


def yes_probability(judge: Backend, context: str) -> float:
    """P(Yes) / (P(Yes) + P(No)) for the reply that follows ``context``."""
    (ly, _), (ln, _) = judge.loglikelihoods([(context, "Yes"), (context, "No")])
    return softmax([ly, ln])[0]
