"""Time of one MaRio step, before and after: same model, pool rows, batch and LoRA, one process.

Before: padded batch, logits at every position, the frozen reference's forward
pass at every step, exact KL. After: packed batch, logits at the target
positions only, the reference's top-k distribution computed once per round and
looked up. The one-off cost of that reference pass is printed too, with the
number of steps a round needs to pay it back.

    python examples/benchmarks/mario_step.py [--steps 4] [--batch-size 8] [--top-k 64]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/strategyqa/train.jsonl")
    parser.add_argument("--rows", type=int, default=120)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from bench_setup import base_and_tokenizer, frozen, lora_student, training_items

    from rationalizer.training.batches import collate, weighted_loss
    from rationalizer.training.items import IGNORE
    from rationalizer.training.packing import pack, packed_loss, target_logits
    from rationalizer.training.reference import compute_reference, topk_kl

    torch.set_num_threads(args.threads)
    base, tokenizer = base_and_tokenizer()
    items = training_items(tokenizer, args.rows, args.data, codes=True)
    reference = frozen(base)
    policy = lora_student(base)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-5)
    beta = 0.05
    batches = [list(range(s * args.batch_size, (s + 1) * args.batch_size)) for s in range(args.steps + 1)]

    def before(indices: list[int]) -> None:
        batch = collate([items[i] for i in indices], tokenizer.pad_token_id)
        logits = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss, _ = weighted_loss(logits, batch["labels"], batch["weights"])
        mask = (batch["labels"][:, 1:] != IGNORE).float()
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        with torch.no_grad():
            ref = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        kl = (logp.exp() * (logp - torch.log_softmax(ref.float(), -1))).sum(-1)
        (loss + beta * (kl * mask).sum() / mask.sum()).backward()
        optimizer.step()
        optimizer.zero_grad()

    start = time.perf_counter()
    cache = compute_reference(reference, items[: len(batches) * args.batch_size], args.top_k, args.batch_size, "cpu")
    cache_s = time.perf_counter() - start

    def after(indices: list[int]) -> None:
        batch = pack([items[i] for i in indices])
        logits = target_logits(policy, batch)
        loss, _ = packed_loss(logits, batch)
        kl = topk_kl(torch.log_softmax(logits.float(), -1), *cache.batch(indices, "cpu"))
        (loss + beta * kl.mean()).backward()
        optimizer.step()
        optimizer.zero_grad()

    timings = {}
    for label, step in (("before: padded, full logits, reference pass every step", before),
                        ("after: packed, target logits, cached top-k reference", after)):
        step(batches[0])  # warm-up, not counted
        start = time.perf_counter()
        for indices in batches[1:]:
            step(indices)
        timings[label] = (time.perf_counter() - start) / args.steps
    first, second = timings.values()
    print(f"MaRio step, default base, LoRA r=16 all linear, fp32, batch {args.batch_size}, {args.threads} threads, "
          f"mean of {args.steps} steps")
    print("| step | s |")
    print("|---|---|")
    for label, seconds in timings.items():
        print(f"| {label} | {seconds:.2f} |")
    per_step = cache_s / (len(batches))
    print(f"reference top-{args.top_k} cache: {cache_s:.2f} s for {len(batches)} batches ({per_step:.2f} s a batch, "
          "once per round)")
    print(f"step time after / before: {second / first:.2f}  (with the cache's share per step: "
          f"{(second + per_step) / first:.2f})")


if __name__ == "__main__":
    main()
