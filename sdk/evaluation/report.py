"""Writing an evaluation: per-example JSONL, summary JSON, a markdown table and a bar chart, as one set."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from ..atomic import atomic_write_bytes, atomic_write_text
from ..charts import pyplot, save_figure
from ..errors import UserError
from ..metrics import MetricValue
from .paired import PairedDifference
from .runner import EvalRun
from .store import json_line
from .summary import QUALITY_METRICS, SPEED_METRICS

LABELS = {
    "accuracy": "accuracy [95% CI]",
    "unparseable_rate": "unparseable rate",
    "diversity": "diversity",
    "consistency": "consistency (LAS)",
    "plausibility": "plausibility",
    "oracle_accuracy": "oracle accuracy",
    "perturbed_accuracy": "perturbed accuracy",
    "counterfactual_follow_rate": "counterfactual follow rate",
    "rationale_tokens": "rationale tokens (mean)",
    "latency_s": "latency per question, s",
    "tokens_per_s": "decode tokens/s",
}
CHART_METRICS = ("accuracy", "oracle_accuracy", "perturbed_accuracy", "counterfactual_follow_rate",
                 "diversity", "plausibility", "consistency")


def _value(summary: dict[str, Any], key: str) -> MetricValue:
    d = dict(summary["metrics"][key])
    d["ci95"] = tuple(d["ci95"]) if d.get("ci95") else None
    return MetricValue(**d)


def markdown_table(runs: Sequence[EvalRun], include_speed: bool = True) -> str:
    """One column per run, one row per metric; models used by judged metrics are named below."""
    head = "| metric | " + " | ".join(r.label for r in runs) + " |"
    lines = [head, "|---" * (len(runs) + 1) + "|"]
    lines.append("| examples | " + " | ".join(str(r.summary["n"]) for r in runs) + " |")
    skipped = [r.summary.get("skipped_rows", {}).get("count", 0) for r in runs]
    if any(skipped):
        lines.append("| invalid rows skipped | " + " | ".join(str(n) for n in skipped) + " |")
    keys = QUALITY_METRICS + (SPEED_METRICS if include_speed else ())
    for key in keys:
        digits = 1 if key in ("rationale_tokens", "tokens_per_s") else 3
        cells = [_value(r.summary, key).text(digits) for r in runs]
        lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    notes = sorted({f"{k}: {v}" for r in runs for k, v in r.summary["judges"].items() if v})
    if notes:
        lines.append("")
        lines.append("judges: " + "; ".join(notes))
    return "\n".join(lines)


# The per-example fields under the names of the summary's metrics they make, where they make one.
PAIRED_LABELS = {
    "correct": "accuracy", "parsed": "parsed rate", "answer_scored": "answered by choice scoring",
    "consistency": LABELS["consistency"], "p_gold_with_rationale": "P(gold) with rationale",
    "p_gold_without_rationale": "P(gold) without rationale", "plausibility": LABELS["plausibility"],
    "diversity": LABELS["diversity"], "oracle_correct": LABELS["oracle_accuracy"],
    "perturbed_correct": LABELS["perturbed_accuracy"], "counterfactual_follows": LABELS["counterfactual_follow_rate"],
    "rationale_tokens": "rationale tokens", "tokens_generated": "tokens generated",
    "latency_s": LABELS["latency_s"], "tokens_per_s": LABELS["tokens_per_s"],
    # the record's whole time: generation plus the judges' and faithfulness checks' scoring
    "wall_s": "latency with judges, s",
}
# Fields measured in tokens or tokens per second: whole-ish numbers, fewer decimals read better.
_WIDE_FIELDS = frozenset({"rationale_tokens", "tokens_generated", "tokens_per_s"})


def paired_table(paired: Sequence[PairedDifference]) -> str:
    """One markdown table per compared run: each per-example metric's mean on both sides over the
    examples both have, the mean difference with its bootstrap 95% interval, and the unmatched."""
    blocks = []
    for other in dict.fromkeys(d.other for d in paired):
        rows = [d for d in paired if d.other == other]
        base = rows[0].base
        lines = [f"{other} minus {base}, paired by example:", "",
                 f"| metric | n | {base} | {other} | Δ [95% CI] | unmatched |", "|---|---|---|---|---|---|"]
        for d in rows:
            digits = 2 if d.metric in _WIDE_FIELDS else 3
            means = f"{d.mean_base:.{digits}f} | {d.mean_other:.{digits}f}" if d.n else "n/a | n/a"
            lines.append(f"| {PAIRED_LABELS.get(d.metric, d.metric)} | {d.n} | {means} | {d.text(digits)} "
                         f"| {d.unmatched} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def slug(label: str) -> str:
    """A file-name-safe form of a run label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "run"


