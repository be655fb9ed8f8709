"""Training throughput: rationalizer's SFT loop against TRL's SFTTrainer, same model, data, LoRA and batch.

Both train the default base (SmolLM2-135M-Instruct rebuilt from its GGUF) with
LoRA r=16 on all linear layers, batch 8, fp32, on the same StrategyQA rows
(I-RO targets, loss on the completion), for the same number of steps, one after
the other in this process. Throughput is non-padding tokens of the sequences
each trainer consumed per second of its training wall time.

Needs the ``bench`` extra (trl, datasets):
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
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    from rationalizer.prompting import build_prompt
    from rationalizer.training.base_student import build_default_base
    from rationalizer.training.config import LoraSettings, SFTConfig
    from rationalizer.training.items import build_items, template_for
    from rationalizer.training.sft import read_training_files, train_sft

    torch.set_num_threads(2)
    base = build_default_base()
    tokenizer = AutoTokenizer.from_pretrained(base)
    examples = [e for e in read_training_files([args.data], args.rows) if e.kind == "factual"]
    template = template_for(tokenizer)
    items, _ = build_items(examples, tokenizer, template, max_length=320)
    mean_tokens = sum(len(it.input_ids) for it in items) / len(items)
    sequences = args.steps * args.batch_size
    lora = dict(r=16, alpha=32, dropout=0.05)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        path.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in examples))
        config = SFTConfig(train=[str(path)], out=str(Path(tmp) / "ours"), base=str(base), max_steps=args.steps,
                           batch_size=args.batch_size, learning_rate=2e-4, max_length=320, checkpoint_every=10**6,
                           device="cpu", lora=LoraSettings(**lora))
        start = time.perf_counter()
        train_sft(config, say=lambda m: None)
        ours_s = time.perf_counter() - start
        result = json.loads((Path(tmp) / "ours" / "train_result.json").read_text())
        ours_loop_s = result["wall_time_s"]

        eos = tokenizer.eos_token
        rows = [{"prompt": build_prompt(template, e.question, e.choices),
                 "completion": f"{e.rationale} So the answer is {e.answer}.{eos}"} for e in examples]
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        trl_args = TRLConfig(output_dir=str(Path(tmp) / "trl"), per_device_train_batch_size=args.batch_size,
                             max_steps=args.steps, learning_rate=2e-4, logging_steps=10**6, save_strategy="no",
                             report_to=[], max_length=320, use_cpu=True, dataloader_num_workers=0, seed=0)
        trainer = SFTTrainer(model=model, args=trl_args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                             peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "gate_proj", "up_proj", "down_proj"]))
        start = time.perf_counter()
        metrics = trainer.train().metrics
        trl_s = metrics.get("train_runtime", time.perf_counter() - start)

    ours_tps = sequences * mean_tokens / ours_loop_s
    trl_tps = sequences * mean_tokens / trl_s
    print(f"{args.steps} steps x batch {args.batch_size} = {sequences} sequences, mean {mean_tokens:.0f} tokens each")
    print("| trainer | training wall s | tokens/s |")
    print("|---|---|---|")
    print(f"| rationalizer SFT loop | {ours_loop_s:.1f} | {ours_tps:.0f} |")
    print(f"| TRL SFTTrainer | {trl_s:.1f} | {trl_tps:.0f} |")
    print(f"ratio (rationalizer / TRL): {ours_tps / trl_tps:.2f}   (rationalizer end to end incl. loading: {ours_s:.1f} s)")


if __name__ == "__main__":
    main()
