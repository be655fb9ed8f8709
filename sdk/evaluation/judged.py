"""A rationale judged from outside: its consistency under a simulator and its plausibility under a verifier.

``rationalize eval``'s records and the MaRio trainer's consistency and plausibility rewards both call
these functions, with the same arguments for the same (example, rationale, answer), so the reward a
code is trained on and the eval metric that code is meant to move are one number.
"""

from __future__ import annotations

from ..dataset import Example
from ..metrics.simulation import consistency
from ..prompting import answer_context, build_prompt, choice_continuation
from .judges import Judge, Verifier


def consistency_of(simulator: Judge, example: Example, rationale: str) -> tuple[float, float, float] | None:
    """LAS-style ``(P(gold | q, r) - P(gold | q), P(gold | q, r), P(gold | q))`` under ``simulator``.

    Each choice is scored as :func:`choice_continuation` after the answer marker, in the simulator's
    own chat template with no control codes. None for a free-form question (nothing to choose from);
    raises :class:`InputError` when the text does not fit the simulator's context.
    """
    if not example.choices:
        return None
    base = build_prompt(simulator.template, example.question, example.choices)
    options = [choice_continuation(c) for c in example.choices]
    return consistency(simulator.backend, answer_context(base, rationale), answer_context(base, ""),
                       options, choice_continuation(example.answer))


def judged_answer(example: Example, answer: str | None) -> str:
    """The answer a rationale's plausibility is judged against: the one it leads to, else the gold one."""
    return answer if answer is not None else example.answer


def plausibility_of(verifier: Verifier, question: str, answer: str, rationale: str) -> float | None:
    """The verifier's P(Yes) that ``rationale`` is true and supports ``answer`` to ``question``.

    None when the verifier gives no reading (an endpoint whose top tokens hold neither Yes nor No);
    raises :class:`InputError` when the text does not fit a local verifier's context.
    """
    return verifier.probabilities([(question, answer, rationale)])[0]
