"""MaRio's frozen reference, computed once per round: top-k next-token log-probabilities per pool item.

Within a round the pool does not change and the reference never trains, so its
distribution at every target position is the same at every step. Computing it
once and keeping the top ``k`` log-probabilities (plus the mass of everything
else) replaces a second forward pass at every step with a lookup.

The KL term then compares the policy and the reference on the same coarsened
vocabulary: the reference's top-k tokens, and one bucket "every other token"
holding the rest of each distribution's mass,

    KL_k(p‖q) = Σ_{v ∈ top-k(q)} p(v)·(log p(v) − log q(v)) + p_rest·(log p_rest − log q_rest),

with p_rest = 1 − Σ_{top-k} p(v) and q_rest likewise. Merging tokens can only
lose divergence (the log-sum inequality), so KL_k ≤ KL, with equality when k is
the vocabulary size; the gap is the divergence the policy builds among tokens the
reference finds unlikely, which is where a small k with its own bucket is
accurate (tests compare it with the exact KL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .items import TrainItem
from .packing import pack, target_logits


@dataclass
class ReferenceTopK:
    """The reference's distribution at every target position of every item, top-k plus the rest."""

    ids: list[Any]
    """Per item, ``[n_targets, k]`` token ids."""
    logprobs: list[Any]
    """Per item, ``[n_targets, k]`` their log-probabilities."""
    rest: list[Any]
    """Per item, ``[n_targets]`` log of the remaining mass."""

    def batch(self, indices: Sequence[int], device) -> tuple[Any, Any, Any]:
        """The cached rows of the items ``indices`` in packing order (as :func:`pack` lays targets out)."""
        import torch

        return tuple(torch.cat([part[i] for i in indices]).to(device) for part in (self.ids, self.logprobs, self.rest))


def compute_reference(reference, items: Sequence[TrainItem], k: int, batch_size: int, device,
                      autocast=None) -> ReferenceTopK:
    """Run the frozen reference once over every item (packed, target positions only) and keep top-k."""
    import contextlib

    import torch

    ids, logprobs, rest = [], [], []
    reference.eval()
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch = pack(chunk).to(device)
        with torch.no_grad(), (autocast() if autocast else contextlib.nullcontext()):
            logp = torch.log_softmax(target_logits(reference, batch).float(), dim=-1)
        top, where = logp.topk(min(k, logp.shape[-1]), dim=-1)
        remaining = torch.log1p(-top.exp().sum(-1).clamp(max=1 - 1e-6))
        for item in range(len(chunk)):
            mine = batch.target_item == item
            ids.append(where[mine].cpu())
            logprobs.append(top[mine].cpu())
            rest.append(remaining[mine].cpu())
    return ReferenceTopK(ids, logprobs, rest)


def topk_kl(policy_logp, ref_ids, ref_logprobs, ref_rest):
    """``[K]`` KL_k(policy ‖ reference) per target position (see the module docstring)."""
    import torch

    p_top_log = policy_logp.gather(-1, ref_ids)
    p_top = p_top_log.exp()
    p_rest = (1 - p_top.sum(-1)).clamp(min=1e-12)
    top_term = (p_top * (p_top_log - ref_logprobs)).sum(-1)
    return top_term + p_rest * (torch.log(p_rest) - ref_rest)
