"""Only codes that steer are offered: effects judged by their interval, schemes pruned, effects measured."""

import copy
import json
import shutil

import pytest
from click.testing import CliRunner

from conftest import write_bundle, write_jsonl
from rationalizer.cli.main import cli
from rationalizer.errors import InputError
from rationalizer.evaluation import EvalConfig
from rationalizer.evaluation.code_effect import (REWARD_METRICS, keep_steering_codes, measure_code_effects, metric_of,
                                                 steers)
from rationalizer.manifest import CodeEffect, ControlScheme, Manifest, RewardLevels
from rationalizer.prompting import render_codes, resolve_quality

LENGTH = CodeEffect("rationale_tokens", 41.2, 22.0, -19.2, [-21.0, -17.5], 120,
                    ["strategyqa/dev.jsonl", "cqa/test.jsonl"])
FLAT = CodeEffect("consistency", 0.010, 0.014, 0.004, [-0.01, 0.02], 300, ["d.jsonl"])
BACKWARDS = CodeEffect("diversity", 0.80, 0.75, -0.05, [-0.09, -0.01], 300, ["d.jsonl"])
ROWS = [
    {"id": "a", "question": "Can a penguin fly?", "choices": ["yes", "no"], "answer": "no", "source": "t"},
    {"id": "b", "question": "Where is milk kept cold?", "choices": ["fridge", "oven", "shelf"], "answer": "fridge",
     "source": "t"},
    {"id": "c", "question": "What is 9 plus 9?", "choices": None, "answer": "18", "source": "t"},
    {"id": "d", "question": "Is the sun a star?", "choices": ["yes", "no"], "answer": "yes", "source": "t"},
]


def scheme() -> ControlScheme:
    return ControlScheme(
        rewards=[RewardLevels("length", 5), RewardLevels("consistency", 5), RewardLevels("diversity", 3),
                 RewardLevels("custom", 2)],
        default={"length": 5, "consistency": 4, "custom": 2},
        presets={"short": {"length": 5, "consistency": 2}, "varied": {"diversity": 1}})


def test_metric_of_prefers_the_codes_own_metric():
    assert REWARD_METRICS["length"] == ("rationale_tokens", -1) and REWARD_METRICS["accuracy"] == ("correct", 1)
    assert metric_of(RewardLevels("length", 5)) == ("rationale_tokens", -1)
    assert metric_of(RewardLevels("length", 5, metric="latency_s", direction=-1)) == ("latency_s", -1)
    assert metric_of(RewardLevels("brevity", 5)) is None


@pytest.mark.parametrize("ci95, direction, expected", [
    ([0.01, 0.2], 1, True), ([-0.01, 0.2], 1, False), ([0.0, 0.2], 1, False), ([-0.3, -0.1], 1, False),
    ([-0.3, -0.1], -1, True), ([-0.3, 0.0], -1, False), ([0.1, 0.3], -1, False),
])
def test_steers_needs_the_interval_on_the_promised_side_of_zero(ci95, direction, expected):
    effect = CodeEffect("m", 0.0, 0.1, sum(ci95) / 2, ci95, 10)
    assert steers(effect, direction) is expected


def test_keep_steering_codes_leaves_out_the_others_with_reasons(tmp_path):
    original = scheme()
    before = copy.deepcopy(original)
    kept, left_out = keep_steering_codes(original, {"length": LENGTH, "consistency": FLAT, "diversity": BACKWARDS})
    assert [(r.name, r.offered) for r in kept.rewards] == [("length", True), ("consistency", False),
                                                           ("diversity", False), ("custom", False)]
    length = kept.rewards[0]
    assert length.effect == LENGTH and length.metric == "rationale_tokens" and length.direction == -1
    # a code that is not offered is still written at its default level: the prompt the model was trained on
    assert kept.default == {"length": 5, "consistency": 4, "custom": 2, "diversity": 3}
    assert kept.presets == {"short": {"length": 5}, "varied": {}}
    assert render_codes(kept, resolve_quality(kept, "length=1")) == "<length:1><consistency:4><diversity:3><custom:2> "
    with pytest.raises(InputError, match="'consistency' is not offered by this model"):
        resolve_quality(kept, "consistency=5")
    assert set(left_out) == {"consistency", "diversity", "custom"}
    assert left_out["consistency"] == "consistency difference +0.004 [-0.010, 0.020] on n=300, CI includes 0"
    assert "the wrong way" in left_out["diversity"] and "raise diversity" in left_out["diversity"]
    assert left_out["custom"] == "effect not measured"
    assert original == before  # the scheme given is not changed
    few, reasons = keep_steering_codes(original, {"length": LENGTH}, min_n=LENGTH.n + 1)
    assert not few.rewards[0].offered and reasons["length"] == f"measured on n={LENGTH.n} questions, fewer than {LENGTH.n + 1}"
    # a manifest that holds the pruned scheme is valid, and the effect survives saving and loading
    folder = write_bundle(tmp_path, {"m.gguf": b"abc"})
    manifest = Manifest.load(folder)
    manifest.control = kept
    manifest.save(folder)
    again = Manifest.load(folder)
    assert again == manifest and again.control.rewards[0].effect == LENGTH


