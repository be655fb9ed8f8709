"""Multi-reward training on the tiny model: rewards, binning, the loop, and codes reaching the runtime."""

import json

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from rationalizer import Rationalizer
from rationalizer.dataset import Example
from rationalizer.training.binning import cut_reward, level_of, quantile_edges
from rationalizer.training.rewards import Accuracy, Diversity, Length, Sample, UserReward, build_rewards
from test_sft import dataset, train_args


def test_bins_by_hand():
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    edges = quantile_edges(scores, 5)
    assert edges == [0.3, 0.5, 0.7, 0.9]
    assert [level_of(s, edges) for s in scores] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # tied best values share the top level, the one inference asks for
    assert [level_of(s, quantile_edges([0.5, 0.9, 0.9, 0.1], 4)) for s in (0.5, 0.9, 0.1)] == [2, 4, 1]


def test_levels_are_cut_within_each_source_and_accuracy_is_binary():
    # source "t" writes short rationales, "f" long ones: pooled, every "t" entry would sit on the low levels
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] + [101, 102, 103, 104, 105, 106, 107, 108, 109, 110] + [50, 60]
    sources = ["t"] * 10 + ["f"] * 10 + ["small"] * 2
    cut = cut_reward("length", values, sources, 5)
    assert set(cut.by_source) == {"t", "f"}  # a source with fewer than 2 x bins entries has no edges of its own
    assert cut.level(10, "t") == 5 and cut.level(110, "f") == 5 and cut.level(1, "t") == cut.level(101, "f") == 1
    assert cut.level(60, "small") == level_of(60, cut.edges) == 3  # the pool's edges
    accuracy = cut_reward("accuracy", [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], ["t"] * 12, 5)
    assert accuracy.levels == 2 and accuracy.level(0, "t") == 1 and accuracy.level(1, "t") == 2


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
            "--reward", "helpers.user_rewards:brevity", "--code-placement", "user"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in log if r["kind"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert set(rounds[0]["rewards"]) == {"accuracy", "diversity", "consistency", "plausibility", "brevity"}
    assert rounds[1]["pool"] == 8 + 8 + 8  # teacher rationales + 2 rounds of 4 questions x 2 samples
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3, 4]
    r = Rationalizer.load(str(out))
    assert r.quality_codes() == {"accuracy": 2, "diversity": 5, "consistency": 5, "plausibility": 5, "brevity": 5}
    scheme = r.manifest.control
    assert scheme.placement == "user" and scheme.rewards[0].bin_edges == [0.5]
    assert all(len(lv.bin_edges) == 4 for lv in scheme.rewards[1:]) and scheme.default["diversity"] == 5
    assert [(lv.metric, lv.direction) for lv in scheme.rewards] == [
        ("correct", 1), ("diversity", 1), ("consistency", 1), ("plausibility", 1), (None, 1)]
    assert "<accuracy:2><diversity:1><consistency:5><plausibility:5><brevity:5> Is ice cold?" in r.prompt(
        "Is ice cold?", quality="diversity=1")
    out_text = r.rationalize("Is ice cold?", ["yes", "no"], quality={"diversity": 1}, max_new_tokens=6)
    assert out_text.quality["diversity"] == 1
    assert (out / "metrics.png").exists()


