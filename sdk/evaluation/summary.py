"""From per-example records to one summary: each metric with its model, or why it is absent."""

from __future__ import annotations

from typing import Any, Sequence

from ..metrics import MetricValue, mean_metric
from ..prompting import Quality, resolve_quality
from .config import EvalConfig

QUALITY_METRICS = (
    "accuracy", "unparseable_rate", "diversity", "consistency", "plausibility",
    "oracle_accuracy", "perturbed_accuracy", "counterfactual_follow_rate", "rationale_tokens",
)
SPEED_METRICS = ("latency_s", "tokens_per_s")
MAX_SKIPPED_LISTED = 20


def _flag(records: list[dict[str, Any]], key: str) -> list[float | None]:
    return [None if r.get(key) is None else float(r[key]) for r in records]


def summarize(records: list[dict[str, Any]], config: EvalConfig, model: Any, judges: Any, quality: Quality,
              label: str, wall_time_s: float, skipped: Sequence[str] = ()) -> dict[str, Any]:
    """The summary of one run as JSON-ready data; ``skipped`` names the data rows left out as invalid."""
    seed, samples = config.seed, config.bootstrap_samples
    has_choices = any(r["choices"] for r in records)
    sim_name = judges.simulator.name if judges.simulator is not None else None
    ver_name = judges.verifier.name if judges.verifier is not None else None
    metrics: dict[str, MetricValue] = {
        "accuracy": mean_metric([float(r["correct"]) for r in records], "no examples", with_ci=True, seed=seed,
                                samples=samples),
        "unparseable_rate": mean_metric([float(not r["parsed"]) for r in records], "no examples"),
        "diversity": mean_metric(_flag(records, "diversity"), "no rationales"),
        "consistency": mean_metric(
            _flag(records, "consistency"),
            "simulator switched off" if sim_name is None else
            ("free-form answers have no choices to score" if not has_choices else "no rationale could be scored"),
            model=sim_name, with_ci=True, seed=seed, samples=samples),
        "plausibility": mean_metric(_flag(records, "plausibility"),
                                    "verifier switched off" if ver_name is None else "no rationale could be judged",
                                    model=ver_name, with_ci=True, seed=seed, samples=samples),
        "oracle_accuracy": mean_metric(
            _flag(records, "oracle_correct"),
            "faithfulness checks switched off" if not config.faithfulness else "the data has no reference rationales",
            with_ci=True, seed=seed, samples=samples),
        "perturbed_accuracy": mean_metric(
            _flag(records, "perturbed_correct"),
            "faithfulness checks switched off" if not config.faithfulness else "no rationales to perturb",
            with_ci=True, seed=seed, samples=samples),
        "counterfactual_follow_rate": mean_metric(
            _flag(records, "counterfactual_follows"),
            "faithfulness checks switched off" if not config.faithfulness
            else "no counterfactual rationales for these questions (--counterfactual FILE)",
            with_ci=True, seed=seed, samples=samples),
        "rationale_tokens": mean_metric(_flag(records, "rationale_tokens"), "no examples", model=model.name),
        "latency_s": mean_metric(_flag(records, "latency_s"), "no examples"),
        "tokens_per_s": mean_metric(_flag(records, "tokens_per_s"), "no generation of two tokens or more"),
    }
    return {
        "label": label,
        "model": model.name,
        "backend": model.backend_name,
        "format": model.format,
        "device": model.device,
        "quality": resolve_quality(model.manifest.control, quality),
        "data": config.data,
        "n": len(records),
        "skipped_rows": {"count": len(skipped), "first": list(skipped[:MAX_SKIPPED_LISTED])},
        "metrics": {k: v.to_dict() for k, v in metrics.items()},
        "judges": {"simulator": sim_name, "verifier": ver_name},
        "wall_time_s": round(wall_time_s, 2),
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
    }
