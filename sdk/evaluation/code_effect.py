"""Does a quality code steer? Its eval metric at its lowest and top level, paired by question.

A control code is only worth offering when moving it moves what it names: a ``length`` code whose
top level writes rationales as long as level 1 is a promise the model does not keep. Each code is
evaluated at level 1 and at its top level (the other codes at the scheme's default) on the same
questions, and the per-question difference gets a bootstrap interval; :func:`keep_steering_codes`
then keeps the codes whose interval lies on the side the code promises.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..bundle import Bundle
from ..errors import InputError
from ..manifest import CodeEffect, ControlScheme, RewardLevels
from ..progress import Progress
from ..prompting import resolve_quality
from .config import EvalConfig

logger = logging.getLogger(__name__)

REWARD_METRICS: dict[str, tuple[str, int]] = {
    "accuracy": ("correct", 1),
    "diversity": ("diversity", 1),
    "consistency": ("consistency", 1),
    "plausibility": ("plausibility", 1),
    # the length reward without a target prefers shorter rationales: a higher level means fewer tokens
    "length": ("rationale_tokens", -1),
}
"""The per-example field of ``rationalize eval``'s records each built-in reward's code should move,
and the direction (1: a higher level raises it; -1: lowers it)."""

_SIMULATOR_FIELDS = frozenset({"consistency", "p_gold_with_rationale", "p_gold_without_rationale"})
_VERIFIER_FIELDS = frozenset({"plausibility"})
_FAITHFULNESS_PREFIXES = ("oracle_", "perturbed_", "counterfactual_")


def metric_of(levels: RewardLevels) -> tuple[str, int] | None:
    """The metric and direction ``levels``'s code should move: its own ``metric`` when set, else the
    built-in reward's (:data:`REWARD_METRICS`), else None (nothing to measure it by)."""
    if levels.metric is not None:
        return levels.metric, levels.direction
    return REWARD_METRICS.get(levels.name)


def direction_for(levels: RewardLevels, metric: str) -> int:
    """The direction ``levels``'s code is judged by on ``metric``: its known one (:func:`metric_of`) when
    that is the metric, else the code's own ``direction``."""
    known = metric_of(levels)
    return known[1] if known is not None and known[0] == metric else levels.direction


def steers(effect: CodeEffect, direction: int) -> bool:
    """Whether the effect's 95% interval excludes 0 on the side of ``direction`` (1: above 0; -1: below)."""
    low, high = effect.ci95
    return low > 0 if direction > 0 else high < 0


def _judged_config(config: EvalConfig, metrics: set[str]) -> EvalConfig:
    """``config`` with only the judges the metrics need: each judge costs a model and its time per row."""
    changes: dict[str, Any] = {"faithfulness": config.faithfulness and any(
        m.startswith(_FAITHFULNESS_PREFIXES) for m in metrics)}
    if not metrics & _SIMULATOR_FIELDS:
        changes["simulator"] = "none"
    if not metrics & _VERIFIER_FIELDS:
        changes["verifier"] = "none"
    return dataclasses.replace(config, **changes)


