"""Choosing the next token from logits with numpy: greedy, or temperature and top-p (nucleus).

Backends without torch (ONNX Runtime) sample here; the torch backend has the
same rule written in torch so that logits never leave the device.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..logprobs import log_softmax
from .base import GenerationParams


def token_logprob(logits: np.ndarray, token: int) -> float:
    """log p(token) under the softmax of ``logits`` (temperature 1: the model's own distribution)."""
    return float(log_softmax(logits)[token])


def sampling_seed(params: GenerationParams) -> int:
    """The seed a sampled generation draws with: ``params.seed``, else one from the clock."""
    return params.seed if params.seed is not None else time.time_ns() % 2**31


def numpy_sampler(params: GenerationParams) -> Callable[[np.ndarray], int]:
    """:func:`pick_token` for one generation, with its own generator seeded by :func:`sampling_seed`."""
    rng = np.random.default_rng(sampling_seed(params)) if params.temperature > 0 else None
    return lambda logits: pick_token(logits, params, rng)


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
