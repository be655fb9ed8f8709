"""Input limits planned in tokens before generating, and questions and choices as people type them."""

from __future__ import annotations

import pytest

from rationalizer import InputError
from rationalizer.manifest import PromptTemplate
from rationalizer.prompting import build_prompt, clean_choices, clean_question


def test_a_prompt_that_cannot_fit_the_context_is_a_user_error_before_generating(default_model):
    question = "\U0001F600" * 4000  # within the character limit, about 12,000 tokens
    with pytest.raises(InputError, match=r"the prompt is \d+ tokens; this model's context holds \d+"):
        default_model.check_input(question)
    with pytest.raises(InputError, match="context holds"):
        default_model.rationalize(question)


def test_the_budget_is_cut_so_that_scoring_the_choices_still_fits(tiny_model):
    context = tiny_model.manifest.generation.context_length
    choices = ["yes", "no", "a much longer choice than the others are"]
    question = "Can a penguin fly? " * 48
    used = tiny_model.count_tokens(tiny_model.prompt(question, choices))
    assert context - 200 < used < context - 20, "the probe must leave little room"
    out = tiny_model.rationalize(question, choices, max_new_tokens=512, temperature=1.0, seed=3)
    reserve = max(tiny_model.count_tokens(f" So the answer is {c}.") for c in choices)
    assert out.tokens_generated <= context - used - reserve
    assert out.answer in choices  # scored after the rationale without overflowing the context
    probe = tiny_model.choice_logprobs(question, choices, rationale=out.rationale)
    assert set(probe) == set(choices)


def test_a_question_that_leaves_no_room_for_the_choices_is_refused(tiny_model):
    context = tiny_model.manifest.generation.context_length
    question = "penguin " * (context - 40)
    with pytest.raises(InputError, match=r"\(\+\d+ to score the choices\)"):
        tiny_model.check_input(question[: tiny_model.manifest.generation.max_question_chars], ["yes", "no " * 30])


def test_rationalize_many_checks_every_item_before_any_generation(tiny_model):
    with pytest.raises(InputError, match="item 1: the prompt is"):
        tiny_model.rationalize_many(["Is the sun a star?", "sun " * 900])


@pytest.mark.parametrize("text", ["\u200b\u200b", "\ufeff \u200d\n", "\u2060\t", "\x00\x01"])
def test_invisible_questions_count_as_empty(text):
    with pytest.raises(InputError, match="the question is empty"):
        clean_question(text, 100)


def test_invisible_choice_is_empty_and_line_breaks_in_choices_become_spaces():
    with pytest.raises(InputError, match="a choice is empty"):
        clean_choices(["yes", "\u200b"])
    assert clean_choices(["red\nwhite", "blue"]) == ["red white", "blue"]
    # emoji sequences joined by zero-width joiners keep their joiners
    assert clean_choices(["\U0001F468\u200d\U0001F469", "b"])[0] == "\U0001F468\u200d\U0001F469"


def test_choices_holding_the_separator_are_rendered_unambiguously():
    template = PromptTemplate()
    two = str(build_prompt(template, "q", ["red, white", "blue"]))
    three = str(build_prompt(template, "q", ["red", "white", "blue"]))
    assert two != three
    assert 'Choices: "red, white", blue' in two
    assert "Choices: red, white, blue" in three
    assert 'Choices: "\\"quoted\\"", plain' in str(build_prompt(template, "q", ['"quoted"', "plain"]))
