"""Config dataclasses: help in field metadata, checks in __post_init__, options generated from fields."""

import dataclasses
import json

import pytest
from click.testing import CliRunner

from rationalizer.bench.config import BenchConfig
from rationalizer.cli.main import cli
from rationalizer.config_file import load_config
from rationalizer.errors import ConfigError
from rationalizer.evaluation import EvalConfig
from rationalizer.export.config import ExportConfig
from rationalizer.training.config import LoraSettings, MarioConfig, SFTConfig, TrainerConfig
from rationalizer.training.data import FieldMap
from rationalizer.training.teachers import TeachConfig

CONFIGS = [SFTConfig, MarioConfig, LoraSettings, EvalConfig, ExportConfig, TeachConfig, FieldMap, BenchConfig]
TRAIN = {"train": ["t.jsonl"], "out": "o"}


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_field_has_help_text(cls):
    assert all(f.metadata.get("help", "").strip() for f in dataclasses.fields(cls)), cls


# (command, settings of the config file, the key named, one of the allowed values named)
BAD_VALUES = [
    (["train", "sft"], {**TRAIN, "objective": "multitak"}, "objective", "multitask"),
    (["train", "sft"], {**TRAIN, "precision": "bf61"}, "precision", "bf16"),
    (["train", "sft"], {**TRAIN, "schedule": "sideways"}, "schedule", "cosine"),
    (["train", "mario"], {**TRAIN, "sft": "s", "device": "tpu"}, "device", "cuda"),
    (["eval"], {"data": "d.jsonl", "limit": 0}, "limit", "at least 1"),
    (["export", "default"], {"out": "o", "gguf": ["q3_x"]}, "gguf", "q4_k_m"),
    (["export", "default"], {"out": "o", "gguf": ["q8_0"], "lora_base": "q2"}, "lora_base", "f16"),
    (["teach"], {"data": "d.jsonl", "out": "o.jsonl", "teacher": "http://x/v1", "api": "chatt"}, "api", "completions"),
    (["bench"], {"device": "gpu"}, "device", "all"),
]


@pytest.mark.parametrize("command, settings, key, allowed", BAD_VALUES)
def test_a_config_file_with_a_value_not_allowed_is_one_line_naming_key_and_values(tmp_path, command, settings,
                                                                               key, allowed):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(settings))
    result = CliRunner().invoke(cli, [*command, "--config", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "c.json" in lines[0] and key in lines[0] and allowed in lines[0], lines


def test_configs_built_by_code_are_checked_too():
    with pytest.raises(ConfigError, match=r"SFTConfig: objective must be one of iro, multitask, not 'multitak'"):
        SFTConfig(**TRAIN, objective="multitak")
    with pytest.raises(ConfigError, match=r"SFTConfig: batch_size must be at least 1"):
        SFTConfig(**TRAIN, batch_size=0)
    with pytest.raises(ConfigError, match=r"train must name at least one training file"):
        SFTConfig(train=[], out="o")
    with pytest.raises(ConfigError, match=r"LoraSettings: target_modules must name at least one module"):
        LoraSettings(target_modules=[])
    with pytest.raises(ConfigError, match=r"MarioConfig: sft must name the SFT bundle"):
        MarioConfig(**TRAIN)
    with pytest.raises(ConfigError, match=r"nothing to export"):
        ExportConfig(None, "o")
    with pytest.raises(ConfigError, match=r"TeachConfig: top_p must be above 0"):
        TeachConfig(data="d", out="o", teacher="t", top_p=0)


def test_a_nested_setting_and_a_flag_are_named_where_they_came_from(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**TRAIN, "lora": {"r": 0}}))
    with pytest.raises(ConfigError, match=r"^c\.json: lora\.r must be at least 1"):
        load_config(SFTConfig, str(path))
    path.write_text(json.dumps(TRAIN))
    with pytest.raises(ConfigError, match=r"^command line: batch_size must be at least 1"):
        load_config(SFTConfig, str(path), {"batch_size": 0})


def test_mario_shares_the_trainer_base_without_the_fields_it_ignores():
    assert issubclass(SFTConfig, TrainerConfig) and issubclass(MarioConfig, TrainerConfig)
    mario = {f.name for f in dataclasses.fields(MarioConfig)}
    assert not mario & {"base", "dev", "eval_every", "eval_samples", "merge", "objective", "multitask_alpha",
                        "early_stopping_patience", "epochs", "max_steps", "counterfactual_alpha"}
    assert MarioConfig(**TRAIN, sft="s", steps_per_round=7).total_steps(1000) == 7
    assert SFTConfig(**TRAIN, epochs=2).total_steps(5) == 10 and SFTConfig(**TRAIN, max_steps=3).total_steps(5) == 3


def test_flags_are_generated_from_the_fields_and_override_the_file(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("rationalizer.cli.train._run", lambda trainer, config, resume: seen.update(c=config))
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**TRAIN, "sft": "s", "rewards": ["accuracy"], "bins": 3, "lora": {"r": 4}}))
    result = CliRunner().invoke(cli, ["train", "mario", "--config", str(path), "--reward", "diversity", "--reward",
                                      "length", "--no-packing", "--lora-alpha", "8", "--train", "a", "--train", "b"])
    assert result.exit_code == 0, result.output
    config = seen["c"]
    assert config.rewards == ["diversity", "length"] and config.bins == 3 and config.packing is False
    assert config.lora == LoraSettings(r=4, alpha=8) and config.train == ["a", "b"]


def test_list_choices_take_comma_lists_and_repeat(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("rationalizer.export.pipeline.run_export", lambda config, *a: seen.update(c=config) or
                        (_ for _ in ()).throw(SystemExit(0)))
    result = CliRunner().invoke(cli, ["export", "default", "--gguf", "q8_0,Q4_K_M", "--gguf", "lora", "--onnx",
                                      "int8", "--out", str(tmp_path / "o"), "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert seen["c"] == ExportConfig(None, str(tmp_path / "o"), ["q8_0", "q4_k_m", "lora"], ["int8"], dev_limit=5)
