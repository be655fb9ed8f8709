"""Paired differences between eval runs: the pure function, and through run_evaluation on the tiny model."""

import json

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from rationalizer.cli.main import cli
from rationalizer.evaluation import EvalConfig, EvalRun, run_evaluation
from rationalizer.evaluation.paired import metric_fields, paired_difference, paired_differences
from rationalizer.evaluation.report import read_outputs
from rationalizer.metrics.stats import bootstrap_ci

ROWS = [
    {"id": "a", "question": "Can a penguin fly?", "choices": ["yes", "no"], "answer": "no",
     "rationale": "Penguins are birds that swim.", "source": "t"},
    {"id": "b", "question": "Where is milk kept cold?", "choices": ["fridge", "oven", "shelf"], "answer": "fridge",
     "rationale": None, "source": "t"},
    {"id": "c", "question": "Is ice cold?", "choices": ["yes", "no"], "answer": "yes", "rationale": "Ice is frozen.",
     "source": "t"},
]


def test_known_difference_and_means():
    base = {"q1": 0.0, "q2": 1.0, "q3": 2.0, "q4": 3.0}
    other = {k: v + 0.5 for k, v in base.items()}
    d = paired_difference("diversity", base, other, "A", "B")
    assert (d.metric, d.base, d.other, d.n, d.unmatched) == ("diversity", "A", "B", 4, 0)
    assert d.mean_base == pytest.approx(1.5) and d.mean_other == pytest.approx(2.0)
    assert d.difference == pytest.approx(0.5) and d.ci95 == pytest.approx((0.5, 0.5))
    assert d.to_dict()["ci95"] == pytest.approx([0.5, 0.5]) and json.dumps(d.to_dict())


def test_bools_count_as_0_1_and_the_interval_is_the_library_bootstrap():
    base = {f"q{i}": i % 2 == 0 for i in range(10)}
    other = {f"q{i}": True for i in range(10)}
    d = paired_difference("correct", base, other, samples=300, seed=4)
    assert d.difference == pytest.approx(0.5) and d.mean_other == 1.0
    diffs = [1.0 - float(i % 2 == 0) for i in range(10)]
    assert d.ci95 == bootstrap_ci(diffs, samples=300, seed=4)
    assert d.ci95 == paired_difference("correct", base, other, samples=300, seed=4).ci95  # seeded


def test_none_values_and_ids_in_one_run_are_unmatched_not_paired():
    base = {"q1": 1.0, "q2": None, "q3": 0.0, "only-base": 1.0}
    other = {"q1": 0.0, "q2": 0.5, "q3": None, "only-other": 0.0, "neither": None}
    d = paired_difference("plausibility", base, other)
    assert d.n == 1 and d.difference == pytest.approx(-1.0)
    assert d.unmatched == 4  # q2 and q3 have a value on one side only; only-base and only-other one run only
    empty = paired_difference("plausibility", {"q": None}, {"q": None})
    assert (empty.n, empty.unmatched, empty.difference, empty.text()) == (0, 0, 0.0, "n/a")


def test_interval_excludes_zero_for_a_real_change_and_includes_it_for_noise():
    base = {f"q{i}": 0.0 for i in range(40)}
    better = {f"q{i}": 1.0 if i % 4 else 0.0 for i in range(40)}  # 30 of 40 questions gained
    up = paired_difference("correct", base, better)
    assert up.ci95[0] > 0 and up.difference == pytest.approx(0.75)
    noise = {f"q{i}": 1.0 if i % 2 else -1.0 for i in range(40)}  # as many up as down
    flat = paired_difference("consistency", base, noise)
    assert flat.ci95[0] < 0 < flat.ci95[1] and flat.difference == pytest.approx(0.0)


def test_paired_differences_over_runs_pairs_by_id_against_the_first():
    first = EvalRun("A", [{"index": 0, "id": "x", "correct": True, "diversity": 0.5, "answer": "yes"},
                          {"index": 1, "id": "y", "correct": False, "diversity": None}])
    second = EvalRun("B", [{"index": 0, "id": "y", "correct": True, "diversity": 0.9},
                           {"index": 1, "id": "x", "correct": True, "diversity": 0.7}])
    third = EvalRun("C", [{"index": 0, "id": "x", "correct": False, "extra_score": 2}])
    assert metric_fields([first.records, second.records]) == ["correct", "diversity"]  # no index, no strings
    out = paired_differences([first, second, third], samples=100)
    by = {(d.other, d.metric): d for d in out}
    assert set(by) == {("B", "correct"), ("B", "diversity"), ("C", "correct"), ("C", "diversity"),
                       ("C", "extra_score")}
    assert all(d.base == "A" for d in out)
    assert by["B", "correct"].difference == pytest.approx(0.5) and by["B", "correct"].n == 2  # by id, not position
    assert by["B", "diversity"].difference == pytest.approx(0.2) and by["B", "diversity"].unmatched == 1
    assert by["C", "correct"].n == 1 and by["C", "correct"].unmatched == 1  # y is in A only
    assert by["C", "extra_score"].n == 0 and by["C", "extra_score"].unmatched == 1
    assert paired_differences([first]) == []


def test_run_evaluation_pairs_two_qualities_on_the_tiny_model(tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    config = EvalConfig(data=str(data), simulator=str(tiny_bundle), verifier="none", max_new_tokens=8,
                        bootstrap_samples=50)
    result = run_evaluation(config, [str(tiny_bundle)], ["diversity=1", "best"], backend="torch",
                            out=tmp_path / "out")
    base, other = result.runs
    by = {d.metric: d for d in result.paired}
    assert {"correct", "consistency", "rationale_tokens", "latency_s", "wall_s"} <= set(by)
    assert "plausibility" not in by and "index" not in by  # verifier off: no values on either side
    for metric in ("correct", "rationale_tokens", "consistency"):
        d = by[metric]
        assert (d.base, d.other, d.n, d.unmatched) == (base.label, other.label, 3, 0)
        diffs = [float(b[metric]) - float(a[metric]) for a, b in zip(base.records, other.records)]
        assert d.difference == pytest.approx(sum(diffs) / 3)
        assert d.ci95 == bootstrap_ci(diffs, samples=50, seed=0)
    summaries = read_outputs(tmp_path / "out")
    assert "paired" not in summaries[0]
    assert [p["metric"] for p in summaries[1]["paired"]] == [d.metric for d in result.paired]
    assert "minus" in (tmp_path / "out" / "summary.md").read_text()


def test_cli_prints_and_emits_the_paired_differences(tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS[:2])
    args = ["eval", str(tiny_bundle), "--data", str(data), "--backend", "torch", "-q", "diversity=1", "-q", "best",
            "--simulator", "none", "--verifier", "none", "--no-faithfulness", "--max-tokens", "6",
            "--bootstrap-samples", "20"]
    shown = CliRunner().invoke(cli, args)
    assert shown.exit_code == 0, shown.output
    assert "tiny [best] minus tiny [diversity=1], paired by example:" in shown.stdout
    assert any(line.startswith("| accuracy | 2 |") for line in shown.stdout.splitlines())
    emitted = CliRunner().invoke(cli, args + ["--json"])
    assert emitted.exit_code == 0, emitted.output
    summaries = json.loads(emitted.stdout)
    (correct,) = [p for p in summaries[1]["paired"] if p["metric"] == "correct"]
    assert correct["base"] == "tiny [diversity=1]" and correct["n"] == 2 and len(correct["ci95"]) == 2
