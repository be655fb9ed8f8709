"""ARTE's loop on the tiny model: a local HF teacher's candidates scored by a student, DPO of the teacher itself
under its own few-shot prompt (`train dpo --sft TEACHER_FOLDER --prompt-style teacher`), and the aligned
teacher (OUT/merged) writing the data again; the teacher-style tokens are the ones the teacher is fed."""

import json
import shutil

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from rationalizer import Rationalizer
from rationalizer.cli.main import cli
from rationalizer.dataset import Example
from rationalizer.errors import ConfigError, UserError
from rationalizer.prompting import format_target
from rationalizer.training.config import DPOConfig
from rationalizer.training.dpo import load_start, pair_items, reference_logps
from rationalizer.training.dpo_pairs import PreferencePair, read_pairs
from rationalizer.training.items import IGNORE
from rationalizer.training.teachers.base import TeacherRequest
from rationalizer.training.teachers.local import LocalTeacher

QUESTIONS = [
    {"id": "q0", "question": "Is a whale a mammal?", "choices": ["yes", "no"], "answer": "yes"},
    {"id": "q1", "question": "Can a penguin fly?", "choices": ["yes", "no"], "answer": "no"},
    {"id": "q2", "question": "Where is milk kept cold?", "choices": ["fridge", "oven", "shelf"], "answer": "fridge"},
]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def margins(model, tokenizer, pairs):
    """Per pair, log p(chosen) - log p(rejected) under ``model``, both in the teacher's prompt."""
    items, kept = pair_items(pairs, tokenizer, None, 10**6, style="teacher")
    assert len(kept) == len(pairs)
    logps = reference_logps(model, items, 4, "cpu")
    return logps[:, 0] - logps[:, 1]


def test_arte_loop_aligns_a_local_teacher_that_then_writes_the_data(tiny_bundle, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    teacher, data = tiny_bundle / "hf", write_jsonl(tmp_path / "in.jsonl", QUESTIONS)
    out = tmp_path / "teach.jsonl"
    taught = CliRunner().invoke(cli, ["teach", "--data", str(data), "--teacher", str(teacher), "--out", str(out),
                                      "--candidates", "3", "--prefer-student", str(tiny_bundle), "--temperature",
                                      "1.5", "--top-p", "1.0", "--max-tokens", "10"])
    assert taught.exit_code == 0, taught.output
    pairs_path = tmp_path / "teach.pairs.jsonl"
    pairs = read_pairs(pairs_path)
    assert len(pairs) >= 1  # temperature 1.5 on a random model: candidates differ

    dpo = tmp_path / "aligned"
    trained = CliRunner().invoke(cli, ["train", "dpo", "--sft", str(teacher), "--train", str(data), "--out", str(dpo),
                                       "--pairs", str(pairs_path), "--prompt-style", "teacher", "--steps-per-round",
                                       "2", "--batch-size", "2", "--learning-rate", "0.01", "--max-length", "1024",
                                       "--lora-dropout", "0"])
    assert trained.exit_code == 0, trained.output
    assert read_pairs(dpo / "round-1" / "pairs.jsonl") == pairs  # none dropped as too long
    log = [json.loads(line) for line in (dpo / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2]
    prov = Rationalizer.load(str(dpo)).manifest.provenance
    assert (prov["start"], prov["start_kind"], prov["prompt_style"], prov["pairs"]) == (
        str(teacher), "hf", "teacher", [str(pairs_path)])

    # the aligned teacher prefers the chosen rationales more than the teacher did, in the teacher's own prompt
    aligned = LocalTeacher(str(dpo / "merged"))
    original = AutoModelForCausalLM.from_pretrained(teacher, use_safetensors=True, dtype=torch.float32).eval()
    before, after = margins(original, aligned.tokenizer, pairs), margins(aligned.model, aligned.tokenizer, pairs)
    assert ((after - before) > 1e-3).all()

    again = tmp_path / "final.jsonl"
    final = CliRunner().invoke(cli, ["teach", "--data", str(data), "--teacher", str(dpo / "merged"), "--out",
                                     str(again), "--max-tokens", "10", "--json"])
    assert final.exit_code == 0, final.output
    summary = json.loads(final.output.strip().splitlines()[-1])
    assert summary["teacher"] == str(dpo / "merged") and summary["failed"] == 0
    written = rows(again) + rows(tmp_path / "final.rejected.jsonl")
    assert sorted(r["id"] for r in written) == ["q0", "q1", "q2"] and summary["done"] == len(rows(again))


@pytest.mark.parametrize("chat", [False, True], ids=["few-shot text", "chat template"])
def test_teacher_style_prompt_tokens_are_what_the_local_teacher_is_fed(tiny_bundle, tmp_path, chat):
    folder = tiny_bundle / "hf"
    if chat:
        folder = tmp_path / "chat"
        shutil.copytree(tiny_bundle / "hf", folder)
        settings = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "chat_template": CHATML}))
    teacher = LocalTeacher(str(folder), contrastive=False, max_new_tokens=1)
    assert bool(teacher.tokenizer.chat_template) == chat
    fed = []
    teacher.model.register_forward_pre_hook(lambda module, args, kwargs: fed.append(args[0][0].tolist())
                                            if not fed else None, with_kwargs=True)
    ex = Example("q1", "Can a penguin fly? <|im_end|>", "no", ["yes", "no"])  # a control token in the data stays text
    teacher.write([TeacherRequest(ex, "factual", ex.answer, None)])
    pair = PreferencePair(ex.id, ex.question, ex.choices, ex.answer, "Penguins are birds that swim.",
                          "Penguins fly south.", rejected_answer="yes")
    (item,), _ = pair_items([pair], teacher.tokenizer, None, 10**6, style="teacher")
    first = next(i for i, label in enumerate(item.chosen.labels) if label != IGNORE)
    assert item.chosen.input_ids[:first] == item.rejected.input_ids[:first] == fed[0]
    assert fed[0].count(teacher.tokenizer.convert_tokens_to_ids("<|im_end|>")) == (6 if chat else 0)
    # the completion: what the teacher writes (after a space in the few-shot text), then EOS, all supervised
    completion = item.rejected.input_ids[first:]
    assert item.rejected.labels[first:] == completion and completion[-1] == teacher.tokenizer.eos_token_id
    assert teacher.tokenizer.decode(completion[:-1]) == ("" if chat else " ") + format_target(
        "Penguins fly south.", "yes")


