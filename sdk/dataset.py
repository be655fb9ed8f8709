"""Reading question/answer/rationale examples in the project's JSONL schema.

The schema (one object per line): ``id``, ``question``, ``choices`` (list or
null), ``answer``, ``rationale`` (or null), optionally ``source``, ``kind``
(``factual``/``counterfactual``), ``teacher_answer``, ``teacher_correct``,
``human_rationale``. Every problem is reported as ``file:line: what is wrong``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError

KINDS = ("factual", "counterfactual")


@dataclass
class Example:
    """One question with its gold answer and, where known, a reference rationale."""

    id: str
    question: str
    answer: str
    choices: list[str] | None = None
    rationale: str | None = None
    kind: str = "factual"
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The example in the JSONL schema (extra fields kept)."""
        out = {"id": self.id, "question": self.question, "choices": self.choices, "answer": self.answer,
               "rationale": self.rationale, "kind": self.kind, "source": self.source}
        out.update(self.extra)
        return out


class DataError(InputError):
    """A data file or one of its lines is malformed; the message starts with ``file:line:``."""


def example_from_dict(row: Any, where: str, fallback_id: str) -> Example:
    """Validate one decoded row; ``where`` (``file:line``) prefixes every error."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: 'question' must be non-empty text")
    answer = row.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise DataError(f"{where}: 'answer' must be non-empty text")
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
            raise DataError(f"{where}: 'choices' must be null or a list of at least two non-empty strings")
        if answer not in choices:
            raise DataError(f"{where}: answer {answer!r} is not one of the choices {choices}")
    rationale = row.get("rationale")
    if rationale is not None and not isinstance(rationale, str):
        raise DataError(f"{where}: 'rationale' must be text or null")
    kind = row.get("kind", "factual")
    if kind not in KINDS:
        raise DataError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    known = {"id", "question", "answer", "choices", "rationale", "kind", "source"}
    return Example(
        id=str(row.get("id", fallback_id)),
        question=question.strip(),
        answer=answer.strip(),
        choices=_unique(choices) if choices is not None else None,
        rationale=rationale.strip() if isinstance(rationale, str) and rationale.strip() else None,
        kind=kind,
        source=str(row.get("source", "")),
        extra={k: v for k, v in row.items() if k not in known},
    )


def _unique(choices: list[str]) -> list[str]:
    """Choices with exact repeats (ignoring case and spaces) dropped, first one kept.

    Real datasets have them (CommonsenseQA repeats an option in about 1% of
    rows); a repeated option adds nothing, and dropping it keeps the row usable.
    """
    seen: set[str] = set()
    out = []
    for c in choices:
        key = " ".join(c.lower().split())
        if key not in seen:
            seen.add(key)
            out.append(c.strip())
    return out


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, decoded object) for every non-blank line; bad JSON names the line."""
    p = Path(path)
    try:
        handle = p.open("r", encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    with handle:
        number = 0
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{p}:{number}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        except UnicodeDecodeError:
            raise DataError(f"{p}:{number + 1}: not UTF-8 text") from None


def read_examples(path: str | Path, limit: int | None = None, kind: str | None = None) -> list[Example]:
    """Read and validate examples from a JSONL file (the first ``limit``; only ``kind`` if given)."""
    out: list[Example] = []
    repeated = 0
    for number, row in iter_jsonl(path):
        example = example_from_dict(row, f"{path}:{number}", fallback_id=f"line-{number}")
        repeated += example.choices is not None and len(example.choices) != len(row["choices"])
        if kind is None or example.kind == kind:
            out.append(example)
        if limit is not None and len(out) >= limit:
            break
    if repeated:
        logging.getLogger("rationalizer").warning("%s: %d rows repeat a choice; the repeats were dropped", path, repeated)
    return out
