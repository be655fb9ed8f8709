"""Does bf16 training reach fp32's dev loss? The default recipe's SFT data, the same steps, both precisions.

Runs ``examples/recipes/default_model/sft.json`` for ``--steps`` steps three times: the
fp32 padded loop (the reference the issue names), fp32 packed, and bf16 packed (autocast;
on a CPU without native bf16 torch emulates it, so that run is slow there). It prints the
dev loss of each at the last step (computed in fp32 from the trained adapter) and each
one's difference relative to the fp32 padded run.

    python examples/benchmarks/precision_dev_loss.py [--steps 40] [--dev-rows 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="examples/recipes/default_model/sft.json")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--dev-rows", type=int, default=64, help="dev questions scored for the dev loss")
    args = parser.parse_args()

    from accelerate.state import AcceleratorState

    from rationalizer.config_file import load_config
    from rationalizer.training.config import SFTConfig
    from rationalizer.training.sft import train_sft

    recipe = load_config(SFTConfig, args.config, {})
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, precision, packing in (("fp32 padded", "fp32", False), ("fp32 packed", "fp32", True),
                                          ("bf16 packed", "bf16", True)):
            out = Path(tmp) / label.replace(" ", "-")
            config = replace(recipe, out=str(out), max_steps=args.steps, eval_every=args.steps,
                             eval_samples=args.dev_rows, max_new_tokens=8, checkpoint_every=10**6,
                             precision=precision, packing=packing, device="cpu")
            start = time.perf_counter()
            AcceleratorState._reset_state(True)  # each run sets its own mixed precision in this process
            train_sft(config)
            evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            last = [row for row in evals if row.get("kind") == "eval"][-1]
            losses[label] = (last["step"], last["dev_loss"], time.perf_counter() - start)
    reference = losses["fp32 padded"][1]
    print("| run | step | dev loss | vs fp32 padded | wall s |")
    print("|---|---|---|---|---|")
    for label, (step, loss, wall) in losses.items():
        print(f"| {label} | {step} | {loss:.4f} | {(loss - reference) / reference:+.2%} | {wall:.0f} |")
    bf16 = losses["bf16 packed"][1]
    print(f"bf16 dev loss relative to fp32 padded: {(bf16 - reference) / reference:+.2%}")


if __name__ == "__main__":
    main()
