"""DPO on the tiny model: pairs from a scored pool, pair files, the rounds through the CLI, and TRL's loss."""

import json

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from rationalizer import Rationalizer
from rationalizer.dataset import DataError, Example
from rationalizer.training.dpo import combined_scores, pool_pairs
from rationalizer.training.dpo_pairs import PreferencePair, read_pairs, write_pairs
from rationalizer.training.rewards import Sample
from test_sft import dataset, train_args


def test_pairs_take_each_questions_best_and_worst_by_standardized_weighted_score():
    a, b, c = (Example(q, f"Is {q} big?", "yes", ["yes", "no"]) for q in "abc")
    pool = [Sample(a, "A right and long.", "yes"), Sample(a, "A wrong.", "no"), Sample(a, "A right.", "yes"),
            Sample(b, "B right.", "yes"), Sample(b, "B right too.", "yes"),
            Sample(c, "C alone.", "yes"), Sample(c, "", None)]  # c has one usable entry
    # length is on a scale 100 times accuracy's: standardized, each counts by its weight only
    cache = {0: {"accuracy": 1.0, "length": -400.0}, 1: {"accuracy": 0.0, "length": -200.0},
             2: {"accuracy": 1.0, "length": -200.0}, 3: {"accuracy": 1.0, "length": -300.0},
             4: {"accuracy": 1.0, "length": -310.0}, 5: {"accuracy": 1.0, "length": -100.0},
             6: {"accuracy": 0.0, "length": 0.0}}
    kept = [0, 1, 2, 3, 4, 5]
    z = combined_scores([cache[i] for i in kept], lambda name: 1.0)
    acc_std = (5 / 36) ** 0.5  # accuracy over the usable entries: five 1s and one 0
    assert z[1] == pytest.approx((0 - 5 / 6) / acc_std + (-200 + 1510 / 6) / (sum(
        (v + 1510 / 6) ** 2 for v in (-400, -200, -200, -300, -310, -100)) / 6) ** 0.5)
    pairs = pool_pairs(pool, cache, lambda name: 1.0, min_margin=0.5)
    assert [(p.id, p.chosen, p.rejected) for p in pairs] == [("a", "A right.", "A wrong.")]
    assert pairs[0].rejected_answer == "no" and pairs[0].chosen_score > pairs[0].rejected_score
    assert pairs[0].source == "policy>policy"
    # b's two entries are 10 words of length apart: a pair only with a small margin
    small = pool_pairs(pool, cache, lambda name: 1.0, min_margin=0.05)
    assert [(p.id, p.chosen) for p in small] == [("a", "A right."), ("b", "B right.")]
    # weights: length alone (accuracy weight 0) prefers a's shorter rationales, never the long right one
    by_length = pool_pairs(pool, cache, lambda name: 0.0 if name == "accuracy" else 1.0, min_margin=0.5)
    assert by_length[0].rejected == "A right and long."


def test_pair_files_round_trip_and_bad_lines_name_file_and_line(tmp_path):
    pairs = [PreferencePair("q1", "Is ice cold?", ["yes", "no"], "yes", "Ice is frozen.", "Ice is hot.", 1.5, -0.5,
                            "teacher"),
             PreferencePair("q2", "What is 2+2?", None, "4", "Two and two make four.", "It is five.",
                            rejected_answer="5")]
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, pairs)
    assert read_pairs(path) == pairs
    rows = [p.to_dict() for p in pairs]
    bad = [{**rows[0]}, {**rows[1], "rejected": ""}]
    write_jsonl(path, bad)
    with pytest.raises(DataError, match=f"{path}:2: 'rejected' must be non-empty text"):
        read_pairs(path)
    write_jsonl(path, [{**rows[0], "chosen_score": "high"}])
    with pytest.raises(DataError, match=f"{path}:1: 'chosen_score' must be a finite number or null"):
        read_pairs(path)
    path.write_text(json.dumps(rows[0]) + "\n\n{not json\n")
    with pytest.raises(DataError, match=f"{path}:3: not valid JSON"):
        read_pairs(path)
    write_jsonl(path, [{**rows[0], "answer": "maybe"}])
    with pytest.raises(DataError, match=f"{path}:1: answer 'maybe' is not one of the choices"):
        read_pairs(path)


