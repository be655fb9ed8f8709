"""Multi-reward training on the tiny model: rewards, binning, the loop, and codes reaching the runtime."""

import json

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from rationalizer import Rationalizer
from rationalizer.dataset import Example
from rationalizer.training.binning import quantile_edges, rank_levels
from rationalizer.training.rewards import Accuracy, Diversity, Length, Sample, UserReward, build_rewards
from test_sft import dataset, train_args


def test_rank_bins_by_hand():
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert rank_levels(scores, 5) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quantile_edges(scores, 5) == [0.3, 0.5, 0.7, 0.9]
    # equal scores share the level of their highest rank, whatever their order in the pool:
    # every right answer of a 0/1 reward lands on the top level, the one inference asks for
    assert rank_levels([1, 0, 1, 0, 1, 0, 1, 1, 1, 1], 5) == [5, 2, 5, 2, 5, 2, 5, 5, 5, 5]
    assert rank_levels([0.5, 0.9, 0.9, 0.1], 4) == [2, 4, 4, 1]


def test_builtin_and_user_rewards():
    ex = Example("a", "Is ice cold?", "yes", ["yes", "no"])
    samples = [Sample(ex, "Ice is frozen water.", "yes"), Sample(ex, "ice ice ice ice", "no"), Sample(ex, "", None)]
    assert Accuracy().score(samples) == [1.0, 0.0, 0.0]
    assert Diversity().score(samples)[0] == 1.0 and Diversity().score(samples)[1] == pytest.approx(1 / 3 * 1 / 2)
    assert Length(target_words=4).score(samples) == [0.0, 0.0, -1.0]
    assert UserReward("helpers.user_rewards:brevity").score(samples) == [-20.0, -15.0, 0.0]
    with pytest.raises(Exception, match="unknown reward 'fluency'"):
        build_rewards(["fluency"])


def test_mario_rounds_write_a_control_scheme_the_runtime_offers(tiny_bundle, tmp_path):
    from rationalizer.cli.main import cli

    data = write_jsonl(tmp_path / "train.jsonl", dataset(8))
    sft = tmp_path / "sft"
    first = CliRunner().invoke(cli, train_args(tiny_bundle / "hf", data, sft, 2))
    assert first.exit_code == 0, first.output
    out = tmp_path / "mario"
    args = ["train", "mario", "--sft", str(sft), "--train", str(data), "--out", str(out), "--rounds", "2",
            "--samples-per-question", "2", "--questions-per-round", "4", "--steps-per-round", "2", "--batch-size", "4",
            "--max-new-tokens", "8", "--judge", str(tiny_bundle), "--beta", "0.1", "--gamma", "0.01",
            "--reward", "accuracy", "--reward", "diversity", "--reward", "consistency", "--reward", "plausibility",
            "--reward", "helpers.user_rewards:brevity", "--correctness-code"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in log if r["kind"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert set(rounds[0]["rewards"]) == {"accuracy", "diversity", "consistency", "plausibility", "brevity"}
    assert rounds[1]["pool"] == 8 + 8 + 8  # teacher rationales + 2 rounds of 4 questions x 2 samples
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3, 4]
    r = Rationalizer.load(str(out))
    assert r.quality_codes() == {"accuracy": 5, "diversity": 5, "consistency": 5, "plausibility": 5, "brevity": 5,
                                 "correct": 2}
    scheme = r.manifest.control
    assert all(len(lv.bin_edges) == 4 for lv in scheme.rewards[:5]) and scheme.default["diversity"] == 5
    assert "<accuracy:5><diversity:1><consistency:5><plausibility:5><brevity:5><correct:2> Is ice cold?" in r.prompt(
        "Is ice cold?", quality="diversity=1")
    out_text = r.rationalize("Is ice cold?", ["yes", "no"], quality={"diversity": 1}, max_new_tokens=6)
    assert out_text.quality["diversity"] == 1
    assert (out / "metrics.png").exists()


def test_mario_resumes_after_the_last_finished_round(tiny_bundle, tmp_path):
    from rationalizer.cli.main import cli

    data = write_jsonl(tmp_path / "train.jsonl", dataset(4))
    sft = tmp_path / "sft"
    assert CliRunner().invoke(cli, train_args(tiny_bundle / "hf", data, sft, 1)).exit_code == 0
    args = ["train", "mario", "--sft", str(sft), "--train", str(data), "--out", str(tmp_path / "m"),
            "--samples-per-question", "1", "--steps-per-round", "1", "--batch-size", "4", "--max-new-tokens", "4",
            "--reward", "accuracy", "--reward", "diversity"]
    assert CliRunner().invoke(cli, args + ["--rounds", "1"]).exit_code == 0
    result = CliRunner().invoke(cli, args + ["--rounds", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resumed after round 1" in result.stderr
    rounds = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2] and rounds[1]["pool"] == 4 + 4 + 4
