"""Threads and torch.compile for the packed SFT step on this CPU: which settings pay, measured.

Each setting runs in its own subprocess (thread pools are fixed once torch starts)
over the same rows: intra-op threads 1 and 2, inter-op threads 1 and 2, and
``torch.compile`` of the model (inductor, the default backend). The packed step
is the trainer's default: padding-free row, logits at target positions only.

    python examples/benchmarks/train_threads.py [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def one(threads: int, interop: int, compile_model: bool, steps: int, batch_size: int) -> dict:
    """Time ``steps`` packed steps after one warm-up (in this process)."""
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(interop)
    from bench_setup import base_and_tokenizer, lora_student, training_items

    from rationalizer.training.packing import pack, packed_loss, target_logits

    base, tokenizer = base_and_tokenizer()
    items = training_items(tokenizer, 120)
    model = lora_student(base)
    forward = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    times, tokens = [], 0
    start_all = time.perf_counter()
    for step in range(steps + 1):
        batch = pack(items[step * batch_size:(step + 1) * batch_size])
        start = time.perf_counter()
        loss, _ = packed_loss(target_logits(forward, batch), batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:
            times.append(time.perf_counter() - start)
            tokens += int(batch.input_ids.numel())
    return {"threads": threads, "interop": interop, "compile": compile_model, "step_s": sum(times) / len(times),
            "tokens_per_s": tokens / sum(times), "first_step_s": time.perf_counter() - start_all - sum(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed to one setting")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        threads, interop, compiled = json.loads(args.one)
        print(json.dumps(one(threads, interop, compiled, args.steps, args.batch_size)))
        return
    print(f"packed SFT step, default base, LoRA r=16, fp32, batch {args.batch_size}, mean of {args.steps} steps")
    print("| intra-op threads | inter-op threads | torch.compile | step s | tokens/s | warm-up s |")
    print("|---|---|---|---|---|---|")
    for setting in ([1, 1, False], [2, 1, False], [2, 2, False], [2, 1, True]):
        try:
            done = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--batch-size",
                                   str(args.batch_size), "--one", json.dumps(setting)],
                                  capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:  # inductor compiles each new packed-row length anew
            print(f"| {setting[0]} | {setting[1]} | {setting[2]} | not done in {args.timeout} s | | |")
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(f"| {setting[0]} | {setting[1]} | {setting[2]} | failed: {done.stderr.strip().splitlines()[-1:]} | | |")
            continue
        r = json.loads(lines[-1])
        print(f"| {r['threads']} | {r['interop']} | {r['compile']} | {r['step_s']:.2f} | {r['tokens_per_s']:.0f} "
              f"| {r['first_step_s']:.1f} |")


if __name__ == "__main__":
    main()
