"""Quark's bins: each reward's pool sorted and cut into k equal-count bins, one control-code level each."""

from __future__ import annotations

from typing import Sequence


def rank_levels(scores: Sequence[float], bins: int) -> list[int]:
    """1-based level of every score: its rank in the sorted pool cut into ``bins`` equal-count bins.

    Equal scores share one level, the one their highest rank falls in. Quark splits
    ties by pool order instead; for a 0/1 reward such as accuracy that put right
    answers on levels 3, 4 and 5 by their position in the pool alone (teacher
    rows first, the latest policy samples last), so the top code, which inference
    asks for, meant "sampled late" rather than "right". Sharing the top rank keeps
    the best value on the best level, the one the runtime asks for.
    """
    n = len(scores)
    order = sorted(range(n), key=lambda i: scores[i])
    highest: dict[float, int] = {}
    for rank, i in enumerate(order):
        highest[scores[i]] = rank
    return [1 + (highest[s] * bins) // n for s in scores]


def quantile_edges(scores: Sequence[float], bins: int) -> list[float]:
    """The score at each of the ``bins - 1`` inner bin boundaries (recorded in the manifest)."""
    ordered = sorted(scores)
    if not ordered:
        return [0.0] * (bins - 1)
    n = len(ordered)
    return [ordered[min(n - 1, -(-(i * n) // bins))] for i in range(1, bins)]
