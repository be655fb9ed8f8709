"""Shared fixtures: an isolated cache, small bundles built on the fly, the real default model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rationalizer.manifest import MANIFEST_NAME


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own user cache, so no test trusts another's verified hashes."""
    monkeypatch.setenv("RATIONALIZER_CACHE", str(tmp_path_factory.mktemp("cache")))


def write_bundle(folder: Path, files: dict[str, bytes], **manifest_fields) -> Path:
    """Write a bundle folder with the given weight files (as gguf) and a manifest for them."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        entries.append({"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    manifest = {"name": "test-bundle", "base_model": "test/base", "files": {"gguf": entries}, **manifest_fields}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def default_model():
    """The real embedded default model through llama.cpp, loaded once per test session."""
    from rationalizer import Rationalizer

    r = Rationalizer.load()
    yield r
    r.close()


TINY_CONTROL = {
    "rewards": [{"name": "diversity", "levels": 5}, {"name": "consistency", "levels": 5}],
    "presets": {"plain": {"diversity": 1}},
}


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A bundle with a tiny random Llama in HF format and two quality codes."""
    from helpers.tiny_model import write_hf_bundle

    return write_hf_bundle(tmp_path_factory.mktemp("tiny") / "bundle", control=TINY_CONTROL)


@pytest.fixture(scope="session")
def tiny_model(tiny_bundle):
    """The tiny bundle loaded through the torch backend."""
    from rationalizer import Rationalizer

    r = Rationalizer.load(str(tiny_bundle), backend="torch", device="cpu", threads=1)
    yield r
    r.close()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSONL and return the path."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server():
    """llama-cpp-python's own OpenAI-compatible server on 127.0.0.1, running the default GGUF."""
    import subprocess
    import sys
    import time
    import urllib.request

    from rationalizer import Bundle

    port = _free_port()
    gguf = Bundle.load().main_file("gguf")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rationalizer.backends.llama_server", "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "1024", "--model_alias", "smol"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("llama.cpp's server did not start")
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
