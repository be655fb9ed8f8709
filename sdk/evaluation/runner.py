"""Running a model over examples: one record per example with every per-example metric."""

from __future__ import annotations

import time
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

from ..dataset import Example
from ..errors import InputError
from ..metrics import answers_match, diversity, perturb_words
from ..metrics.text import words
from ..progress import Progress, or_silent
from ..prompting import Quality
from ..runtime import Rationalizer
from .config import EvalConfig
from .judged import consistency_of, judged_answer, plausibility_of
from .judges import Judges
from .store import RecordStore
from .summary import summarize

T = TypeVar("T")


@dataclass
class EvalRun:
    """The per-example records and the summary of one model under one setting."""

    label: str
    records: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)


def _example_seed(seed: int, example_id: str) -> int:
    return zlib.crc32(f"{seed}:{example_id}".encode()) & 0x7FFFFFFF


def evaluate(model: Rationalizer, examples: list[Example], config: EvalConfig, judges: Judges,
             quality: Quality = "best", label: str | None = None,
             counterfactuals: dict[str, Example] | None = None,
             progress: Progress | None = None, *, lines: Sequence[int] | None = None,
             store: RecordStore | None = None, skipped: Sequence[str] = ()) -> EvalRun:
    """Answer every example greedily and measure it; ``progress`` counts the examples as they are done
    (a count its caller started: those already in ``store`` first).

    With a ``store``, each record is appended to it as soon as it is made, and the records it
    already holds (from an interrupted run with the same arguments) are kept, not made again. A
    record depends only on its example and the settings, so a resumed run ends with the records,
    and the summary, of an uninterrupted one. ``lines`` are the examples' line numbers in the data
    file and ``skipped`` the rows left out as invalid; both are reported.
    """
    label = label or model.name
    progress = or_silent(progress)
    vocabulary = sorted({w for e in examples for w in words(e.rationale or e.question) if w.isalpha()})
    done = store.open() if store is not None else {}
    records: list[dict[str, Any] | None] = []
    try:
        todo = []
        for i, example in enumerate(examples):
            old = done.get(i)
            if old is not None and old.get("id") == example.id:
                records.append(old)
            else:
                records.append(None)
                todo.append(i)
        if len(todo) < len(examples):
            progress.update(len(examples) - len(todo))

        def make(i: int) -> dict[str, Any]:
            start = time.perf_counter()
            record = _one(model, examples[i], config, judges, quality, vocabulary, counterfactuals or {})
            # position and line first: the key for resuming, and where the question is in the data file
            return {"index": i, "line": lines[i] if lines is not None else None, **record,
                    "wall_s": time.perf_counter() - start}

        workers = config.concurrency if model.backend_parallel else 1
        began = time.perf_counter()
        for i, record in in_order(make, todo, workers):
            if store is not None:
                store.append(record)
            records[i] = record
            progress.update()
        elapsed = time.perf_counter() - began
    finally:
        if store is not None:
            store.close()
    run = EvalRun(label, [r for r in records if r is not None])  # every one is made or kept by now
    # the wall time is the sum of the examples' own, so a resumed run counts the work its records took;
    # examples run side by side count the time they took together
    wall = sum(float(r.get("wall_s") or 0.0) for r in run.records)
    if workers > 1 and todo:
        wall += elapsed - sum(float(records[i].get("wall_s") or 0.0) for i in todo)  # type: ignore[union-attr]
    run.summary = summarize(run.records, config, model, judges, quality, label, wall, skipped=skipped)
    return run


def in_order(fn: Callable[[int], T], items: Sequence[int], workers: int) -> Iterator[tuple[int, T]]:
    """``(item, fn(item))`` for each item in order, ``workers`` of them computed at once in threads
    (at most twice as many started ahead of the one awaited). A failure stops the rest: what is
    running finishes, nothing new starts, and the error is raised."""
    if workers <= 1:
        for item in items:
            yield item, fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval")
    pending: deque[tuple[int, Future[T]]] = deque()
    upcoming = iter(items)
    try:
        while True:
            while len(pending) < 2 * workers:
                item = next(upcoming, None)
                if item is None:
                    break
                pending.append((item, pool.submit(fn, item)))
            if not pending:
                return
            item, future = pending.popleft()
            yield item, future.result()
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True)


