"""Does bf16 training reach fp32's dev loss? The default recipe's SFT data, the same steps, both precisions.

Runs ``examples/recipes/default_model/sft.json`` for ``--steps`` steps twice, packed, once
with ``precision: fp32`` and once with ``bf16`` (autocast; on a CPU without native bf16
torch emulates it, so that run is slow there), and prints the dev loss of each at the
last step (computed in fp32 from the trained adapter) and their relative difference.

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

    from rationalizer.training.config import SFTConfig, load_config
    from rationalizer.training.sft import train_sft

    recipe = load_config(SFTConfig, args.config, {})
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            out = Path(tmp) / precision
            config = replace(recipe, out=str(out), max_steps=args.steps, eval_every=args.steps,
                             eval_samples=args.dev_rows, max_new_tokens=8, checkpoint_every=10**6,
                             precision=precision, packing=True, device="cpu")
            start = time.perf_counter()
            AcceleratorState._reset_state(True)  # each run sets its own mixed precision in this process
            train_sft(config, say=lambda m: None)
            evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            last = [row for row in evals if row.get("kind") == "eval"][-1]
            losses[precision] = (last["step"], last["dev_loss"], time.perf_counter() - start)
    print("| precision | step | dev loss | wall s |")
    print("|---|---|---|---|")
    for precision, (step, loss, wall) in losses.items():
        print(f"| {precision} | {step} | {loss:.4f} | {wall:.0f} |")
    fp32, bf16 = losses["fp32"][1], losses["bf16"][1]
    print(f"bf16 dev loss relative to fp32: {(bf16 - fp32) / fp32:+.2%}")


if __name__ == "__main__":
    main()
