"""Batched generation for backends that can run several sequences in one forward pass (ONNX, torch).

Prompts are left-padded to one length with an attention mask and per-row
position ids, so every row sees exactly its own tokens; each step then feeds
one token per row and reuses the KV cache. Rows stop on their own (EOS, a stop
string or the token budget); the batch ends when every row has. A backend
supplies only the forward step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from .base import GenerationParams, GenerationStats, count_token
from .sampling import numpy_sampler, token_logprob


class BatchStepper(Protocol):
    """The forward pass of a decoder over a batch."""

    def batch_step(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray,
                   past: Any) -> tuple[np.ndarray, Any]:
        """Logits of the last position of each row ``[B, vocab]`` and the new cache."""


@dataclass
class BatchItem:
    """One row: its prompt tokens and settings; ``text`` and ``stats`` are filled in by :func:`generate_batch`."""

    ids: list[int]
    params: GenerationParams
    budget: int
    text: str = ""
    stats: GenerationStats | None = None


def _cut(text: str, stops: list[str]) -> tuple[str, bool]:
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


def generate_batch(stepper: BatchStepper, items: list[BatchItem], pad_id: int, stop_ids: set[int],
                   decode: Callable[[list[int]], str]) -> list[BatchItem]:
    """Generate for every item in one batch; returns the items with ``text`` and ``stats`` set."""
    size = len(items)
    width = max(len(item.ids) for item in items)
    input_ids = np.full((size, width), pad_id, dtype=np.int64)
    mask = np.zeros((size, width), dtype=np.int64)
    for row, item in enumerate(items):
        input_ids[row, width - len(item.ids):] = item.ids
        mask[row, width - len(item.ids):] = 1
        item.stats = GenerationStats(prompt_tokens=len(item.ids), finish_reason="length")
    positions = np.maximum(mask.cumsum(axis=1) - 1, 0)
    picks = [numpy_sampler(item.params) for item in items]
    generated: list[list[int]] = [[] for _ in items]
    done = [item.budget < 1 for item in items]
    logits, past = stepper.batch_step(input_ids, mask, positions, None)
    next_position = positions[:, -1] + 1
    while not all(done):
        step_tokens = np.full((size, 1), pad_id, dtype=np.int64)
        for row, item in enumerate(items):
            if done[row]:
                continue
            stats = item.stats
            token = picks[row](logits[row])
            if token in stop_ids:
                done[row], stats.finish_reason = True, "stop"
                continue
            count_token(stats, item.params, lambda: token_logprob(logits[row], token))
            generated[row].append(token)
            step_tokens[row, 0] = token
            if item.params.stop and _cut(decode(generated[row]), item.params.stop)[1]:
                done[row], stats.finish_reason = True, "stop"
            elif stats.tokens >= item.budget:
                done[row] = True
        if all(done):
            break
        mask = np.concatenate([mask, np.ones((size, 1), dtype=np.int64)], axis=1)
        logits, past = stepper.batch_step(step_tokens, mask, next_position[:, None], past)
        next_position = next_position + 1
    for row, item in enumerate(items):
        item.text, _ = _cut(decode(generated[row]), item.params.stop)
    return items


def generate_prompts(stepper: BatchStepper, prompts: list[list[int]], params: list[GenerationParams],
                     context_length: int, pad_id: int, stop_ids: set[int],
                     decode: Callable[[list[int]], str]) -> list[tuple[str, GenerationStats]]:
    """:func:`generate_batch` over tokenized prompts, each budget capped by the context; (text, stats) per prompt."""
    items = [BatchItem(ids, p, min(p.max_new_tokens, context_length - len(ids))) for ids, p in zip(prompts, params)]
    generate_batch(stepper, items, pad_id, stop_ids, decode)
    return [(item.text, item.stats) for item in items]
