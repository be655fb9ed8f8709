"""`rationalize teach --candidates K --prefer-student BUNDLE`: K sampled rationales per question, the one the
student gains most from kept (recomputed here with eval's consistency code), best/worst pairs beside the output,
resume without duplicates, the served teacher on a real HTTP server, and the settings that are refused."""

import json
import re

import pytest
from click.testing import CliRunner

from conftest import write_jsonl
from helpers.fake_openai import FaultyTeacherServer
from rationalizer.cli.main import cli
from rationalizer.dataset import Example
from rationalizer.errors import ConfigError
from rationalizer.evaluation.judged import consistency_of
from rationalizer.evaluation.judges import load_judge
from rationalizer.errors import UserError
from rationalizer.training.dpo_pairs import read_pairs
from rationalizer.training.teachers import TeachConfig, load_teacher
from rationalizer.training.teachers.prefer import Candidate, StudentPreference, choose
from rationalizer.training.teachers.runner import teach

QUESTIONS = [
    {"id": "q0", "question": "Is a whale a mammal?", "choices": ["yes", "no"], "answer": "yes"},
    {"id": "q1", "question": "Can a penguin fly?", "choices": ["yes", "no"], "answer": "no"},
    {"id": "q2", "question": "Where is milk kept cold?", "choices": ["fridge", "oven", "shelf"], "answer": "fridge"},
]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Recording:
    """A real teacher whose requests and outputs are kept, so the test can see every candidate."""

    def __init__(self, teacher):
        self.teacher, self.seen = teacher, []
        self.name, self.concurrency, self.batch_size = teacher.name, teacher.concurrency, teacher.batch_size

    def write(self, requests):
        outputs = self.teacher.write(requests)
        self.seen += list(zip(requests, outputs))
        return outputs


@pytest.fixture(scope="module")
def student(tiny_bundle):
    preference = StudentPreference.load(str(tiny_bundle))
    yield preference
    preference.close()


@pytest.fixture(scope="module")
def judge(tiny_bundle):
    """The student opened again, as `rationalize eval` opens a simulator, to recompute the gains."""
    loaded = load_judge(str(tiny_bundle))
    yield loaded
    loaded.close()


def gain(judge, question, rationale):
    ex = Example(question["id"], question["question"], question["answer"], question["choices"])
    judged = consistency_of(judge, ex, rationale) if rationale.strip() else None
    return None if judged is None else judged[0]


def check_selection(recorded, written, pairs, questions, judge, k, max_words=150):
    """Each factual row is the best of its K candidates by the recomputed gain; each pair is best vs worst."""
    by_id = {q["id"]: q for q in questions}
    factual = [r for r in written if r["kind"] == "factual"]
    assert {r["id"] for r in factual} == set(by_id)
    pair_of = {p["id"]: p for p in pairs}
    for row in factual:
        q = by_id[row["id"]]
        candidates = [o for r, o in recorded if r.example.id == row["id"] and r.kind == "factual"]
        assert len(candidates) == k and row["candidates"] == k
        scored = {o.rationale: gain(judge, q, o.rationale) for o in candidates}
        wrong = {o.rationale: o.stated_answer for o in candidates
                 if o.stated_answer is not None and o.stated_answer != q["answer"]}
        eligible = [g for t, g in scored.items() if t.strip() and len(t.split()) <= max_words and g is not None]
        if any(t not in wrong for t in scored):  # a stated wrong answer is kept only when no other is left
            eligible = [g for t, g in scored.items() if t not in wrong and g is not None and t.strip()]
        assert row["rationale"] not in wrong or len(wrong) == len(scored)
        assert row["student_gain"] == pytest.approx(max(eligible), abs=1e-5)
        assert scored[row["rationale"]] == pytest.approx(row["student_gain"], abs=1e-5)
        worst = min(g for g in scored.values() if g is not None)
        if row["student_gain"] - worst > 1e-6:
            p = pair_of[row["id"]]
            assert list(p)[:9] == ["id", "question", "choices", "answer", "chosen", "rejected", "chosen_score",
                                   "rejected_score", "source"]
            assert p.get("rejected_answer") == wrong.get(p["rejected"])
            assert (p["question"], p["choices"], p["answer"]) == (q["question"], q["choices"], q["answer"])
            assert p["chosen"] == row["rationale"] and p["chosen_score"] == pytest.approx(row["student_gain"])
            assert p["rejected_score"] == pytest.approx(worst, abs=1e-5)
            assert scored[p["rejected"]] == pytest.approx(worst, abs=1e-5) and p["rejected"] != p["chosen"]
        else:
            assert row["id"] not in pair_of


