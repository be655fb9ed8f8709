"""Preference pairs on disk: one JSON object per line, a chosen and a rejected rationale for a question.

The schema: ``id``, ``question``, ``choices`` (list or null), ``answer`` (gold), ``chosen``,
``rejected`` (rationales), and optionally ``chosen_score``, ``rejected_score`` (numbers),
``source`` (where the pair came from) and ``chosen_answer`` / ``rejected_answer`` (the answer each
rationale ends with, when it is not ``answer``: a sampled rationale that argues for a wrong answer).
``rationalize train dpo`` writes it for every round and reads it with ``pairs``; ``rationalize teach
--prefer-student`` writes it beside the data it keeps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from rationalizer.atomic import atomic_write_text
from rationalizer.dataset import DataError, example_from_dict, iter_jsonl


@dataclass
class PreferencePair:
    """A question, its gold answer, and a chosen and a rejected rationale for it."""

    id: str
    question: str
    choices: list[str] | None
    answer: str
    chosen: str
    rejected: str
    chosen_score: float | None = None
    rejected_score: float | None = None
    source: str | None = None
    chosen_answer: str | None = None
    """The answer the chosen rationale ends with; None: ``answer``."""
    rejected_answer: str | None = None
    """The answer the rejected rationale ends with; None: ``answer``."""

    def to_dict(self) -> dict[str, Any]:
        """The pair in the file's schema (the two optional answers only where they are set)."""
        row: dict[str, Any] = {"id": self.id, "question": self.question, "choices": self.choices,
                               "answer": self.answer, "chosen": self.chosen, "rejected": self.rejected,
                               "chosen_score": self.chosen_score, "rejected_score": self.rejected_score,
                               "source": self.source}
        for key in ("chosen_answer", "rejected_answer"):
            if getattr(self, key) is not None:
                row[key] = getattr(self, key)
        return row


def _text(row: dict[str, Any], key: str, where: str, optional: bool) -> str | None:
    value = row.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {key!r} must be non-empty text{' or null' if optional else ''}")
    return value.strip()


def _score(row: dict[str, Any], key: str, where: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise DataError(f"{where}: {key!r} must be a finite number or null")
    return float(value)


def pair_from_dict(row: Any, where: str) -> PreferencePair:
    """Validate one decoded row (``where`` is ``file:line``); every problem is a :class:`DataError`."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    # question, answer, choices and id are checked as a data row's are
    example = example_from_dict({k: row.get(k) for k in ("id", "question", "answer", "choices")}, where,
                                fallback_id="line-" + where.rsplit(":", 1)[-1])
    pair = PreferencePair(example.id, example.question, example.choices, example.answer,
                          _text(row, "chosen", where, False), _text(row, "rejected", where, False),
                          _score(row, "chosen_score", where), _score(row, "rejected_score", where),
                          None, _text(row, "chosen_answer", where, True), _text(row, "rejected_answer", where, True))
    source = row.get("source")
    if source is not None and not isinstance(source, str):
        raise DataError(f"{where}: 'source' must be text or null")
    pair.source = source
    for key in ("chosen_answer", "rejected_answer"):
        given = getattr(pair, key)
        if given is not None and pair.choices is not None and given not in pair.choices:
            raise DataError(f"{where}: {key} {given!r} is not one of the choices")
    return pair


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """Every pair of a JSONL file; a bad line raises :class:`DataError` naming ``file:line``."""
    pairs = [pair_from_dict(row, f"{path}:{number}") for number, row in iter_jsonl(path)]
    if not pairs:
        raise DataError(f"{path}: holds no preference pairs")
    return pairs


def write_pairs(path: str | Path, pairs: Iterable[PreferencePair]) -> None:
    """Write ``pairs`` as JSONL, atomically (a reader never sees half a file)."""
    atomic_write_text(Path(path), "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in pairs))
