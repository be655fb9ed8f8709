"""The optimization loop shared by the trainers: accumulation, schedule, logging, eval, checkpoints."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from rationalizer.progress import Progress, or_silent

from .batches import batch_order, collate, weighted_loss
from .packing import pack, packed_loss, target_logits
from .checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)


def _log(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def rewind_log(path: Path, keep: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite the JSONL log ``path`` atomically with only the rows ``keep`` accepts; return how many went.

    A resumed run repeats the steps after its checkpoint, so their rows (and a line torn by
    the kill) must go, or the log holds those steps twice.
    """
    from rationalizer.atomic import atomic_write_text

    if not path.exists():
        return 0
    kept, dropped = [], 0
    for raw in path.read_bytes().split(b"\n"):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
            row = json.loads(text)
        except (ValueError, RecursionError):
            row = None
        if isinstance(row, dict) and keep(row):
            kept.append(text.rstrip("\r") + "\n")
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(kept))
    return dropped


def batch_loss(model, batch_items, pad_id: int, packing: bool, device):
    """(batch, logits, loss, target tokens) of one batch: packed with target-only logits, or padded."""
    if packing:
        batch = pack(batch_items).to(device)
        logits = target_logits(model, batch)
        loss, tokens = packed_loss(logits, batch)
        return batch, logits, loss, tokens
    batch = {k: v.to(device) for k, v in collate(batch_items, pad_id).items()}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss, tokens = weighted_loss(logits, batch["labels"], batch["weights"])
    return batch, logits, loss, tokens