def _values(records: Mapping[str, Mapping[str, Any]], metric: str) -> dict[str, float]:
    """``metric`` of each record that has it (``diversity`` is None for an empty rationale, ``consistency``
    absent for a free-form question); ``correct`` is a bool, whose mean of 0/1 is the accuracy."""
    out = {}
    for key, record in records.items():
        value = record.get(metric)
        if isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def measure_code_effects(bundle: str, config: EvalConfig, codes: Sequence[str] | None = None, *,
                         data: Sequence[str] | None = None, backend: str = "auto", device: str = "auto",
                         threads: int | None = None, out: str | Path | None = None,
                         progress: Progress | None = None, endpoint: str | None = None,
                         endpoint_model: str | None = None) -> dict[str, CodeEffect]:
    """Measure each of ``codes`` (default: every code of the bundle's scheme) on its metric.

    Each code is evaluated greedily at level 1 and at its top level, the other codes at the
    scheme's default, on ``data`` (default: ``config.data``; several files pool their questions,
    ``config.limit`` applies to each); the judges are on only where a metric needs one. The two
    runs are paired by question (:func:`~rationalizer.evaluation.paired.paired_difference`, with
    ``config.bootstrap_samples`` and ``config.seed``). A code with no metric (:func:`metric_of`),
    a single level, or no question where its metric was measured (a judge switched off) is left out
    of the result, with a warning on this module's logger. ``out`` keeps each file's eval outputs.
    ``endpoint`` and ``endpoint_model`` go with ``backend="http"`` (:func:`run_evaluation`'s).
    """
    # here, not at the top: `rationalize info` imports this module and needs no pipeline
    from .paired import paired_difference
    from .pipeline import run_evaluation

    scheme = Bundle.load(bundle).manifest.control
    by_name = {r.name: r for r in scheme.rewards}
    wanted = list(codes) if codes is not None else list(by_name)
    unknown = [c for c in wanted if c not in by_name]
    if unknown:
        raise InputError(f"unknown quality code {unknown[0]!r} (known: {', '.join(by_name) or 'none'})")
    targets: dict[str, tuple[str, int]] = {}
    for name in wanted:
        found = metric_of(by_name[name])
        if found is None:
            logger.warning("%s: not measured: no metric is known for this code (set its metric in the manifest)",
                           name)
        elif by_name[name].levels < 2:
            logger.warning("%s: not measured: it has a single level", name)
        elif _judge_off(found[0], config):  # known before any run: no run is spent on it
            logger.warning("%s: not measured: %s needs %s", name, found[0], _judge_off(found[0], config))
        else:
            targets[name] = found
    if not targets:
        return {}
    # one run per distinct full selection: with every default at the top, each code's top level is one run
    runs: dict[tuple[tuple[str, int], ...], int] = {}
    selections: list[str] = []  # "name=level": what `--quality` takes, and what the runs' labels show
    pairs: dict[str, tuple[int, int]] = {}
    for name in targets:
        pair = []
        for level in (1, by_name[name].levels):
            full = tuple(sorted(resolve_quality(scheme, {name: level}).items()))
            if full not in runs:
                runs[full] = len(selections)
                selections.append(f"{name}={level}")
            pair.append(runs[full])
        pairs[name] = (pair[0], pair[1])
    files = list(data) if data else [config.data]
    judged = _judged_config(config, {metric for metric, _ in targets.values()})
    # keyed by file, position and id: ids can repeat across files (or within one), and a question
    # is paired only with itself
    records: list[dict[str, Mapping[str, Any]]] = [{} for _ in selections]
    for i, path in enumerate(files):
        where = None if out is None else Path(out) / (f"{i + 1}-{Path(path).stem}" if len(files) > 1 else "")
        evaluation = run_evaluation(dataclasses.replace(judged, data=path), [bundle], selections, backend=backend,
                                    device=device, threads=threads, out=where, progress=progress,
                                    endpoint=endpoint, endpoint_model=endpoint_model)
        for k, run in enumerate(evaluation.runs):
            records[k].update({f"{i}:{rec['index']}:{rec['id']}": rec for rec in run.records})
    effects: dict[str, CodeEffect] = {}
    for name, (metric, _direction) in targets.items():
        low_k, high_k = pairs[name]
        base = _values(records[low_k], metric)
        other = _values(records[high_k], metric)
        if not set(base) & set(other):
            logger.warning("%s: not measured: no question has %s at both levels%s", name, metric,
                           _why_missing(metric, [records[low_k], records[high_k]]))
            continue
        top = by_name[name].levels
        paired = paired_difference(metric, base, other, f"{name}=1", f"{name}={top}",
                                   samples=config.bootstrap_samples, seed=config.seed)
        effects[name] = CodeEffect(metric, paired.mean_base, paired.mean_other, paired.difference,
                                   [float(paired.ci95[0]), float(paired.ci95[1])], paired.n, list(files))
    return effects


