"""Silencing native libraries (llama.cpp's quantizer, the ONNX exporter) that write to fd 1 and 2 directly."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """Send what C code and Python print to stdout/stderr inside the block to /dev/null.

    Python-level redirection does not reach C's ``fprintf``; the file
    descriptors themselves are swapped and restored afterwards, even on error.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
