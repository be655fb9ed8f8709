"""`rationalize eval` on the tiny model and small fixtures, and once on the real default model."""

import json

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from rationalizer.cli.main import cli
from rationalizer.dataset import DataError, read_examples
from rationalizer.evaluation import EvalConfig, Judges, evaluate

ROWS = [
    {"id": "a", "question": "Can a penguin fly?", "choices": ["yes", "no"], "answer": "no",
     "rationale": "Penguins are birds that swim.", "source": "t"},
    {"id": "b", "question": "Where is milk kept cold?", "choices": ["fridge", "oven", "shelf"], "answer": "fridge",
     "rationale": None, "source": "t"},
    {"id": "c", "question": "What is 9 plus 9?", "choices": None, "answer": "18", "rationale": "9 + 9 = 18.",
     "source": "t"},
]
CF = [{"id": "a", "question": "Can a penguin fly?", "choices": ["yes", "no"], "answer": "yes",
       "rationale": "Penguins have wings, and wings fly.", "kind": "counterfactual"}]
TIMING = {"latency_s", "tokens_per_s"}


def strip_timing(summary):
    out = json.loads(json.dumps(summary))
    for key in TIMING:
        out["metrics"].pop(key)
    out.pop("wall_time_s")
    return out


def test_records_and_summary_on_the_tiny_model(tiny_model, tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    cf = read_examples(write_jsonl(tmp_path / "cf.jsonl", CF), kind="counterfactual")
    config = EvalConfig(data=str(data), simulator=str(tiny_bundle), verifier=str(tiny_bundle), max_new_tokens=12)
    judges = Judges.load(config)
    try:
        run = evaluate(tiny_model, read_examples(data), config, judges, counterfactuals={"a": cf[0]})
        again = evaluate(tiny_model, read_examples(data), config, judges, counterfactuals={"a": cf[0]})
    finally:
        judges.close()
    assert [r["id"] for r in run.records] == ["a", "b", "c"]
    a, b, c = run.records
    assert -1 <= a["consistency"] <= 1 and a["consistency"] == pytest.approx(
        a["p_gold_with_rationale"] - a["p_gold_without_rationale"])
    assert "consistency" not in c  # free-form: nothing to score
    assert "oracle_correct" in a and "oracle_correct" not in b  # b has no reference rationale
    assert "counterfactual_follows" in a and "counterfactual_follows" not in b
    m = run.summary["metrics"]
    assert m["accuracy"]["n"] == 3 and m["accuracy"]["ci95"] is not None
    assert m["consistency"]["n"] == 2 and m["consistency"]["model"] == "tiny"
    assert m["oracle_accuracy"]["n"] == 2 and m["counterfactual_follow_rate"]["n"] == 1
    assert m["unparseable_rate"]["value"] == pytest.approx(sum(not r["parsed"] for r in run.records) / 3)
    assert strip_timing(run.summary) == strip_timing(again.summary)  # deterministic


def test_metrics_that_cannot_be_computed_are_reported_as_such(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [ROWS[2]])
    config = EvalConfig(data=str(data), simulator="none", verifier="none", max_new_tokens=8)
    run = evaluate(tiny_model, read_examples(data), config, Judges())
    m = run.summary["metrics"]
    assert m["consistency"]["value"] is None and m["consistency"]["reason"] == "simulator switched off"
    assert m["counterfactual_follow_rate"]["reason"].startswith("no counterfactual rationales")
    assert m["plausibility"]["reason"] == "verifier switched off"


def test_cli_compares_two_qualities_side_by_side_and_writes_outputs(tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS + CF)
    out = tmp_path / "out"
    args = ["eval", str(tiny_bundle), "--data", str(data), "--backend", "torch", "-q", "diversity=1", "-q", "best",
            "--simulator", str(tiny_bundle), "--verifier", "none", "--max-tokens", "8", "--out", str(out)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    header = first.stdout.splitlines()[0]
    assert "tiny [diversity=1]" in header and "tiny [best]" in header
    assert "| counterfactual follow rate |" in first.stdout
    summaries = json.loads((out / "summary.json").read_text())
    assert [s["quality"] for s in summaries] == [{"diversity": 1, "consistency": 5}, {"diversity": 5, "consistency": 5}]
    assert summaries[0]["metrics"]["counterfactual_follow_rate"]["n"] == 1  # counterfactual rows in --data are used
    assert (out / "chart.png").read_bytes()[:4] == b"\x89PNG"
    lines = (out / "tiny_diversity_1.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["id"] == "a"
    second = CliRunner().invoke(cli, args)
    table = [line for line in first.stdout.splitlines() if not line.startswith(("| latency", "| decode", "wall"))]
    assert table == [line for line in second.stdout.splitlines() if not line.startswith(("| latency", "| decode", "wall"))]


def test_malformed_data_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        read_examples(bad)
    bad.write_text(json.dumps({**ROWS[0], "answer": "maybe"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: answer 'maybe' is not one of the choices"):
        read_examples(bad)
    result = CliRunner().invoke(cli, ["eval", "--data", str(bad)])
    assert result.exit_code == 2 and "bad.jsonl:1:" in result.stderr


def test_repeated_choices_in_real_data_are_collapsed(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{**ROWS[1], "choices": ["fridge", "oven", "Fridge", "shelf"]}])
    assert read_examples(path)[0].choices == ["fridge", "oven", "shelf"]


@pytest.mark.e2e
def test_default_model_end_to_end(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS[:2] + [
        {"id": "d", "question": "Is the sun a star?", "choices": ["yes", "no"], "answer": "yes",
         "rationale": "The sun is a star.", "source": "t"}])
    result = CliRunner().invoke(cli, ["eval", "--data", str(data), "--json", "--max-tokens", "48"])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    m = summary["metrics"]
    assert summary["model"] == "rationalizer-smollm2-135m" and summary["backend"] == "llamacpp"
    assert m["accuracy"]["n"] == 3 and 0 <= m["accuracy"]["value"] <= 1
    assert m["consistency"]["model"] == "smollm2-135m-instruct-base" and m["consistency"]["value"] is not None
    assert 0 < m["plausibility"]["value"] < 1 and m["oracle_accuracy"]["n"] == 2


@pytest.mark.e2e
def test_llamacpp_judge_ranks_the_greedy_token_first():
    from rationalizer import Rationalizer
    from rationalizer.evaluation.judges import load_judge

    judge = load_judge("default")  # the judge is the undistilled base, so its greedy token comes from the base
    scorer = judge.backend
    base_model = Rationalizer.load("base")
    try:
        context = base_model.prompt("Can a penguin fly?", ["yes", "no"])
        greedy = base_model.rationalize("Can a penguin fly?", ["yes", "no"], max_new_tokens=1).text
        candidates = [greedy, " maybe", "Banana", "Yes" if greedy != "Yes" else "No"]
        scores = [ll for ll, n in scorer.loglikelihoods([(context, c) for c in candidates])]
        assert scores[0] == max(scores)
        assert scorer.loglikelihoods([(context, greedy)]) == scorer.loglikelihoods([(context, greedy)])  # cache-safe
    finally:
        judge.close()
        base_model.close()
