"""Quark's bins: each reward's pool sorted and cut into k equal-count bins, one control-code level each."""

from __future__ import annotations

from typing import Sequence


def rank_levels(scores: Sequence[float], bins: int) -> list[int]:
    """1-based level of every score: its rank in the sorted pool cut into ``bins`` equal-count bins.

    Ties are split by pool order (as sorting the pool does in Quark), so every
    level is used even for a 0/1 reward; a value-based cut would put all tied
    scores in one bin and leave levels empty.
    """
    n = len(scores)
    order = sorted(range(n), key=lambda i: (scores[i], i))
    levels = [0] * n
    for rank, i in enumerate(order):
        levels[i] = 1 + (rank * bins) // n
    return levels


def quantile_edges(scores: Sequence[float], bins: int) -> list[float]:
    """The score at each of the ``bins - 1`` inner bin boundaries (recorded in the manifest)."""
    ordered = sorted(scores)
    if not ordered:
        return [0.0] * (bins - 1)
    n = len(ordered)
    return [ordered[min(n - 1, -(-(i * n) // bins))] for i in range(1, bins)]