def _shown(value: float | None, digits: int) -> str:
    """A dev metric as the log line shows it: n/a when it could not be computed (as eval prints)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def run_training(accelerator, student, items, config, out: Path, resume: bool, progress: Progress | None,
                 evaluate: Callable[[], dict[str, float]] | None, extra_loss: Callable | None = None,
                 label: str = "train", loss_fn: Callable | None = None) -> dict[str, Any]:
    """Train ``student.model`` on ``items``; returns step counts, timing and the best dev figures.

    ``progress`` counts the optimizer steps under ``label``, with the loss and trained tokens/s of each.

    With ``config.packing`` each batch is one padding-free packed row and logits are computed at its
    target positions only (:mod:`.packing`); otherwise a padded batch with logits everywhere.
    ``extra_loss(model, batch, logits, indices)`` adds terms to the NLL (MaRio's KL and entropy): it
    gets the batch as built, its logits and the indices of its items in ``items``.
    ``loss_fn(model, batch_items, indices, device) -> (loss, target tokens)`` replaces the NLL whole (DPO:
    an item is a pair); ``items`` then only need ``input_ids`` for length grouping.
    """
    import torch
    from accelerate.utils import broadcast_object_list
    from transformers import get_scheduler

    world, rank = accelerator.num_processes, accelerator.process_index
    batches_per_epoch = len(batch_order(items, config.batch_size, config.seed, 0, config.group_by_length)) // world
    if batches_per_epoch == 0:  # each process needs a batch, or the loop would wait forever for a step
        from rationalizer.errors import UserError

        raise UserError(f"{len(items)} training sequences make fewer batches of {config.batch_size} than there are "
                        f"processes ({world}): use a smaller batch size or fewer processes")
    steps_per_epoch = max(1, batches_per_epoch // config.grad_accum)
    total = config.total_steps(steps_per_epoch)
    params = [p for p in student.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    name = {"constant": "constant_with_warmup"}.get(config.schedule, config.schedule)
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=int(config.warmup_ratio * total),
                              num_training_steps=total)
    # student.model stays the unwrapped module (evaluation and saving use it); model may be DDP-wrapped.
    model, optimizer, scheduler = accelerator.prepare(student.model, optimizer, scheduler)
    ckpt_dir, log = out / "checkpoints", out / "metrics.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"step": 0, "micro": 0, "best_dev_accuracy": None, "best_step": None, "stale": 0,
                             "trained_tokens": 0, "wall_time_s": 0.0}
    found = latest_checkpoint(ckpt_dir) if resume else None
    if found is not None:
        state = load_checkpoint(found, accelerator.unwrap_model(model), optimizer, scheduler)
        if accelerator.is_main_process:
            # the log goes on from the checkpoint's step: rows of the steps to be redone go
            rewind_log(log, lambda row: isinstance(row.get("step"), int) and row["step"] <= state["step"])
            logger.info("resumed from %s", found.name)
    elif accelerator.is_main_process and log.exists():
        log.unlink()
    pad = student.tokenizer.pad_token_id
    if evaluate is not None and found is None and accelerator.is_main_process:
        before = evaluate()  # the starting point, so every run reports before and after
        _log(log, {"kind": "eval", "step": 0, **before})
        logger.info("step 0: dev loss %s, dev accuracy %s", _shown(before["dev_loss"], 4),
                    _shown(before["dev_accuracy"], 3))
    progress = or_silent(progress)
    progress.start(total, label)
    if state["step"]:
        progress.update(state["step"])  # the steps the checkpoint already holds
    started = time.perf_counter() - state["wall_time_s"]
    model.train()
    stop = state["step"] >= total
    while not stop:
        epoch, skip = divmod(state["micro"], batches_per_epoch)
        mine = batch_order(items, config.batch_size, config.seed, epoch, config.group_by_length)[: batches_per_epoch * world][rank::world]
        for indices in mine[skip:]:
            with accelerator.accumulate(model):
                if loss_fn is not None:
                    loss, tokens = loss_fn(model, [items[i] for i in indices], indices, accelerator.device)
                else:
                    batch, logits, loss, tokens = batch_loss(model, [items[i] for i in indices], pad,
                                                             getattr(config, "packing", False), accelerator.device)
                    if extra_loss is not None:
                        loss = loss + extra_loss(model, batch, logits, indices)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state["micro"] += 1
            state["trained_tokens"] += tokens * world
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            state["wall_time_s"] = time.perf_counter() - started
            row = {"kind": "train", "step": state["step"], "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0],
                   "tokens_per_s": state["trained_tokens"] / max(state["wall_time_s"], 1e-9)}
            if accelerator.is_main_process:
                _log(log, row)
            progress.update(1, loss=row["loss"], tokens_per_s=row["tokens_per_s"])
            stop = state["step"] >= total
            if evaluate is not None and (state["step"] % config.eval_every == 0 or stop):
                stop = _evaluate(accelerator, evaluate, state, config, out, log, model) or stop
                stop = broadcast_object_list([stop])[0]
            if state["step"] % config.checkpoint_every == 0 or stop:
                if accelerator.is_main_process:
                    save_checkpoint(ckpt_dir, state["step"], accelerator.unwrap_model(model), optimizer, scheduler,
                                    state, config.keep_checkpoints)
                accelerator.wait_for_everyone()
            if stop:
                break
    state["wall_time_s"] = time.perf_counter() - started
    best = out / "best" / "adapter.safetensors"
    return {**state, "best_adapter": str(best) if best.exists() else None,
            "trained_tokens_per_s": state["trained_tokens"] / max(state["wall_time_s"], 1e-9)}


def _evaluate(accelerator, evaluate, state, config, out: Path, log: Path, model) -> bool:
    """Run the dev evaluation on the main process; keep the best adapter; True means stop early."""
    if not accelerator.is_main_process:
        return False
    from peft import get_peft_model_state_dict
    from safetensors.torch import save

    from rationalizer.atomic import atomic_write_bytes

    metrics = evaluate()
    _log(log, {"kind": "eval", "step": state["step"], **metrics})
    logger.info("step %d: dev loss %s, dev accuracy %s", state["step"], _shown(metrics["dev_loss"], 4),
                _shown(metrics["dev_accuracy"], 3))
    if metrics["dev_accuracy"] is None:  # nothing to choose the best adapter or stop early by
        return False
    if state["best_dev_accuracy"] is None or metrics["dev_accuracy"] > state["best_dev_accuracy"]:
        state.update(best_dev_accuracy=metrics["dev_accuracy"], best_dev_loss=metrics["dev_loss"],
                     best_step=state["step"], stale=0)
        weights = {k: v.detach().cpu().contiguous()
                   for k, v in get_peft_model_state_dict(accelerator.unwrap_model(model)).items()}
        atomic_write_bytes(out / "best" / "adapter.safetensors", save(weights))
        return False
    state["stale"] += 1
    patience = config.early_stopping_patience
    return patience is not None and state["stale"] >= patience
