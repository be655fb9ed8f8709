"""Batches: length-grouped and shuffled by seed, padded on the right, with per-item loss weights."""

from __future__ import annotations

import random
from typing import Sequence

from .items import IGNORE, TrainItem


def batch_order(items: Sequence[TrainItem], batch_size: int, seed: int, epoch: int, group_by_length: bool = True) -> list[list[int]]:
    """Index batches for one epoch: shuffled, then (optionally) sorted by length inside windows of
    50 batches so that a batch holds similar lengths, and the batches shuffled again."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(items)))
    rng.shuffle(order)
    if group_by_length:
        window = batch_size * 50
        order = [i for start in range(0, len(order), window)
                 for i in sorted(order[start : start + window], key=lambda j: len(items[j].input_ids))]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(items: Sequence[TrainItem], pad_id: int):
    """Tensors ``input_ids``, ``attention_mask``, ``labels`` and ``weights`` for a batch."""
    import torch

    width = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, it in enumerate(items):
        n = len(it.input_ids)
        ids[row, :n] = torch.tensor(it.input_ids)
        labels[row, :n] = torch.tensor(it.labels)
        mask[row, :n] = 1
    weights = torch.tensor([it.weight for it in items], dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "weights": weights}


def left_padded(rows: Sequence[list[int]], pad_id: int, device=None):
    """``(input_ids, attention_mask)`` tensors for generation: token rows padded on the left."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, tokens in enumerate(rows):
        if tokens:
            ids[row, width - len(tokens):] = torch.tensor(tokens)
            mask[row, width - len(tokens):] = 1
    return ids.to(device), mask.to(device)


def weighted_loss(logits, labels, weights):
    """Mean over items of weight × (mean NLL of the item's labelled tokens)."""
    import torch

    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                                            ignore_index=IGNORE, reduction="none").view(shift_labels.shape)
    counts = (shift_labels != IGNORE).sum(dim=1).clamp(min=1)
    per_item = nll.sum(dim=1) / counts
    return (per_item * weights.to(per_item.device)).mean(), int((shift_labels != IGNORE).sum())
