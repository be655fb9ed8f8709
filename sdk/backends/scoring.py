"""Log-likelihoods of continuations (:meth:`Backend.loglikelihoods`) with a generation backend's own KV cache.

Every backend scores the same way: the context once, then each continuation
token by token from the context's cached state. A backend gives two steps:
``run_context(ids) -> (last logits, state)`` and ``run_token(state, token,
position) -> (logits, state)``. Scoring through the generating model (rather
than a second instance with logits for every position, as a llama.cpp judge
uses) costs no extra memory and sees exactly the weights that wrote the rationale.
Where the continuation starts is :func:`split_continuation`'s, for every scorer.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError
from .sampling import token_logprob

RunContext = Callable[[list[int]], tuple[np.ndarray, Any]]
RunToken = Callable[[Any, int, int], tuple[np.ndarray, Any]]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    k = 0
    for x, y in zip(a, b):
        if x != y:
            break
        k += 1
    return k


def split_continuation(full: Sequence[int], context: Sequence[int]) -> int:
    """Index in ``full`` where the continuation starts.

    Tokenizing ``context + continuation`` can merge tokens across the boundary,
    so the split is the longest common prefix of the two tokenizations, kept
    short enough that at least one token is scored.
    """
    return max(1, min(common_prefix(full, context), len(full) - 1))


def stepwise_loglikelihoods(pairs: Sequence[tuple[str, str]], encode: Callable[[str], list[int]],
                            context_length: int, run_context: RunContext,
                            run_token: RunToken) -> list[tuple[float, int]]:
    """(sum of log-probs, token count) of each continuation after its context.

    Consecutive pairs with the same context (the choices of one question) share
    one pass over it; ``run_context`` must return logits the next call cannot
    overwrite (a copy where the runtime reuses its buffer).
    """
    out: list[tuple[float, int]] = []
    last_context: list[int] | None = None
    context_logits: np.ndarray | None = None
    context_state: Any = None
    for context, continuation in pairs:
        full = encode(context + continuation)
        if len(full) > context_length:
            raise InputError(f"text of {len(full)} tokens is longer than the model's context of {context_length}")
        start = split_continuation(full, encode(context))
        prefix, targets = full[:start], full[start:]
        if prefix != last_context:
            context_logits, context_state = run_context(prefix)
            last_context = prefix
        assert context_logits is not None
        logits, state, total = context_logits, context_state, 0.0
        for i, token in enumerate(targets):
            total += token_logprob(logits, token)
            if i + 1 < len(targets):
                logits, state = run_token(state, token, start + i)
        out.append((total, len(targets)))
    return out
