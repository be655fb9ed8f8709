"""A local transformers teacher, with SCOTT's contrastive decoding.

Contrastive decoding picks, at every step, the token that maximizes
``log p(tok | q, target) - λ·log p(tok | q, contrast)``: tokens that are likely
only because of the target answer win, so the rationale argues for that answer.
As in contrastive decoding generally, only tokens that are plausible under the
target (``p >= α·max p``) compete, so the subtraction cannot promote junk.
transformers' ``generate`` has no two-context objective, hence this loop.
"""

from __future__ import annotations

import math
from typing import Sequence

from rationalizer.backends.stop_ids import hf_stop_token_ids
from rationalizer.dataset import Example
from rationalizer.errors import UserError
from rationalizer.prompt_text import Prompt, transformers_encoder

from ..batches import left_padded
from .base import TeacherOutput, TeacherRequest, read_output
from .prompts import chat_messages, completion_prompt


def chat_prompt(tokenizer, messages: list[dict[str, str]]) -> Prompt:
    """The tokenizer's chat template over ``messages``: the template's text trusted, every content untrusted.

    Each content is replaced by a sentinel for rendering, then put back as untrusted text, so that a
    question cannot close its turn with the template's markers.
    """
    sentinels = [f"\x00{i}\x00" for i in range(len(messages))]
    rendered = tokenizer.apply_chat_template([{**m, "content": s} for m, s in zip(messages, sentinels)],
                                             tokenize=False, add_generation_prompt=True)
    parts: list[tuple[str, bool]] = []
    for message, sentinel in zip(messages, sentinels):
        before, _, rendered = rendered.partition(sentinel)
        parts += [(before, True), (message["content"], False)]
    return Prompt(parts + [(rendered, True)])


def teacher_prompt(tokenizer, example: Example, answer: str) -> str:
    """What a local teacher is given to explain ``answer`` for ``example``: the model's chat template over
    the few-shot messages when it has one (a :class:`Prompt` whose message contents are untrusted data),
    else the plain few-shot text. ARTE's DPO (``prompt_style: teacher``) trains on this same prompt."""
    if getattr(tokenizer, "chat_template", None):
        return chat_prompt(tokenizer, chat_messages(example, answer))
    return completion_prompt(example, answer)


class LocalTeacher:
    """An HF causal LM (local folder or hub id) that writes rationales in batches."""

    concurrency = 1

    def __init__(self, model_path: str, device: str = "cpu", contrastive: bool = True, lam: float = 0.5,
                 alpha: float = 0.1, batch_size: int = 8, max_new_tokens: int = 128, temperature: float = 0.0,
                 top_p: float = 0.9, seed: int = 0) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise UserError(f"a local teacher needs torch and transformers: pip install 'rationalizer[train]' ({exc})") from None
        self.torch = torch
        try:
            # local files only: a hub id must already be in the HF cache, nothing is downloaded
            self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(model_path, use_safetensors=True,
                                                              local_files_only=True).to(device).eval()
        except OSError as exc:
            raise UserError(f"{model_path}: cannot load a causal LM here ({str(exc).splitlines()[0]})") from None
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._encoder = transformers_encoder(self.tokenizer)
        self.name = str(model_path)
        self.contrastive, self.lam, self.alpha = contrastive, lam, alpha
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.temperature, self.top_p, self.seed = temperature, top_p, seed

    def render(self, request: TeacherRequest, answer: str) -> str:
        """The prompt text for explaining ``answer`` (:func:`teacher_prompt`)."""
        return teacher_prompt(self.tokenizer, request.example, answer)

    def write(self, requests: Sequence[TeacherRequest]) -> list[TeacherOutput]:
        """Rationales for a batch of requests."""
        targets = [self.render(r, r.target) for r in requests]
        if self.contrastive and self.temperature == 0:
            contrasts = [self.render(r, r.contrast) if r.contrast else t for r, t in zip(requests, targets)]
            lams = [self.lam if r.contrast else 0.0 for r in requests]
            texts = self.contrastive_decode(targets, contrasts, lams)
        else:
            texts = self.sample(targets)
        return [read_output(t, r.example) for t, r in zip(texts, requests)]

    def _encode(self, texts: list[str]):
        ids, mask = left_padded([self._encoder.encode(t) for t in texts], self.tokenizer.pad_token_id,
                                self.model.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids, mask, positions

    def contrastive_decode(self, targets: list[str], contrasts: list[str], lams: list[float]) -> list[str]:
        """Greedy decoding on the contrastive score, both contexts advanced with the same token."""
        torch = self.torch
        n = len(targets)
        ids, mask, positions = self._encode(targets + contrasts)
        lam = torch.tensor(lams, device=self.model.device)[:, None]
        with torch.inference_mode():
            out = self.model(ids, attention_mask=mask, position_ids=positions, use_cache=True)
            steps = self._loop(out, mask, positions, n, lambda lp: self._pick_contrastive(lp, n, lam), pair=True)
        return steps

    def _pick_contrastive(self, logprobs, n: int, lam):
        pos, neg = logprobs[:n], logprobs[n:]
        score = pos - lam * neg
        if self.alpha > 0:
            floor = pos.max(dim=-1, keepdim=True).values + math.log(self.alpha)
            score = score.masked_fill(pos < floor, float("-inf"))
        return score.argmax(dim=-1)

    def sample(self, targets: list[str]) -> list[str]:
        """Plain decoding: greedy at temperature 0, else temperature + top-p sampling (seeded)."""
        torch = self.torch
        ids, mask, positions = self._encode(targets)
        generator = torch.Generator(device=self.model.device).manual_seed(self.seed)

        def pick(logprobs):
            if self.temperature == 0:
                return logprobs.argmax(dim=-1)
            probs = torch.softmax(logprobs / self.temperature, dim=-1)
            sorted_p, order = probs.sort(dim=-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < self.top_p
            sorted_p = sorted_p * keep
            choice = torch.multinomial(sorted_p / sorted_p.sum(-1, keepdim=True), 1, generator=generator)
            return order.gather(-1, choice)[:, 0]

        with torch.inference_mode():
            out = self.model(ids, attention_mask=mask, position_ids=positions, use_cache=True)
            return self._loop(out, mask, positions, len(targets), pick, pair=False)

    def _loop(self, out, mask, positions, n: int, pick, pair: bool) -> list[str]:
        """Shared decode loop: stop each row at EOS, a blank line or the token limit."""
        torch = self.torch
        stop_ids = hf_stop_token_ids(self.model, self.tokenizer)
        generated: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        past = out.past_key_values
        logits = out.logits[:, -1].float()
        for _ in range(self.max_new_tokens):
            tokens = pick(torch.log_softmax(logits, dim=-1))
            for i in range(n):
                if done[i]:
                    continue
                token = int(tokens[i])
                if token in stop_ids:
                    done[i] = True
                    continue
                generated[i].append(token)
                if "\n\n" in self.tokenizer.decode(generated[i][-4:], skip_special_tokens=True):
                    done[i] = True
            if all(done):
                break
            step = torch.cat([tokens, tokens]) if pair else tokens
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(step[:, None], attention_mask=mask, position_ids=positions, past_key_values=past,
                             use_cache=True)
            past = out.past_key_values
            logits = out.logits[:, -1].float()
        texts = [self.tokenizer.decode(g, skip_special_tokens=True) for g in generated]
        return [t.split("\n\n")[0] for t in texts]