def _judge_off(metric: str, config: EvalConfig) -> str | None:
    """The judge ``metric`` needs when ``config`` switches it off, else None."""
    if metric in _SIMULATOR_FIELDS and config.simulator == "none":
        return "the simulator, which is switched off"
    if metric in _VERIFIER_FIELDS and config.verifier == "none":
        return "the verifier, which is switched off"
    return None


def _why_missing(metric: str, records: Sequence[Mapping[str, Mapping[str, Any]]]) -> str:
    if any(metric in rec for run in records for rec in run.values()):
        return " (it has no value on these questions' rationales, e.g. diversity of an empty rationale)"
    return " (no record has this field: is it a per-example field of `rationalize eval`?)"


def effect_digits(effect: CodeEffect) -> int:
    """Decimals that show the effect: one for counts such as tokens, three for rates and scores."""
    return 1 if max(abs(effect.low), abs(effect.high)) >= 10 else 3


def describe_interval(effect: CodeEffect) -> str:
    """``-19.2 [-21.0, -17.5]``: the difference and its 95% interval."""
    d = effect_digits(effect)
    return f"{effect.difference:+.{d}f} [{effect.ci95[0]:.{d}f}, {effect.ci95[1]:.{d}f}]"


def describe_effect(effect: CodeEffect) -> str:
    """``rationale_tokens: 41.2 -> 22.0, difference -19.2 [-21.0, -17.5], n=120 (a.jsonl, b.jsonl)``."""
    d = effect_digits(effect)
    files = f" ({', '.join(effect.data)})" if effect.data else ""
    return (f"{effect.metric}: {effect.low:.{d}f} -> {effect.high:.{d}f}, difference {describe_interval(effect)}, "
            f"n={effect.n}{files}")


def _reason(effect: CodeEffect, direction: int) -> str:
    shown = f"{effect.metric} difference {describe_interval(effect)} on n={effect.n}"
    low, high = effect.ci95
    if low <= 0 <= high:
        return f"{shown}, CI includes 0"
    wanted = "raise" if direction > 0 else "lower"
    return f"{shown}, the wrong way (a higher level should {wanted} {effect.metric})"


def keep_steering_codes(scheme: ControlScheme, effects: Mapping[str, CodeEffect],
                        min_n: int = 1) -> tuple[ControlScheme, dict[str, str]]:
    """A copy of ``scheme`` that offers only the codes that steer, and the reason each other code is not
    offered.

    Every measured code carries its effect and metric (and the direction it is judged by). A code whose
    interval does not exclude 0 on its direction's side (:func:`steers`), measured on fewer than
    ``min_n`` questions, or not measured, is kept in the scheme with ``offered: false``: it is still
    written into every prompt at its default level (dropping its text would change the input the model
    was trained on, and with it the other codes' effects), but cannot be asked for; presets lose its
    name. ``scheme`` is not changed.
    """
    rewards: list[RewardLevels] = []
    left_out: dict[str, str] = {}
    for levels in scheme.rewards:
        effect = effects.get(levels.name)
        if effect is None:
            left_out[levels.name] = "effect not measured"
            rewards.append(dataclasses.replace(levels, offered=False))
            continue
        direction = direction_for(levels, effect.metric)
        measured = dataclasses.replace(levels, metric=effect.metric, direction=direction,
                                       effect=dataclasses.replace(effect, ci95=list(effect.ci95),
                                                                  data=list(effect.data)))
        if effect.n < min_n:
            left_out[levels.name] = f"measured on n={effect.n} questions, fewer than {min_n}"
        elif not steers(effect, direction):
            left_out[levels.name] = _reason(effect, direction)
        rewards.append(dataclasses.replace(measured, offered=levels.name not in left_out))
    default = dict(scheme.default)
    for r in rewards:
        default.setdefault(r.name, r.levels)  # a code that is not offered needs the level it is written at
    pruned = dataclasses.replace(
        scheme, rewards=rewards, default=default,
        presets={p: {k: v for k, v in sel.items() if k not in left_out} for p, sel in scheme.presets.items()})
    return pruned, left_out
