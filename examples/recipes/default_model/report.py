"""The README's results tables from ``evaluate.sh``'s output: base zero-shot, SFT and MaRio per test set,
then MaRio minus SFT question by question.

    python examples/recipes/default_model/report.py runs/eval
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rationalizer.evaluation.paired import paired_difference

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


def _rows(folder: Path) -> dict[str, dict]:
    """Per-question records of one evaluation folder, by question id."""
    rows: dict[str, dict] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["id"]] = row
    return rows


PAIRED = {"correct": "accuracy", "consistency": "consistency", "plausibility": "plausibility",
          "diversity": "diversity"}


def paired_table(evals: Path, before: str = "sft", after: str = "mario") -> str:
    """``after - before`` on the questions both answered, with a bootstrap 95% interval of the mean difference.

    The per-set intervals of the main table overlap even where a change is real, because most of
    their width is question difficulty that both models share; pairing by question removes it.
    """
    lines = ["| test set | n | " + " | ".join(f"Δ {name} [95% CI]" for name in PAIRED.values()) + " |",
             "|---|---|" + "---|" * len(PAIRED)]
    for key, name in SETS.items():
        old, new = _rows(evals / before / key), _rows(evals / after / key)
        ids = [i for i in old if i in new]
        if not ids:
            continue
        cells = []
        for field in PAIRED:
            d = paired_difference(field, {i: old[i].get(field) for i in ids}, {i: new[i].get(field) for i in ids},
                                  before, after)
            low, high = d.ci95
            cells.append(f"{d.difference:+.3f} [{low:+.3f}, {high:+.3f}]" if d.n else "n/a")
        lines.append(f"| {name} | {len(ids)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", type=Path, help="evaluate.sh's output folder (base.*, sft.*, mario.*)")
    evals = parser.parse_args().evals
    print(table(evals))
    print(f"\nSFT + MaRio minus SFT, paired by question:\n\n{paired_table(evals)}")


if __name__ == "__main__":
    main()
