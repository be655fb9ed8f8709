"""The memory-bandwidth bound of decoding, measured on this machine in the same run.

Decoding one token reads every weight once, so tokens/s can be at most
(read bandwidth) / (weight bytes). Bandwidth is measured the way decode uses
memory: ``threads`` threads each stream through their share of a buffer far
larger than the caches (numpy's reductions release the GIL, so the threads
really run at once); the best of several passes is kept.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def read_bandwidth_gb_s(threads: int, size_mb: int = 1024, passes: int = 5) -> float:
    """Best observed read bandwidth in GB/s with ``threads`` threads over a ``size_mb`` buffer."""
    data = np.ones(size_mb * (1 << 20) // 4, dtype=np.float32)
    parts = np.array_split(data, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(np.add.reduce, parts))  # fault the pages in before timing
        for _ in range(passes):
            start = time.perf_counter()
            list(pool.map(np.add.reduce, parts))
            best = max(best, data.nbytes / (time.perf_counter() - start) / 1e9)
    return best


def bound_tokens_per_s(bandwidth_gb_s: float, weight_bytes: int) -> float:
    """Tokens/s if every token read all ``weight_bytes`` at ``bandwidth_gb_s``."""
    return bandwidth_gb_s * 1e9 / weight_bytes if weight_bytes else float("inf")
