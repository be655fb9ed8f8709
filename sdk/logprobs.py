"""Log-probabilities from logits with numpy: the package's one log-softmax.

Backends without torch, the judges' metrics and the export checks all turn
scores into log-probabilities here (torch code calls ``torch.log_softmax``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def log_softmax(logits: np.ndarray | Sequence[float], axis: int = -1) -> np.ndarray:
    """``log p`` over ``axis`` in float64: ``(x - max) - log(sum(exp(x - max)))``, stable for any logits."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(scores: Sequence[float]) -> list[float]:
    """Probabilities of a few scores (log-likelihoods of choices, say), as plain floats."""
    return [float(p) for p in np.exp(log_softmax(scores))]
