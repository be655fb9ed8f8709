"""Comparing a predicted answer with the gold one (choices, yes/no, numbers)."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"^[-+]?\$?\s*[-+]?[\d,]*\.?\d+(?:e[-+]?\d+)?\s*%?$")


def normalize_answer(text: str) -> str:
    """Lower case, collapse spaces, strip surrounding punctuation and quotes."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    return text.strip(" .,:;!?\"'*`()[]")


def _as_number(text: str) -> float | None:
    t = normalize_answer(text).replace(" ", "")
    if not _NUMBER.match(t):
        return None
    try:
        return float(t.replace("$", "").replace(",", "").rstrip("%"))
    except ValueError:
        return None


def answers_match(predicted: str | None, gold: str, choices: list[str] | None = None) -> bool:
    """True when ``predicted`` is the gold answer: the same choice, or the same number or text."""
    if predicted is None:
        return False
    if choices:
        return normalize_answer(predicted) == normalize_answer(gold)
    a, b = _as_number(predicted), _as_number(gold)
    if a is not None and b is not None:
        return abs(a - b) <= 1e-6 * max(1.0, abs(b))
    return normalize_answer(predicted) == normalize_answer(gold)
