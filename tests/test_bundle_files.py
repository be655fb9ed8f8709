"""The files checked are the files loaded: staged views of listed files, refused pickles, embedded names,
no network for a base model, and files no reader may block on (issue 17, items 2, 3, 4 and 9)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_bundle
from rationalizer import Bundle, Rationalizer
from rationalizer.bundle import BASE_BUNDLE_DIR, DEFAULT_BUNDLE_DIR
from rationalizer.cli.main import cli
from rationalizer.errors import BundleError
from rationalizer.manifest import MANIFEST_NAME, Manifest

MARKER_ENV = "RATIONALIZER_TEST_PICKLE_MARKER"
RATIONALIZE = [sys.executable, "-c", "from rationalizer.cli.main import main; main()"]


class _Payload:
    """Unpickling this writes a marker file: proof that something unpickled it."""

    def __reduce__(self):
        return (os.system, (f"touch {os.environ[MARKER_ENV]}",))


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))


def _save_manifest(folder: Path, data: dict) -> None:
    (folder / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")


def _entry(folder: Path, rel: str, role: str) -> dict:
    data = (folder / rel).read_bytes()
    return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "role": role}


def _rename_listed(folder: Path, fmt: str, old: str, new: str) -> None:
    """Give a listed file another name, on disk and in the manifest."""
    os.rename(folder / old, folder / new)
    data = _manifest(folder)
    data["files"][fmt] = [dict(f, path=new) if f["path"] == old else f for f in data["files"][fmt]]
    _save_manifest(folder, data)


def _cli(*args: str, cwd: Path | None = None):
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, list(args))
    finally:
        os.chdir(old)


def _one_line_error(result) -> str:
    """The one ``Error:`` line of a CLI run that exited 2 without a traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def peft_bundle(tiny_bundle, tmp_path_factory):
    from helpers.tiny_peft import write_peft_bundle

    return write_peft_bundle(tmp_path_factory.mktemp("peft") / "bundle", tiny_bundle / "hf")


@pytest.fixture(scope="module")
def onnx_bundle(tiny_bundle, tmp_path_factory):
    """The tiny model exported by the real exporter to ONNX fp32."""
    from rationalizer.export.config import ExportConfig
    from rationalizer.export.pipeline import run_export

    out = tmp_path_factory.mktemp("onnx")
    run_export(ExportConfig(str(tiny_bundle), str(out), [], ["fp32"], threads=1))
    return out / "onnx-fp32"


# item 2: HF -----------------------------------------------------------------------------------------


def test_hf_loads_the_listed_weights_never_an_unlisted_tampered_model_safetensors(tiny_bundle, tmp_path):
    from safetensors.torch import load_file, save_file

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    _rename_listed(bundle, "hf", "hf/model.safetensors", "hf/weights.safetensors")
    listed = load_file(bundle / "hf" / "weights.safetensors")
    tampered = {k: v + 1.0 for k, v in listed.items()}
    save_file(tampered, bundle / "hf" / "model.safetensors")  # the name from_pretrained(folder) opens
    (bundle / "hf" / "again").symlink_to(".", target_is_directory=True)  # a folder loop must not hang the scan
    assert _cli("info", str(bundle), "--verify").exit_code == 0  # it verifies the listed files ...
    with Rationalizer.load(str(bundle), backend="torch", threads=1) as model:  # ... which are the ones loaded
        weight = model._backend.model.model.embed_tokens.weight.detach()
    key = "model.embed_tokens.weight"
    assert weight.equal(listed[key]) and not weight.equal(tampered[key])


