"""Scoring continuations with a transformers causal LM (HF bundles; torch)."""

from __future__ import annotations

import threading
from typing import Sequence

from ..bundle import Bundle
from ..prompt_text import transformers_encoder
from .tokens import split_continuation


class TorchScorer:
    """Log-likelihoods from an HF model folder of a bundle, or from a model already in memory."""

    def __init__(self, bundle: Bundle | None = None, device: str = "cpu", model=None, tokenizer=None,
                 name: str | None = None, template=None) -> None:
        if bundle is not None:
            from ..backends.hf import load_hf

            model, tokenizer = load_hf(bundle, device)
            name, template = bundle.manifest.name, bundle.manifest.prompt
        self.model, self.tokenizer = model, tokenizer
        self._encode = transformers_encoder(tokenizer).encode
        self.name = name or "model"
        self.template = template
        self._lock = threading.Lock()

    def loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]:
        """(sum of log-probs, token count) of each continuation after its context."""
        import torch

        out = []
        with self._lock, torch.inference_mode():
            for context, continuation in pairs:
                full = self._encode(context + continuation)
                start = split_continuation(full, self._encode(context))
                ids = torch.tensor([full], device=self.model.device)
                logits = self.model(ids).logits[0, start - 1 : len(full) - 1].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                targets = ids[0, start:]
                out.append((float(logprobs.gather(1, targets[:, None]).sum()), len(full) - start))
        return out

    def close(self) -> None:
        """Drop the model."""
        self.model = None
