import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rationalizer.manifest import ParserSettings
from rationalizer.prompting import parse_answer

ALL = ParserSettings(strategies=["marker", "leading", "mention"])
YN = ["yes", "no"]
MC = ["fridge", "oven", "book shelf", "car"]


@pytest.mark.parametrize(
    "text, choices, answer, rationale",
    [
        ("Penguins cannot fly. So the answer is no.", YN, "no", "Penguins cannot fly."),
        ("Penguins cannot fly. so THE answer IS:  No!", YN, "no", "Penguins cannot fly."),
        ("Milk spoils. So the answer is (A).", MC, "fridge", "Milk spoils."),
        ("Milk spoils. So the answer is b", MC, "oven", "Milk spoils."),
        ("Milk spoils. So the answer is C. book shelf", MC, "book shelf", "Milk spoils."),
        ("Milk spoils. So the answer is **Book Shelf**.", MC, "book shelf", "Milk spoils."),
        ("It is cold. So the answer is the fridge.", MC, "fridge", "It is cold."),
        ("A. So the answer is yes. Wait, so the answer is no.", YN, "no", "A. So the answer is yes. Wait,"),
        ("He had 3 + 15 = 18 apples. So the answer is 18.", None, "18", "He had 3 + 15 = 18 apples."),
        ("Total 3.5 km. So the answer is 3.5.", None, "3.5", "Total 3.5 km."),
        ("The sky scatters blue light. So the answer is Yes, it is.", None, "yes", "The sky scatters blue light."),
        ("The answer is no. Penguins are birds that swim.", YN, "no", "Penguins are birds that swim."),
    ],
)
def test_marker_answers(text, choices, answer, rationale):
    parsed = parse_answer(text, choices)
    assert (parsed.answer, parsed.rationale, parsed.strategy) == (answer, rationale, "marker")


def test_answer_outside_the_choices_is_unparsed_not_invented():
    parsed = parse_answer("Hmm. So the answer is maybe.", YN)
    assert parsed.answer is None and parsed.rationale == "Hmm. So the answer is maybe." and parsed.strategy is None


def test_marker_only_settings_ignore_a_leading_answer():
    assert parse_answer("No, penguins swim.", YN).answer is None
    assert parse_answer("No, penguins swim.", YN, ALL) == parse_answer("No, penguins swim.", YN, ALL)
    parsed = parse_answer("No, penguins swim.", YN, ALL)
    assert (parsed.answer, parsed.rationale, parsed.strategy) == ("no", "penguins swim.", "leading")


def test_mention_fallback_needs_exactly_one_choice():
    assert parse_answer("You keep it in the fridge.", MC, ALL).answer == "fridge"
    assert parse_answer("Not the oven but the fridge.", MC, ALL).answer is None


@settings(max_examples=400, deadline=None)
@given(st.text(), st.one_of(st.none(), st.lists(st.text(min_size=1), min_size=2, max_size=6, unique=True)))
def test_arbitrary_text_never_raises(text, choices):
    parsed = parse_answer(text, choices, ALL)
    assert parsed.answer is None or choices is None or parsed.answer in choices
    assert isinstance(parsed.rationale, str)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200), st.sampled_from(MC))
def test_marker_with_choice_text_round_trips(rationale, choice):
    text = f"{rationale}\nSo the answer is {choice}."
    assert parse_answer(text, MC).answer == choice