def write_outputs(runs: Sequence[EvalRun], out_dir: str | Path,
                  paired: Sequence[PairedDifference] = ()) -> dict[str, Path]:
    """Per-example JSONL per run, summary.md (with ``paired``'s table below the main one), chart.png
    and, last, summary.json; returns the paths.

    The files are one set. Each is written atomically, and summary.json, written last, records the
    sha256 of every other file of the set (its ``files``), which :func:`read_outputs` checks: a kill
    between two renames leaves files that summary.json does not describe, and that is detected
    instead of a new JSONL being read beside an old summary. (Why not write the set into a staging
    folder and rename that once: ``--out`` is a folder the user names and may hold other files,
    and a folder cannot replace an existing, non-empty one in one rename; swapping them takes two
    renames or Linux's renameat2, so it is not atomic where it matters, while a summary that names
    the hashes of its inputs is checkable everywhere and needs nothing but the files themselves.)
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    hashes: dict[str, str] = {}
    names: dict[str, str] = {}
    for run in runs:
        path = out / f"{slug(run.label)}.jsonl"
        data = b"".join(json_line(r) for r in run.records)
        atomic_write_bytes(path, data)
        hashes[path.name] = hashlib.sha256(data).hexdigest()
        names[run.label] = path.name
        paths[run.label] = path
    text = markdown_table(runs) + (f"\n\n{paired_table(paired)}" if paired else "")
    table = (text + "\n").encode("utf-8")
    atomic_write_bytes(out / "summary.md", table)
    hashes["summary.md"] = hashlib.sha256(table).hexdigest()
    paths["summary.md"] = out / "summary.md"
    chart = write_chart(runs, out / "chart.png")
    if chart is not None:
        hashes["chart.png"] = hashlib.sha256(chart.read_bytes()).hexdigest()
        paths["chart.png"] = chart
    else:
        (out / "chart.png").unlink(missing_ok=True)  # an old run's chart is not part of this set
    _sync_folder(out)  # the renames above reach the disk before summary.json's, which commits the set
    summaries = [{**r.summary, "records_file": names[r.label], "files": hashes} for r in runs]
    atomic_write_text(out / "summary.json", json.dumps(summaries, indent=2, ensure_ascii=False))
    _sync_folder(out)
    paths["summary.json"] = out / "summary.json"
    return paths


def read_outputs(out_dir: str | Path) -> list[dict[str, Any]]:
    """The summaries in ``out_dir``, after checking that every file of the set is the one they describe."""
    out = Path(out_dir)
    try:
        summaries = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{out}: no summary.json; not the output folder of a finished eval") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{out / 'summary.json'}: unreadable ({exc})") from None
    if not isinstance(summaries, list) or not all(isinstance(s, dict) and isinstance(s.get("files"), dict)
                                                  for s in summaries):
        raise UserError(f"{out / 'summary.json'}: not an eval summary with file hashes (written by an older version?)")
    for summary in summaries:
        for name, sha in summary["files"].items():
            try:
                actual = hashlib.sha256((out / Path(name).name).read_bytes()).hexdigest()
            except FileNotFoundError:
                actual = None
            if actual != sha:
                raise UserError(f"{out / Path(name).name} is not the file summary.json describes (a write that was "
                                "interrupted?): run the eval again to rewrite the set")
    return summaries


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so the renames in it are on disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_chart(runs: Sequence[EvalRun], path: Path) -> Path | None:
    """A grouped bar chart of the rate metrics, one bar per run; None when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return None
    keys = [k for k in CHART_METRICS if any(_value(r.summary, k).value is not None for r in runs)]
    width = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(keys) + 2), 4.2))
    for i, run in enumerate(runs):
        values = [_value(run.summary, k).value for k in keys]
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(keys))]
        bars = ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=run.label)
        for bar, v in zip(bars, values):
            if v is None:
                bar.set_hatch("//")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([LABELS[k].replace(" [95% CI]", "") for k in keys], rotation=25, ha="right")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("rate / score")
    ax.set_title(f"rationalize eval: {Path(str(runs[0].summary['data'])).name}" if runs else "rationalize eval")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
