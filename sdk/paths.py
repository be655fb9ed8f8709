"""Where the project keeps its per-user cache (verified hashes, built models).

A leaf: it imports only the standard library, so any module may use it without an import cycle.
"""

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