def test_dpo_rounds_through_the_cli_resume_and_write_a_loadable_bundle(tiny_bundle, tmp_path):
    from rationalizer.cli.main import cli

    rows = dataset(4) + [{**row, "id": row["id"] + "b", "rationale": f"{row['rationale']} It is so, since it is "
                          "what it is.", "teacher_answer": "yes" if row["answer"] == "no" else "no"}
                         for row in dataset(4)]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    sft = tmp_path / "sft"
    assert CliRunner().invoke(cli, train_args(tiny_bundle / "hf", data, sft, 1)).exit_code == 0
    out = tmp_path / "dpo"
    args = ["train", "dpo", "--sft", str(sft), "--train", str(data), "--out", str(out), "--samples-per-question",
            "1", "--steps-per-round", "2", "--batch-size", "2", "--max-new-tokens", "6", "--reward", "accuracy",
            "--reward", "length", "--min-margin", "0.1", "--gamma", "0.1", "--learning-rate", "0.01"]
    first = CliRunner().invoke(cli, args + ["--rounds", "1"])
    assert first.exit_code == 0, first.output
    assert json.loads((out / "rounds.json").read_text())["rounds"] == 1
    # every question has a teacher-right and a teacher-wrong rationale: round 1 pairs all 4
    round_pairs = read_pairs(out / "round-1" / "pairs.jsonl")
    assert len(round_pairs) == 4 and all(p.chosen_answer == p.answer != p.rejected_answer for p in round_pairs)
    result = CliRunner().invoke(cli, args + ["--rounds", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resumed after round 1" in result.stderr
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in log if r["kind"] == "round"]
    assert [r["round"] for r in rounds] == [1, 2] and [r["pool"] for r in rounds] == [8 + 4, 8 + 4 + 4]
    assert set(rounds[0]["rewards"]) == {"accuracy", "length"} and rounds[0]["pairs"] == 4
    train = [r for r in log if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in train)
    r = Rationalizer.load(str(out))
    prov = r.manifest.provenance
    assert (prov["trainer"], prov["stage"], prov["start"], prov["pairs"]) == ("dpo", "dpo", str(sft), "pool")
    assert prov["pairs_per_round"][0] == 4 and len(prov["pairs_per_round"]) == 2 and prov["gamma"] == 0.1
    assert r.rationalize("Is thing 3 big?", ["yes", "no"], max_new_tokens=6).tokens_generated > 0
    # killed during round 2's training: the resume trains on the pairs round 2 fixed, without sampling again
    fixed = (out / "round-2" / "pairs.jsonl").read_text()
    (out / "rounds.json").write_text(json.dumps({"rounds": 1, "pairs_per_round": [4]}))
    again = CliRunner().invoke(cli, args + ["--rounds", "2", "--resume"])
    assert again.exit_code == 0, again.output
    assert "round 2: resumed on its" in again.stderr and (out / "round-2" / "pairs.jsonl").read_text() == fixed
    last = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "round"]
    assert last[-1]["resumed_pairs"] and last[-1]["pool"] == 8 + 4 + 4
    # the trained adapter moved away from the start bundle's
    from safetensors.torch import load_file

    start = load_file(str(sft / "adapter" / "adapter_model.safetensors"))
    trained = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert any(not (start[k] == trained[k]).all() for k in start)


