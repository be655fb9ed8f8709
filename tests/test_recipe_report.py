"""The default-model recipe's report: the paired MaRio-minus-SFT table compares question by question."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "examples" / "recipes" / "default_model" / "report.py"


def _load_report():
    spec = importlib.util.spec_from_file_location("recipe_report", REPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "model.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_paired_table_differences_by_question(tmp_path: Path) -> None:
    report = _load_report()
    base = {"consistency": 0.0, "plausibility": 0.5, "diversity": 0.5}
    _write(tmp_path / "sft" / "strategyqa",
           [{"id": f"q{i}", "correct": i == 0, **base} for i in range(4)]
           + [{"id": "only-sft", "correct": True, **base}])
    _write(tmp_path / "mario" / "strategyqa",
           [{"id": f"q{i}", "correct": i < 2, **base, "diversity": 0.7, "plausibility": None} for i in range(4)])
    text = report.paired_table(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| strategyqa/test"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "4"  # the question only SFT answered is left out
    assert cells[2].startswith("+0.250 [")
    assert cells[3] == "+0.000 [+0.000, +0.000]"
    assert cells[4] == "n/a"  # no pair has a plausibility on both sides
    assert cells[5] == "+0.200 [+0.200, +0.200]"
    assert "cqa/test" not in text  # sets without both evaluations get no row
