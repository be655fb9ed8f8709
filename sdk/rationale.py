"""The result of one question: answer, rationale and how it was produced."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Rationale:
    """An answer and the rationale the model gave for it.

    ``answer`` is None when no answer could be read from ``text`` (the raw
    generation) and none was scored; ``rationale`` is then the whole text.
    """

    question: str
    answer: str | None
    rationale: str
    text: str
    choices: list[str] | None
    quality: dict[str, int]
    prompt_tokens: int
    tokens_generated: int
    latency_s: float
    time_to_first_token_s: float | None
    finish_reason: str
    backend: str
    model: str
    mean_logprob: float | None = None
    """Mean log-probability of the generated tokens (asked for by self-consistency voting)."""
    votes: dict[str, int] | None = None
    """With ``votes=N``: how many of the N sampled rationales reached each answer."""
    answer_scored: bool = False
    """True when the text named none of the choices and ``answer`` is the choice the model scored
    likeliest after its rationale (``rationale`` is then the text before the answer marker)."""

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed after the first token (None when fewer than two tokens came)."""
        if self.time_to_first_token_s is None or self.tokens_generated < 2:
            return None
        decode_time = self.latency_s - self.time_to_first_token_s
        return (self.tokens_generated - 1) / decode_time if decode_time > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, with ``tokens_per_s`` added."""
        out = asdict(self)
        out["tokens_per_s"] = self.tokens_per_s
        return out
