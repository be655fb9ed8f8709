"""SCOTT's rationale perturbation for the faithfulness check."""

from __future__ import annotations

import random
import re
from typing import Sequence


def perturb_words(rationale: str, vocabulary: Sequence[str], fraction: float = 0.5, seed: int = 0) -> str:
    """Replace ``fraction`` of the rationale's words with random words from ``vocabulary``.

    Word-level rather than model-token-level so that the same perturbation
    applies to every backend and tokenizer; positions and replacements are
    drawn from ``random.Random(seed)``, so a seed gives the same text every run.
    """
    tokens = re.findall(r"\S+", rationale)
    if not tokens or not vocabulary:
        return rationale
    rng = random.Random(seed)
    k = max(1, round(fraction * len(tokens)))
    for i in rng.sample(range(len(tokens)), k):
        tokens[i] = rng.choice(vocabulary)
    return " ".join(tokens)
