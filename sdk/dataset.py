"""Reading question/answer/rationale examples in the project's JSONL schema.

The schema (one object per line): ``id``, ``question``, ``choices`` (list or
null), ``answer``, ``rationale`` (or null), optionally ``source``, ``kind``
(``factual``/``counterfactual``), ``teacher_answer``, ``teacher_correct``,
``human_rationale``. Every problem is reported as ``file:line: what is wrong``.
"""

from __future__ import annotations

import json
import logging
import math
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import InputError

logger = logging.getLogger(__name__)

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
    teacher_answer: str | None = None
    """The answer a teacher's rationale states (``rationalize teach``); None: not known."""
    teacher_correct: bool | None = None
    """Whether ``teacher_answer`` matches the answer the teacher was asked to explain; None: not known."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, teacher_fields: bool = False) -> dict[str, Any]:
        """The example in the JSONL schema (extra fields kept), in the schema's key order.

        ``teacher_answer`` and ``teacher_correct`` are written when either is known, or always
        with ``teacher_fields`` (a teacher's output row, where null says it stated no readable answer).
        """
        out = {"id": self.id, "question": self.question, "choices": self.choices, "answer": self.answer,
               "rationale": self.rationale, "kind": self.kind, "source": self.source}
        if teacher_fields or self.teacher_answer is not None or self.teacher_correct is not None:
            out.update(teacher_answer=self.teacher_answer, teacher_correct=self.teacher_correct)
        out.update(self.extra)
        return out


class DataError(InputError):
    """A data file or one of its lines is malformed; the message starts with ``file:line:``."""


def example_from_dict(row: Any, where: str, fallback_id: str) -> Example:
    """Validate one decoded row; ``where`` (``file:line``) prefixes every error.

    Any value decoded from JSON (or built in code) either gives an :class:`Example` or raises
    :class:`DataError`, never another exception: text must be valid Unicode (no lone surrogate),
    numbers must fit in text (4,300 digits), nesting is bounded.
    """
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    check_json_value(row, where)
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: 'question' must be non-empty text")
    answer = row.get("answer")
    if _is_number(answer):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise DataError(f"{where}: 'answer' must be non-empty text")
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
            raise DataError(f"{where}: 'choices' must be null or a list of at least two non-empty strings")
        if answer not in choices:
            raise DataError(f"{where}: answer {_show(answer)} is not one of the choices {_show(choices)}")
    rationale = row.get("rationale")
    if rationale is not None and not isinstance(rationale, str):
        raise DataError(f"{where}: 'rationale' must be text or null")
    kind = row.get("kind", "factual")
    if not isinstance(kind, str) or kind not in KINDS:
        raise DataError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, not {_show(kind)}")
    source = row.get("source")
    if source is not None and not isinstance(source, str):
        raise DataError(f"{where}: 'source' must be text or null")
    teacher_answer = row.get("teacher_answer")
    if _is_number(teacher_answer):
        teacher_answer = str(teacher_answer)  # as for 'answer': a free-form answer may be written as a number
    if teacher_answer is not None and not isinstance(teacher_answer, str):
        raise DataError(f"{where}: 'teacher_answer' must be text or null, not {_show(teacher_answer)}")
    teacher_correct = row.get("teacher_correct")
    if teacher_correct is not None and not isinstance(teacher_correct, bool):
        raise DataError(f"{where}: 'teacher_correct' must be true, false or null, not {_show(teacher_correct)}")
    known = {"id", "question", "answer", "choices", "rationale", "kind", "source", "teacher_answer", "teacher_correct"}
    return Example(
        id=_row_id(row.get("id"), where, fallback_id),
        question=question.strip(),
        answer=answer.strip(),
        choices=_unique(choices) if choices is not None else None,
        rationale=rationale.strip() if isinstance(rationale, str) and rationale.strip() else None,
        kind=kind,
        source=source or "",
        teacher_answer=teacher_answer,
        teacher_correct=teacher_correct,
        extra={k: v for k, v in row.items() if k not in known},
    )


def _row_id(value: Any, where: str, fallback_id: str) -> str:
    """A row's id as text: text or a number as given, the fallback when absent or null."""
    if value is None:
        return fallback_id
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(value)  # an int here has at most MAX_INT_BITS bits (checked), so str() cannot fail
    raise DataError(f"{where}: 'id' must be text or a number, not {_show(value)}")


def _is_number(value: Any) -> bool:
    """An integer or a finite float (``math.isfinite`` alone overflows on a 400-digit integer)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _show(value: Any) -> str:
    """A value as an error message shows it: a short, one-line repr (never an exception)."""
    try:
        return reprlib.repr(value)
    except ValueError:  # an integer past Python's int-to-text limit
        return "<a number of more than 4,300 digits>"


MAX_INT_BITS = 14_000
"""Largest integer a data row may hold (about 4,200 digits): below Python's 4,300-digit limit on
int-to-text conversion, so every number read can also be written back."""
MAX_DEPTH = 100
"""Deepest nesting of lists and objects in a row; real rows nest two or three levels."""


def check_json_value(value: Any, where: str) -> None:
    """Refuse what a decoded JSON value may hold but the project cannot use or write back: text
    with a lone surrogate (JSON's ``"\\ud800"``), integers of more than ``MAX_INT_BITS`` bits,
    nesting deeper than ``MAX_DEPTH`` (and, from code, a container that holds itself)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise DataError(f"{where}: text with a lone surrogate (\\u{ord(item[exc.start]):04x}) "
                                    "is not valid Unicode") from None
        elif isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() > MAX_INT_BITS:
                raise DataError(f"{where}: a number of more than 4,200 digits")
        elif isinstance(item, (list, tuple, dict)):
            if depth >= MAX_DEPTH:
                raise DataError(f"{where}: nested more than {MAX_DEPTH} levels deep")
            if id(item) in seen:
                raise DataError(f"{where}: a list or object that contains itself")
            seen.add(id(item))
            children = [v for kv in item.items() for v in kv] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


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


UTF8_BOM = b"\xef\xbb\xbf"


def open_data_file(path: Path):
    """``path`` opened for reading bytes; a missing, unreadable or folder path is a :class:`DataError`."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a data file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def not_utf8(where: str, raw: bytes, exc: UnicodeDecodeError) -> DataError:
    """The error for a line that is not UTF-8, naming the first bad byte and its column."""
    return DataError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")


def decode_json_line(raw: bytes, where: str) -> Any:
    """One line of a JSONL file (bytes) decoded and checked by :func:`check_json_value`.

    Every problem, bad UTF-8, bad JSON, a number of more than 4,300 digits, nesting too deep
    for the parser, is a :class:`DataError` starting with ``where``.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(where, raw, exc) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError:  # the only other error of json.loads: an integer past the int-from-text limit
        raise DataError(f"{where}: not valid JSON (a number of more than 4,300 digits)") from None
    check_json_value(value, where)
    return value


def iter_jsonl(path: str | Path, on_error: Callable[[int, DataError], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line number, decoded object) for every non-blank line; a bad line names ``file:line``.

    Lines are read as bytes and decoded one by one, so line numbers count ``\\n`` as editors do
    (a decoder reading ahead in chunks would not know which line a bad byte is on); a UTF-8 BOM
    at the start is ignored. With ``on_error`` a bad line is handed to it and reading goes on;
    without, it raises.
    """
    p = Path(path)
    with open_data_file(p) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
            if not raw.strip():
                continue
            try:
                value = decode_json_line(raw, f"{p}:{number}")
            except DataError as exc:
                if on_error is None:
                    raise
                on_error(number, exc)
                continue
            yield number, value


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
        logger.warning("%s: %d rows repeat a choice; the repeats were dropped", path, repeated)
    return out


def read_numbered_examples(path: str | Path) -> tuple[list[tuple[int, Example]], list[tuple[int, str]]]:
    """Every valid example of a JSONL file with its line number, and ``(line, "file:line: problem")``
    for every bad row.

    Unlike :func:`read_examples`, reading goes on past a bad row, so that a caller can name all of
    them at once (``rationalize eval`` does, before its first generation). Lines are counted on
    ``\\n`` bytes, as editors number them; a UTF-8 BOM at the start of the file is ignored.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    good: list[tuple[int, Example]] = []
    bad: list[tuple[int, str]] = []
    repeated = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{p}:{number}"
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append((number, f"{where}: not UTF-8 text"))
            continue
        except RecursionError:
            bad.append((number, f"{where}: not valid JSON (nested too deeply)"))
            continue
        except json.JSONDecodeError as exc:
            bad.append((number, f"{where}: not valid JSON ({exc.msg}, column {exc.colno})"))
            continue
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            bad.append((number, f"{where}: not valid JSON ({str(exc).split(';')[0]})"))
            continue
        try:
            example = example_from_dict(row, where, fallback_id=f"line-{number}")
        except (ValueError, TypeError, RecursionError) as exc:
            message = str(exc)
            bad.append((number, message if message.startswith(where) else f"{where}: {message}"))
            continue
        repeated += example.choices is not None and len(example.choices) != len(row["choices"])
        good.append((number, example))
    if repeated:
        logger.warning("%s: %d rows repeat a choice; the repeats were dropped", p, repeated)
    return good, bad