def test_a_scheme_with_effects_round_trips_through_the_manifest(tmp_path):
    folder = write_bundle(tmp_path, {"m.gguf": b"abc"})
    manifest = Manifest.load(folder)
    manifest.control = ControlScheme(
        rewards=[RewardLevels("length", 5, metric="rationale_tokens", direction=-1, effect=LENGTH),
                 RewardLevels("consistency", 5, metric="consistency", effect=FLAT), RewardLevels("diversity", 3)],
        default={"length": 5}, presets={"short": {"length": 5}})
    manifest.save(folder)
    assert Manifest.load(folder) == manifest
    raw = json.loads((folder / "rationalizer.json").read_text())["control"]["rewards"][0]
    assert raw["effect"]["ci95"] == [-21.0, -17.5] and raw["direction"] == -1


def test_info_shows_each_codes_metric_and_effect(tmp_path):
    control = {"rewards": [
        {"name": "length", "levels": 5, "metric": "rationale_tokens", "direction": -1,
         "effect": {"metric": "rationale_tokens", "low": 41.2, "high": 22.0, "difference": -19.2,
                    "ci95": [-21.0, -17.5], "n": 120, "data": ["strategyqa/dev.jsonl", "cqa/test.jsonl"]}},
        {"name": "consistency", "levels": 3}, {"name": "brevity", "levels": 2, "offered": False}],
        "default": {"brevity": 1}}
    folder = write_bundle(tmp_path, {"m.gguf": b"abc"}, control=control)
    result = CliRunner().invoke(cli, ["info", str(folder)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert ("  length: levels 1..5 (default 5) moves rationale_tokens: 41.2 -> 22.0, difference -19.2 "
            "[-21.0, -17.5], n=120 (strategyqa/dev.jsonl, cqa/test.jsonl)") in lines
    assert "  consistency: levels 1..3 (default 3) (metric consistency: effect not measured)" in lines
    assert "  brevity: levels 1..2 (default 1) NOT OFFERED (written at level 1, not selectable) (effect not measured)" in lines


@pytest.fixture(scope="module")
def two_level_bundle(tmp_path_factory):
    """The tiny random model with two 2-level codes that need no judge. Its greedy text is the same
    whatever the codes (the random weights prefer one token), so ``length`` cannot steer; ``speed``
    is judged by latency, which differs from run to run, so its numbers are not all zero."""
    from helpers.tiny_model import write_hf_bundle

    control = {"rewards": [{"name": "length", "levels": 2},
                           {"name": "speed", "levels": 2, "metric": "latency_s", "direction": -1},
                           {"name": "consistency", "levels": 2}],
               "default": {"length": 2}, "presets": {"plain": {"length": 1, "speed": 1}}}
    return write_hf_bundle(tmp_path_factory.mktemp("codes") / "bundle", control=control)


def _by_id(path, field):
    return {r["id"]: r[field] for r in map(json.loads, path.read_text().splitlines())}


def test_measure_code_effects_pairs_level_one_with_the_top_level(two_level_bundle, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    # judges asked for but not needed by these metrics must not load (the summary says they were off)
    config = EvalConfig(data=str(data), max_new_tokens=8, bootstrap_samples=200)
    out = tmp_path / "out"
    effects = measure_code_effects(str(two_level_bundle), config, ["length", "speed"], backend="torch", device="cpu",
                                   threads=1, out=out)
    assert set(effects) == {"length", "speed"}
    summaries = json.loads((out / "summary.json").read_text())
    if isinstance(summaries, dict):
        summaries = summaries["runs"]
    # length=2 is the default of both codes' top level: three distinct runs, not four
    assert sorted(json.dumps(s["quality"], sort_keys=True) for s in summaries) == sorted(
        json.dumps({**q, "consistency": 2}, sort_keys=True)
        for q in [{"length": 1, "speed": 2}, {"length": 2, "speed": 2}, {"length": 2, "speed": 1}])
    assert all(s["metrics"]["consistency"]["reason"] == "simulator switched off" for s in summaries)
    assert all(s["metrics"]["plausibility"]["reason"] == "verifier switched off" for s in summaries)
    length = effects["length"]
    low = _by_id(out / "tiny_length_1.jsonl", "rationale_tokens")
    high = _by_id(out / "tiny_length_2.jsonl", "rationale_tokens")
    assert length.metric == "rationale_tokens" and length.n == 4 and length.data == [str(data)]
    assert length.low == pytest.approx(sum(low.values()) / 4) and length.high == pytest.approx(sum(high.values()) / 4)
    assert length.difference == pytest.approx(length.high - length.low)
    speed = effects["speed"]
    low = _by_id(out / "tiny_speed_1.jsonl", "latency_s")
    high = _by_id(out / "tiny_length_2.jsonl", "latency_s")  # speed=2 is the same run as length=2
    assert speed.metric == "latency_s" and speed.n == 4 and set(low) == {"a", "b", "c", "d"}
    assert speed.low == pytest.approx(sum(low.values()) / 4) and speed.high == pytest.approx(sum(high.values()) / 4)
    assert speed.difference == pytest.approx(sum(high[k] - low[k] for k in low) / 4)
    assert speed.difference == pytest.approx(speed.high - speed.low) and speed.difference != 0
    assert speed.ci95[0] <= speed.difference <= speed.ci95[1] and speed.ci95[0] < speed.ci95[1]


def test_codes_whose_judge_is_off_or_unknown_cost_no_run(two_level_bundle, tmp_path, caplog):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    config = EvalConfig(data=str(data), simulator="none")
    assert measure_code_effects(str(two_level_bundle), config, ["consistency"], backend="torch") == {}
    assert "consistency: not measured: consistency needs the simulator, which is switched off" in caplog.text
    with pytest.raises(InputError, match="unknown quality code 'brevity'"):
        measure_code_effects(str(two_level_bundle), config, ["brevity"])


def test_codes_command_writes_the_effects_and_the_kept_scheme(two_level_bundle, tmp_path):
    bundle = shutil.copytree(two_level_bundle, tmp_path / "bundle")
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    more = write_jsonl(tmp_path / "e.jsonl", ROWS[:2])
    result = CliRunner().invoke(cli, ["codes", str(bundle), "--data", str(data), "--data", str(more), "--limit", "3",
                                      "--max-tokens", "8", "--backend", "torch", "--threads", "1", "--simulator",
                                      "none", "--write", "--min-n", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "| code | metric | low | high | difference [95% CI] | n | steers |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:] if line.startswith("| ")}
    assert set(rows) == {"length", "speed", "consistency"}
    assert rows["consistency"] == "| consistency | consistency | - | - | not measured | 0 | no |"
    assert "not offered consistency: effect not measured" in lines
    assert "| rationale_tokens |" in rows["length"] and "| 5 |" in rows["length"]  # 3 + 2 questions pooled
    assert rows["length"].endswith("| no |")  # the same text at both levels: no difference
    assert "not offered length: rationale_tokens difference +0.000 [0.000, 0.000] on n=5, CI includes 0" in lines
    manifest = Manifest.load(bundle)
    kept = {r.name: r for r in manifest.control.rewards if r.offered}
    assert "length" not in kept and "consistency" not in kept
    assert set(manifest.control.default) == {r.name for r in manifest.control.rewards}
    assert manifest.control.presets == {"plain": {"speed": 1} if "speed" in kept else {}}
    if "speed" in kept:
        assert rows["speed"].endswith("| yes |") and kept["speed"].effect.data == [str(data), str(more)]
    else:
        assert rows["speed"].endswith("| no |") and "not offered speed: " in result.stdout


@pytest.mark.parametrize("args, message", [
    (["codes", "default", "--data", "d.jsonl", "--write"], "'default' is the embedded model"),
    (["codes", "default"], "Missing option '--data'"),
])
def test_codes_command_user_errors_are_one_line(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1
