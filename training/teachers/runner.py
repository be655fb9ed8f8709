"""``rationalize teach``'s loop: ask the teacher, filter, append each result as it arrives, resume.

The output is append-only JSONL; a result is one ``write`` of one line, so a
kill loses at most the requests in flight (a torn last line is cut off at the
next start). Rejected results go to ``OUT.rejected.jsonl`` with the reason, so a
rerun does not ask again; failed requests are retried by a rerun. With a student
to prefer (``--prefer-student``), a factual row is the best of its candidates and
its best/worst pair is appended to the pairs file first; a rerun skips ids already
paired, so a kill between the two writes repeats neither.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
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
from .prefer import Candidate, StudentPreference, choose, pair_line, paired_ids, rank


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
    candidates: int = 0
    """Rationales sampled for questions the student chose among (``--prefer-student``)."""
    pairs: int = 0
    """Best/worst pairs appended to ``pairs_out`` this run."""
    pairs_out: str | None = None

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


def teach(config: TeachConfig, teacher: Teacher, progress: Progress | None = None,
          student: StudentPreference | None = None) -> TeachSummary:
    """Write rationales for every example of ``config.data`` into ``config.out``; see the module doc.

    ``progress`` counts the questions (and counterfactuals) asked, with the rationales written per
    minute. With ``config.prefer_student``, each factual row is the best of ``config.candidates``
    samples under the student (``student``, else loaded from the config and closed at the end) and
    best/worst pairs go to ``config.pairs_path`` (:mod:`.prefer`).
    """
    summary = TeachSummary(pairs_out=config.pairs_path)
    out = Path(config.out)
    rejected = out.with_name(out.name.removesuffix(".jsonl") + ".rejected.jsonl")
    pairs = Path(config.pairs_path) if config.pairs_path else None
    for target in (out, rejected, *([pairs] if pairs else [])):
        if _same_file(target, Path(config.data)):
            raise UserError(f"--out {config.out} would write into the --data file {config.data} itself; "
                            "choose another output file")
    if pairs is not None and (pairs == out or pairs == rejected or _same_file(pairs, out)):
        raise UserError(f"--pairs-out {pairs} is the output (or its rejected file); choose another file")
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
    if pairs is not None:
        pairs.parent.mkdir(parents=True, exist_ok=True)
    owned = student is None and config.prefer_student is not None
    if owned:
        student = StudentPreference.load(config.prefer_student, config.device)
    try:
        with exclusive_writer(out, "teach"):  # before the tail repair: it truncates what another writer appends
            _write_all(config, teacher, examples, out, rejected, summary, or_silent(progress), student, pairs)
    finally:
        if owned:
            student.close()
    return summary


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (the same path, a symlink or a hard link to it)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _write_all(config: TeachConfig, teacher: Teacher, examples: list[Example], out: Path, rejected: Path,
               summary: TeachSummary, progress: Progress, student: StudentPreference | None = None,
               pairs: Path | None = None) -> None:
    """Ask for every request not yet in ``out`` or ``rejected`` and append each result (under the lock).

    A group is one row's requests: one, or a factual row's candidates for the student to choose among;
    a group is never split across batches, so its candidates arrive (or fail) together.
    """
    for path in (out, rejected, *([pairs] if pairs else [])):
        _repair_tail(path)
    done, seen = _done_keys(out)
    done |= _done_keys(rejected)[0]
    paired = paired_ids(pairs) if pairs else set()
    todo: list[list[TeacherRequest]] = []
    for ex in examples:
        for request in requests_for(ex, config.counterfactual, config.seed):
            if (ex.id, request.kind) in done:
                summary.already_done += 1
            elif student is not None and request.kind == "factual":
                todo.append([replace(request, candidate=i) for i in range(config.candidates)])
            else:
                todo.append([request])
    summary.requested = len(todo)
    progress.start(len(todo), f"teach via {teacher.name}")
    start = time.perf_counter()
    with ExitStack() as files:
        kept = files.enter_context(out.open("a", encoding="utf-8"))
        dropped = files.enter_context(rejected.open("a", encoding="utf-8"))
        pairs_file = files.enter_context(pairs.open("a", encoding="utf-8")) if pairs else None
        for groups, result in _run(teacher, _batches(todo, teacher.batch_size)):
            if isinstance(result, Exception):
                summary.failed += len(groups)
                if len(summary.errors) < 5:
                    summary.errors.append(str(result))
            else:
                outputs = iter(result)
                for group in groups:
                    rows = [_output_row(request, next(outputs), teacher.name) for request in group]
                    for row in rows:
                        if row.teacher_correct is not None:
                            summary.stated += 1
                            summary.stated_correct += row.teacher_correct
                    if student is not None and group[0].kind == "factual":
                        row, reason = _preferred(group[0].example, rows, config, seen, student, teacher.name,
                                                 pairs_file, paired, summary)
                    else:
                        row, reason = rows[0], _verdict(rows[0], config, seen)
                    if reason is None:
                        seen.add(_norm(row.rationale or ""))
                        kept.write(_line(row))
                        summary.done += 1
                    else:
                        dropped.write(_line(row, rejected=reason))
                        summary.filtered[reason] += 1
                for handle in (pairs_file, kept, dropped):  # pairs first: a rerun redoes a row, not its pair
                    if handle is not None:
                        handle.flush()
            summary.wall_time_s = time.perf_counter() - start
            progress.update(len(groups), per_minute=summary.per_minute)
        for handle in (pairs_file, kept, dropped):
            if handle is not None:
                os.fsync(handle.fileno())
    summary.wall_time_s = time.perf_counter() - start


def _preferred(example: Example, rows: list[Example], config: TeachConfig, seen: set[str],
               student: StudentPreference, teacher: str, pairs_file, paired: set[str],
               summary: TeachSummary) -> tuple[Example, str | None]:
    """The candidate the student prefers as the row (with its gain and the candidate count in ``extra``),
    and why the filters refuse it (None: kept); its best/worst pair is appended once per id."""
    gains: dict[str, float | None] = {}  # the same text sampled twice is scored once
    candidates = []
    for row in rows:
        key = row.rationale or ""
        if key not in gains:
            gains[key] = student.gain(example, key)
        candidates.append(Candidate(row, _verdict(row, config, seen), gains[key]))
    summary.candidates += len(candidates)
    choice = choose(candidates, f"teacher {teacher}; preferred by student {student.name}")
    if choice.pair is not None and example.id not in paired:
        pairs_file.write(pair_line(choice.pair))
        paired.add(example.id)
        summary.pairs += 1
    top = choice.best or max(candidates, key=rank)  # all refused: the best of them goes to the rejected file
    row = replace(top.row, extra={**top.row.extra, "student_gain": top.gain, "candidates": len(candidates)})
    return row, top.verdict


def _batches(groups: list[list[TeacherRequest]], size: int) -> list[list[list[TeacherRequest]]]:
    """Groups packed into batches of at most ``size`` requests (a larger group is a batch alone)."""
    batches: list[list[list[TeacherRequest]]] = []
    count = 0
    for group in groups:
        if not batches or count + len(group) > size:
            batches.append([])
            count = 0
        batches[-1].append(group)
        count += len(group)
    return batches


def _run(teacher: Teacher, batches: list[list[list[TeacherRequest]]]) -> Iterator[tuple[list[list[TeacherRequest]], object]]:
    """Yield (batch of groups, outputs or exception) as they complete, with ``teacher.concurrency`` in flight."""
    def write(batch: list[list[TeacherRequest]]) -> list[TeacherOutput]:
        return teacher.write([request for group in batch for request in group])

    if teacher.concurrency <= 1:
        for batch in batches:
            try:
                yield batch, write(batch)
            except RationalizerError as exc:
                yield batch, exc
        return
    pending: dict[Future, list[list[TeacherRequest]]] = {}
    queue = iter(batches)
    with ThreadPoolExecutor(max_workers=teacher.concurrency, thread_name_prefix="teacher") as pool:
        try:
            for batch in queue:
                pending[pool.submit(write, batch)] = batch
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
                        pending[pool.submit(write, next_batch)] = next_batch
                    yield batch, exc if exc is not None else future.result()
        finally:
            for future in pending:
                future.cancel()