def test_mario_resumes_after_the_last_finished_round_with_its_levels(tiny_bundle, tmp_path):
    from rationalizer.cli.main import cli

    rows = dataset(4) + [{**row, "id": row["id"] + "b", "rationale": "Another reason."} for row in dataset(4)]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    sft = tmp_path / "sft"
    assert CliRunner().invoke(cli, train_args(tiny_bundle / "hf", data, sft, 1)).exit_code == 0
    # bf16: the trainer must not build an Accelerator before the one with mixed precision
    args = ["train", "mario", "--sft", str(sft), "--train", str(data), "--out", str(tmp_path / "m"),
            "--samples-per-question", "1", "--steps-per-round", "1", "--batch-size", "4", "--max-new-tokens", "4",
            "--reward", "length", "--reward", "diversity", "--bins", "2", "--precision", "bf16"]
    first = CliRunner().invoke(cli, args + ["--rounds", "1"])
    assert first.exit_code == 0, first.output
    state = json.loads((tmp_path / "m" / "rounds.json").read_text())
    assert state["rounds"] == 1 and state["control"]["placement"] == "response"
    result = CliRunner().invoke(cli, args + ["--rounds", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resumed after round 1" in result.stderr
    rounds = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "round"]
    # every teacher rationale of the 4 questions (2 each), then one sample of every question per round
    assert [r["round"] for r in rounds] == [1, 2] and rounds[1]["pool"] == 8 + 4 + 4
    r = Rationalizer.load(str(tmp_path / "m"))
    assert [lv.bin_edges for lv in r.manifest.control.rewards] == [lv["bin_edges"] for lv in state["control"]["rewards"]]
    assert r.prompt("Is ice cold?", quality="length=1").endswith("Is ice cold?\n<length:1><diversity:2>\n")  # after the user turn


def test_levels_written_as_words_over_the_teacher_rationales_alone(tiny_bundle, tmp_path):
    from rationalizer.cli.main import cli

    rows = dataset(4) + [{**row, "id": row["id"] + "b", "rationale": "Another, longer reason for it."}
                         for row in dataset(4)]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    sft = tmp_path / "sft"
    assert CliRunner().invoke(cli, train_args(tiny_bundle / "hf", data, sft, 1)).exit_code == 0
    words = ["Explain in detail.", "Explain in one short sentence."]
    config = tmp_path / "m.json"
    config.write_text(json.dumps({"sft": str(sft), "train": [str(data)], "out": str(tmp_path / "m"),
                                  "rewards": ["length"], "bins": 2, "code_words": {"length": words},
                                  "code_placement": "user", "rounds": 1, "samples_per_question": 0,
                                  "steps_per_round": 1, "batch_size": 4, "beta": 0.0}))
    result = CliRunner().invoke(cli, ["train", "mario", "--config", str(config)])
    assert result.exit_code == 0, result.output
    rounds = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "round"]
    assert rounds[0]["pool"] == 8  # no samples: the teacher's two rationales of each question
    r = Rationalizer.load(str(tmp_path / "m"))
    assert r.manifest.control.rewards[0].level_text == words
    assert "Explain in detail. Is ice cold?" in r.prompt("Is ice cold?", quality="length=1")
    assert "<length:" not in r.prompt("Is ice cold?")
    config.write_text(json.dumps({"sft": str(sft), "train": [str(data)], "out": "x", "rewards": ["length"], "bins": 3,
                                  "code_words": {"length": words}}))
    refused = CliRunner().invoke(cli, ["train", "mario", "--config", str(config)])
    assert refused.exit_code == 2 and "'length' needs 3 non-empty texts, one per level, not 2" in refused.output


def test_the_pool_holds_every_teacher_rationale_of_the_first_questions(tmp_path):
    from rationalizer.training.config import MarioConfig
    from rationalizer.training.mario_pool import load_pool, pool_rows, questions_of, save_pool, teacher_samples

    rows = [{"id": f"{q}{i}", "question": f"Is {q} big?", "choices": ["yes", "no"], "answer": "yes",
             "rationale": f"{q} reason {i}.", "teacher_answer": "yes" if i else "no", "teacher_correct": bool(i),
             "source": "s"} for q in ("a", "b", "c") for i in range(3)]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    config = MarioConfig(train=[str(data)], out=str(tmp_path / "m"), sft="sft", question_limits=[2])
    pool_examples = pool_rows(config)
    # the first two questions with all three rationales each, the teacher-wrong one included
    assert [r.id for r in pool_examples] == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert [r.id for r in questions_of(pool_examples)] == ["a0", "b0"]
    pool = teacher_samples(pool_examples)
    assert [s.answer for s in pool[:3]] == ["no", "yes", "yes"]  # each with the answer its teacher gave
    save_pool(tmp_path / "pool.jsonl", pool)
    assert load_pool(tmp_path / "pool.jsonl") == pool
    dropped = MarioConfig(train=[str(data)], out=str(tmp_path / "m"), sft="sft", question_limits=[0],
                          drop_teacher_incorrect=True)
    assert len(pool_rows(dropped)) == 6
    with pytest.raises(Exception, match="question_limits has 2 entries for 1 training files"):
        MarioConfig(train=[str(data)], out="m", sft="sft", question_limits=[1, 1])
