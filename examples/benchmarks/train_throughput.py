"""Training throughput in one process, on the same rows: today's loop, the new default, and TRL.

All three train the default base (SmolLM2-135M-Instruct rebuilt from its GGUF)
with LoRA r=16 on all linear layers, batch 8, lr 2e-4, on the same StrategyQA
rows (I-RO targets, loss on the completion), for the same number of steps, one
after the other:

- baseline: this project's loop as it was (fp32, padded batches, logits at every position);
- default: the loop's defaults (``packing``: padding-free rows, logits at target positions
  only; ``precision: auto``, which takes bf16 only where the CPU computes it natively);
- TRL's SFTTrainer at its best settings on this CPU: completion-only loss,
  ``padding_free`` (flattened rows with restarting position ids, the same
  mechanism), and bf16 where the CPU has it, fp32 otherwise.

Throughput is the tokens of the sequences each trainer consumed per second of
its training wall time (the same sequences for all three). Needs the ``bench``
extra (trl, datasets):

    python examples/benchmarks/train_throughput.py [--steps 12] [--batch-size 8] [--rows 400]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/strategyqa/train.jsonl")
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from bench_setup import TARGETS, base_and_tokenizer
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    from accelerate.state import AcceleratorState

    from rationalizer.prompting import build_prompt
    from rationalizer.training.config import LoraSettings, SFTConfig
    from rationalizer.training.items import build_items, template_for
    from rationalizer.training.precision import choose_precision
    from rationalizer.training.sft import read_training_files, train_sft

    torch.set_num_threads(args.threads)
    base, tokenizer = base_and_tokenizer()
    examples = [e for e in read_training_files([args.data], args.rows) if e.kind == "factual"]
    template = template_for(tokenizer)
    items, _ = build_items(examples, tokenizer, template, max_length=320)
    mean_tokens = sum(len(it.input_ids) for it in items) / len(items)
    sequences = args.steps * args.batch_size
    lora = dict(r=16, alpha=32, dropout=0.05)
    auto, why = choose_precision("auto", "cpu")
    rows: list[tuple[str, float]] = []

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        path.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in examples))
        for label, settings in (("baseline: fp32, padded, full-sequence logits", dict(precision="fp32", packing=False)),
                                (f"default: packed, target-only logits, precision auto -> {auto}",
                                 dict(precision="auto", packing=True))):
            out = Path(tmp) / label.split(":")[0]
            config = SFTConfig(train=[str(path)], out=str(out), base=str(base), max_steps=args.steps,
                               batch_size=args.batch_size, learning_rate=2e-4, max_length=320,
                               checkpoint_every=10**6, device="cpu", lora=LoraSettings(**lora), **settings)
            AcceleratorState._reset_state(True)  # each run sets its own mixed precision in this process
            train_sft(config)
            rows.append((label, json.loads((out / "train_result.json").read_text())["wall_time_s"]))

        eos = tokenizer.eos_token
        data = [{"prompt": str(build_prompt(template, e.question, e.choices)),
                 "completion": f"{e.rationale} So the answer is {e.answer}.{eos}"} for e in examples]
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, local_files_only=True)
        trl_args = TRLConfig(output_dir=str(Path(tmp) / "trl"), per_device_train_batch_size=args.batch_size,
                             max_steps=args.steps, learning_rate=2e-4, logging_steps=10**6, save_strategy="no",
                             report_to=[], max_length=320, use_cpu=True, dataloader_num_workers=0, seed=0,
                             completion_only_loss=True, padding_free=True, bf16=auto == "bf16")
        AcceleratorState._reset_state(True)  # the Trainer builds its Accelerator here
        trainer = SFTTrainer(model=model, args=trl_args, train_dataset=Dataset.from_list(data),
                             processing_class=tokenizer,
                             peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                                    target_modules=TARGETS))
        start = time.perf_counter()
        metrics = trainer.train().metrics
        rows.append((f"TRL SFTTrainer: completion-only, padding_free, {auto}",
                     metrics.get("train_runtime", time.perf_counter() - start)))

    print(f"{args.steps} steps x batch {args.batch_size} = {sequences} sequences, mean {mean_tokens:.0f} tokens each, "
          f"{args.threads} threads; precision auto here: {auto} ({why})")
    print("| trainer | training wall s | tokens/s |")
    print("|---|---|---|")
    tps = {}
    for label, seconds in rows:
        tps[label] = sequences * mean_tokens / seconds
        print(f"| {label} | {seconds:.1f} | {tps[label]:.0f} |")
    baseline, default, trl = tps.values()
    print(f"speedup over baseline: {default / baseline:.2f}")
    print(f"ratio vs TRL: {default / trl:.2f}")


if __name__ == "__main__":
    main()
