"""The data layer: JSONL and CSV in, field mapping, validation, splits, de-duplication, atomic writes.

Rows are validated by :func:`rationalizer.dataset.example_from_dict`, the same
check ``rationalize eval`` uses, so a file that trains also evaluates. Every
problem names ``file:line``; ``skip_invalid`` counts bad rows instead of failing.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from rationalizer.atomic import atomic_write_text
from rationalizer.dataset import (UTF8_BOM, DataError, Example, decode_json_line, example_from_dict, iter_jsonl,
                                  not_utf8, open_data_file)


@dataclass
class FieldMap:
    """Which column or key of the input holds each field of the schema."""

    id: str = field(default="id", metadata={"help": "Input field of the row id."})
    question: str = field(default="question", metadata={"help": "Input field of the question."})
    answer: str = field(default="answer", metadata={"help": "Input field of the gold answer."})
    choices: str = field(default="choices", metadata={"help": "Input field of the answer choices."})
    rationale: str = field(default="rationale", metadata={"help": "Input field of a reference rationale."})
    kind: str = field(default="kind", metadata={"help": "Input field of the row kind (factual/counterfactual)."})


@dataclass
class ReadReport:
    """What reading a file found: rows read, rows skipped and the first few problems."""

    path: str
    rows: int = 0
    invalid: int = 0
    errors: list[str] = field(default_factory=list)


def _remap(row: dict[str, Any], fields: FieldMap) -> dict[str, Any]:
    mapping = {"id": fields.id, "question": fields.question, "answer": fields.answer, "choices": fields.choices,
               "rationale": fields.rationale, "kind": fields.kind}
    out = {k: v for k, v in row.items() if k not in mapping.values()}
    for target, source in mapping.items():
        if source in row:
            out[target] = row[source]
    return out


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """(line where the record starts, cells by column name) for every record of a CSV file.

    Lines are read as bytes and decoded one by one, so a bad byte is reported on its own line
    (a decoder reading ahead in chunks reports a line far before it); a record spanning lines is
    numbered by its first line. A UTF-8 BOM (spreadsheets write one) is dropped, so the first
    column keeps its name. A bad record is yielded as a :class:`DataError` for the caller to
    raise or skip; a bad header line raises.
    """
    bad_lines: dict[int, DataError] = {}

    def lines(handle) -> Iterator[str]:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_lines[number] = not_utf8(f"{path}:{number}", raw, exc)
                yield raw.decode("utf-8", "surrogateescape")  # kept in step with the file; the record is refused

    with open_data_file(path) as handle:
        reader = csv.reader(lines(handle), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                problem: DataError | None = DataError(f"{path}:{start}: not valid CSV ({exc})")
                cells = []
            else:
                problem = next((bad_lines[n] for n in range(start, reader.line_num + 1) if n in bad_lines), None)
            if header is None:
                if problem is not None:
                    raise problem
                if cells:
                    header = [name.strip() for name in cells]
                continue
            if problem is not None:
                yield start, problem
            elif len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
                yield start, DataError(f"{path}:{start}: {len(cells)} cells, "
                                       f"but the header names {len(header)} columns")
            elif cells:  # a blank line is no record
                yield start, {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(header)}


def _csv_value(row: dict[str, Any], fields: FieldMap, where: str) -> dict[str, Any]:
    """CSV cells are text: choices are 'a|b|c' or a JSON list; empty cells are null."""
    out = {k: (v if v not in ("", None) else None) for k, v in row.items()}
    choices = out.get(fields.choices)
    if isinstance(choices, str):
        text = choices.strip()
        out[fields.choices] = (decode_json_line(text.encode("utf-8"), where) if text.startswith("[")
                               else [c.strip() for c in text.split("|")])
    return out


def read_dataset(path: str | Path, fields: FieldMap | None = None, skip_invalid: bool = False,
                 limit: int | None = None) -> tuple[list[Example], ReadReport]:
    """Read examples from JSONL or CSV (by extension), validating every row.

    With ``skip_invalid`` a bad row (bad JSON included) is counted and skipped;
    without, the first one raises :class:`DataError` naming file and line.
    """
    p = Path(path)
    fields = fields or FieldMap()
    report = ReadReport(str(p))
    examples: list[Example] = []
    rows: Iterable[tuple[int, Any]]
    rows = _csv_rows(p) if p.suffix.lower() in (".csv", ".tsv") else _jsonl_rows(p, report, skip_invalid)
    for number, row in rows:
        where = f"{p}:{number}"
        try:
            if isinstance(row, DataError):
                raise row
            if p.suffix.lower() in (".csv", ".tsv"):
                row = _csv_value(row, fields, where)
            examples.append(example_from_dict(_remap(row, fields) if isinstance(row, dict) else row, where, f"line-{number}"))
        except (DataError, ValueError) as exc:
            message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            if not skip_invalid:
                raise DataError(message) from None
            report.invalid += 1
            if len(report.errors) < 20:
                report.errors.append(message)
            continue
        report.rows += 1
        if limit is not None and len(examples) >= limit:
            break
    return examples, report


def _jsonl_rows(path: Path, report: ReadReport, skip_invalid: bool) -> Iterator[tuple[int, Any]]:
    """Like :func:`iter_jsonl`, but a bad JSON line is skipped and counted when asked."""
    def skip(number: int, error: DataError) -> None:
        report.invalid += 1
        if len(report.errors) < 20:
            report.errors.append(str(error))

    yield from iter_jsonl(path, on_error=skip if skip_invalid else None)


def _key(example: Example) -> str:
    choices = "|".join(sorted(c.lower() for c in example.choices or []))
    return " ".join(example.question.lower().split()) + "\x00" + choices


def deduplicate(examples: list[Example]) -> tuple[list[Example], int]:
    """Drop repeated questions (same text and choices, ignoring case and spacing); keep the first."""
    seen: set[tuple[str, str]] = set()
    out = []
    for e in examples:
        key = (_key(e), e.kind)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out, len(examples) - len(out)


def split_examples(examples: list[Example], dev_fraction: float, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(train, dev) by a hash of each question, so a question lands on the same side whatever the
    file order, and every row of one question (factual and counterfactual) stays together."""
    if not 0 <= dev_fraction < 1:
        raise ValueError(f"dev_fraction must be in [0, 1), not {dev_fraction}")
    train, dev = [], []
    for e in examples:
        digest = hashlib.sha256(f"{seed}\x00{_key(e)}".encode()).digest()
        (dev if int.from_bytes(digest[:8], "big") / 2**64 < dev_fraction else train).append(e)
    return train, dev


def write_examples(path: str | Path, examples: Iterable[Example]) -> None:
    """Write examples as JSONL atomically."""
    atomic_write_text(path, "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in examples))
