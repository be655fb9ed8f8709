"""One writer per output file: an exclusive lock on ``<output>.lock``, held while writing.

Jobs that append to their output and resume from it (``rationalize teach``) would
write every row twice if two ran on the same file. The lock is ``flock(2)`` on a
side file that holds the writer's pid: the kernel drops it when the process ends,
however it ends (``kill -9`` included), so a stale lock file never blocks a rerun.
The side file is left in place: deleting it would let a third process lock a new
file while a second still waits on the old one.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError

logger = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # Windows: no flock; writers are not serialized there
    fcntl = None  # type: ignore[assignment]


def lock_path(output: str | os.PathLike[str]) -> Path:
    """The side file locked for ``output``: ``<output>.lock`` in the same folder."""
    out = Path(output)
    return out.with_name(out.name + ".lock")


@contextmanager
def exclusive_writer(output: str | os.PathLike[str], job: str) -> Iterator[None]:
    """Hold the lock of ``output`` for the ``with`` block; another holder is a :class:`UserError`
    that names its pid (``job`` names what writes, e.g. ``"teach"``)."""
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"{output} is being written by another {job} process (pid {_holder(fd)}); "
                                "wait for it to finish, or write to another file") from None
            except OSError as exc:  # a file system without flock (some network mounts): go on unlocked
                logger.warning("%s: cannot lock (%s); not guarded against a second writer", path,
                               exc.strerror or exc)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    """The pid the lock holder wrote into the side file ('unknown' in the instant before it does)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return "unknown"
    return text if text.isdigit() else "unknown"
