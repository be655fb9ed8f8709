"""A verifier behind an OpenAI-compatible chat endpoint that returns log-probabilities."""

from __future__ import annotations

import math
from typing import Sequence

from ..http_client import RetryPolicy, post_json
from ..metrics.simulation import plausibility_prompt


class OpenAIVerifier:
    """Asks the served model the verification question and reads P(Yes) from ``top_logprobs``."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, top_logprobs: int = 10,
                 policy: RetryPolicy | None = None) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.top_logprobs = top_logprobs
        self.policy = policy or RetryPolicy()
        self.name = f"{model}@{base_url}"

    def probabilities(self, items: Sequence[tuple[str, str, str]]) -> list[float | None]:
        """P(Yes) / (P(Yes) + P(No)) per item; None when neither word is among the top tokens."""
        return [self._one(*item) for item in items]

    def _one(self, question: str, answer: str, rationale: str) -> float | None:
        reply = post_json(self.url, {
            "model": self.model,
            "messages": [{"role": "user", "content": plausibility_prompt(question, answer, rationale)}],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }, self.api_key, self.policy)
        try:
            top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        except (KeyError, IndexError, TypeError):
            return None
        mass = {"yes": 0.0, "no": 0.0}
        for entry in top:
            word = str(entry.get("token", "")).strip().lower()
            if word in mass:
                mass[word] += math.exp(float(entry.get("logprob", -math.inf)))
        total = mass["yes"] + mass["no"]
        return mass["yes"] / total if total > 0 else None
