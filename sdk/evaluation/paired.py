"""Paired differences between evaluation runs on the same questions, with bootstrap 95% intervals.

Per-run intervals overlap even where a change is real, because most of their width is question
difficulty that both runs share; pairing by example id removes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from rationalizer.metrics.stats import bootstrap_ci


@dataclass
class PairedDifference:
    """``other - base`` for one per-example metric over the examples both runs scored."""

    metric: str
    base: str
    other: str
    mean_base: float
    mean_other: float
    difference: float
    ci95: tuple[float, float]
    n: int
    unmatched: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"metric": self.metric, "base": self.base, "other": self.other,
                "mean_base": self.mean_base, "mean_other": self.mean_other,
                "difference": self.difference, "ci95": list(self.ci95), "n": self.n,
                "unmatched": self.unmatched}

    def text(self, digits: int = 3) -> str:
        """Short text for tables: ``+0.050 [+0.01, +0.09]`` or ``n/a`` when nothing paired."""
        if not self.n:
            return "n/a"
        low, high = self.ci95
        return f"{self.difference:+.{digits}f} [{low:+.{digits - 1}f}, {high:+.{digits - 1}f}]"


def paired_difference(metric: str, base: Mapping[str, float | bool | None], other: Mapping[str, float | bool | None],
                      base_label: str = "base", other_label: str = "other", samples: int = 1000,
                      seed: int = 0) -> PairedDifference:
    """values keyed by example id; bools count as 0/1; None values are not paired."""
    have_base = {k for k, v in base.items() if v is not None}
    have_other = {k for k, v in other.items() if v is not None}
    # Keep the baseline's order so the bootstrap (and so the interval) is deterministic for a seed.
    ids = [k for k in base if k in have_base and k in have_other]
    olds = [float(base[k]) for k in ids]  # type: ignore[arg-type]
    news = [float(other[k]) for k in ids]  # type: ignore[arg-type]
    diffs = [b - a for a, b in zip(olds, news)]
    return PairedDifference(metric, base_label, other_label, _mean(olds), _mean(news), _mean(diffs),
                            bootstrap_ci(diffs, samples=samples, seed=seed), len(ids),
                            len(have_base ^ have_other))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# Per-example fields that name or place an example rather than measure it.
_NOT_METRICS = frozenset({"index", "line"})
# The fields the summary's metrics come from, first and in this order; any other numeric field follows.
_FIRST = ("correct", "consistency", "plausibility", "diversity", "rationale_tokens", "parsed",
          "oracle_correct", "perturbed_correct", "counterfactual_follows")


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float))


def metric_fields(records_of_runs: Sequence[Sequence[Mapping[str, Any]]]) -> list[str]:
    """The numeric per-example fields any of the runs records, the summary's metrics first."""
    seen: dict[str, None] = {}
    for records in records_of_runs:
        for record in records:
            for key, value in record.items():
                if key not in _NOT_METRICS and _is_number(value):
                    seen.setdefault(key)
    return [k for k in _FIRST if k in seen] + [k for k in seen if k not in _FIRST]


def _by_id(records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Records keyed by example id; a repeated id is keyed by its occurrence (``id#2``), so the
    k-th copy in one run pairs with the k-th copy in the other instead of overwriting the first."""
    out: dict[str, Mapping[str, Any]] = {}
    counts: dict[str, int] = {}
    for record in records:
        key = str(record.get("id", record.get("index")))
        counts[key] = counts.get(key, 0) + 1
        out[key if counts[key] == 1 else f"{key}#{counts[key]}"] = record
    return out


def _values(records: Mapping[str, Mapping[str, Any]], metric: str) -> dict[str, float | bool | None]:
    return {k: (v if _is_number(v := r.get(metric)) else None) for k, r in records.items()}


def unmatched_examples(base: Sequence[Mapping[str, Any]], other: Sequence[Mapping[str, Any]]) -> int:
    """How many example ids only one of the two runs has."""
    return len(_by_id(base).keys() ^ _by_id(other).keys())


def paired_differences(runs: Sequence[Any], samples: int = 1000, seed: int = 0) -> list[PairedDifference]:
    """Each run after the first against the first (the baseline), by example id, for every numeric
    per-example field either records; fields neither run has a value for are left out.

    ``runs`` are :class:`~rationalizer.evaluation.runner.EvalRun` (anything with ``label`` and
    ``records``); fewer than two give an empty list.
    """
    if len(runs) < 2:
        return []
    base = runs[0]
    base_rows = _by_id(base.records)
    out = []
    for run in runs[1:]:
        rows = _by_id(run.records)
        for metric in metric_fields([base.records, run.records]):
            d = paired_difference(metric, _values(base_rows, metric), _values(rows, metric), base.label, run.label,
                                  samples=samples, seed=seed)
            if d.n or d.unmatched:
                out.append(d)
    return out