def test_local_teacher_keeps_the_candidate_the_student_prefers_and_resumes(tiny_bundle, student, judge, tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS)
    out = tmp_path / "out.jsonl"
    config = TeachConfig(data=str(data), out=str(out), teacher=str(tiny_bundle / "hf"), candidates=4,
                         prefer_student=str(tiny_bundle), temperature=1.5, top_p=1.0, max_new_tokens=10,
                         batch_size=8, counterfactual=True)
    teacher = Recording(load_teacher(config))
    summary = teach(config, teacher, student=student)
    pairs_path = tmp_path / "out.pairs.jsonl"
    assert summary.pairs_out == str(pairs_path) and summary.candidates == 12
    assert summary.requested == 6 and summary.failed == 0 and summary.done + sum(summary.filtered.values()) == 6
    factual = [(r.example.id, r.candidate) for r, _ in teacher.seen if r.kind == "factual"]
    assert sorted(factual) == [(q["id"], i) for q in QUESTIONS for i in range(4)]
    # counterfactual rows are asked once and not scored: the gain is against the gold answer
    assert sorted((r.example.id, r.candidate) for r, _ in teacher.seen if r.kind == "counterfactual") == \
        [(q["id"], 0) for q in QUESTIONS]
    written = rows(out) + rows(tmp_path / "out.rejected.jsonl")
    assert all("student_gain" not in r for r in written if r["kind"] == "counterfactual")
    pairs = rows(pairs_path)
    assert summary.pairs == len(pairs) >= 1  # temperature 1.5 on a random model: candidates differ
    assert [p.chosen for p in read_pairs(pairs_path)] == [p["chosen"] for p in pairs]  # the DPO trainer's reader
    check_selection(teacher.seen, written, pairs, QUESTIONS, judge, 4)

    again = teach(config, Recording(load_teacher(config)), student=student)
    assert (again.requested, again.already_done, again.pairs) == (0, 6, 0) and rows(pairs_path) == pairs

    # killed after a pair was appended but before its row: the row is asked again, the pair is not repeated
    lost = next(r for r in rows(out) if r["kind"] == "factual" and r["id"] in {p["id"] for p in pairs})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows(out) if r != lost))
    with pairs_path.open("a") as handle:
        handle.write('{"id": "torn')
    third = teach(config, Recording(load_teacher(config)), student=student)
    assert (third.requested, third.done + sum(third.filtered.values()), third.pairs) == (1, 1, 0)
    assert rows(pairs_path) == pairs
    keys = [(r["id"], r["kind"]) for r in rows(out) + rows(tmp_path / "out.rejected.jsonl")]
    assert sorted(keys) == sorted({(q["id"], k) for q in QUESTIONS for k in ("factual", "counterfactual")})


class SeededServer(FaultyTeacherServer):
    """A chat server whose rationale depends on the request's seed, as a sampling server's does."""

    TEXTS = ["Whales breathe air and nurse their young with milk.", "Answer explanation reply true relevant.",
             "Penguins are birds that swim.", "Milk spoils when warm, so it is kept in a fridge."]

    def __init__(self):
        super().__init__()
        self.seeds = []

    def text(self, question, seed):
        """One rationale per (question, seed): no two questions share one, so none is a duplicate."""
        return f"{self.TEXTS[seed % len(self.TEXTS)]} ({question})"

    def _handle(self, handler, body, number):
        user = body["messages"][-1]["content"]
        answer = re.search(r"Answer: (.*)", user).group(1)
        question = re.search(r"Question: (.*)", user).group(1)
        self.seeds.append((question, body["seed"], body["temperature"]))
        if body["seed"] == 3:  # this sample argues for another choice than the one asked for
            answer = next(c for c in re.search(r"Choices: (.*)", user).group(1).split(", ") if c != answer) \
                if "Choices: " in user else answer
        text = f"{self.text(question, body['seed'])} So the answer is {answer}."
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)


