"""Text-only rationale metrics: MaRio's diversity over word n-grams."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``."""
    return _WORD.findall(text.lower())


def word_ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """All n-grams of a token list, in order."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repetition(text: str, n: int) -> float:
    """repN = 1 - unique n-grams / total n-grams (0 when the text has no n-gram)."""
    grams = word_ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def diversity(text: str) -> float:
    """MaRio's diversity ``(1 - rep2)(1 - rep3)(1 - rep4)``: 1 for no repeated phrase, toward 0 for loops."""
    out = 1.0
    for n in (2, 3, 4):
        out *= 1.0 - repetition(text, n)
    return out
