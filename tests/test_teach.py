"""`rationalize teach`: the served teacher on llama.cpp's real server, faults, kills and resume,
and the local teacher's contrastive decoding checked by hand on the tiny model."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from helpers.fake_openai import FaultyTeacherServer
from rationalizer.cli.main import cli
from rationalizer.dataset import Example
from rationalizer.training.teachers import TeachConfig, TeacherRequest, load_teacher, wrong_answer
from rationalizer.training.teachers.runner import teach

QUESTIONS = [
    {"id": f"q{i}", "question": f"Is {n} a mammal?", "choices": ["yes", "no"], "answer": a, "rationale": None}
    for i, (n, a) in enumerate([("a whale", "yes"), ("a shark", "no"), ("a bat", "yes"), ("a frog", "no"),
                                ("a dog", "yes"), ("a trout", "no"), ("a cow", "yes"), ("an eagle", "no")])
]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_teach(*args):
    return CliRunner().invoke(cli, ["teach", *args])


@pytest.mark.e2e
def test_served_teacher_on_llama_cpp_server(llama_server, tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS[:3])
    out = tmp_path / "out.jsonl"
    args = ["--data", str(data), "--teacher", llama_server, "--teacher-model", "smol", "--out", str(out),
            "--counterfactual", "--in-flight", "2", "--max-tokens", "48", "--json"]
    first = run_teach(*args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["requested"] == 6 and summary["failed"] == 0
    assert summary["done"] + sum(summary["filtered"].values()) == 6
    written = rows(out)
    assert {(r["id"], r["kind"]) for r in written} <= {(q["id"], k) for q in QUESTIONS[:3] for k in ("factual", "counterfactual")}
    for r in written:
        assert r["rationale"].strip() and r["source"].startswith("teacher smol@")
        gold = next(q["answer"] for q in QUESTIONS if q["id"] == r["id"])
        if r["kind"] == "factual":
            assert r["answer"] == gold and "gold_answer" not in r
        else:
            assert r["gold_answer"] == gold and r["answer"] == ("no" if gold == "yes" else "yes")
    again = json.loads(run_teach(*args).stdout)
    assert again["requested"] == 0 and again["already_done"] == 6 and rows(out) == written


def test_retries_on_500_429_and_dropped_connections(tmp_path):
    server = FaultyTeacherServer(plan={1: "500", 2: "429", 3: "drop"})
    try:
        data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS[:2])
        out = tmp_path / "out.jsonl"
        config = TeachConfig(data=str(data), out=str(out), teacher=server.url, in_flight=1, retries=5, timeout_s=5)
        teacher = load_teacher(config)
        teacher.policy.backoff_s = 0.01
        summary = teach(config, teacher)
        assert (summary.done, summary.failed) == (2, 0)
        assert server.calls == 5  # three faults on the first question, then one call each
        assert [r["id"] for r in rows(out)] == ["q0", "q1"]
        assert summary.teacher_accuracy == 1.0
    finally:
        server.close()


def test_timeout_then_failure_loses_nothing_written_and_rerun_completes(tmp_path):
    server = FaultyTeacherServer(plan={1: "hang"}, fail_questions={QUESTIONS[3]["question"]})
    try:
        data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS[:5])
        out = tmp_path / "out.jsonl"
        config = TeachConfig(data=str(data), out=str(out), teacher=server.url, in_flight=3, retries=2, timeout_s=1)
        teacher = load_teacher(config)
        teacher.policy.backoff_s = 0.01
        summary = teach(config, teacher)
        assert summary.failed == 1 and summary.done == 4  # q0 hung once then succeeded; q3 always fails
        assert "HTTP 500" in summary.errors[0]
        assert sorted(r["id"] for r in rows(out)) == ["q0", "q1", "q2", "q4"]
        server.fail_questions.clear()
        again = teach(config, load_teacher(config))
        assert (again.done, again.failed, again.already_done) == (1, 0, 4)
        ids = [r["id"] for r in rows(out)]
        assert sorted(ids) == ["q0", "q1", "q2", "q3", "q4"] and len(ids) == len(set(ids))
    finally:
        server.close()


def test_in_flight_bound_is_kept_and_used(tmp_path):
    server = FaultyTeacherServer(delay_s=0.2)
    try:
        data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS)
        config = TeachConfig(data=str(data), out=str(tmp_path / "o.jsonl"), teacher=server.url, in_flight=4)
        summary = teach(config, load_teacher(config))
        assert summary.done == 8 and server.max_in_flight == 4
    finally:
        server.close()


def test_filters_drop_and_record_reasons(tmp_path):
    server = FaultyTeacherServer(same_text="Every one of these is an animal with a spine.")
    try:
        data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS[:3])
        out = tmp_path / "o.jsonl"
        config = TeachConfig(data=str(data), out=str(out), teacher=server.url, in_flight=1, max_words=50)
        summary = teach(config, load_teacher(config))
        assert summary.filtered["duplicate"] == 2 and summary.done == 1  # same rationale text three times
        rejected = rows(tmp_path / "o.rejected.jsonl")
        assert [r["rejected"] for r in rejected] == ["duplicate", "duplicate"]
        config.max_words, config.out = 3, str(tmp_path / "short.jsonl")
        assert teach(config, load_teacher(config)).filtered["too_long"] == 3  # checked before duplicates
    finally:
        server.close()


def test_kill_9_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path):
    server = FaultyTeacherServer(delay_s=0.3)
    try:
        many = [{**QUESTIONS[i % 8], "id": f"k{i}", "question": f"Is thing {i} a mammal?"} for i in range(40)]
        data = write_jsonl(tmp_path / "in.jsonl", many)
        out = tmp_path / "out.jsonl"
        cmd = [sys.executable, "-m", "rationalizer.cli.main", "teach", "--data", str(data), "--teacher", server.url,
               "--out", str(out), "--in-flight", "2"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while len(rows(out)) < 6 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = len(out.read_text().splitlines())
        assert 6 <= before < 40
        with out.open("a") as handle:
            handle.write('{"id": "torn')  # a line cut by the kill
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        ids = [r["id"] for r in rows(out)]
        assert sorted(ids) == sorted(r["id"] for r in many) and len(ids) == 40
    finally:
        server.close()


def test_repeated_questions_and_ids_are_asked_once(tmp_path):
    server = FaultyTeacherServer()
    try:
        data = write_jsonl(tmp_path / "in.jsonl", [QUESTIONS[0], {**QUESTIONS[0], "id": "other"},
                                                   {**QUESTIONS[1], "id": QUESTIONS[0]["id"]}])
        config = TeachConfig(data=str(data), out=str(tmp_path / "o.jsonl"), teacher=server.url, in_flight=2)
        summary = teach(config, load_teacher(config))
        assert (summary.done, summary.duplicate_questions, server.calls) == (1, 2, 1)
    finally:
        server.close()


class ScriptedTeacher:
    """A teacher that answers each (id, kind) with a fixed (rationale, stated answer)."""

    name, concurrency, batch_size = "scripted", 1, 2

    def __init__(self, script):
        self.script = script

    def write(self, requests):
        from rationalizer.training.teachers.base import TeacherOutput
        return [TeacherOutput("", *self.script[(r.example.id, r.kind)]) for r in requests]


def test_rows_keep_their_keys_order_and_values(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", QUESTIONS[:3])
    out = tmp_path / "o.jsonl"
    script = {("q0", "factual"): ("Whales nurse their young.", "yes"),
              ("q0", "counterfactual"): ("Whales are fish.", "no"),
              ("q1", "factual"): ("Sharks are fish.", None),  # no readable stated answer
              ("q1", "counterfactual"): ("Sharks nurse their young.", "no"),  # states the wrong answer
              ("q2", "factual"): ("  ", "yes"), ("q2", "counterfactual"): ("Bats are birds.", "no")}
    config = TeachConfig(data=str(data), out=str(out), teacher="scripted", counterfactual=True)
    summary = teach(config, ScriptedTeacher(script))
    assert (summary.done, summary.filtered["empty"], summary.stated, summary.stated_correct) == (5, 1, 5, 4)
    q = {r["id"]: r for r in QUESTIONS}

    def row(i, kind, answer, rationale, stated, correct):
        base = {"id": i, "question": q[i]["question"], "choices": ["yes", "no"], "answer": answer,
                "rationale": rationale, "kind": kind, "source": "teacher scripted",
                "teacher_answer": stated, "teacher_correct": correct}
        return {**base, "gold_answer": q[i]["answer"]} if kind == "counterfactual" else base

    got = rows(out)
    assert got == [row("q0", "factual", "yes", "Whales nurse their young.", "yes", True),
                   row("q0", "counterfactual", "no", "Whales are fish.", "no", True),
                   row("q1", "factual", "no", "Sharks are fish.", None, None),
                   row("q1", "counterfactual", "yes", "Sharks nurse their young.", "no", False),
                   row("q2", "counterfactual", "no", "Bats are birds.", "no", True)]
    assert [list(r) for r in got] == [list(row(r["id"], r["kind"], "", "", "", "")) for r in got]
    rejected = rows(tmp_path / "o.rejected.jsonl")
    assert rejected == [{**row("q2", "factual", "yes", "  ", "yes", True), "rejected": "empty"}]
    assert list(rejected[0])[-1] == "rejected"


def test_wrong_answers_flip_yes_no_and_pick_a_wrong_choice():
    yn = Example("a", "Is it?", "yes", ["yes", "no"])
    mc = Example("b", "Which?", "red", ["red", "green", "blue"])
    assert wrong_answer(yn) == "no"
    assert wrong_answer(mc) in ("green", "blue") and wrong_answer(mc) == wrong_answer(mc)
    assert wrong_answer(Example("c", "Sum?", "18")) not in (None, "18")
    assert wrong_answer(Example("d", "Capital?", "Paris")) is None


def test_contrastive_decoding_first_step_matches_a_hand_computation(tiny_bundle):
    import torch

    config = TeachConfig(data="-", out="-", teacher=str(tiny_bundle / "hf"), lam=0.5, alpha=0.1, max_new_tokens=1)
    teacher = load_teacher(config)
    model, tok = teacher.model, teacher.tokenizer
    examples = [Example("a", "Can a penguin fly?", "no", ["yes", "no"]),
                Example("b", "Where is milk kept cold in summer at home?", "fridge", ["fridge", "oven", "shelf"])]
    requests = [TeacherRequest(examples[0], "factual", "no", "yes"), TeacherRequest(examples[1], "factual", "fridge", "oven")]
    pos = [teacher.render(r, r.target) for r in requests]
    neg = [teacher.render(r, r.contrast) for r in requests]
    expected = []
    for p, n in zip(pos, neg):  # one prompt at a time, no padding: the textbook definition
        with torch.no_grad():
            lp = torch.log_softmax(model(tok(p, return_tensors="pt").input_ids).logits[0, -1], -1)
            ln = torch.log_softmax(model(tok(n, return_tensors="pt").input_ids).logits[0, -1], -1)
        score = lp - 0.5 * ln
        score[lp < lp.max() + math.log(0.1)] = float("-inf")
        expected.append(int(score.argmax()))
    got = teacher.contrastive_decode(pos, neg, [0.5, 0.5])
    assert [tok(t, add_special_tokens=False).input_ids[:1] for t in got] == [[e] for e in expected]


def test_local_teacher_writes_through_the_cli(tiny_bundle, tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS[:3])
    out = tmp_path / "out.jsonl"
    result = run_teach("--data", str(data), "--teacher", str(tiny_bundle / "hf"), "--out", str(out),
                       "--counterfactual", "--max-tokens", "6", "--batch-size", "4", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["requested"] == 6 and summary["failed"] == 0
    assert summary["done"] + sum(summary["filtered"].values()) == 6
