"""A code's reward and its eval metric are one function: rewards equal eval's records, and every scorer
(runtime, eval, reward) scores a choice as the same text after the marker."""

import math

import pytest

from conftest import write_jsonl
from rationalizer.dataset import Example, read_examples
from rationalizer.evaluation import EvalConfig, Judges, evaluate
from rationalizer.evaluation.judged import consistency_of, judged_answer, plausibility_of
from rationalizer.evaluation.judges import LocalVerifier, load_judge
from rationalizer.prompting import build_prompt, choice_continuation, format_target
from rationalizer.training.rewards import Consistency, Plausibility, Sample

ROWS = [
    {"id": "a", "question": "Can a penguin fly?", "choices": ["yes", "no"], "answer": "no", "source": "t"},
    {"id": "b", "question": "Where is milk kept cold?", "choices": ["fridge", "oven", "shelf"], "answer": "fridge",
     "source": "t"},
    {"id": "c", "question": "What is 9 plus 9?", "choices": None, "answer": "18", "source": "t"},
]
PENGUIN = Example("p", "Can a penguin fly?", "no", ["yes", "no"])


def test_choice_continuation_is_the_end_of_the_training_target():
    assert choice_continuation("no") == " no."
    assert choice_continuation(" fridge. ") == " fridge."  # as format_target writes it: one period
    for answer in ("no", "fridge.", "New York"):
        assert format_target("Because.", answer).endswith("So the answer is" + choice_continuation(answer))


def test_rewards_equal_the_eval_records_fields(default_model, tiny_bundle, tmp_path):
    # the real default model writes the rationales (the tiny random one writes only newlines); the tiny one judges
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    examples = read_examples(data)
    config = EvalConfig(data=str(data), simulator=str(tiny_bundle), verifier=str(tiny_bundle), max_new_tokens=24,
                        faithfulness=False)
    judges = Judges.load(config)
    try:
        run = evaluate(default_model, examples, config, judges)
        assert judges.simulator is not None and judges.verifier is not None
        consistency, plausibility = Consistency(judges.simulator), Plausibility(judges.simulator)
        for ex, rec in zip(examples, run.records):
            sample = Sample(ex, rec["rationale"], rec["answer"])
            if ex.choices:
                assert consistency.score([sample]) == [rec["consistency"]]  # exactly, not approximately
            else:
                assert "consistency" not in rec and consistency.score([sample]) == [0.0]
            assert rec["rationale"].strip(), "the model wrote nothing: nothing to compare"
            assert plausibility.score([sample]) == [rec["plausibility"]]
            # eval's verifier (loaded separately) and a verifier passed to the reward agree too
            assert Plausibility(judges.verifier).score([sample]) == [rec["plausibility"]]
    finally:
        judges.close()


def test_plausibility_judges_the_samples_own_answer_else_the_gold_one(tiny_bundle):
    judge = load_judge(str(tiny_bundle))
    try:
        verifier = LocalVerifier(judge)
        rationale = "Penguins are birds that cannot fly."
        own = plausibility_of(verifier, PENGUIN.question, "yes", rationale)
        gold = plausibility_of(verifier, PENGUIN.question, "no", rationale)
        assert own != gold  # the test can tell the two apart
        reward = Plausibility(judge)
        assert reward.score([Sample(PENGUIN, rationale, "yes"), Sample(PENGUIN, rationale, None)]) == [own, gold]
        assert judged_answer(PENGUIN, None) == "no" and judged_answer(PENGUIN, "yes") == "yes"
    finally:
        judge.close()


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory):
    """The tiny model with no control codes, so the runtime's prompt is the judge's prompt."""
    from helpers.tiny_model import write_hf_bundle

    return write_hf_bundle(tmp_path_factory.mktemp("plain") / "bundle")


@pytest.mark.parametrize("rationale", ["Penguins are birds that swim but cannot fly.", ""])
def test_runtime_eval_and_reward_score_choices_alike(plain_bundle, rationale):
    from rationalizer import Rationalizer

    model = Rationalizer.load(str(plain_bundle), backend="torch", device="cpu", threads=1)
    judge = load_judge(str(plain_bundle))
    try:
        # the premise: with no codes, the student and the judge read the same prompt
        same = build_prompt(judge.template, PENGUIN.question, PENGUIN.choices)
        assert str(model.prompt(PENGUIN.question, PENGUIN.choices)) == str(same)
        scores = model.choice_logprobs(PENGUIN.question, PENGUIN.choices, rationale)
        p_runtime = math.exp(scores["no"]) / sum(math.exp(v) for v in scores.values())
        judged = consistency_of(judge, PENGUIN, rationale)
        assert judged is not None
        _, p_with, p_without = judged
        assert p_with == pytest.approx(p_runtime, rel=1e-5)
        assert Consistency(judge).score([Sample(PENGUIN, rationale, "no")]) == [p_with - p_without]
        if not rationale:
            assert p_with == p_without
    finally:
        judge.close()
        model.close()
