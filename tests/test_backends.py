"""Backends on exported tiny bundles and the real default model: batching, votes, log-probs, threads, bench."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from rationalizer import Rationalizer
from rationalizer.backends.base import GenerationParams
from rationalizer.backends.sampling import pick_token, token_logprob
from rationalizer.errors import InputError
from rationalizer.export.config import ExportConfig
from rationalizer.export.pipeline import run_export

QUESTIONS = ["Can a penguin fly?", "Is the sun a star?", "Where is milk kept cold?", "Why?",
             "Is the sun a star? Choices: yes, no. Explain your reasoning then end with So the answer is."]


@pytest.fixture(scope="module")
def tiny_exports(tiny_bundle, tmp_path_factory):
    """The tiny model as GGUF f32 and ONNX fp32 bundles."""
    out = tmp_path_factory.mktemp("exports")
    run_export(ExportConfig(str(tiny_bundle), str(out), ["f32"], ["fp32"], threads=1))
    return out


@pytest.mark.parametrize("which", ["onnx", "torch"])
def test_batched_many_equals_one_at_a_time(which, tiny_exports, tiny_bundle):
    path = str(tiny_exports / "onnx-fp32") if which == "onnx" else str(tiny_bundle)
    with Rationalizer.load(path, backend=which, threads=1) as model:
        assert model._backend.max_batch_size > 1
        single = [model.rationalize(q, max_new_tokens=12) for q in QUESTIONS]
        batched = model.rationalize_many(QUESTIONS, max_new_tokens=12, batch_size=3)
        sampled = model.rationalize_many(QUESTIONS, max_new_tokens=12, temperature=1.0, seed=5)
        again = model.rationalize_many(QUESTIONS, max_new_tokens=12, temperature=1.0, seed=5)
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.tokens_generated for r in batched] == [r.tokens_generated for r in single]
    assert [r.question for r in batched] == [q.strip() for q in QUESTIONS]  # input order kept
    assert [r.text for r in sampled] == [r.text for r in again]


def test_many_rejects_a_bad_batch_size(tiny_model):
    with pytest.raises(InputError, match="batch_size"):
        tiny_model.rationalize_many(["a question?"], batch_size=0)


def test_votes_pick_the_majority_and_count_every_sample(tiny_model):
    result = tiny_model.rationalize("Is the sun a star?", choices=["yes", "no"], votes=5, seed=3, max_new_tokens=6)
    assert result.votes is not None and sum(result.votes.values()) <= 5
    if result.votes:
        assert result.answer is not None and result.votes[result.answer] == max(result.votes.values())
    assert result.mean_logprob is not None and result.mean_logprob <= 0
    with pytest.raises(InputError, match="votes"):
        tiny_model.rationalize("Is the sun a star?", votes=0)


def test_mean_logprob_is_the_same_in_every_runtime(tiny_exports):
    """Greedy tokens' log-probs from llama.cpp (f32 GGUF) and ONNX Runtime agree: both read the same model."""
    values = []
    for folder in ("gguf-f32", "onnx-fp32"):
        with Rationalizer.load(str(tiny_exports / folder), threads=1) as model:
            result = model.rationalize("Can a penguin fly?", votes=2, temperature=0.01, seed=0, max_new_tokens=8)
            values.append(result.mean_logprob)
    assert values[0] == pytest.approx(values[1], abs=1e-3)


def test_sampling_helpers():
    logits = np.array([0.0, 2.0, 1.0], dtype=np.float32)
    assert pick_token(logits, GenerationParams(temperature=0.0), None) == 1
    assert token_logprob(logits, 1) == pytest.approx(2.0 - np.log(np.exp(logits).sum()))
    rng = np.random.default_rng(0)
    tight = GenerationParams(temperature=1.0, top_p=0.5)
    assert {pick_token(logits, tight, rng) for _ in range(50)} == {1}  # nucleus of 0.5 holds only the top token


@pytest.mark.e2e
def test_one_model_from_eight_threads_gives_the_sequential_greedy_results(default_model):
    questions = [f"Is {n} an even number?" for n in range(8)]
    expected = {q: default_model.rationalize(q, max_new_tokens=12).text for q in questions}
    failures, mismatches = [], []

    def worker(question: str) -> None:
        try:
            for _ in range(20):
                if default_model.rationalize(question, max_new_tokens=12).text != expected[question]:
                    mismatches.append(question)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and not mismatches


def test_bench_measures_each_backend_and_peer_against_the_bound(tiny_exports, tmp_path):
    from click.testing import CliRunner

    from rationalizer.cli.main import cli

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", str(tiny_exports), "--tokens", "4", "--reps", "1", "--threads", "1",
                                      "--device", "cpu", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    runners = {(r["bundle"].rsplit("/", 1)[-1], r["runner"]) for r in data["rows"]}
    assert {("gguf-f32", "sdk (llamacpp)"), ("gguf-f32", "llama-cpp-python"), ("onnx-fp32", "sdk (onnx)"),
            ("onnx-fp32", "optimum"), ("onnx-fp32", "transformers")} <= runners
    for row in data["rows"]:
        assert row["error"] is None, row
        figures = row["figures"]
        assert figures["load_s"] > 0 and figures["peak_rss_mb"] > 0 and figures["latency_s"] > 0
        assert row["bound_tok_s"] > 0
    assert data["bandwidth_gb_s"] > 0
    assert "| sdk (onnx) |" in result.output