@pytest.fixture
def fresh_accelerate_state():
    """TRL's Trainer builds an fp32 Accelerator: the process-wide accelerate state is reset around it, so
    neither it nor the trainers of other tests (bf16 where the CPU has it) refuse the other's precision."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_loss_and_lora_gradients_equal_trls_dpo(tiny_bundle, tmp_path, fresh_accelerate_state):
    import torch
    from datasets import Dataset
    from trl import DPOConfig as TRLConfig, DPOTrainer

    from rationalizer.cli.main import cli
    from rationalizer.training.dpo import dpo_pair_loss, pair_items, reference_logps
    from rationalizer.training.items import IGNORE
    from rationalizer.training.mario import load_policy

    data = write_jsonl(tmp_path / "train.jsonl", dataset(4))
    sft = tmp_path / "sft"
    assert CliRunner().invoke(cli, train_args(tiny_bundle / "hf", data, sft, 2)).exit_code == 0
    student, reference = load_policy(str(sft))
    pairs = [PreferencePair("a", "Is ice cold?", ["yes", "no"], "yes", "Ice is frozen water.", "Ice is hot.",
                            rejected_answer="no"),
             PreferencePair("b", "Can a penguin fly?", ["yes", "no"], "no", "Penguins are birds that swim.",
                            "Penguins fly south in winter, so they can.", rejected_answer="yes")]
    items, _ = pair_items(pairs, student.tokenizer, student.template, 384)
    beta, gamma = 0.3, 0.2

    def split(item):
        first = next(i for i, label in enumerate(item.labels) if label != IGNORE)
        return item.input_ids[:first], item.input_ids[first:]

    rows = []
    for pair in items:
        (prompt, chosen), (prompt_again, rejected) = split(pair.chosen), split(pair.rejected)
        assert prompt == prompt_again
        rows.append({"prompt_input_ids": prompt, "chosen_input_ids": chosen, "rejected_input_ids": rejected})
    args = TRLConfig(output_dir=str(tmp_path / "trl"), beta=beta, rpo_alpha=gamma, use_cpu=True, report_to="none",
                     bf16=False, per_device_train_batch_size=2, max_length=None)
    # TRL turns dropout off in the model it trains (ours, here), so both losses see the same network
    trainer = DPOTrainer(model=student.model, ref_model=reference, args=args, processing_class=student.tokenizer,
                         train_dataset=Dataset.from_list([{"prompt": "q", "chosen": " a", "rejected": " b"}] * 2))
    batch = trainer.data_collator(rows)
    trl_ref = torch.stack(trainer.compute_ref_log_probs(batch), dim=1)
    cached = reference_logps(reference, items, 1, "cpu")
    assert torch.allclose(cached, trl_ref, atol=1e-4)

    params = {n: p for n, p in student.model.named_parameters() if p.requires_grad}
    ours, tokens = dpo_pair_loss(student.model, items, cached, beta, gamma, "cpu")
    ours.backward()
    our_grads = {n: p.grad.clone() for n, p in params.items()}
    student.model.zero_grad()
    theirs, metrics = trainer.get_batch_loss_metrics(trainer.model, batch)
    theirs.backward()
    assert metrics["nll_loss"] > 0
    assert tokens == sum(len(r["chosen_input_ids"]) + len(r["rejected_input_ids"]) for r in rows)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-5)
    assert any(g.abs().max() > 1e-4 for g in our_grads.values())
    for name, p in params.items():
        assert torch.allclose(p.grad, our_grads[name], rtol=1e-4, atol=1e-6), name
    without_nll, _ = dpo_pair_loss(student.model, items, cached, beta, 0.0, "cpu")
    assert ours.item() - without_nll.item() == pytest.approx(gamma * metrics["nll_loss"], abs=1e-5)


def test_dpo_on_pair_files_over_a_mario_bundle_keeps_its_quality_codes(tiny_bundle, tmp_path):
    from rationalizer.cli.main import cli

    rows = dataset(4) + [{**row, "id": row["id"] + "b", "rationale": "Another, longer reason for it."}
                         for row in dataset(4)]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    sft, mario, out = tmp_path / "sft", tmp_path / "mario", tmp_path / "dpo"
    assert CliRunner().invoke(cli, train_args(tiny_bundle / "hf", data, sft, 1)).exit_code == 0
    made = CliRunner().invoke(cli, ["train", "mario", "--sft", str(sft), "--train", str(data), "--out", str(mario),
                                    "--reward", "length", "--bins", "2", "--rounds", "1", "--samples-per-question",
                                    "0", "--steps-per-round", "1", "--batch-size", "4", "--beta", "0"])
    assert made.exit_code == 0, made.output
    pairs = [PreferencePair(row["id"], row["question"], row["choices"], row["answer"], row["rationale"],
                            "No reason at all.", 1.0, 0.0, "file") for row in dataset(4)]
    write_pairs(tmp_path / "pairs.jsonl", pairs)
    args = ["train", "dpo", "--sft", str(mario), "--train", str(data), "--out", str(out), "--steps-per-round", "1",
            "--batch-size", "2"]
    (tmp_path / "bad.jsonl").write_text(json.dumps(pairs[0].to_dict()) + "\n" + json.dumps({"id": "x"}) + "\n")
    refused = CliRunner().invoke(cli, args + ["--pairs", str(tmp_path / "bad.jsonl")])
    assert refused.exit_code != 0 and f"{tmp_path / 'bad.jsonl'}:2: 'question' must be non-empty text" in refused.output
    result = CliRunner().invoke(cli, args + ["--pairs", str(tmp_path / "pairs.jsonl")])
    assert result.exit_code == 0, result.output
    assert read_pairs(out / "round-1" / "pairs.jsonl") == pairs
    r = Rationalizer.load(str(out))
    assert r.quality_codes() == Rationalizer.load(str(mario)).quality_codes() == {"length": 2}
    prov = r.manifest.provenance
    assert (prov["stage"], prov["start"], prov["pairs"], prov["pairs_per_round"]) == (
        "dpo", str(mario), [str(tmp_path / "pairs.jsonl")], [4])
    many = CliRunner().invoke(cli, args + ["--pairs", str(tmp_path / "pairs.jsonl"), "--rounds", "2"])
    assert many.exit_code == 2 and "rounds must be 1 with `pairs`" in many.output
