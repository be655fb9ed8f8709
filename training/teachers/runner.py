"""``rationalize teach``'s loop: ask the teacher, filter, append each result as it arrives, resume.

The output is append-only JSONL; a result is one ``write`` of one line, so a
kill loses at most the requests in flight (a torn last line is cut off at the
next start). Rejected results go to ``OUT.rejected.jsonl`` with the reason, so a
rerun does not ask again; failed requests are retried by a rerun.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rationalizer.errors import RationalizerError, UserError
from rationalizer.file_lock import exclusive_writer
from rationalizer.metrics import answers_match
from rationalizer.progress import Progress, or_silent

from rationalizer.dataset import DataError, Example

from ..data import deduplicate, read_dataset
from .base import Teacher, TeacherOutput, TeacherRequest, requests_for
from .config import TeachConfig


@dataclass
class TeachSummary:
    """Counts of one run; ``teacher_accuracy`` over results whose stated answer could be read."""

    requested: int = 0
    already_done: int = 0
    done: int = 0
    failed: int = 0
    filtered: dict[str, int] = field(default_factory=lambda: {"empty": 0, "duplicate": 0, "too_long": 0, "mismatch": 0})
    stated: int = 0
    stated_correct: int = 0
    invalid_rows: int = 0
    duplicate_questions: int = 0
    wall_time_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def teacher_accuracy(self) -> float | None:
        """Share of stated answers that equal the answer asked for."""
        return self.stated_correct / self.stated if self.stated else None

    @property
    def per_minute(self) -> float:
        """Results (kept or filtered) per minute of wall time."""
        handled = self.done + sum(self.filtered.values())
        return 60.0 * handled / self.wall_time_s if self.wall_time_s > 0 else 0.0


def _repair_tail(path: Path) -> None:
    """Cut a torn last line (from a kill mid-write) so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)