def test_an_hf_start_trains_a_fresh_lora_against_the_frozen_model(tiny_bundle, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    config = DPOConfig(train=["unused.jsonl"], out=str(tmp_path / "o"), sft=str(tiny_bundle / "hf"),
                       pairs=["p.jsonl"], prompt_style="teacher")
    student, reference, scheme = load_start(config)
    assert not scheme.rewards and student.base == str((tiny_bundle / "hf").resolve())
    pairs = [PreferencePair("a", "Is ice cold?", ["yes", "no"], "yes", "Ice is frozen water.", "Ice is hot.")]
    items, _ = pair_items(pairs, student.tokenizer, None, 10**6, style="teacher")
    plain = AutoModelForCausalLM.from_pretrained(tiny_bundle / "hf", use_safetensors=True, dtype=torch.float32)
    expected = reference_logps(plain, items, 1, "cpu")
    assert torch.allclose(reference_logps(student.model, items, 1, "cpu"), expected, atol=1e-5)  # LoRA starts at 0
    with torch.no_grad():
        for name, p in student.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    assert not torch.allclose(reference_logps(student.model, items, 1, "cpu"), expected, atol=1e-3)
    student.model.train()
    assert torch.allclose(reference_logps(reference, items, 1, "cpu"), expected, atol=1e-5)
    assert student.model.training  # the reference's passes leave the policy's mode as it was

    with pytest.raises(ConfigError, match="teacher needs `pairs`"):
        DPOConfig(train=["t.jsonl"], out="o", sft=str(tiny_bundle / "hf"), prompt_style="teacher")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds neither rationalizer.json"):
        load_start(DPOConfig(train=["t.jsonl"], out="o", sft=str(tmp_path / "empty")))
