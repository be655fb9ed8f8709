"""Batched ``rationalize_many`` against one question at a time, on the same bundle, in one run.

    python examples/benchmarks/batch_throughput.py BUNDLE [--data FILE] [--limit 32] [--batch-size 8]

BUNDLE must run on a backend that batches (an ONNX export, or an HF/PEFT bundle).
Questions come from a JSONL file in the project's schema (default: the first
StrategyQA dev questions in ../shared/data). Greedy in both runs, so the answers
must be identical; the script checks that and prints questions/s for each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "strategyqa" / "dev.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from rationalizer import Rationalizer
    from rationalizer.dataset import read_examples

    items = [{"question": e.question, "choices": e.choices} for e in read_examples(args.data, limit=args.limit)]
    with Rationalizer.load(args.bundle, threads=args.threads) as model:
        model.rationalize("Warm up.", max_new_tokens=4)
        start = time.perf_counter()
        single = [model.rationalize(i["question"], i["choices"], max_new_tokens=args.max_new_tokens) for i in items]
        one_at_a_time = time.perf_counter() - start
        start = time.perf_counter()
        batched = model.rationalize_many(items, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        batch_time = time.perf_counter() - start
        backend = model.backend_name
    same = sum(a.text == b.text for a, b in zip(single, batched))
    tokens = sum(r.tokens_generated for r in batched)
    print(f"{len(items)} questions, {backend} backend, up to {args.max_new_tokens} new tokens, {tokens} generated")
    print("| mode | wall s | questions/s | tokens/s |")
    print("|---|---|---|---|")
    print(f"| one at a time | {one_at_a_time:.1f} | {len(items) / one_at_a_time:.2f} | {tokens / one_at_a_time:.1f} |")
    print(f"| rationalize_many, batch {args.batch_size} | {batch_time:.1f} | {len(items) / batch_time:.2f} | "
          f"{tokens / batch_time:.1f} |")
    print(f"speed-up {one_at_a_time / batch_time:.2f}x; identical greedy outputs: {same}/{len(items)}")


if __name__ == "__main__":
    main()
