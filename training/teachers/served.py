"""A teacher behind any OpenAI-compatible endpoint (vLLM, llama.cpp's server, hosted APIs).

Each request carries one example; ``concurrency`` of them are in flight at once
(threads in the runner), which is what keeps a remote GPU server busy.
"""

from __future__ import annotations

import os
from typing import Sequence

from rationalizer.errors import BackendError, UserError
from rationalizer.http_client import RetryPolicy, post_json

from .base import TeacherOutput, TeacherRequest, read_output
from .prompts import chat_messages, completion_prompt


class ServedTeacher:
    """Chat (``/chat/completions``) or completions (``/completions``) requests with retries."""

    batch_size = 1

    def __init__(self, base_url: str, model: str, api: str = "chat", api_key_env: str = "RATIONALIZER_API_KEY",
                 concurrency: int = 4, policy: RetryPolicy | None = None, temperature: float = 0.0,
                 max_new_tokens: int = 128, seed: int | None = 0) -> None:
        if api not in ("chat", "completions"):
            raise UserError(f"api must be 'chat' or 'completions', not {api!r}")
        if concurrency < 1:
            raise UserError("concurrency (requests in flight) must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api = api
        self.api_key = os.environ.get(api_key_env)
        self.concurrency = concurrency
        self.policy = policy or RetryPolicy()
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.name = f"{model}@{self.base_url}"

    def write(self, requests: Sequence[TeacherRequest]) -> list[TeacherOutput]:
        """One HTTP request per item (the runner runs several of these calls at once)."""
        return [self._one(r) for r in requests]

    def _one(self, request: TeacherRequest) -> TeacherOutput:
        payload: dict = {"model": self.model, "max_tokens": self.max_new_tokens, "temperature": self.temperature,
                         "stop": ["\n\n"]}
        if self.seed is not None:
            payload["seed"] = self.seed + request.candidate
        if self.api == "chat":
            payload["messages"] = chat_messages(request.example, request.target)
            reply = post_json(f"{self.base_url}/chat/completions", payload, self.api_key, self.policy)
        else:
            payload["prompt"] = completion_prompt(request.example, request.target)
            reply = post_json(f"{self.base_url}/completions", payload, self.api_key, self.policy)
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] if self.api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.base_url}: reply has no completion text: {str(reply)[:200]}") from None
        return read_output(text or "", request.example)
