"""Does the length code steer? Mean rationale tokens at every level of the ``length`` code, on held-out
questions (StrategyQA dev and CommonsenseQA test, neither trained on), and the top level against the
lowest one, paired by question with a bootstrap 95% interval.

    python examples/recipes/length_codes/measure.py runs/length-codes-gguf --out runs/length-codes-eval

The bundle is evaluated greedily in the form it ships in (run ``ship.py --target`` first, see README.md
here). The length reward prefers shorter rationales, so level 5 should be the shortest.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rationalizer.evaluation import EvalConfig
from rationalizer.evaluation.paired import paired_difference
from rationalizer.evaluation.pipeline import run_evaluation
from rationalizer.manifest import Manifest

DATA = os.environ.get("RATIONALIZER_DATA", "../shared/data")
SETS = {"strategyqa/dev": 60, "cqa/test": 60}
METRIC = "rationale_tokens"


def measure(bundle: str, out: Path, sets: dict[str, int], code: str = "length") -> dict:
    """Per level: mean ``rationale_tokens`` over all the sets' questions; then top level minus level 1."""
    levels = {r.name: r.levels for r in Manifest.load(bundle).control.rewards}[code]
    by_level: dict[int, dict[str, float]] = {k: {} for k in range(1, levels + 1)}
    data = []
    for name, limit in sets.items():
        path = f"{DATA}/{name}.jsonl"
        data.append(f"{name}.jsonl (first {limit})")
        config = EvalConfig(data=path, limit=limit, simulator="none", verifier="none", faithfulness=False)
        evaluation = run_evaluation(config, [bundle], [{code: k} for k in by_level], out=out / name.replace("/", "-"))
        for k, run in zip(by_level, evaluation.runs):
            by_level[k].update({f"{name}:{rec['id']}": rec[METRIC] for rec in run.records})
    means = {k: sum(v.values()) / len(v) for k, v in by_level.items()}
    paired = paired_difference(METRIC, by_level[1], by_level[levels], f"{code}=1", f"{code}={levels}",
                               samples=10_000)
    ordered = [means[k] for k in sorted(means)]
    result = {
        "bundle": bundle, "data": data, "metric": METRIC, "n": paired.n,
        "mean_by_level": {str(k): round(v, 2) for k, v in means.items()},
        "ordered_with_level": all(a >= b for a, b in zip(ordered, ordered[1:])),
        "low": paired.mean_base, "high": paired.mean_other, "difference": paired.difference,
        "ci95": list(paired.ci95), "relative_difference": paired.difference / paired.mean_base,
    }
    result["met"] = (result["ordered_with_level"] and abs(result["relative_difference"]) >= 0.30
                     and (paired.ci95[1] < 0 or paired.ci95[0] > 0))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--out", default="runs/length-codes-eval")
    parser.add_argument("--limit", type=int, default=None, help="Questions per set (default: 60 each).")
    args = parser.parse_args()
    sets = {k: args.limit or v for k, v in SETS.items()}
    out = Path(args.out)
    result = measure(args.bundle, out, sets)
    out.mkdir(parents=True, exist_ok=True)
    (out / "length_effect.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
