"""Where a training step spends its time: SFT and MaRio steps on the default base, by kind of work.

Forward and backward time per kind of module is taken with module hooks (the
CPU runs synchronously, so wall-clock between hooks is the module's time), the
rest with timers around each phase: collation, loss, optimizer, and MaRio's
reference forward pass. It also counts the work the loss never uses: padding
tokens, and positions that go through the output head without a target.

    python examples/benchmarks/train_profile.py [--steps 4] [--batch-size 8] [--packed]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict


def _kind(name: str) -> str | None:
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "lm_head":
        return "output head"
    if leaf == "embed_tokens":
        return "embeddings"
    if leaf == "self_attn":
        return "attention (q/k/v/o + sdpa, LoRA incl.)"
    if leaf == "mlp":
        return "MLP (gate/up/down, LoRA incl.)"
    if leaf.endswith("layernorm") or leaf == "norm":
        return "RMSNorm"
    return None


def attach(model, fwd: dict, bwd: dict) -> None:
    """Hooks that add each module kind's forward and backward seconds to ``fwd`` / ``bwd``."""
    for name, module in model.named_modules():
        kind = _kind(name)
        if kind is None:
            continue

        def pre(_m, _i, kind=kind):
            _m._t0 = time.perf_counter()

        def post(_m, _i, _o, kind=kind):
            fwd[kind] += time.perf_counter() - _m._t0

        def bpre(_m, _g, kind=kind):
            _m._b0 = time.perf_counter()

        def bpost(_m, _gi, _go, kind=kind):
            bwd[kind] += time.perf_counter() - getattr(_m, "_b0", time.perf_counter())

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
        module.register_full_backward_pre_hook(bpre)
        module.register_full_backward_hook(bpost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/strategyqa/train.jsonl")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--packed", action="store_true", help="profile the packed, target-only step instead")
    args = parser.parse_args()

    import torch
    from bench_setup import base_and_tokenizer, frozen, lora_student, training_items

    from rationalizer.training.batches import collate, weighted_loss
    from rationalizer.training.items import IGNORE
    from rationalizer.training.packing import pack, packed_loss, target_logits

    torch.set_num_threads(args.threads)
    base, tokenizer = base_and_tokenizer()
    items = training_items(tokenizer, args.rows, args.data)
    model = lora_student(base)
    reference = frozen(base)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    fwd: dict[str, float] = defaultdict(float)
    bwd: dict[str, float] = defaultdict(float)
    attach(model, fwd, bwd)
    phase: dict[str, float] = defaultdict(float)
    positions = targets = real = slots = 0
    model.train()
    for mario in (False, True):
        for step in range(args.steps + 1):  # the first step warms up and is not counted
            batch_items = items[step * args.batch_size:(step + 1) * args.batch_size]
            record = step > 0
            t = time.perf_counter()
            batch = pack(batch_items) if args.packed else collate(batch_items, tokenizer.pad_token_id)
            t_collate = time.perf_counter() - t
            t = time.perf_counter()
            if args.packed:
                logits = target_logits(model, batch)
            else:
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            t_forward = time.perf_counter() - t
            t = time.perf_counter()
            if args.packed:
                loss, _ = packed_loss(logits, batch)
            else:
                loss, _ = weighted_loss(logits, batch["labels"], batch["weights"])
            t_loss = time.perf_counter() - t
            t_ref = 0.0
            if mario:
                t = time.perf_counter()
                with torch.no_grad():
                    if args.packed:
                        ref = target_logits(reference, batch).float()
                    else:
                        ref = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                t_ref = time.perf_counter() - t
                t = time.perf_counter()
                logp = torch.log_softmax(logits.float(), -1)
                loss = loss + 0.05 * (logp.exp() * (logp - torch.log_softmax(ref.float(), -1))).sum(-1).mean()
                t_loss += time.perf_counter() - t
            t = time.perf_counter()
            loss.backward()
            t_backward = time.perf_counter() - t
            t = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad()
            t_opt = time.perf_counter() - t
            if not record:
                fwd.clear()
                bwd.clear()
                continue
            label = "MaRio" if mario else "SFT"
            for key, value in (("collate", t_collate), ("forward", t_forward), ("loss", t_loss),
                               ("reference forward", t_ref), ("backward", t_backward), ("optimizer", t_opt)):
                phase[f"{label}|{key}"] += value / args.steps
            for kind, value in fwd.items():
                phase[f"{label}|forward: {kind}"] += value / args.steps
            for kind, value in bwd.items():
                if not kind.startswith("attention"):  # its hook cannot see the tuple it returns; counted below
                    phase[f"{label}|backward: {kind}"] += value / args.steps
            hooked = sum(v for k, v in bwd.items() if not k.startswith("attention"))
            phase[f"{label}|backward: attention, loss and the rest"] += (t_backward - hooked) / args.steps
            fwd.clear()
            bwd.clear()
            if not mario:
                if args.packed:  # the head runs at the target positions only
                    positions += int(batch.targets.numel())
                    targets += int(batch.targets.numel())
                    real += int(batch.input_ids.numel())
                    slots += int(batch.input_ids.numel())
                else:
                    positions += int(batch["attention_mask"].numel())
                    targets += int((batch["labels"][:, 1:] != IGNORE).sum())
                    real += int(batch["attention_mask"].sum())
                    slots += int(batch["attention_mask"].numel())
    mode = "packed, target-only logits" if args.packed else "padded, full-sequence logits (today's loop)"
    print(f"default base, LoRA r=16 all linear, fp32, batch {args.batch_size}, {args.threads} threads, {mode}; "
          f"mean of {args.steps} steps")
    print(f"padding: {1 - real / slots:.1%} of token slots; positions through the output head without a target: "
          f"{1 - targets / positions:.1%}")
    for label in ("SFT", "MaRio"):
        total = sum(v for k, v in phase.items() if k.startswith(label + "|") and ":" not in k.split("|")[1])
        print(f"\n{label} step: {total:.2f} s")
        print("| part | s | share |")
        print("|---|---|---|")
        for key, value in phase.items():
            if key.startswith(label + "|"):
                part = key.split("|", 1)[1]
                indent = "  " if ":" in part else ""
                print(f"| {indent}{part} | {value:.3f} | {value / total:.0%} |")


if __name__ == "__main__":
    main()
