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
