"""Metric code checked against hand computations on fixtures."""

import math

import pytest

from rationalizer.metrics import (
    answers_match,
    bootstrap_ci,
    choice_probabilities,
    consistency,
    diversity,
    mean_metric,
    perturb_words,
    repetition,
)


def test_diversity_by_hand():
    text = "the cat sat the cat sat"
    # words: the cat sat the cat sat
    # bigrams (5): (the,cat) (cat,sat) (sat,the) (the,cat) (cat,sat) -> 3 unique: rep2 = 1 - 3/5 = 0.4
    # trigrams (4): (the,cat,sat) (cat,sat,the) (sat,the,cat) (the,cat,sat) -> 3 unique: rep3 = 0.25
    # 4-grams (3): all unique: rep4 = 0
    assert repetition(text, 2) == pytest.approx(0.4)
    assert repetition(text, 3) == pytest.approx(0.25)
    assert repetition(text, 4) == pytest.approx(0.0)
    assert diversity(text) == pytest.approx(0.6 * 0.75 * 1.0)
    assert diversity("Penguins are birds that swim.") == 1.0
    assert diversity("no") == 1.0  # no n-gram, nothing repeated
    assert diversity("go go go go go go") == pytest.approx((1 - 4 / 5) * (1 - 3 / 4) * (1 - 2 / 3))


class TableJudge:
    """Log-likelihoods from a table, to check the consistency formula by hand (all a judge backend gives)."""

    def __init__(self, table):
        self.table = table

    def loglikelihoods(self, pairs):
        return [self.table[p] for p in pairs]


def test_consistency_formula_by_hand():
    table = {
        ("Q R", " yes"): (-1.0, 1), ("Q R", " no"): (-6.0, 2),   # normalized -1 and -3
        ("Q", " yes"): (-2.0, 1), ("Q", " no"): (-2.0, 1),       # a coin flip without the rationale
    }
    delta, p_with, p_without = consistency(TableJudge(table), "Q R", "Q", [" yes", " no"], " yes")
    expected_with = math.exp(-1) / (math.exp(-1) + math.exp(-3))
    assert p_with == pytest.approx(expected_with)
    assert p_without == pytest.approx(0.5)
    assert delta == pytest.approx(expected_with - 0.5)


def test_consistency_through_a_real_tiny_model_matches_a_direct_forward_pass(tiny_bundle):
    import torch

    from rationalizer.evaluation.judges import load_judge

    judge = load_judge(str(tiny_bundle))
    model, tok = judge.backend.model, judge.backend.tokenizer
    context, choices = "Can a penguin fly? Penguins swim. So the answer is", [" yes", " no"]

    def mean_logprob(continuation):
        full = tok(context + continuation).input_ids
        ctx = tok(context).input_ids
        assert full[: len(ctx)] == ctx  # the boundary does not merge for these strings
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0]
        logprobs = torch.log_softmax(logits, -1)
        total = sum(float(logprobs[i - 1, full[i]]) for i in range(len(ctx), len(full)))
        return total / (len(full) - len(ctx))

    scores = [mean_logprob(c) for c in choices]
    by_hand = [math.exp(s) / sum(math.exp(x) for x in scores) for s in scores]
    assert choice_probabilities(judge.backend, context, choices) == pytest.approx(by_hand, rel=1e-5)
    judge.close()


@pytest.mark.parametrize(
    "pred, gold, choices, ok",
    [("no", "no", ["yes", "no"], True), ("No.", "no", ["yes", "no"], True), ("yes", "no", ["yes", "no"], False),
     ("18", "18", None, True), ("$18.00", "18", None, True), ("1,250", "1250", None, True), ("17", "18", None, False),
     (None, "18", None, False), ("Paris", "paris", None, True)],
)
def test_answers_match(pred, gold, choices, ok):
    assert answers_match(pred, gold, choices) is ok


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_ci(values, seed=3)
    assert (lo, hi) == bootstrap_ci(values, seed=3)
    assert lo < 0.3 < hi and 0.15 < lo and hi < 0.45


def test_missing_metric_says_why():
    m = mean_metric([None, None], "the data has no reference rationales", model="sim")
    assert m.value is None and m.text() == "n/a (the data has no reference rationales)"


def test_perturbation_replaces_half_the_words_repeatably():
    text = "one two three four five six seven eight"
    a = perturb_words(text, ["X"], 0.5, seed=1)
    assert a == perturb_words(text, ["X"], 0.5, seed=1)
    assert a.split().count("X") == 4 and len(a.split()) == 8
