"""The decode loop of backends that run their decoder step by step themselves (ONNX Runtime, torch).

The loop is written once here, as a template: the token budget, stop ids and
stop strings, streamed text and the stats of a single generation, batched
generation (:mod:`.batching`) and continuation scoring (:mod:`.scoring`). A
backend supplies the forward passes, :meth:`SteppingBackend.prefill` and
:meth:`SteppingBackend.step` (and :meth:`~SteppingBackend.batch_step` for
batches), in whatever type its logits come in; it samples them with
:meth:`~SteppingBackend.sampler`, numpy's rule unless it overrides it.
llama.cpp samples inside llama.cpp and keeps its own loop.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..prompt_text import PromptEncoder
from .base import Backend, GenerationParams, GenerationStats, TokenText, count_token
from .batching import generate_prompts
from .sampling import numpy_sampler, token_logprob
from .scoring import stepwise_loglikelihoods


class SteppingBackend(Backend):
    """A backend whose own code feeds the decoder one token at a time over a KV cache."""

    def __init__(self, tokenizer: Any, encoder: PromptEncoder, stop_ids: set[int], context_length: int,
                 pad_id: int, batch_size: int) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self._encoder = encoder
        self.stop_ids = stop_ids
        self.context_length = context_length
        self.pad_id = pad_id
        self.max_batch_size = batch_size

    @abstractmethod
    def prefill(self, ids: list[int]) -> tuple[Any, Any]:
        """Run the decoder over ``ids`` from an empty cache: (logits of the last position, cache)."""

    @abstractmethod
    def step(self, state: Any, token: int, position: int) -> tuple[Any, Any]:
        """Feed ``token`` at ``position`` on a cache of the tokens before it (``state`` may hold more, left by
        an earlier continuation scored from the same context, which the step must not see): (logits, cache)."""

    @abstractmethod
    def batch_step(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray,
                   past: Any) -> tuple[np.ndarray, Any]:
        """The decoder over a left-padded batch (:class:`~.batching.BatchStepper`)."""

    def sampler(self, params: GenerationParams) -> Callable[[Any], int]:
        """The next-token rule of one generation over :meth:`prefill`'s logits: numpy's (:mod:`.sampling`)."""
        return numpy_sampler(params)

    def token_logprob(self, logits: Any, token: int) -> float:
        """log p(token) under the softmax of :meth:`prefill`'s logits."""
        return token_logprob(self.logits_array(logits), token)

    def logits_array(self, logits: Any) -> np.ndarray:
        """:meth:`prefill`'s logits as a numpy array (for scoring); they are one already unless overridden."""
        return logits

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (control tokens only from a template's :class:`Prompt` parts; BOS as the
        tokenizer adds it)."""
        return self._encoder.encode(text)

    def decode(self, tokens: list[int]) -> str:
        """The text of generated ids, special tokens left out (tokenizers' and transformers' tokenizers
        both take this call)."""
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def count_tokens(self, text: str) -> int:
        """Token count of ``text``, as :meth:`encode` makes it."""
        return len(self.encode(text))

    def _stream_locked(self, prompt: str, params: GenerationParams, stats: GenerationStats) -> Iterator[str]:
        ids = self.encode(prompt)
        stats.prompt_tokens = len(ids)
        budget = min(params.max_new_tokens, self.context_length - len(ids))
        stats.finish_reason = "length"
        if budget < 1:
            return
        pick = self.sampler(params)
        text = TokenText(self.decode, params.stop)
        logits, state = self.prefill(ids)
        position = len(ids)
        while True:
            token = pick(logits)
            if token in self.stop_ids:
                stats.finish_reason = "stop"
                break
            count_token(stats, params, lambda: self.token_logprob(logits, token))
            piece = text.add(token)
            if piece:
                yield piece
            if text.stopped:
                stats.finish_reason = "stop"
                break
            if stats.tokens >= budget:
                break  # no forward pass for a token that will not be sampled
            logits, state = self.step(state, token, position)
            position += 1
        rest = text.finish()
        if rest:
            yield rest

    def generate_many(self, prompts: list[str], params: list[GenerationParams]) -> list[tuple[str, GenerationStats]]:
        """Generate for several prompts, up to ``max_batch_size`` per forward pass."""
        if self.max_batch_size < 2:
            return super().generate_many(prompts, params)
        with self._lock:
            return generate_prompts(self, [self.encode(p) for p in prompts], params, self.context_length,
                                    self.pad_id, self.stop_ids, self.decode)

    def loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]:
        """(sum of log-probs, token count) of each continuation after its context; the context's cache is
        computed once and every continuation steps on from it."""
        def run_context(ids: list[int]) -> tuple[np.ndarray, Any]:
            logits, state = self.prefill(ids)
            return self.logits_array(logits), state

        def run_token(state: Any, token: int, position: int) -> tuple[np.ndarray, Any]:
            logits, state = self.step(state, token, position)
            return self.logits_array(logits), state

        with self._lock:
            return stepwise_loglikelihoods(pairs, self.encode, self.context_length, run_context, run_token)
