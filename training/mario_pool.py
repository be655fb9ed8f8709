"""MaRio's pool: every teacher rationale of the training questions at the start, the policy's samples
added each round, kept on disk between rounds.

A question with several rationales (StrategyQA train has about five, some arguing for a wrong
answer) is what lets a code learn the difference between a better and a worse rationale of the
same question; one rationale per question only teaches what kind of question it is.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from rationalizer.atomic import atomic_write_text
from rationalizer.dataset import Example

from .rewards import Sample

if TYPE_CHECKING:
    from .config import MarioConfig


def question_key(example: Example) -> str:
    """What makes two rows the same question (their rationales then compete in one question's bins)."""
    return " ".join(example.question.lower().split())


def pool_rows(config: "MarioConfig") -> list[Example]:
    """The factual rows of the training files; with ``question_limits``, each file's first N questions
    with all their rows, else the rows the inherited row limits select."""
    from .sft import read_training_files

    if config.question_limits is None:
        rows = read_training_files(config.train, config.train_limit, config.drop_teacher_incorrect,
                                   config.train_limits, config.max_per_question)
        return [r for r in rows if r.kind == "factual"]
    rows = []
    for path, limit in zip(config.train, config.question_limits):
        kept: set[str] = set()
        for r in read_training_files([path], None, config.drop_teacher_incorrect, None, config.max_per_question):
            key = question_key(r)
            if r.kind != "factual" or (key not in kept and limit and len(kept) >= limit):
                continue
            kept.add(key)
            rows.append(r)
    return rows


def questions_of(rows: list[Example]) -> list[Example]:
    """One example per question (its first row), in order: what the policy is asked each round."""
    seen: set[str] = set()
    out = []
    for r in rows:
        if question_key(r) not in seen:
            seen.add(question_key(r))
            out.append(r)
    return out


def teacher_samples(rows: list[Example]) -> list[Sample]:
    """The data's rationales as pool entries, each with the answer its teacher gave (gold unless recorded)."""
    return [Sample(r, r.rationale, r.teacher_answer or r.answer, "teacher") for r in rows if r.rationale]


def save_pool(path: Path, pool: list[Sample]) -> None:
    """Write the pool as JSON lines, atomically."""
    atomic_write_text(path, "".join(json.dumps({"example": asdict(s.example), "rationale": s.rationale,
                                                "answer": s.answer, "source": s.source}) + "\n" for s in pool))


def load_pool(path: Path) -> list[Sample]:
    """Read a pool :func:`save_pool` wrote."""
    return [Sample(Example(**row["example"]), row["rationale"], row["answer"], row["source"])
            for row in map(json.loads, path.read_text().splitlines())]
