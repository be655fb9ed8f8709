"""Rewards for multi-reward training, behind one batched interface.

Each reward scores a list of samples (a rationale and the answer it leads to,
for a question) and returns one float per sample, higher is better. The
built-ins reuse ``rationalize eval``'s metric code (consistency and plausibility
call :mod:`rationalizer.evaluation.judged` as eval does, so a reward equals the
eval record's value); a user reward is any callable ``f(samples) -> list[float]``
named by an import path ``module:function``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from rationalizer.dataset import Example
from rationalizer.errors import InputError, UserError
from rationalizer.evaluation.judged import consistency_of, judged_answer, plausibility_of
from rationalizer.evaluation.judges import Judge, LocalVerifier, Verifier, load_judge
from rationalizer.metrics import answers_match, diversity


@dataclass
class Sample:
    """A rationale for a question, the answer it ends with, and where it came from."""

    example: Example
    rationale: str
    answer: str | None
    source: str = "policy"


class Reward(Protocol):
    """A named, batched scorer of samples (higher is better)."""

    name: str

    def score(self, samples: Sequence[Sample]) -> list[float]: ...


class Accuracy:
    """1 when the sample's answer is the gold answer, else 0."""

    name = "accuracy"

    def score(self, samples: Sequence[Sample]) -> list[float]:
        return [float(answers_match(s.answer, s.example.answer, s.example.choices)) for s in samples]


class Diversity:
    """MaRio's ``(1-rep2)(1-rep3)(1-rep4)`` of the rationale."""

    name = "diversity"

    def score(self, samples: Sequence[Sample]) -> list[float]:
        return [diversity(s.rationale) if s.rationale.strip() else 0.0 for s in samples]


class Length:
    """Closeness to a target length in words (``-|words - target| / target``); shorter is better without a target."""

    name = "length"

    def __init__(self, target_words: int | None = None) -> None:
        self.target = target_words

    def score(self, samples: Sequence[Sample]) -> list[float]:
        counts = [len(s.rationale.split()) for s in samples]
        if self.target:
            return [-abs(n - self.target) / self.target for n in counts]
        return [-float(n) for n in counts]


class Consistency:
    """LAS-style ``P(gold | q, r) - P(gold | q)`` under a simulator judge: eval's ``consistency`` of the sample.

    0 where eval has no value: a free-form question, or text longer than the judge's context.
    """

    name = "consistency"

    def __init__(self, judge: Judge) -> None:
        self.judge = judge

    def score(self, samples: Sequence[Sample]) -> list[float]:
        return [self._one(s) for s in samples]

    def _one(self, s: Sample) -> float:
        try:
            judged = consistency_of(self.judge, s.example, s.rationale)
        except InputError:
            return 0.0
        return 0.0 if judged is None else judged[0]


class Plausibility:
    """A verifier's P(Yes) that the rationale is true and supports the answer: eval's ``plausibility`` of the sample.

    The answer is the sample's own, or the gold one when the sample gives none (:func:`judged_answer`,
    as eval judges a record). 0 where eval has no value: an empty rationale, text longer than the
    verifier's context, or no reading from the verifier.
    """

    name = "plausibility"

    def __init__(self, judge: Judge | Verifier) -> None:
        self.verifier: Verifier = LocalVerifier(judge) if isinstance(judge, Judge) else judge

    def score(self, samples: Sequence[Sample]) -> list[float]:
        return [self._one(s) for s in samples]

    def _one(self, s: Sample) -> float:
        if not s.rationale.strip():
            return 0.0
        try:
            p = plausibility_of(self.verifier, s.example.question, judged_answer(s.example, s.answer), s.rationale)
        except InputError:
            return 0.0
        return 0.0 if p is None else p


class UserReward:
    """A reward from an import path ``package.module:function``."""

    def __init__(self, path: str) -> None:
        module, _, attr = path.partition(":")
        try:
            self.fn: Callable = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UserError(f"reward {path!r}: cannot import ({exc}); expected 'module:function'") from None
        self.name = attr

    def score(self, samples: Sequence[Sample]) -> list[float]:
        values = [float(v) for v in self.fn(list(samples))]
        if len(values) != len(samples):
            raise UserError(f"reward {self.name!r} returned {len(values)} scores for {len(samples)} samples")
        return values


def build_rewards(names: Sequence[str], judge: str = "default", length_target: int | None = None) -> list[Reward]:
    """Rewards by name (``accuracy``, ``diversity``, ``consistency``, ``plausibility``, ``length``,
    or ``module:function``); the judged ones share one judge model (``judge``: default or a bundle)."""
    model: Judge | None = None
    rewards: list[Reward] = []
    for name in names:
        if name in ("consistency", "plausibility") and model is None:
            model = load_judge(judge)
        if name == "accuracy":
            rewards.append(Accuracy())
        elif name == "diversity":
            rewards.append(Diversity())
        elif name == "length":
            rewards.append(Length(length_target))
        elif name == "consistency":
            rewards.append(Consistency(model))
        elif name == "plausibility":
            rewards.append(Plausibility(model))
        elif ":" in name:
            rewards.append(UserReward(name))
        else:
            raise UserError(f"unknown reward {name!r} (accuracy, diversity, consistency, plausibility, length, "
                            "or module:function)")
    return rewards
