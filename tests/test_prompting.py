import pytest

from rationalizer import InputError
from rationalizer.manifest import ControlScheme, PromptTemplate, RewardLevels
from rationalizer.prompting import (
    build_prompt,
    build_user_text,
    clean_choices,
    clean_question,
    format_target,
    render_codes,
    resolve_quality,
)

SCHEME = ControlScheme(
    rewards=[RewardLevels("plausibility", 5), RewardLevels("diversity", 5), RewardLevels("consistency", 3)],
    default={"consistency": 2},
    presets={"varied": {"diversity": 5, "consistency": 1}},
)


def test_best_uses_defaults_and_top_levels():
    assert resolve_quality(SCHEME, "best") == {"plausibility": 5, "diversity": 5, "consistency": 2}
    assert resolve_quality(SCHEME, None) == resolve_quality(SCHEME, "best")


def test_quality_as_text_dict_and_preset():
    assert resolve_quality(SCHEME, "diversity=1, plausibility=3") == {"plausibility": 3, "diversity": 1, "consistency": 2}
    assert resolve_quality(SCHEME, {"consistency": 3})["consistency"] == 3
    assert resolve_quality(SCHEME, "varied") == {"plausibility": 5, "diversity": 5, "consistency": 1}


@pytest.mark.parametrize(
    "quality, message",
    [
        ("fluency=3", "unknown quality code 'fluency'"),
        ("diversity=9", "outside 1..5"),
        ("diversity=x", "cannot read quality"),
        ("nice", "unknown quality preset 'nice'"),
        ({"diversity": 2.5}, "outside 1..5"),
        (["diversity"], "must be a preset name"),
    ],
)
def test_bad_quality_is_a_clear_input_error(quality, message):
    with pytest.raises(InputError, match=message):
        resolve_quality(SCHEME, quality)


def test_model_without_codes_only_accepts_best():
    assert resolve_quality(ControlScheme(), "best") == {}
    with pytest.raises(InputError, match="this model has no quality codes"):
        resolve_quality(ControlScheme(), "diversity=3")


def test_codes_render_as_plain_text_in_scheme_order():
    codes = render_codes(SCHEME, {"consistency": 1, "plausibility": 5, "diversity": 2})
    assert codes == "<plausibility:5><diversity:2><consistency:1> "
    assert render_codes(ControlScheme(), {}) == ""


def test_prompt_places_codes_question_and_choices():
    t = PromptTemplate(system="SYS", choice_item="({label}) {text}", choice_separator=" ")
    prompt = build_prompt(t, "Where is milk kept?", ["fridge", "oven"], "<diversity:5> ")
    assert prompt == (
        "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n"
        "<diversity:5> Where is milk kept?\nChoices: (A) fridge (B) oven<|im_end|>\n<|im_start|>assistant\n"
    )
    assert build_user_text(t, "Is it?", None) == "Is it?"


def test_target_format():
    assert format_target(" Penguins swim. ", "no.") == "Penguins swim. So the answer is no."
    assert format_target("", "yes") == "So the answer is yes."


@pytest.mark.parametrize(
    "question, message",
    [("", "empty"), ("   \n\t ", "empty"), ("\x00\x01", "empty"), ("x" * 4001, "4001 characters")],
)
def test_bad_questions(question, message):
    with pytest.raises(InputError, match=message):
        clean_question(question, 4000)


def test_control_characters_are_removed_newlines_kept():
    assert clean_question("  Is\x07 it\nso?\x1b ", 100) == "Is it\nso?"


@pytest.mark.parametrize(
    "choices, message",
    [(["yes", ""], "empty"), (["Yes", "yes "], "given twice"), (["only"], "at least two"),
     ([str(i) for i in range(27)], "at most 26"), ("yes|no", "not one string"), (["a", "b" * 501], "longer than")],
)
def test_bad_choices(choices, message):
    with pytest.raises(InputError, match=message):
        clean_choices(choices)


def test_codes_at_the_start_of_the_response_are_template_text_after_the_chat_wrapper():
    template = PromptTemplate()
    scheme = ControlScheme(rewards=[RewardLevels("length", 5)], suffix="\n", placement="response")
    codes = render_codes(scheme, resolve_quality(scheme, "length=2"))
    prompt = build_prompt(template, "Is <length:5> a code?", ["yes", "no"], codes, scheme.placement)
    assert prompt.endswith("<|im_start|>assistant\n<length:2>\n")
    assert "Is <length:5> a code?\nChoices: yes, no<|im_end|>" in prompt  # the user turn holds no codes
    # the codes are the template's text; the same characters in the question stay the user's
    last_text, last_trusted = prompt.parts[-1]
    assert last_text.endswith("assistant\n<length:2>\n") and last_trusted
    assert all(not trusted for text, trusted in prompt.parts if "<length:5>" in text)
    assert build_prompt(template, "q", None, codes) == build_prompt(template, "q", None, codes, "user")
    assert build_prompt(template, "q", None, codes, "user").count("<length:2>") == 1


def test_a_level_can_be_written_as_words_and_the_manifest_checks_them():
    from rationalizer import BundleError
    from rationalizer.manifest import Manifest, WeightFile, validate

    words = ["Explain in detail.", "Explain briefly."]
    scheme = ControlScheme(rewards=[RewardLevels("length", 2, level_text=words), RewardLevels("diversity", 2)],
                           default={"length": 2, "diversity": 2})
    assert render_codes(scheme, {"length": 1, "diversity": 2}) == "Explain in detail.<diversity:2> "
    assert render_codes(scheme, resolve_quality(scheme, "best")) == "Explain briefly.<diversity:2> "
    manifest = Manifest(name="m", base_model="b", files={"gguf": [WeightFile("m.gguf", "0" * 64, 1)]}, control=scheme)
    validate(manifest)
    manifest.control.rewards[0].level_text = ["Only one."]
    with pytest.raises(BundleError, match="level_text needs one non-empty text per level"):
        validate(manifest)
