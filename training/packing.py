"""Padding-free packed batches, and the loss computed on the target positions only.

A batch of items becomes one row: the sequences back to back, positions
restarting at 0 for each one. transformers reads restarting ``position_ids``
(with no attention mask and no cache) as packed sequences and keeps attention
within each of them (``find_packed_sequence_indices`` in its masking utilities),
so no token sees another sequence and no compute goes to padding.

Targets are shifted here, per sequence: position t of a sequence predicts its
token t+1, and the last position of each sequence predicts nothing, so no target
crosses a boundary. Only the positions that have a target go through the output
head (``logits_to_keep`` with their indices): with a 49,152-word vocabulary the
head over the prompt positions is a large share of a step that the loss never
uses. The loss is the padded path's: the mean over items of weight × (mean NLL
of the item's target tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .items import IGNORE, TrainItem


@dataclass
class PackedBatch:
    """One packed row and where its targets are."""

    input_ids: Any
    """``[1, T]`` token ids of every sequence, back to back."""
    position_ids: Any
    """``[1, T]`` positions, restarting at 0 at each sequence."""
    target_positions: Any
    """``[K]`` row positions whose next token is a target."""
    targets: Any
    """``[K]`` the target token at each of those positions."""
    target_item: Any
    """``[K]`` which item (0..n-1) each target belongs to."""
    weights: Any
    """``[n]`` the items' loss weights."""

    def to(self, device) -> "PackedBatch":
        """The same batch on ``device``."""
        return PackedBatch(*(t.to(device) for t in (self.input_ids, self.position_ids, self.target_positions,
                                                    self.targets, self.target_item, self.weights)))


def pack(items: Sequence[TrainItem]) -> PackedBatch:
    """Pack ``items`` into one row with per-sequence positions and shifted targets."""
    import torch

    ids: list[int] = []
    positions: list[int] = []
    target_positions: list[int] = []
    targets: list[int] = []
    owners: list[int] = []
    for index, item in enumerate(items):
        start = len(ids)
        ids += item.input_ids
        positions += range(len(item.input_ids))
        for t, label in enumerate(item.labels[1:]):
            if label != IGNORE:
                target_positions.append(start + t)
                targets.append(label)
                owners.append(index)
    return PackedBatch(
        torch.tensor([ids], dtype=torch.long),
        torch.tensor([positions], dtype=torch.long),
        torch.tensor(target_positions, dtype=torch.long),
        torch.tensor(targets, dtype=torch.long),
        torch.tensor(owners, dtype=torch.long),
        torch.tensor([it.weight for it in items], dtype=torch.float32),
    )


def target_logits(model, batch: PackedBatch):
    """``[K, vocab]`` logits at the batch's target positions only (one forward pass, no cache)."""
    out = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False,
                logits_to_keep=batch.target_positions)
    return out.logits[0]


def packed_loss(logits, batch: PackedBatch):
    """(mean over items of weight × mean target NLL, number of target tokens) from :func:`target_logits`."""
    import torch

    nll = torch.nn.functional.cross_entropy(logits.float(), batch.targets, reduction="none")
    n = batch.weights.shape[0]
    sums = torch.zeros(n, device=nll.device, dtype=nll.dtype).index_add_(0, batch.target_item, nll)
    counts = torch.zeros(n, device=nll.device, dtype=nll.dtype).index_add_(0, batch.target_item, torch.ones_like(nll))
    per_item = sums / counts.clamp(min=1)
    return (per_item * batch.weights.to(per_item.device)).mean(), int(batch.targets.numel())