PAIRS = [("Q: Is the sun a star?\nA: So the answer is", " yes."), ("Q: Is the sun a star?\nA: So the answer is", " no."),
         ("Q: Is the sun a star?\nA: So the answer is", " a small blue planet."), ("Where is milk kept?", " fridge")]


def full_forward_loglikelihoods(bundle: str, pairs: list[tuple[str, str]]) -> list[tuple[float, int]]:
    """Each whole text in one transformers forward pass: the reference every scoring path must match."""
    import torch

    from rationalizer.backends.hf import load_hf
    from rationalizer.backends.scoring import split_continuation
    from rationalizer.bundle import Bundle
    from rationalizer.prompt_text import transformers_encoder

    model, tokenizer = load_hf(Bundle.load(bundle))
    encode = transformers_encoder(tokenizer).encode
    out = []
    with torch.inference_mode():
        for context, continuation in pairs:
            full = encode(context + continuation)
            start = split_continuation(full, encode(context))
            logprobs = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), dim=-1)
            out.append((sum(float(logprobs[i - 1, full[i]]) for i in range(start, len(full))), len(full) - start))
    return out


@pytest.mark.parametrize("folder", ["gguf-f32", "onnx-fp32", "torch"])
def test_every_runtime_scores_continuations_as_a_full_forward_pass_does(folder, tiny_exports, tiny_bundle):
    """The backends score token by token on their KV cache; the reference runs each whole text at once."""
    reference = full_forward_loglikelihoods(str(tiny_bundle), PAIRS)
    path = str(tiny_bundle) if folder == "torch" else str(tiny_exports / folder)
    with Rationalizer.load(path, threads=1) as model:
        got = model._backend.loglikelihoods(PAIRS)
        before = model.rationalize("Can a penguin fly?", max_new_tokens=6).text
        again = model._backend.loglikelihoods(PAIRS[::-1])[::-1]  # other order, after a generation: no state leaks
        assert [ll for ll, _ in again] == pytest.approx([ll for ll, _ in got], abs=1e-4)
        assert model.rationalize("Can a penguin fly?", max_new_tokens=6).text == before
    assert [n for _, n in got] == [n for _, n in reference] and min(n for _, n in got) >= 1
    assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in reference], abs=2e-3)


@pytest.mark.parametrize("folder", ["gguf-f32", "torch"])
def test_judges_are_backends_that_score_as_a_full_forward_pass_does(folder, tiny_exports, tiny_bundle):
    """A judge opens its bundle with the backend a model would get; llama.cpp's judge keeps every
    position's logits and scores each text in one pass, reusing the cache of a shared context."""
    from rationalizer.backends.llamacpp import JUDGE_CONTEXT
    from rationalizer.evaluation.judges import load_judge

    reference = full_forward_loglikelihoods(str(tiny_bundle), PAIRS)
    judge = load_judge(str(tiny_bundle) if folder == "torch" else str(tiny_exports / folder), threads=1)
    try:
        assert judge.backend.name == ("torch" if folder == "torch" else "llamacpp")
        got = judge.backend.loglikelihoods(PAIRS)
        again = judge.backend.loglikelihoods(PAIRS[::-1])[::-1]  # other order: the reused cache changes nothing
        assert [ll for ll, _ in again] == pytest.approx([ll for ll, _ in got], abs=1e-4)
        assert [n for _, n in got] == [n for _, n in reference]
        assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in reference], abs=2e-3)
        if folder != "torch":
            with pytest.raises(InputError, match="judge's context"):
                judge.backend.loglikelihoods([("word " * JUDGE_CONTEXT, " yes")])
    finally:
        judge.close()


def test_a_choice_question_always_gets_one_of_its_choices(tiny_model):
    """The tiny random model never writes the marker, so the answer is the choice it scores likeliest."""
    choices = ["a blue whale", "the moon", "seven"]
    result = tiny_model.rationalize("Which is the biggest?", choices=choices, max_new_tokens=8)
    assert result.answer_scored and result.answer in choices
    scores = tiny_model.choice_logprobs("Which is the biggest?", choices, result.rationale)
    assert result.answer == max(scores, key=scores.get)
    assert all(v < 0 for v in scores.values())
    forced = tiny_model.answer_with_rationale("Which is the biggest?", "Whales are big.", choices)
    assert forced in choices
    free = tiny_model.rationalize("Which is the biggest?", max_new_tokens=8)
    assert free.answer is None and not free.answer_scored  # no choices: nothing to score
    with pytest.raises(InputError, match="needs choices"):
        tiny_model.choice_logprobs("Which is the biggest?", None)


def test_choice_scoring_can_be_switched_off_in_the_manifest(tiny_model, monkeypatch):
    monkeypatch.setattr(tiny_model.manifest.parser, "score_choices", False)
    result = tiny_model.rationalize("Which is the biggest?", choices=["a blue whale", "the moon"], max_new_tokens=8)
    assert result.answer is None and not result.answer_scored
