"""Teacher data the student prefers (ARTE's selection step): score candidates by the student, keep the best.

The teacher samples K rationales for a question's gold answer; each is scored by the student's
consistency gain ``P(gold | q, r) - P(gold | q)``, computed by :func:`consistency_of` under the
student loaded as a judge, the code ``rationalize eval``'s consistency metric and MaRio's
consistency reward run, so the number a row is chosen by is the number eval reports. The best
candidate becomes the output row; the best and the worst form a preference pair, which
``rationalize train dpo --pairs`` can align a local teacher with (ARTE's second step).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rationalizer.dataset import Example
from rationalizer.errors import InputError
from rationalizer.evaluation.judged import consistency_of
from rationalizer.evaluation.judges import Judge, load_judge

from ..dpo_pairs import PreferencePair


@dataclass
class Candidate:
    """One sampled rationale as an output row, why the filters refuse it (None: kept), and its gain."""

    row: Example
    verdict: str | None
    gain: float | None


@dataclass
class Choice:
    """The candidate kept (None: all were filtered out) and the pair it forms (None: no preference)."""

    best: Candidate | None
    worst: Candidate | None
    pair: PreferencePair | None


class StudentPreference:
    """A student bundle opened as a simulator judge, scoring rationales by their consistency gain."""

    def __init__(self, judge: Judge, spec: str) -> None:
        self.judge = judge
        self.name = f"{judge.name} ({spec})"

    @classmethod
    def load(cls, spec: str, device: str = "cpu") -> "StudentPreference":
        """Open ``spec`` (a bundle folder, or ``default``) the way ``rationalize eval`` opens its simulator."""
        return cls(load_judge(spec, device=device), spec)

    def gain(self, example: Example, rationale: str) -> float | None:
        """The student's consistency gain for ``rationale``; None where eval has no value (a free-form
        question, an empty rationale, text past the student's context)."""
        if not rationale.strip():
            return None
        try:
            judged = consistency_of(self.judge, example, rationale)
        except InputError:
            return None
        return None if judged is None else judged[0]

    def close(self) -> None:
        """Free the student's model."""
        self.judge.close()


def rank(candidate: Candidate) -> tuple[bool, float]:
    """Order of preference: a stated answer that is not the gold one loses to any other, then the gain
    (unscored candidates last)."""
    gain = candidate.gain if candidate.gain is not None else -math.inf
    return candidate.row.teacher_correct is not False, gain


def choose(candidates: Sequence[Candidate], source: str) -> Choice:
    """The best candidate the filters keep (by :func:`rank`), the lowest-gain scored one, and their pair.

    The worst may be one the filters refused (too long, a stated wrong answer): it is still a rationale
    the student should prefer less. A pair needs the best's gain above the worst's (by more than 0)
    and two different texts; a free-form question (no gain) keeps its first candidate and has no pair.
    """
    kept = [c for c in candidates if c.verdict is None]
    best = max(kept, key=rank) if kept else None
    scored = [c for c in candidates if c.gain is not None]
    worst = min(scored, key=lambda c: (c.gain, c.row.teacher_correct is not False)) if scored else None
    pair = None
    if (best is not None and worst is not None and best.gain is not None and best.gain > worst.gain
            and _norm(best.row.rationale) != _norm(worst.row.rationale)):
        row = best.row
        pair = PreferencePair(row.id, row.question, row.choices, row.answer, best.row.rationale or "",
                              worst.row.rationale or "", best.gain, worst.gain, source,
                              _wrong_answer(best.row), _wrong_answer(worst.row))
    return Choice(best, worst, pair)


def _wrong_answer(row: Example) -> str | None:
    """The answer a candidate states when it is not the one asked for (the pair file's ``*_answer``)."""
    return row.teacher_answer if row.teacher_correct is False else None


def pair_line(pair: PreferencePair) -> str:
    """One line of the pairs file, in :mod:`rationalizer.training.dpo_pairs`' schema (appended, so a run
    that is killed keeps the pairs it wrote)."""
    return json.dumps(pair.to_dict(), ensure_ascii=False) + "\n"


def paired_ids(path: Path) -> set[str]:
    """Ids that already have a pair in ``path`` (a torn or foreign line is passed over)."""
    ids: set[str] = set()
    if not path.exists():
        return ids
    for raw in path.read_bytes().split(b"\n"):
        try:
            ids.add(str(json.loads(raw)["id"]))
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
    return ids


def _norm(text: str | None) -> str:
    return " ".join((text or "").lower().split())