@pytest.mark.parametrize("rel", ["weights.pt", "hf/x.PKL", "hf/deeper/model.pth", "hf/pytorch_model.bin"])
def test_an_unlisted_pickle_file_is_refused_in_one_line(rel, tmp_path):
    bundle = write_bundle(tmp_path / "b", {})
    (bundle / "hf").mkdir()
    (bundle / "hf" / "m.gguf").write_bytes(b"GGUF")
    _save_manifest(bundle, {**_manifest(bundle), "files": {"gguf": [_entry(bundle, "hf/m.gguf", "model")]}})
    Bundle.load(bundle)
    (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
    (bundle / rel).write_bytes(b"x")
    with pytest.raises(BundleError, match="pickle-type file the manifest does not list"):
        Bundle.load(bundle)
    assert rel in _one_line_error(_cli("info", str(bundle), "--verify"))


def test_a_trainers_checkpoints_beside_the_listed_folders_are_no_part_of_the_bundle(peft_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(peft_bundle, bundle)
    state = bundle / "checkpoints" / "step-0000050" / "optimizer.pt"  # train --resume reads it, no loader does
    state.parent.mkdir(parents=True)
    state.write_bytes(b"x")
    Bundle.load(bundle).verify("peft", "full")


def test_a_listed_pickle_is_never_staged_for_the_torch_backend(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "hf" / "training_args.bin").write_bytes(b"x")
    data = _manifest(bundle)
    data["files"]["hf"].append(_entry(bundle, "hf/training_args.bin", "config"))
    _save_manifest(bundle, data)
    with pytest.raises(BundleError, match="pickle checkpoints are refused"):
        with Bundle.load(bundle).staged("hf"):
            pass


def test_hf_without_tokenizer_files_is_one_line(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    data = _manifest(bundle)
    data["files"]["hf"] = [f for f in data["files"]["hf"] if "token" not in f["path"]]
    _save_manifest(bundle, data)  # tokenizer files still on disk, but unlisted: not read either
    line = _one_line_error(_cli("q", "--model", str(bundle), "--backend", "torch"))
    assert "lists no tokenizer" in line and str(bundle / "hf") in line


# item 2: PEFT ---------------------------------------------------------------------------------------


def test_peft_bundle_with_an_unlisted_adapter_model_bin_is_refused_before_peft_sees_it(peft_bundle, tmp_path,
                                                                                     monkeypatch):
    from rationalizer.backends.hf import load_hf

    marker = tmp_path / "unpickled"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    bundle = tmp_path / "b"
    shutil.copytree(peft_bundle, bundle)
    # with the listed adapter under another name, peft reading the folder would fall back to the .bin
    _rename_listed(bundle, "peft", "adapter/adapter_model.safetensors", "adapter/weights.safetensors")
    (bundle / "adapter" / "adapter_model.bin").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(BundleError, match="adapter_model.bin: a pickle-type file the manifest does not list"):
        Rationalizer.load(str(bundle), backend="torch", threads=1)
    assert "adapter_model.bin" in _one_line_error(_cli("info", str(bundle), "--verify"))
    # even past that refusal (a Bundle built by hand skips it), peft sees only the staged listed files
    model, _tokenizer = load_hf(Bundle(bundle.resolve(), Manifest.load(bundle)), "cpu", "peft", merge=False)
    assert not marker.exists()
    assert any("lora_B" in name for name, _ in model.named_parameters())


# item 2: ONNX ---------------------------------------------------------------------------------------


def test_onnx_tokenizer_tampering_is_caught_listed_or_not(onnx_bundle, tmp_path):
    tokenizer = json.loads((onnx_bundle / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tokenizer["model"]["vocab"]
    tokenizer["model"]["vocab"] = dict(zip(vocab, reversed(list(vocab.values()))))
    listed = tmp_path / "listed"
    shutil.copytree(onnx_bundle, listed)
    (listed / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    with pytest.raises(BundleError, match="tokenizer.json: (size|sha256)"):
        Rationalizer.load(str(listed), threads=1)
    assert "tokenizer.json" in _one_line_error(_cli("info", str(listed), "--verify"))
    unlisted = tmp_path / "unlisted"
    shutil.copytree(listed, unlisted)
    data = _manifest(unlisted)
    data["files"]["onnx"] = [f for f in data["files"]["onnx"] if f["path"] != "tokenizer.json"]
    _save_manifest(unlisted, data)
    assert _cli("info", str(unlisted), "--verify").exit_code == 0
    with pytest.raises(BundleError, match="lists no tokenizer.json"):
        Rationalizer.load(str(unlisted), threads=1)


def test_onnx_reads_only_listed_configs_and_external_data(onnx_bundle, tmp_path):
    import onnx

    bundle = tmp_path / "b"
    shutil.copytree(onnx_bundle, bundle)
    with Rationalizer.load(str(onnx_bundle), threads=1) as model:
        expected = model.rationalize("Can a penguin fly?", max_new_tokens=6).text
        stop_ids = model._backend.stop_ids
    onnx.save_model(onnx.load(str(bundle / "model.onnx")), str(bundle / "model.onnx"), save_as_external_data=True,
                    location="model.onnx_data", size_threshold=0)
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    (bundle / "config.json").write_text(json.dumps({**config, "eos_token_id": 7}), encoding="utf-8")
    data = _manifest(bundle)
    data["files"]["onnx"] = [_entry(bundle, "model.onnx", "model")] + [
        f for f in data["files"]["onnx"] if f["path"] not in ("model.onnx", "config.json")]
    _save_manifest(bundle, data)  # the external data and the tampered config.json are unlisted
    with pytest.raises(BundleError, match="ONNX Runtime cannot load this model"):
        Rationalizer.load(str(bundle), threads=1)
    data["files"]["onnx"].append(_entry(bundle, "model.onnx_data", "data"))
    _save_manifest(bundle, data)
    with Rationalizer.load(str(bundle), threads=1) as model:
        assert model.rationalize("Can a penguin fly?", max_new_tokens=6).text == expected
        assert 7 not in model._backend.stop_ids and model._backend.stop_ids <= stop_ids


# item 3: embedded names -----------------------------------------------------------------------------


def test_folders_named_default_or_base_never_replace_the_embedded_bundles(tmp_path):
    from rationalizer.evaluation.judges import load_judge

    for name in ("default", "base"):
        write_bundle(tmp_path / name, {"m.gguf": b"GGUF"}, name=f"local-{name}")
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert Bundle.load().folder == Bundle.load("default").folder == DEFAULT_BUNDLE_DIR
        assert Bundle.load("base").folder == BASE_BUNDLE_DIR
        assert Bundle.load("./default").manifest.name == "local-default"  # a path opens the folder
        assert Bundle.load(Path("base")).manifest.name == "local-base"
        load_judge("default", threads=1).close()  # the default judge: the embedded base GGUF (the local one fails)
    finally:
        os.chdir(old)
    embedded = Bundle.load().manifest.name
    for args in (("info",), ("info", "default")):
        result = _cli(*args, cwd=tmp_path)
        assert result.exit_code == 0 and result.output.startswith(embedded), result.output
    assert _cli("info", "base", cwd=tmp_path).output.startswith(Bundle.load("base").manifest.name)
    assert _cli("info", "./default", cwd=tmp_path).output.startswith("local-default")


# item 4: no network ---------------------------------------------------------------------------------

_GUARDED_LOAD = """
import socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args[1:] if args and isinstance(args[0], socket.socket) else args)
    raise OSError("network refused by the test")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
from rationalizer import Rationalizer
with Rationalizer.load(sys.argv[1], backend="torch", threads=1) as model:
    print(model.rationalize("Can a penguin fly?", max_new_tokens=3).tokens_generated, len(attempts))
"""


def _offline_env(hub_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")}
    return {**env, "HF_HUB_CACHE": str(hub_cache)}


def test_a_hub_id_base_loads_from_the_cache_without_touching_the_network(peft_bundle, tiny_bundle, tmp_path):
    repo = tmp_path / "hub" / "models--tiny-org--tiny-base"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_bundle / "hf", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    bundle = tmp_path / "b"
    shutil.copytree(peft_bundle, bundle)
    _save_manifest(bundle, {**_manifest(bundle), "base_model": "tiny-org/tiny-base"})
    run = subprocess.run([sys.executable, "-c", _GUARDED_LOAD, str(bundle)], capture_output=True, text=True,
                         env=_offline_env(tmp_path / "hub"), timeout=120)
    assert run.returncode == 0, run.stderr
    generated, attempts = run.stdout.split()
    assert int(generated) >= 1 and attempts == "0"


def test_a_base_not_on_disk_is_one_line_naming_it(peft_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(peft_bundle, bundle)
    _save_manifest(bundle, {**_manifest(bundle), "base_model": "nobody-here/missing-model"})
    line = _one_line_error(_cli("q", "--model", str(bundle), "--backend", "torch"))
    assert "'nobody-here/missing-model' is not on this machine" in line
    assert "base_model" in line and "Hugging Face cache" in line and "corrupt" not in line


# item 9: files no reader may block on ---------------------------------------------------------------


def test_a_symlink_loop_as_a_weight_file_is_one_line(tmp_path):
    bundle = write_bundle(tmp_path / "b", {"m.gguf": b"GGUF"})
    (bundle / "m.gguf").unlink()
    (bundle / "m.gguf").symlink_to("loop.gguf")
    (bundle / "loop.gguf").symlink_to("m.gguf")
    assert "symlink loop" in _one_line_error(_cli("info", str(bundle), "--verify"))
    assert "symlink loop" in _one_line_error(_cli("q", "--model", str(bundle)))


def test_a_fifo_as_a_weight_file_neither_hangs_verify_nor_loading(tmp_path):
    bundle = write_bundle(tmp_path / "b", {"m.gguf": b""})  # a FIFO's size is 0, as the manifest says
    (bundle / "m.gguf").unlink()
    os.mkfifo(bundle / "m.gguf")
    for args in (["info", str(bundle), "--verify"], ["q", "--model", str(bundle)]):
        run = subprocess.run([*RATIONALIZE, *args], capture_output=True, text=True,
                             timeout=60)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1 and "not a regular file" in lines[0], run.stderr
    with pytest.raises(BundleError, match="not a regular file"):
        Bundle.load(bundle).verify("gguf", "off")
