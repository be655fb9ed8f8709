"""Scoring continuations with llama.cpp (GGUF), reusing the KV cache of a shared prefix."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..backends.base import default_threads
from ..backends.llamacpp import gguf_files
from ..bundle import Bundle
from ..errors import BackendError, InputError
from ..prompt_text import llama_encoder
from .tokens import split_continuation


class LlamaCppScorer:
    """Log-likelihoods from a GGUF model. Keeps logits of every position (``logits_all``),
    so it is a separate llama.cpp instance from the one that generates."""

    def __init__(self, bundle: Bundle, threads: int | None = None, context_length: int = 1024) -> None:
        import llama_cpp

        path, adapter = gguf_files(bundle)
        n = threads or default_threads()
        try:
            self._llm = llama_cpp.Llama(model_path=str(path), lora_path=str(adapter) if adapter else None,
                                        n_ctx=context_length, n_threads=n, n_threads_batch=n, logits_all=True,
                                        verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(f"{path}: llama.cpp could not load this GGUF file ({exc})") from None
        self.name = bundle.manifest.name
        self.template = bundle.manifest.prompt
        self.context_length = context_length
        self._encoder = llama_encoder(self._llm)
        self._evaluated: list[int] = []
        self._lock = threading.Lock()

    def _tokens(self, text: str) -> list[int]:
        return self._encoder.encode(text)

    def loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]:
        """(sum of log-probs, token count) of each continuation after its context."""
        with self._lock:
            return [self._one(context, continuation) for context, continuation in pairs]

    def _one(self, context: str, continuation: str) -> tuple[float, int]:
        full = self._tokens(context + continuation)
        if len(full) > self.context_length:
            raise InputError(f"text of {len(full)} tokens is longer than the scorer's context of {self.context_length}")
        start = split_continuation(full, self._tokens(context))
        cached = split_continuation(full, self._evaluated) if self._evaluated else 0
        if cached < len(full):
            self._llm.n_tokens = cached
            self._llm.eval(full[cached:])
            self._evaluated = list(full)
        rows = np.asarray(self._llm.scores[start - 1 : len(full) - 1], dtype=np.float64)
        top = rows.max(axis=1, keepdims=True)
        logz = np.log(np.exp(rows - top).sum(axis=1)) + top[:, 0]
        targets = np.asarray(full[start:])
        picked = rows[np.arange(len(targets)), targets]
        return float((picked - logz).sum()), len(targets)

    def close(self) -> None:
        """Free the model."""
        self._llm.close()
