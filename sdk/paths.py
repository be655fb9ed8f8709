"""Where the project keeps its per-user cache (verified hashes, built models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$RATIONALIZER_CACHE``, else ``$XDG_CACHE_HOME/rationalizer``, else ``~/.cache/rationalizer``."""
    explicit = os.environ.get("RATIONALIZER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rationalizer"


def default_base_checkpoint() -> Path:
    """Where the default base model's HF checkpoint is cached once built from the embedded GGUF."""
    from .bundle import Bundle

    gguf_file = Bundle.load("base").files("gguf")[0]
    return cache_dir() / "base" / f"smollm2-135m-instruct-{gguf_file.sha256[:12]}"
