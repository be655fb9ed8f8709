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
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rationalizer.training.base_student import build_default_base
    from rationalizer.training.items import build_items, template_for
    from rationalizer.training.packing import pack, packed_loss, target_logits
    from rationalizer.training.sft import read_training_files

    base = build_default_base()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    examples = [e for e in read_training_files(["../shared/data/strategyqa/train.jsonl"], 120) if e.kind == "factual"]
    items, _ = build_items(examples, tokenizer, template_for(tokenizer), max_length=320)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, local_files_only=True),
                           LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                      "down_proj"]))
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
        done = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--batch-size",
                               str(args.batch_size), "--one", json.dumps(setting)],
                              capture_output=True, text=True, timeout=1500)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(f"| {setting[0]} | {setting[1]} | {setting[2]} | failed: {done.stderr.strip().splitlines()[-1:]} | | |")
            continue
        r = json.loads(lines[-1])
        print(f"| {r['threads']} | {r['interop']} | {r['compile']} | {r['step_s']:.2f} | {r['tokens_per_s']:.0f} "
              f"| {r['first_step_s']:.1f} |")


if __name__ == "__main__":
    main()
