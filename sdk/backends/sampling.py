"""Choosing the next token from logits with numpy: greedy, or temperature and top-p (nucleus).

Backends without torch (ONNX Runtime) sample here; the torch backend has the
same rule written in torch so that logits never leave the device.
"""

from __future__ import annotations

import numpy as np

from .base import GenerationParams


def token_logprob(logits: np.ndarray, token: int) -> float:
    """log p(token) under the softmax of ``logits`` (temperature 1: the model's own distribution)."""
    x = logits.astype(np.float64)
    m = x.max()
    return float(x[token] - m - np.log(np.exp(x - m).sum()))


def pick_token(logits: np.ndarray, params: GenerationParams, rng: np.random.Generator | None) -> int:
    """The next token id: argmax when ``params.temperature`` is 0, else a top-p sample drawn with ``rng``."""
    if params.temperature <= 0 or rng is None:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    scaled -= scaled.max()
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        sorted_probs = probs[order]
        # keep every token whose preceding mass is still below top_p (the first one always)
        keep = np.cumsum(sorted_probs) - sorted_probs < params.top_p
        order, sorted_probs = order[keep], sorted_probs[keep]
        return int(order[rng.choice(len(order), p=sorted_probs / sorted_probs.sum())])
    return int(rng.choice(len(probs), p=probs))
