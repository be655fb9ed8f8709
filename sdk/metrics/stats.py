"""Aggregates: means, bootstrap intervals, and a value that can say why it is missing."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Sequence


@dataclass
class MetricValue:
    """A summary metric: its value, a 95% interval where one applies, the model it used, or why it is absent."""

    value: float | None
    n: int = 0
    ci95: tuple[float, float] | None = None
    model: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = asdict(self)
        out["ci95"] = list(self.ci95) if self.ci95 else None
        return out

    def text(self, digits: int = 3) -> str:
        """Short text for tables: ``0.612 [0.57, 0.66]`` or ``n/a (reason)``."""
        if self.value is None:
            return f"n/a ({self.reason})" if self.reason else "n/a"
        out = f"{self.value:.{digits}f}"
        if self.ci95:
            out += f" [{self.ci95[0]:.{digits - 1}f}, {self.ci95[1]:.{digits - 1}f}]"
        return out


def bootstrap_ci(values: Sequence[float], samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean, deterministic for a seed."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    return (means[int(0.025 * (samples - 1))], means[int(round(0.975 * (samples - 1)))])


def mean_metric(values: Sequence[float | None], reason_if_empty: str, model: str | None = None,
                with_ci: bool = False, seed: int = 0, samples: int = 1000) -> MetricValue:
    """Mean of the values that exist (with a bootstrap interval of ``samples`` resamples when ``with_ci``);
    absent with ``reason_if_empty`` when none does."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return MetricValue(None, 0, None, model, reason_if_empty)
    ci = bootstrap_ci(present, samples=samples, seed=seed) if with_ci else None
    return MetricValue(sum(present) / len(present), len(present), ci, model)
