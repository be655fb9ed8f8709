"""The SDK end to end through the real llama.cpp on the real embedded default model."""

import threading

import pytest

from rationalizer import InputError, Rationale

pytestmark = pytest.mark.e2e


def test_yes_no_question_gets_yes_or_no_and_a_rationale(default_model):
    out = default_model.rationalize("Can a penguin fly?", choices=["yes", "no"])
    assert out.answer in ("yes", "no")
    assert out.rationale.strip()
    assert out.tokens_generated > 0 and out.prompt_tokens > 10
    assert out.latency_s > 0 and out.time_to_first_token_s is not None
    assert out.finish_reason in ("stop", "length") and out.backend == "llamacpp"


def test_stream_yields_text_then_the_same_result(default_model):
    items = list(default_model.stream("Is the sun a star?", choices=["yes", "no"], max_new_tokens=40))
    *pieces, final = items
    assert isinstance(final, Rationale) and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == final.text
    again = default_model.rationalize("Is the sun a star?", choices=["yes", "no"], max_new_tokens=40)
    assert again.text == final.text


def test_token_limit_is_respected(default_model):
    out = default_model.rationalize("Tell me a long story about dragons.", max_new_tokens=5)
    assert out.tokens_generated == 5 and out.finish_reason == "length"


def test_rationalize_many_checks_every_item_first(default_model):
    outs = default_model.rationalize_many(
        ["Is ice cold?", {"question": "Where is milk kept?", "choices": ["fridge", "oven"]}],
        choices=["yes", "no"], max_new_tokens=24,
    )
    assert [o.choices for o in outs] == [["yes", "no"], ["fridge", "oven"]]
    with pytest.raises(InputError, match="item 1: the question is empty"):
        default_model.rationalize_many(["fine", "  "], max_new_tokens=8)


def test_threads_give_the_same_greedy_text_as_sequential_calls(default_model):
    questions = ["Is fire hot?", "Do fish swim?", "Can rocks talk?", "Is snow white?"]
    expected = [default_model.rationalize(q, max_new_tokens=20).text for q in questions]
    got: dict[int, str] = {}

    def work(i: int) -> None:
        got[i] = default_model.rationalize(questions[i], max_new_tokens=20).text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(questions))] == expected


def test_too_long_prompt_for_the_context_is_refused(default_model):
    with pytest.raises(InputError, match="question has"):
        default_model.rationalize("word " * 2000)
