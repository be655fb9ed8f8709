"""Real broken files, pickles and hostile input: one-line errors, exit status 2, never a traceback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rationalizer import Rationalizer
from rationalizer.cli.main import cli
from rationalizer.errors import BundleError, ModelFileError
from rationalizer.export.config import ExportConfig
from rationalizer.export.pipeline import run_export
from rationalizer.manifest import MANIFEST_NAME


@pytest.fixture(scope="module")
def exports(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("hardening")
    run_export(ExportConfig(str(tiny_bundle), str(out), ["q8_0"], ["fp32"], threads=1))
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rehash(folder: Path) -> None:
    """Make the manifest describe the files as they are now, so loading reaches the broken file itself."""
    path = folder / MANIFEST_NAME
    data = json.loads(path.read_text())
    for files in data["files"].values():
        for entry in files:
            blob = (folder / entry["path"]).read_bytes()
            entry["sha256"], entry["size"] = hashlib.sha256(blob).hexdigest(), len(blob)
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _cli(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def _one_line_exit_2(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize("folder, weight, backend", [
    ("gguf-q8_0", "model-q8_0.gguf", "llamacpp"),
    ("onnx-fp32", "model.onnx", "onnx"),
])
def test_truncated_export_is_refused_by_checksum_and_by_its_runtime(exports, tmp_path, folder, weight, backend):
    bundle = _copy(exports / folder, tmp_path / folder)
    _truncate(bundle / weight)
    _one_line_exit_2(_cli("Is it?", "--model", str(bundle)), weight, "differs from the manifest")
    _rehash(bundle)  # a manifest written for the broken file: the runtime itself must refuse it
    with pytest.raises(ModelFileError, match=f"{weight}: .*cannot load"):
        Rationalizer.load(str(bundle), backend=backend)
    _one_line_exit_2(_cli("Is it?", "--model", str(bundle)), weight, "cannot load")


def test_truncated_safetensors_is_a_one_line_error(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path / "b")
    _truncate(bundle / "hf" / "model.safetensors")
    _rehash(bundle)
    _one_line_exit_2(_cli("Is it?", "--model", str(bundle), "--backend", "torch"), "cannot load this checkpoint")


def test_pickle_weights_are_refused_before_loading(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path / "b")
    (bundle / "hf" / "model.safetensors").rename(bundle / "hf" / "pytorch_model.bin")
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    data["files"]["hf"][0]["path"] = "hf/pytorch_model.bin"
    (bundle / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="pickle checkpoints are refused"):
        Rationalizer.load(str(bundle), backend="torch")


@pytest.mark.parametrize("change, fragment", [
    (lambda m: m.update(format_version=99), "format version 99 is not supported"),
    (lambda m: m["files"]["hf"][0].update(path="../../etc/passwd"), "leaves the bundle folder"),
    (lambda m: m["files"]["hf"][1].update(path="hf/missing.json"), "weight file is missing"),
    (lambda m: m["files"]["hf"][0].update(sha256="0" * 64), "differs from the manifest"),
])
def test_bad_manifests_name_the_problem(tiny_bundle, tmp_path, change, fragment):
    bundle = _copy(tiny_bundle, tmp_path / "b")
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    change(data)
    (bundle / MANIFEST_NAME).write_text(json.dumps(data))
    _one_line_exit_2(_cli("Is it?", "--model", str(bundle), "--backend", "torch"), fragment)


QUESTION_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=QUESTION_TEXT, choices=st.one_of(st.none(), st.lists(st.text(max_size=12), max_size=4)),
       max_tokens=st.integers(-5, 5000), temperature=st.one_of(st.floats(-1, 10), st.just(float("nan")), st.just(float("inf"))))
def test_cli_fuzz_answers_or_refuses_in_one_line(exports, question, choices, max_tokens, temperature):
    args = ["ask", "--model", str(exports / "gguf-q8_0"), "--max-tokens", str(max_tokens),
            "--temperature", str(temperature), "--threads", "1"]
    if choices is not None:
        args += ["--choices", "|".join(choices)]
    result = _cli(*args, "--", question)  # after --, a question like "--help" is a question
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.stderr.count("\n") == 1 and result.stdout == ""
    else:
        assert result.stdout.startswith("Answer: ")


def test_huge_question_and_binary_stdin_are_refused(exports):
    model = str(exports / "gguf-q8_0")
    _one_line_exit_2(_cli("ask", "x" * 100_000, "--model", model), "100000 characters", "at most 4000")
    _one_line_exit_2(_cli("ask", "-", "--model", model, input=b"\xff\xfe question"), "stdin is not UTF-8")


def test_atomic_writes_get_the_mode_a_plain_open_would(tmp_path):
    import os
    import stat

    from rationalizer.atomic import atomic_write_text

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    atomic_write_text(atomic, "x")
    assert stat.S_IMODE(os.stat(atomic).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