def _done_keys(path: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """(id, kind) of the rows already in ``path``, and their normalized rationales.

    A line that is not JSON (a torn write) is passed over and its row asked again; a line that
    is not UTF-8 text means the file was damaged by something else, and is refused by line
    number rather than appended to.
    """
    keys: set[tuple[str, str]] = set()
    rationales: set[str] = set()
    if not path.exists():
        return keys, rationales
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                            "teach resumes from this file: remove or repair that line, then rerun") from None
        try:
            row = json.loads(line)
            keys.add((str(row["id"]), row.get("kind", "factual")))
            rationales.add(_norm(row.get("rationale") or ""))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            continue
    return keys, rationales


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _unicode(text: str | None) -> str | None:
    """Text with lone surrogates (a teacher's JSON can carry ``"\\ud800"``) replaced by U+FFFD, so
    the row can be written as UTF-8 and read back."""
    return text if text is None or text.isascii() else _SURROGATE.sub("\ufffd", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _output_row(request: TeacherRequest, output: TeacherOutput, teacher: str) -> Example:
    """The teacher's answer to ``request`` as an output row: the question with the explained answer as
    its answer (and, for a counterfactual, the real one as ``gold_answer``)."""
    ex = request.example
    stated = output.stated_answer
    return Example(id=ex.id, question=ex.question, answer=request.target, choices=ex.choices,
                   rationale=_unicode(output.rationale), kind=request.kind, source=f"teacher {teacher}",
                   teacher_answer=_unicode(stated),
                   teacher_correct=None if stated is None else answers_match(stated, request.target, ex.choices),
                   extra={"gold_answer": ex.answer} if request.kind == "counterfactual" else {})


def _line(row: Example, **more: str) -> str:
    """One output line; a teacher's row always has the teacher fields (null: no stated answer)."""
    return json.dumps({**row.to_dict(teacher_fields=True), **more}, ensure_ascii=False) + "\n"


def _verdict(row: Example, config: TeachConfig, seen: set[str]) -> str | None:
    rationale = (row.rationale or "").strip()
    if not rationale:
        return "empty"
    if len(rationale.split()) > config.max_words:
        return "too_long"
    if config.require_match and not row.teacher_correct:
        return "mismatch"
    if _norm(rationale) in seen:
        return "duplicate"
    return None


def teach(config: TeachConfig, teacher: Teacher, progress: Progress | None = None) -> TeachSummary:
    """Write rationales for every example of ``config.data`` into ``config.out``; see the module doc.

    ``progress`` counts the requests sent, with the rationales written per minute.
    """
    summary = TeachSummary()
    out = Path(config.out)
    rejected = out.with_name(out.name.removesuffix(".jsonl") + ".rejected.jsonl")
    for target in (out, rejected):
        if _same_file(target, Path(config.data)):
            raise UserError(f"--out {config.out} would write into the --data file {config.data} itself; "
                            "choose another output file")
    examples, report = read_dataset(config.data, config.fields, config.skip_invalid, config.limit)
    summary.invalid_rows = report.invalid
    examples, summary.duplicate_questions = deduplicate(examples)
    by_id: dict[str, Example] = {}
    for ex in examples:
        by_id.setdefault(ex.id, ex)
    summary.duplicate_questions += len(examples) - len(by_id)
    examples = list(by_id.values())
    summary.errors.extend(report.errors[:5])
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_writer(out, "teach"):  # before the tail repair: it truncates what another writer appends
        _write_all(config, teacher, examples, out, rejected, summary, or_silent(progress))
    return summary


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (the same path, a symlink or a hard link to it)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _write_all(config: TeachConfig, teacher: Teacher, examples: list[Example], out: Path, rejected: Path,
               summary: TeachSummary, progress: Progress) -> None:
    """Ask for every request not yet in ``out`` or ``rejected`` and append each result (under the lock)."""
    for path in (out, rejected):
        _repair_tail(path)
    done, seen = _done_keys(out)
    done |= _done_keys(rejected)[0]
    todo = []
    for ex in examples:
        for request in requests_for(ex, config.counterfactual, config.seed):
            if (ex.id, request.kind) in done:
                summary.already_done += 1
            else:
                todo.append(request)
    summary.requested = len(todo)
    progress.start(len(todo), f"teach via {teacher.name}")
    batches = [todo[i : i + teacher.batch_size] for i in range(0, len(todo), teacher.batch_size)]
    start = time.perf_counter()
    with out.open("a", encoding="utf-8") as kept, rejected.open("a", encoding="utf-8") as dropped:
        for batch, result in _run(teacher, batches):
            if isinstance(result, Exception):
                summary.failed += len(batch)
                if len(summary.errors) < 5:
                    summary.errors.append(str(result))
            else:
                for request, output in zip(batch, result):
                    row = _output_row(request, output, teacher.name)
                    if row.teacher_correct is not None:
                        summary.stated += 1
                        summary.stated_correct += row.teacher_correct
                    reason = _verdict(row, config, seen)
                    if reason is None:
                        seen.add(_norm(row.rationale or ""))
                        kept.write(_line(row))
                        summary.done += 1
                    else:
                        dropped.write(_line(row, rejected=reason))
                        summary.filtered[reason] += 1
                kept.flush()
                dropped.flush()
            summary.wall_time_s = time.perf_counter() - start
            progress.update(len(batch), per_minute=summary.per_minute)
        os.fsync(kept.fileno())
        os.fsync(dropped.fileno())
    summary.wall_time_s = time.perf_counter() - start


def _run(teacher: Teacher, batches: list[list[TeacherRequest]]) -> Iterator[tuple[list[TeacherRequest], object]]:
    """Yield (batch, outputs or exception) as they complete, with ``teacher.concurrency`` in flight."""
    if teacher.concurrency <= 1:
        for batch in batches:
            try:
                yield batch, teacher.write(batch)
            except RationalizerError as exc:
                yield batch, exc
        return
    pending: dict[Future, list[TeacherRequest]] = {}
    queue = iter(batches)
    with ThreadPoolExecutor(max_workers=teacher.concurrency, thread_name_prefix="teacher") as pool:
        try:
            for batch in queue:
                pending[pool.submit(teacher.write, batch)] = batch
                if len(pending) >= teacher.concurrency:
                    break
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch = pending.pop(future)
                    exc = future.exception()
                    if exc is not None and not isinstance(exc, RationalizerError):
                        raise exc
                    next_batch = next(queue, None)
                    if next_batch is not None:
                        pending[pool.submit(teacher.write, next_batch)] = next_batch
                    yield batch, exc if exc is not None else future.result()
        finally:
            for future in pending:
                future.cancel()
