"""Splitting context and continuation tokens the way the model would see them."""

from __future__ import annotations

from typing import Sequence


def split_continuation(full: Sequence[int], context: Sequence[int]) -> int:
    """Index in ``full`` where the continuation starts.

    Tokenizing ``context + continuation`` can merge tokens across the boundary,
    so the split is the longest common prefix of the two tokenizations, kept
    short enough that at least one token is scored.
    """
    k = 0
    for a, b in zip(full, context):
        if a != b:
            break
        k += 1
    return max(1, min(k, len(full) - 1))
