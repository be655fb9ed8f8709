"""The SFT trainer on the tiny model: items, learning, resume after kill -9, DDP with gloo, bundles."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from rationalizer import Rationalizer
from rationalizer.backends.hf import load_hf
from rationalizer.config_file import load_config, save_config
from rationalizer.dataset import Example
from rationalizer.training.config import SFTConfig
from rationalizer.training.items import IGNORE, build_items, template_for


def dataset(n=16):
    rows = []
    for i in range(n):
        answer = "yes" if i % 2 else "no"
        rows.append({"id": f"r{i}", "question": f"Is thing {i} big?", "choices": ["yes", "no"], "answer": answer,
                     "rationale": f"Thing {i} is {'big' if answer == 'yes' else 'small'}."})
    return rows


@pytest.fixture(scope="module")
def tokenizer(tiny_bundle):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bundle / "hf")


def test_items_mask_the_prompt_and_weight_the_objectives(tokenizer):
    template = template_for(tokenizer, objective="multitask")
    examples = [Example("a", "Is ice cold?", "yes", ["yes", "no"], "Ice is frozen water."),
                Example("a", "Is ice cold?", "no", ["yes", "no"], "Ice is hot.", kind="counterfactual"),
                Example("b", "Is fire cold?", "no", ["yes", "no"], None)]
    items, stats = build_items(examples, tokenizer, template, "multitask", 0.3, 0.4)
    assert stats.tasks == {"factual": 1, "answer_task": 1, "counterfactual": 1} and stats.no_rationale == 1
    by_task = {it.task: it for it in items}

    def supervised(item):
        return tokenizer.decode([t for t, l in zip(item.input_ids, item.labels) if l != IGNORE])

    assert supervised(by_task["factual"]) == "Ice is frozen water. So the answer is yes.<|im_end|>"
    assert supervised(by_task["answer_task"]) == "So the answer is yes.<|im_end|>"
    assert supervised(by_task["counterfactual"]) == " So the answer is no.<|im_end|>"  # rationale: context only
    assert "[explain]" in tokenizer.decode(by_task["factual"].input_ids)
    assert "[counterfactual]" in tokenizer.decode(by_task["counterfactual"].input_ids)
    shares = {it.task: it.weight / len(items) for it in items}
    assert shares == pytest.approx({"factual": 0.6 * 0.7, "answer_task": 0.6 * 0.3, "counterfactual": 0.4})


def test_config_file_and_flags_round_trip(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train": ["a.jsonl"], "out": "o", "lora": {"r": 4}, "learning_rate": 1e-4}))
    config = load_config(SFTConfig, str(path), {"learning_rate": 5e-4, "max_steps": None})
    assert config.lora.r == 4 and config.learning_rate == 5e-4 and config.max_steps is None
    save_config(config, tmp_path / "again.json")
    assert load_config(SFTConfig, str(tmp_path / "again.json"), {}) == config
    path.write_text(json.dumps({"train": ["a"], "out": "o", "lerning_rate": 1}))
    result = CliRunner().invoke(__import__("rationalizer.cli.main", fromlist=["cli"]).cli,
                                ["train", "sft", "--config", str(path)])
    assert result.exit_code == 2 and "unknown key 'lerning_rate'" in result.stderr


def train_args(base, data, out, steps, **extra):
    args = ["train", "sft", "--base", str(base), "--train", str(data), "--out", str(out), "--max-steps", str(steps),
            "--batch-size", "4", "--learning-rate", "0.005", "--seed", "3"]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def test_sft_learns_and_the_bundle_answers_through_the_runtime(tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", dataset())
    dev = write_jsonl(tmp_path / "dev.jsonl", dataset(4))
    out = tmp_path / "student"
    from rationalizer.cli.main import cli

    result = CliRunner().invoke(cli, train_args(tiny_bundle / "hf", data, out, 16, dev=dev, eval_every=8,
                                                eval_samples=2, checkpoint_every=8))
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    assert len(losses) == 16 and sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.15  # ln(vocab) ~ 6: a random model
    assert [r["step"] for r in log if r["kind"] == "eval"] == [0, 8, 16]
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    r = Rationalizer.load(str(out))
    assert (r.backend_name, r.format, r.manifest.distilled) == ("torch", "peft", True)
    answer = r.rationalize("Is thing 3 big?", ["yes", "no"], max_new_tokens=12)
    assert answer.tokens_generated > 0
    assert json.loads((out / "train_config.json").read_text())["max_steps"] == 16


def test_multitask_objective_and_merged_weights(tiny_bundle, tmp_path):
    from rationalizer.cli.main import cli

    rows = dataset(8) + [{**dataset(1)[0], "answer": "yes", "rationale": "Thing 0 is big.", "kind": "counterfactual"}]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "mt"
    result = CliRunner().invoke(cli, train_args(tiny_bundle / "hf", data, out, 2, objective="multitask") + ["--merge"])
    assert result.exit_code == 0, result.output
    r = Rationalizer.load(str(out))  # the merged HF weights come first
    assert r.format == "hf" and set(r.bundle.formats()) == {"hf", "peft"}
    assert r.prompt("Is it?").count("[explain] Is it?") == 1
    merged_text = r.rationalize("Is thing 3 big?", ["yes", "no"], max_new_tokens=8).text
    model, tok = load_hf(r.bundle, "cpu", "peft", merge=False)  # the adapter over its base, unmerged
    unmerged = Rationalizer.from_model(model, tok, r.manifest, r.bundle.folder, fmt="peft")
    assert unmerged.rationalize("Is thing 3 big?", ["yes", "no"], max_new_tokens=8).text == merged_text


def test_resume_after_kill_9_matches_an_uninterrupted_run(tiny_bundle, tmp_path):
    """A packed bf16 run (packing is the default) killed mid-way resumes to the uninterrupted adapter."""
    from safetensors.torch import load_file

    data = write_jsonl(tmp_path / "train.jsonl", dataset())
    config = {"lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "precision": "bf16", "packing": True}
    (tmp_path / "c.json").write_text(json.dumps(config))
    base = [sys.executable, "-m", "rationalizer.cli.main"]
    whole = subprocess.run(base + train_args(tiny_bundle / "hf", data, tmp_path / "whole", 16, checkpoint_every=1)
                           + ["--config", str(tmp_path / "c.json")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    cut = base + train_args(tiny_bundle / "hf", data, tmp_path / "cut", 16, checkpoint_every=1) + ["--config", str(tmp_path / "c.json")]
    proc = subprocess.Popen(cut, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120

    def newest_step() -> int:
        names = [p.name for p in (tmp_path / "cut" / "checkpoints").glob("step-*")]
        return max((int(n.split("-")[1]) for n in names), default=0)

    while newest_step() < 3 and time.time() < deadline:  # older checkpoints are pruned: watch the newest
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "rationalizer.json").exists()  # no bundle from a killed run
    resumed = subprocess.run(cut + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step-" in resumed.stdout + resumed.stderr
    assert "precision: bf16" in whole.stdout + whole.stderr
    a = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-3, key  # bf16 tolerance


def test_two_cpu_processes_with_gloo(tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", dataset())
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rationalizer.cli.main"] + train_args(tiny_bundle / "hf", data, out, 3, device="cpu")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((out / "train_result.json").read_text())
    assert result["step"] == 3
    assert (out / "rationalizer.json").exists()


@pytest.mark.e2e
def test_default_base_is_rebuilt_from_the_gguf_and_checked():
    from rationalizer.training.base_student import build_default_base, check_against_gguf

    path = build_default_base()
    assert (path / "model.safetensors").exists() and json.loads((path / "config.json").read_text())["rope_theta"]
    from rationalizer import Bundle

    check = check_against_gguf(path, Bundle.load().main_file("gguf"))
    assert check.top1_agreement == 1.0 and check.max_abs_logprob_diff < 0.5
    assert build_default_base() == path  # cached


def test_per_file_limits_and_one_rationale_per_question(tmp_path):
    from rationalizer.errors import UserError
    from rationalizer.training.sft import read_training_files

    many = [{"id": f"{q}-{k}", "question": f"Q{q}?", "choices": ["yes", "no"], "answer": "yes",
             "rationale": f"r{k}", "source": "t", "teacher_correct": k != 1} for q in range(4) for k in range(3)]
    other = [{"id": f"o{q}", "question": f"O{q}?", "choices": None, "answer": "a", "rationale": "r", "source": "t"}
             for q in range(5)]
    a, b = write_jsonl(tmp_path / "a.jsonl", many), write_jsonl(tmp_path / "b.jsonl", other)
    rows = read_training_files([str(a), str(b)], None, limits=[3, 0], max_per_question=1)
    assert [r.id for r in rows] == ["0-0", "1-0", "2-0", "o0", "o1", "o2", "o3", "o4"]
    # the limit counts usable rows: the teacher-incorrect "k=1" rows are gone before it applies
    rows = read_training_files([str(a)], 4, max_per_question=2)
    assert [r.id for r in rows] == ["0-0", "0-2", "1-0", "1-2"]
    with pytest.raises(UserError, match="2 training files"):
        read_training_files([str(a), str(b)], None, limits=[1])
