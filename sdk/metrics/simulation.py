"""Metrics that need a language model: LAS-style consistency and verifier plausibility.

A *scorer* gives the log-likelihood of a continuation after a context
(:class:`rationalizer.scorers.Scorer`). The simulator scores each choice by its
length-normalized log-likelihood and normalizes over the choices (MaRio).
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence


class LoglikelihoodScorer(Protocol):
    """Anything that scores continuations: returns (sum of log-probs, token count) per pair."""

    name: str

    def loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]: ...


def _softmax(xs: Sequence[float]) -> list[float]:
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    total = sum(exps)
    return [e / total for e in exps]


def choice_probabilities(scorer: LoglikelihoodScorer, context: str, choices: Sequence[str]) -> list[float]:
    """P(choice | context) over ``choices`` from length-normalized log-likelihoods."""
    scored = scorer.loglikelihoods([(context, c) for c in choices])
    return _softmax([ll / max(n, 1) for ll, n in scored])


def consistency(scorer: LoglikelihoodScorer, with_rationale: str, without_rationale: str,
                choices: Sequence[str], gold: str) -> tuple[float, float, float]:
    """(P(gold | q, r) - P(gold | q), P(gold | q, r), P(gold | q)) under the simulator.

    ``with_rationale`` and ``without_rationale`` are the simulator's contexts up
    to the answer (ending in the answer marker); the caller builds them.
    """
    index = list(choices).index(gold)
    p_with = choice_probabilities(scorer, with_rationale, choices)[index]
    p_without = choice_probabilities(scorer, without_rationale, choices)[index]
    return p_with - p_without, p_with, p_without


def plausibility_prompt(question: str, answer: str, rationale: str) -> str:
    """The verifier's question about one rationale (the user turn of a chat model)."""
    return (
        f"Question: {question}\nAnswer: {answer}\nExplanation: {rationale}\n"
        "Is the explanation true, and does it support the answer to the question? Reply Yes or No."
    )


def yes_probability(scorer: LoglikelihoodScorer, context: str) -> float:
    """P(Yes) / (P(Yes) + P(No)) for the reply that follows ``context``."""
    (ly, _), (ln, _) = scorer.loglikelihoods([(context, "Yes"), (context, "No")])
    return _softmax([ly, ln])[0]
