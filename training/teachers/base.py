"""What every teacher takes and returns, and how the wrong answer of a counterfactual is chosen."""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass
from typing import Protocol, Sequence

from rationalizer.dataset import Example
from rationalizer.manifest import ANSWER_MARKER, ParserSettings
from rationalizer.prompting import parse_answer


@dataclass
class TeacherRequest:
    """Explain ``target`` as the answer to ``example`` (gold for factual, wrong for counterfactual).

    ``contrast`` is the other answer, which a contrastive decoder pushes away from. ``candidate``
    numbers the samples of one question when several are asked for (``--candidates``), so a
    seeded served teacher is sent a different seed for each.
    """

    example: Example
    kind: str
    target: str
    contrast: str | None
    candidate: int = 0


@dataclass
class TeacherOutput:
    """The teacher's raw text, the rationale in it and the answer it states (None if none)."""

    text: str
    rationale: str
    stated_answer: str | None


class Teacher(Protocol):
    """Writes rationales. ``concurrency`` requests run at once, each carrying ``batch_size`` examples."""

    name: str
    concurrency: int
    batch_size: int

    def write(self, requests: Sequence[TeacherRequest]) -> list[TeacherOutput]: ...


def read_output(text: str, example: Example) -> TeacherOutput:
    """Split teacher text into rationale and stated answer (the text after the marker)."""
    text = text.strip()
    parsed = parse_answer(text, example.choices, ParserSettings(marker=ANSWER_MARKER, strategies=["marker"]))
    if parsed.answer is not None:
        rationale = parsed.rationale
    else:  # no readable answer after the marker: the rationale is what comes before it
        rationale = re.split(rf"\s*{re.escape(ANSWER_MARKER)}", text, maxsplit=1)[0]
    return TeacherOutput(text, rationale.strip(), parsed.answer)


def wrong_answer(example: Example, seed: int = 0) -> str | None:
    """SCOTT's wrong answer: the flipped yes/no, a random wrong choice, or for a number a nearby one.

    Seeded by the example id, so reruns ask for the same counterfactual.
    """
    rng = random.Random(zlib.crc32(f"{seed}:{example.id}".encode()))
    if example.choices:
        wrong = [c for c in example.choices if c.lower() != example.answer.lower()]
        return rng.choice(wrong) if wrong else None
    try:
        value = float(example.answer.replace(",", ""))
    except ValueError:
        return None
    shifted = value + rng.choice([-1, 1]) * rng.randint(1, 9)
    return str(int(shifted)) if shifted.is_integer() else f"{shifted:g}"


def requests_for(example: Example, counterfactual: bool, seed: int = 0) -> list[TeacherRequest]:
    """The factual request, and the counterfactual one when asked and a wrong answer exists."""
    wrong = wrong_answer(example, seed)
    out = [TeacherRequest(example, "factual", example.answer, wrong)]
    if counterfactual and wrong is not None:
        out.append(TeacherRequest(example, "counterfactual", wrong, example.answer))
    return out