def test_served_teacher_selects_one_request_per_candidate(tiny_bundle, student, judge, tmp_path):
    free_form = {"id": "f0", "question": "How many legs has a cat?", "choices": None, "answer": "4"}
    data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS + [free_form])
    out, pairs_path = tmp_path / "o.jsonl", tmp_path / "sub" / "p.jsonl"
    server = SeededServer()
    try:
        config = TeachConfig(data=str(data), out=str(out), teacher=server.url, candidates=3, temperature=0.8,
                             seed=1, in_flight=2, prefer_student=str(tiny_bundle), pairs_out=str(pairs_path))
        teacher = Recording(load_teacher(config))
        summary = teach(config, teacher, student=student)
        assert summary.pairs_out == str(pairs_path) and summary.candidates == 12
        assert sorted(server.seeds) == sorted((q["question"], s, 0.8) for q in QUESTIONS + [free_form]
                                              for s in (1, 2, 3))  # one request per candidate, its own seed
        written, pairs = rows(out), rows(pairs_path)
        assert summary.pairs == len(pairs) >= 1
        check_selection(teacher.seen, [r for r in written if r["id"] != "f0"], pairs, QUESTIONS, judge, 3)
        free = next(r for r in written if r["id"] == "f0")  # nothing to choose by: first candidate, no pair
        assert free["student_gain"] is None and free["rationale"] == server.text(free_form["question"], 1)
        assert "f0" not in {p["id"] for p in pairs}
        args = ["teach", "--data", str(data), "--teacher", server.url, "--out", str(out), "--candidates", "3",
                "--prefer-student", str(tiny_bundle), "--pairs-out", str(pairs_path), "--temperature", "0.8"]
        again = CliRunner().invoke(cli, args)  # the CLI says where the pairs went
        assert again.exit_code == 0, again.output
        assert f"0 best/worst pairs -> {pairs_path}" in again.output and rows(pairs_path) == pairs
    finally:
        server.close()


def test_refused_settings(tiny_bundle, tmp_path):
    base = {"data": "d.jsonl", "out": "o.jsonl", "teacher": "t"}
    with pytest.raises(ConfigError, match="needs prefer_student"):
        TeachConfig(**base, candidates=3, temperature=1.0)
    with pytest.raises(ConfigError, match="needs sampling"):
        TeachConfig(**base, candidates=3, prefer_student=str(tiny_bundle))
    with pytest.raises(ConfigError, match="pairs_out"):
        TeachConfig(**base, pairs_out="p.jsonl")
    with pytest.raises(ConfigError, match="candidates"):
        TeachConfig(**base, candidates=0)
    assert TeachConfig(**base).pairs_path is None and TeachConfig(**base, prefer_student="s").pairs_path == "o.pairs.jsonl"
    data = write_jsonl(tmp_path / "in.jsonl", QUESTIONS)
    result = CliRunner().invoke(cli, ["teach", "--data", str(data), "--teacher", str(tiny_bundle / "hf"),
                                      "--out", str(tmp_path / "o.jsonl"), "--candidates", "3", "--temperature", "1"])
    assert result.exit_code != 0 and "--prefer-student" in result.output
    assert not (tmp_path / "o.jsonl").exists()
    config = TeachConfig(data=str(data), out=str(tmp_path / "o.jsonl"), teacher="t", prefer_student="s",
                         pairs_out=str(tmp_path / "o.jsonl"))
    with pytest.raises(UserError, match="pairs-out"):
        teach(config, None)


def test_a_stated_wrong_answer_is_never_kept_over_a_right_one_and_pairs_need_a_margin():
    ex = Example("a", "Is it?", "yes", ["yes", "no"])

    def cand(text, gain, correct, verdict=None):
        row = Example("a", ex.question, "yes", ex.choices, text, teacher_answer="yes" if correct else "no",
                      teacher_correct=correct)
        return Candidate(row, verdict, gain)

    picked = choose([cand("argues no", 0.9, False), cand("argues yes", 0.2, True), cand("weak", 0.1, True),
                     cand("far too long", 0.0, True, "too_long")], "src")
    assert picked.best.row.rationale == "argues yes"
    assert (picked.pair.chosen, picked.pair.rejected, picked.pair.chosen_score, picked.pair.rejected_score) == \
        ("argues yes", "far too long", 0.2, 0.0)  # a refused candidate can still be the rejected one
    only_wrong = choose([cand("argues no", 0.5, False), cand("argues no too", 0.1, False)], "src")
    assert only_wrong.best.row.rationale == "argues no" and only_wrong.pair.chosen_answer == "no"
    tied = choose([cand("one", 0.3, True), cand("two", 0.3, True)], "src")
    assert tied.best is not None and tied.pair is None  # no margin, no pair
    assert choose([cand("x", 0.3, True, "duplicate")], "src").best is None
