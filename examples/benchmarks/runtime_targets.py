"""The runtime's speed targets, checked on a ``rationalize bench`` run.

Runs the bench suite through the library (the same measurements as ``rationalize
bench``), prints its rows table, then each target with the value measured and
whether it is met: GGUF decode at 70% of the memory-bandwidth bound or more, the
SDK within 5% of raw llama-cpp-python, the ONNX loop 1.5x optimum's ``generate``,
and int8 ONNX twice transformers fp32.

    python examples/benchmarks/runtime_targets.py [BUNDLE|FOLDER ...] [--tokens 128] [--reps 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target that the rows (as ``run_bench`` returns them) allow, with the measured value and whether it is met."""
    out = []

    def speed(r: dict[str, Any]) -> float:
        return float(r["figures"].get("decode_tok_s") or 0.0)

    for r in rows:
        key = (r["bundle"], r["format"], r["device"])
        peers = {p["runner"]: p for p in rows if (p["bundle"], p["format"], p["device"]) == key and p["figures"]}
        if not r["figures"] or not r["runner"].startswith("sdk"):
            continue
        fmt, quant = r["format"], r["quantization"]
        where = f"{r['bundle']} {fmt} {quant} {r['device']}"
        if fmt == "gguf" and r["bound_fraction"] is not None:
            out.append(_target(f"GGUF decode vs bandwidth bound ({where})", r["bound_fraction"], ">=", 0.70))
        if fmt == "gguf" and "llama-cpp-python" in peers:
            raw = speed(peers["llama-cpp-python"])
            out.append(_target(f"SDK slower than raw llama-cpp-python ({where})", 1 - speed(r) / raw, "<=", 0.05))
        if fmt == "onnx" and "optimum" in peers:
            out.append(_target(f"ONNX loop vs optimum generate ({where})", speed(r) / speed(peers["optimum"]), ">=", 1.5))
        if fmt == "onnx" and quant.startswith("int8") and "transformers" in peers:
            ratio = speed(r) / speed(peers["transformers"])
            out.append(_target(f"ONNX {quant} vs transformers fp32 ({where})", ratio, ">=", 2.0))
    return out


def _target(name: str, value: float, op: str, goal: float) -> dict[str, Any]:
    met = value >= goal if op == ">=" else value <= goal
    return {"target": name, "value": round(value, 3), "goal": f"{op} {goal}", "met": met}


def targets_table(checks: list[dict[str, Any]]) -> str:
    """The targets as a Markdown table (empty when no row allowed a check)."""
    if not checks:
        return ""
    lines = ["| target | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {t['goal']} | {'yes' if t['met'] else 'NO'} |" for t in checks]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the suite on the bundles named and print its rows, then the targets."""
    from rationalizer.atomic import atomic_write_text
    from rationalizer.bench.config import BenchConfig
    from rationalizer.bench.suite import markdown, run_bench

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="*", help="bundle folders or folders of bundles (default: the embedded model)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--json", dest="json_path", help="also write the figures and the targets here")
    args = parser.parse_args()
    config = BenchConfig(bundles=args.bundles, tokens=args.tokens, reps=args.reps, threads=args.threads,
                         device=args.device)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the suite's messages, on stderr as before
    result = run_bench(config)
    checks = targets(result["rows"])
    table = targets_table(checks)
    print(markdown(result) + ("\n" + table if table else ""), end="")
    if args.json_path:
        atomic_write_text(args.json_path, json.dumps({**result, "targets": checks}, indent=2) + "\n")


if __name__ == "__main__":
    main()
