"""Control-code levels from reward values: equal-count bins cut within each data source, fixed once cut.

Quark cuts each reward of the whole pool into quantile bins and cuts again every round. Two things
go wrong with that on mixed data: a source whose teacher writes to a template (CommonsenseQA's
"The answer must be ...") fills the low diversity bins by itself, so a level names the dataset
rather than the rationale; and as the pool grows the edges move, so a level means something else
in each round. Here the edges are cut per source and kept from the first round on, and a 0/1
reward such as accuracy is a two-level code (wrong, right) with no bins at all.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Sequence

from rationalizer.manifest import ControlScheme, RewardLevels

BINARY_REWARDS = frozenset({"accuracy"})
"""Rewards that are 0 or 1: a two-level code (1: 0, 2: 1), MaRio's correctness code."""


def quantile_edges(scores: Sequence[float], bins: int) -> list[float]:
    """The score at each of the ``bins - 1`` inner boundaries of ``scores`` cut into equal-count bins."""
    ordered = sorted(scores)
    if not ordered:
        return [0.0] * (bins - 1)
    n = len(ordered)
    return [ordered[min(n - 1, -(-(i * n) // bins))] for i in range(1, bins)]


def level_of(value: float, edges: Sequence[float]) -> int:
    """1-based level of ``value``: one more than the number of edges at or below it.

    A value equal to an edge goes up, so tied best values (a diversity of 1.0, say) share the top
    level, the one the runtime asks for.
    """
    return 1 + bisect.bisect_right(list(edges), value)


@dataclass
class Cut:
    """One reward's edges: over the whole pool, and per source where the source has enough entries."""

    levels: int
    edges: list[float]
    by_source: dict[str, list[float]] = field(default_factory=dict)

    def level(self, value: float, source: str) -> int:
        """The level of a value from ``source`` (the pool's edges for a source too small to cut alone)."""
        return level_of(value, self.by_source.get(source, self.edges))


def cut_reward(name: str, values: Sequence[float], sources: Sequence[str], bins: int) -> Cut:
    """Edges for one reward's values (``sources[i]`` is where value i's question comes from).

    A source with fewer than ``2 * bins`` values gets no edges of its own: its quantiles would
    rest on one or two values per bin.
    """
    if name in BINARY_REWARDS:
        return Cut(2, [0.5])
    by_source: dict[str, list[float]] = {}
    for value, source in zip(values, sources):
        by_source.setdefault(source, []).append(value)
    return Cut(bins, quantile_edges(values, bins),
               {s: quantile_edges(v, bins) for s, v in by_source.items() if len(v) >= 2 * bins})


def scheme_of(cuts: dict[str, Cut], placement: str, metrics: dict[str, tuple[str, int] | None],
              words: dict[str, list[str]] | None = None) -> ControlScheme:
    """The manifest's control scheme for the cuts (best level of every reward by default).

    ``metrics[name]`` is the eval metric the code is meant to move and its direction, where one applies.
    Codes at the start of the response end with a line break, so the rationale starts on its own line.
    ``words[name]`` is the text of each of that reward's levels (:attr:`RewardLevels.level_text`).
    """
    rewards = []
    for name, cut in cuts.items():
        metric, direction = metrics.get(name) or (None, 1)
        description = ("1: the answer is wrong, 2: right" if name in BINARY_REWARDS else
                       f"equal-count bins of {name} within each data source, cut once over the first round's pool")
        rewards.append(RewardLevels(name, cut.levels, description, list(cut.edges), dict(cut.by_source) or None,
                                    metric, direction, level_text=list((words or {}).get(name) or []) or None))
    return ControlScheme(rewards=rewards, default={name: cut.levels for name, cut in cuts.items()},
                         suffix="\n" if placement == "response" else " ", placement=placement)


def cuts_of(scheme: ControlScheme) -> dict[str, Cut]:
    """The cuts a scheme was written from (a resumed run keeps its levels' meaning)."""
    return {r.name: Cut(r.levels, list(r.bin_edges or []), dict(r.bin_edges_by_source or {})) for r in scheme.rewards}