def _one(model: Rationalizer, ex: Example, config: EvalConfig, judges: Judges, quality: Quality,
         vocabulary: list[str], counterfactuals: dict[str, Example]) -> dict[str, Any]:
    out = model.rationalize(ex.question, ex.choices, quality=quality, max_new_tokens=config.max_new_tokens, seed=config.seed)
    rationale = out.rationale if out.answer is not None else out.text
    rec: dict[str, Any] = {
        "id": ex.id, "question": ex.question, "choices": ex.choices, "gold": ex.answer,
        "answer": out.answer, "parsed": out.answer is not None and not out.answer_scored,
        "answer_scored": out.answer_scored,
        "correct": answers_match(out.answer, ex.answer, ex.choices),
        "rationale": rationale, "text": out.text,
        "rationale_tokens": model.count_tokens(rationale) if rationale.strip() else 0,
        "diversity": diversity(rationale) if rationale.strip() else None,
        "latency_s": out.latency_s, "tokens_generated": out.tokens_generated, "tokens_per_s": out.tokens_per_s,
    }
    if judges.simulator is not None and ex.choices:
        rec.update(_consistency(judges, ex, rationale))
    if judges.verifier is not None and rationale.strip():
        try:
            answer = judged_answer(ex, out.answer)
            rec["plausibility"] = plausibility_of(judges.verifier, ex.question, answer, rationale)
        except InputError as exc:  # e.g. longer than the verifier's context: this row has no plausibility
            rec.update(plausibility=None, plausibility_error=str(exc))
    if config.faithfulness:
        rec.update(_faithfulness(model, ex, rationale, quality, config, vocabulary, counterfactuals))
    return rec


def _consistency(judges: Judges, ex: Example, rationale: str) -> dict[str, Any]:
    assert judges.simulator is not None and ex.choices is not None
    try:
        judged = consistency_of(judges.simulator, ex, rationale)
    except InputError:
        return {"consistency": None}
    assert judged is not None  # a choice question
    delta, p_with, p_without = judged
    return {"consistency": delta, "p_gold_with_rationale": p_with, "p_gold_without_rationale": p_without}


def _faithfulness(model: Rationalizer, ex: Example, rationale: str, quality: Quality, config: EvalConfig,
                  vocabulary: list[str], counterfactuals: dict[str, Example]) -> dict[str, Any]:
    rec: dict[str, Any] = {}

    def forced(name: str, text: str) -> tuple[bool, str | None]:
        # A forced rationale that does not fit the context (a long reference or counterfactual one)
        # costs only this check on this row: the row keeps its other metrics, and the error is kept.
        try:
            return True, model.answer_with_rationale(ex.question, text, ex.choices, quality)
        except InputError as exc:
            rec[f"{name}_error"] = str(exc)
            return False, None

    if ex.rationale:
        ok, oracle = forced("oracle", ex.rationale)
        if ok:
            rec.update(oracle_answer=oracle, oracle_correct=answers_match(oracle, ex.answer, ex.choices))
    if rationale.strip():
        perturbed = perturb_words(rationale, vocabulary, config.perturb_fraction, _example_seed(config.seed, ex.id))
        ok, answer = forced("perturbed", perturbed)
        if ok:
            rec.update(perturbed_rationale=perturbed, perturbed_answer=answer,
                       perturbed_correct=answers_match(answer, ex.answer, ex.choices))
    cf = counterfactuals.get(ex.id) or counterfactuals.get(ex.question.lower())
    if cf is not None and cf.rationale and cf.answer != ex.answer:
        ok, answer = forced("counterfactual", cf.rationale)
        if ok:
            rec.update(counterfactual_answer=answer,
                       counterfactual_follows=answers_match(answer, cf.answer, ex.choices))
    return rec
