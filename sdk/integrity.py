"""Checking weight files against the sha256 and size their manifest records.

Hashing a large model at every load costs time (about 0.2 s for the 98 MB
default on these machines, seconds for a multi-GB file), so a successful check
is remembered in the user cache, keyed on the file's identity and its
modification and change times: any write to the file changes them and forces a
full hash again. ``verify="full"`` always hashes; ``verify="off"`` trusts the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from pathlib import Path
from typing import Literal

from .atomic import atomic_write_text
from .errors import BundleError
from .paths import cache_dir

VerifyMode = Literal["cached", "full", "off"]
_CACHE_NAME = "verified-files.json"
_lock = threading.Lock()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The hex sha256 of a regular file, read in chunks; :class:`BundleError` for anything else."""
    digest = hashlib.sha256()
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; the fstat
    # then checks the very file opened, so a swap after an earlier stat cannot slip a pipe in
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError(f"{path}: not a regular file; weight files must be plain files")
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def regular_file_stat(path: Path) -> os.stat_result:
    """``stat`` of ``path`` (links followed) when it is a regular file; :class:`BundleError` for a missing
    file, a symlink loop, a folder, a FIFO or a device, so no reader ever blocks on one."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BundleError(f"{path}: weight file is missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BundleError(f"{path}: symlink loop; weight files must be plain files") from None
        raise BundleError(f"{path}: cannot read weight file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{path}: not a regular file; weight files must be plain files")
    return st


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _read_cache() -> dict[str, str]:
    try:
        data = json.loads((cache_dir() / _CACHE_NAME).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(path: Path, sha256: str) -> None:
    with _lock:
        data = _read_cache()
        data[str(path)] = f"{_identity(path)}={sha256}"
        try:
            atomic_write_text(cache_dir() / _CACHE_NAME, json.dumps(data, indent=0))
        except OSError:
            pass  # a read-only home only costs a re-hash next time


def verify_file(path: Path, sha256: str, size: int, mode: VerifyMode = "cached") -> None:
    """Raise :class:`BundleError` unless ``path`` is a regular file with the given size and sha256."""
    actual_size = regular_file_stat(path).st_size
    if actual_size != size:
        raise BundleError(
            f"{path}: size {actual_size} bytes differs from the manifest's {size} (truncated or replaced file?)"
        )
    if mode == "off":
        return
    resolved = path.resolve()
    if mode == "cached" and _read_cache().get(str(resolved)) == f"{_identity(resolved)}={sha256}":
        return
    try:
        actual = sha256_file(resolved)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read weight file ({exc.strerror})") from None
    if actual != sha256:
        raise BundleError(f"{path}: sha256 {actual[:16]}... differs from the manifest's {sha256[:16]}... (corrupt or replaced file)")
    _remember(resolved, sha256)
