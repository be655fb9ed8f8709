"""The README's results table from ``evaluate.sh``'s summaries: base zero-shot, SFT and MaRio per test set.

    python examples/recipes/default_model/report.py runs/eval
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LABELS = {"base": "base, zero-shot", "sft": "SFT", "mario": "SFT + MaRio"}
SETS = {"strategyqa": "strategyqa/test", "cqa": "cqa/test", "obqa": "obqa/test", "qasc": "qasc/test"}


def _cell(metric: dict, digits: int = 3) -> str:
    value = metric.get("value")
    if value is None:
        return "n/a"
    ci = metric.get("ci95")
    text = f"{value:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def table(evals: Path) -> str:
    """A markdown table with one row per (test set, model) that has a summary in ``evals``."""
    lines = ["| test set | model | n | accuracy [95% CI] | consistency [95% CI] | plausibility [95% CI] "
             "| diversity | unparseable | rationale tokens |", "|---|---|---|---|---|---|---|---|---|"]
    for key, name in SETS.items():
        for label, title in LABELS.items():
            path = evals / f"{label}.{key}.json"
            if not path.exists() or not path.stat().st_size:
                continue
            s = json.loads(path.read_text())[0]
            m = s["metrics"]
            lines.append(f"| {name} | {title} | {s['n']} | {_cell(m['accuracy'])} | {_cell(m['consistency'])} "
                         f"| {_cell(m['plausibility'])} | {_cell(m['diversity'])} | {_cell(m['unparseable_rate'])} "
                         f"| {_cell(m['rationale_tokens'], 1)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", type=Path, help="evaluate.sh's output folder (base.*, sft.*, mario.*)")
    print(table(parser.parse_args().evals))


if __name__ == "__main__":
    main()
