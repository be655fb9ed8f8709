"""The fidelity report: what each export costs in answers, accuracy and speed against the fp32 model.

Every model answers the same dev questions greedily through the SDK (the same
prompt, control codes and parser as in deployment). Agreement is the share of
questions where an export gives the same parsed answer as the fp32 reference.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from rationalizer import Rationalizer
from rationalizer.atomic import atomic_write_text
from rationalizer.charts import pyplot, save_figure
from rationalizer.dataset import Example
from rationalizer.metrics import answers_match
from rationalizer.metrics.answers import normalize_answer
from rationalizer.metrics.stats import bootstrap_ci
from rationalizer.progress import Progress, or_silent

logger = logging.getLogger(__name__)

REFERENCE_LABEL = "fp32 (torch)"


@dataclass
class FidelityRow:
    """One model's line of the report."""

    label: str
    format: str
    quantization: str
    size_bytes: int | None
    n: int
    accuracy: float
    accuracy_ci95: tuple[float, float]
    agreement: float | None
    """Share of answers equal to the fp32 reference's (None for the reference itself)."""
    parsed: float
    decode_tokens_per_s: float | None
    latency_s: float
    export_seconds: float | None = None


@dataclass
class _Answers:
    answers: list[str | None]
    correct: list[float]
    tokens: int
    decode_seconds: float
    latency: float


def answer_all(model: Rationalizer, examples: Sequence[Example], max_new_tokens: int | None,
               progress: Progress | None = None) -> _Answers:
    """Greedy answers to every example, with the time spent decoding after each first token."""
    progress = or_silent(progress)
    answers, correct, tokens, decode, latency = [], [], 0, 0.0, 0.0
    for ex in examples:
        out = model.rationalize(ex.question, ex.choices, max_new_tokens=max_new_tokens)
        answers.append(out.answer)
        correct.append(float(answers_match(out.answer, ex.answer, ex.choices)))
        latency += out.latency_s
        if out.time_to_first_token_s is not None and out.tokens_generated > 1:
            tokens += out.tokens_generated - 1
            decode += out.latency_s - out.time_to_first_token_s
        progress.update()
    return _Answers(answers, correct, tokens, decode, latency)


def _row(label: str, fmt: str, quant: str, size: int | None, got: _Answers, reference: _Answers | None,
         seconds: float | None) -> FidelityRow:
    n = len(got.answers)
    agreement = None
    if reference is not None:
        same = [normalize_answer(a or "") == normalize_answer(b or "") for a, b in zip(got.answers, reference.answers)]
        agreement = sum(same) / n
    return FidelityRow(label, fmt, quant, size, n, sum(got.correct) / n, bootstrap_ci(got.correct), agreement,
                       sum(a is not None for a in got.answers) / n,
                       got.tokens / got.decode_seconds if got.decode_seconds > 0 else None, got.latency / n, seconds)


def fidelity_rows(reference: Rationalizer, exports: Sequence[Any], examples: Sequence[Example],
                  max_new_tokens: int | None, threads: int | None,
                  progress: Progress | None = None) -> list[FidelityRow]:
    """Answer ``examples`` with the fp32 reference and with every export (``ExportResult``s); one row each.

    ``progress`` counts each model's questions anew.
    """
    progress = or_silent(progress)
    logger.info("fidelity: %s on %d questions", REFERENCE_LABEL, len(examples))
    progress.start(len(examples), f"fidelity: {REFERENCE_LABEL}")
    ref = answer_all(reference, examples, max_new_tokens, progress)
    rows = [_row(REFERENCE_LABEL, "hf", "fp32", None, ref, None, None)]
    for result in exports:
        logger.info("fidelity: %s", result.label)
        progress.start(len(examples), f"fidelity: {result.label}")
        with Rationalizer.load(str(result.folder), threads=threads) as model:
            got = answer_all(model, examples, max_new_tokens, progress)
        rows.append(_row(result.label, result.format, result.quantization, result.size_bytes, got, ref, result.seconds))
    return rows


def markdown_table(rows: Sequence[FidelityRow]) -> str:
    """The report as a Markdown table."""
    head = ("| model | size MB | agreement | accuracy [95% CI] | parsed | decode tok/s | s/question | export s |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        size = f"{r.size_bytes / 1e6:.1f}" if r.size_bytes is not None else "-"
        agree = f"{r.agreement:.3f}" if r.agreement is not None else "(reference)"
        speed = f"{r.decode_tokens_per_s:.1f}" if r.decode_tokens_per_s else "-"
        seconds = f"{r.export_seconds:.1f}" if r.export_seconds is not None else "-"
        lines.append(f"| {r.label} | {size} | {agree} | {r.accuracy:.3f} [{r.accuracy_ci95[0]:.2f}, "
                     f"{r.accuracy_ci95[1]:.2f}] | {r.parsed:.2f} | {speed} | {r.latency_s:.2f} | {seconds} |")
    return head + "\n".join(lines) + "\n"


def write_report(rows: Sequence[FidelityRow], out: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """``fidelity.json``, ``fidelity.md`` and (with matplotlib) ``fidelity.png`` in ``out``."""
    paths = {"json": out / "fidelity.json", "markdown": out / "fidelity.md"}
    atomic_write_text(paths["json"], json.dumps({**meta, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    atomic_write_text(paths["markdown"], markdown_table(rows))
    chart = write_chart(rows, out / "fidelity.png")
    if chart:
        paths["png"] = chart
    return paths


def write_chart(rows: Sequence[FidelityRow], path: Path) -> Path | None:
    """Size against accuracy and against decode speed, one point per export; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    sized = [r for r in rows if r.size_bytes is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for r in sized:
        mb = r.size_bytes / 1e6
        err = [[r.accuracy - r.accuracy_ci95[0]], [r.accuracy_ci95[1] - r.accuracy]]
        left.errorbar([mb], [r.accuracy], yerr=err, fmt="o", capsize=3)
        left.annotate(r.label, (mb, r.accuracy), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if r.decode_tokens_per_s:
            right.scatter([mb], [r.decode_tokens_per_s])
            right.annotate(r.label, (mb, r.decode_tokens_per_s), textcoords="offset points", xytext=(4, 4), fontsize=8)
    reference = rows[0] if rows and rows[0].size_bytes is None else None
    if reference:
        left.axhline(reference.accuracy, linestyle="--", color="grey", label=f"{reference.label}")
        left.legend(fontsize=8)
    left.set_xlabel("file size (MB)")
    left.set_ylabel("dev accuracy")
    right.set_xlabel("file size (MB)")
    right.set_ylabel("decode tokens/s")
    fig.suptitle("rationalize export: fidelity")
    fig.tight_layout()
    return save_figure(fig, path)
