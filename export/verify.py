"""Checking an exported file against the HF model it came from: tokens, next-token log-probs, greedy text.

The reference is the fp32 HF model. Each export runs the same prompts (the
bundle's own template, with its control codes) in its real runtime, llama.cpp
or ONNX Runtime, and is compared on:

* tokenization (must be identical, or the export changes the model's input),
* top-1 agreement and the largest |log p| difference over HF's 20 most likely next tokens,
* greedy continuation: the share of tokens that match HF's before the first difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rationalizer.backends.stop_ids import hf_stop_token_ids
from rationalizer.errors import UserError
from rationalizer.logprobs import log_softmax
from rationalizer.manifest import Manifest
from rationalizer.prompting import build_prompt, render_codes, resolve_quality

QUESTIONS = (
    ("Can a penguin fly?", None),
    ("Where would you keep milk cold?", ["fridge", "oven", "shelf"]),
    ("Is the sun a star?", None),
    ("Would a pear sink in water?", None),
)
GREEDY_TOKENS = 24
TOP = 20


@dataclass
class Check:
    """How an export agrees with the fp32 HF model."""

    tokens_identical: bool
    top1_agreement: float
    max_abs_logprob_diff: float
    greedy_match: float
    """Mean share of the greedy continuation equal to HF's before the first different token."""

    def to_dict(self) -> dict:
        """As plain JSON values."""
        return asdict(self)


def check_prompts(manifest: Manifest) -> list[str]:
    """The verification prompts, rendered with the bundle's template and its best control codes."""
    codes = render_codes(manifest.control, resolve_quality(manifest.control, "best"))
    return [build_prompt(manifest.prompt, q, c, codes, manifest.control.placement) for q, c in QUESTIONS]


@dataclass
class Reference:
    """The HF model's answers to the check prompts."""

    ids: list[list[int]]
    logprobs: list[np.ndarray]
    greedy: list[list[int]]
    stop_ids: set[int]


def hf_reference(hf_dir: Path, prompts: list[str]) -> Reference:
    """Run the fp32 HF model on ``prompts``: token ids, next-token log-probs, greedy continuation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, use_safetensors=True, dtype=torch.float32,
                                                 local_files_only=True).eval()
    stop_ids = hf_stop_token_ids(model, tokenizer)
    ids, logprobs, greedy = [], [], []
    with torch.inference_mode():
        for prompt in prompts:
            tokens = tokenizer(prompt).input_ids
            ids.append(tokens)
            cache = _Incremental(lambda new, past: _hf_step(model, torch, new, past))
            logprobs.append(log_softmax(cache(tokens)))
            greedy.append(_greedy(cache, tokens, stop_ids))
    return Reference(ids, logprobs, greedy, stop_ids)


def _hf_step(model, torch, new: list[int], past):
    out = model(torch.tensor([new]), past_key_values=past, use_cache=True)
    return out.logits[0, -1].float().numpy(), out.past_key_values


class _Incremental:
    """Next-token logits for growing sequences, feeding only the tokens after the cached prefix."""

    def __init__(self, step: Callable[[list[int], Any], tuple[np.ndarray, Any]]) -> None:
        self.step = step
        self.seq: list[int] = []
        self.state: Any = None

    def __call__(self, seq: list[int]) -> np.ndarray:
        if not self.seq or len(seq) <= len(self.seq) or seq[:len(self.seq)] != self.seq:
            self.seq, self.state = [], None
        logits, self.state = self.step(seq[len(self.seq):], self.state)
        self.seq = list(seq)
        return logits


def _greedy(next_logits: Callable[[list[int]], np.ndarray], tokens: list[int], stop_ids: set[int]) -> list[int]:
    """Argmax continuation of up to GREEDY_TOKENS tokens."""
    out: list[int] = []
    seq = list(tokens)
    for _ in range(GREEDY_TOKENS):
        token = int(np.argmax(next_logits(seq)))
        if token in stop_ids:
            break
        out.append(token)
        seq.append(token)
    return out


def _prefix_share(reference: list[int], candidate: list[int]) -> float:
    if not reference and not candidate:
        return 1.0
    same = 0
    for a, b in zip(reference, candidate):
        if a != b:
            break
        same += 1
    return same / max(len(reference), len(candidate))


def compare(ref: Reference, ids: list[list[int]], new_runner: Callable[[], Callable[[list[int]], np.ndarray]]) -> Check:
    """Score a runtime given its token ids for the prompts and a maker of token-sequence -> next-logits functions."""
    top1, worst, greedy = 0, 0.0, []
    for ref_ids, ref_lp, ref_greedy, got_ids in zip(ref.ids, ref.logprobs, ref.greedy, ids):
        next_logits = new_runner()
        lp = log_softmax(next_logits(got_ids))
        top = np.argsort(-ref_lp)[:TOP]
        top1 += int(lp.argmax() == ref_lp.argmax())
        worst = max(worst, float(np.abs(lp[top] - ref_lp[top]).max()))
        greedy.append(_prefix_share(ref_greedy, _greedy(next_logits, got_ids, ref.stop_ids)))
    n = len(ref.ids)
    return Check(ids == ref.ids, top1 / n, worst, float(np.mean(greedy)))


def check_gguf(ref: Reference, prompts: list[str], model: Path, adapter: Path | None = None) -> Check:
    """Compare a GGUF file (optionally with a GGUF LoRA adapter) in llama.cpp against the reference."""
    import llama_cpp

    from rationalizer.backends.llamacpp import plain_cpu_buffers

    with plain_cpu_buffers():
        llm = llama_cpp.Llama(model_path=str(model), lora_path=str(adapter) if adapter else None, n_ctx=512,
                              logits_all=True, n_threads=None, verbose=False)
    try:
        ids = [llm.tokenize(p.encode("utf-8"), add_bos=True, special=True) for p in prompts]

        def step(new: list[int], state) -> tuple[np.ndarray, Any]:
            if state is None:
                llm.reset()
            llm.eval(new)
            return np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32), True

        return compare(ref, ids, lambda: _Incremental(step))
    finally:
        llm.close()


def check_onnx(ref: Reference, prompts: list[str], backend) -> Check:
    """Compare a loaded :class:`~rationalizer.backends.onnx.OnnxBackend` against the reference."""
    ids = [backend.encode(p) for p in prompts]

    def step(new: list[int], state) -> tuple[np.ndarray, Any]:
        past, position = state if state is not None else (backend.empty_past(), 0)
        logits, past = backend.forward(new, past, position)
        return logits, (past, position + len(new))

    return compare(ref, ids, lambda: _Incremental(step))


def require_faithful(label: str, check: Check, max_logprob_diff: float) -> None:
    """Fail an unquantized export that does not reproduce the HF model (a conversion bug, not rounding)."""
    if not check.tokens_identical:
        raise UserError(f"{label}: tokenizes the check prompts differently from the HF tokenizer")
    if check.top1_agreement < 1.0 or check.max_abs_logprob_diff > max_logprob_diff:
        raise UserError(f"{label}: does not match the HF model (top-1 agreement {check.top1_agreement:.2f}, "
                        f"max |Δ log p| {check.max_abs_logprob_diff:.3f} > {max_logprob_diff})")
