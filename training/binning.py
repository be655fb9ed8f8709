"""Quark's quantile bins: each reward's pool scores cut into k equal-count levels, rendered as codes."""

from __future__ import annotations

import bisect
from typing import Sequence


def quantile_edges(scores: Sequence[float], bins: int) -> list[float]:
    """The ``bins - 1`` inner edges that cut the sorted scores into equal-count bins."""
    ordered = sorted(scores)
    if not ordered:
        return [0.0] * (bins - 1)
    n = len(ordered)
    return [ordered[min(n - 1, (i * n) // bins)] for i in range(1, bins)]


def level(score: float, edges: Sequence[float]) -> int:
    """1-based level of a score: 1 below the first edge, ``len(edges) + 1`` at or above the last."""
    return bisect.bisect_right(edges, score) + 1
