"""Writing an evaluation: per-example JSONL, summary JSON, a markdown table and a bar chart."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from ..atomic import atomic_write_text
from ..charts import pyplot, save_figure
from ..metrics import MetricValue
from .runner import EvalRun
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


def slug(label: str) -> str:
    """A file-name-safe form of a run label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "run"


def write_outputs(runs: Sequence[EvalRun], out_dir: str | Path) -> dict[str, Path]:
    """Per-example JSONL per run, summary.json, summary.md and chart.png; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for run in runs:
        path = out / f"{slug(run.label)}.jsonl"
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in run.records))
        paths[run.label] = path
    atomic_write_text(out / "summary.json", json.dumps([r.summary for r in runs], indent=2, ensure_ascii=False))
    atomic_write_text(out / "summary.md", markdown_table(runs) + "\n")
    paths["summary.json"] = out / "summary.json"
    paths["summary.md"] = out / "summary.md"
    chart = write_chart(runs, out / "chart.png")
    if chart is not None:
        paths["chart.png"] = chart
    return paths


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
