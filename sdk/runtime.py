"""``Rationalizer``: load a bundle, ask questions, get answers with rationales."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .backends import GenerationParams, GenerationStats, choose_backend
from .bundle import Bundle
from .errors import InputError
from .integrity import VerifyMode
from .manifest import Manifest, ParserSettings
from .metrics.answers import normalize_answer
from .prompt_text import Prompt
from .prompting import (Quality, answer_context, build_prompt, choice_continuation, clean_choices, clean_question,
                        parse_answer, render_codes, resolve_quality, text_before_answer)
from .rationale import Rationale

MAX_NEW_TOKENS_LIMIT = 4096
MAX_VOTES = 64
VOTE_TEMPERATURE = 0.7


class Rationalizer:
    """A loaded model that answers questions and says why.

    Calls from several threads are safe. Whether they run in parallel depends on
    the backend (``backend_parallel``); the llama.cpp backend serializes them.
    """

    def __init__(self, bundle: Bundle, backend: Any, backend_name: str, fmt: str, device: str) -> None:
        self.bundle = bundle
        self.manifest: Manifest = bundle.manifest
        self._backend = backend
        self.backend_name = backend_name
        self.format = fmt
        self.device = device

    @classmethod
    def load(
        cls,
        path: str | None = None,
        backend: str = "auto",
        device: str = "auto",
        threads: int | None = None,
        verify: VerifyMode = "cached",
        endpoint: str | None = None,
        model: str | None = None,
    ) -> "Rationalizer":
        """Open a bundle (None: the embedded default model) with a backend for the device.

        Every weight file of the chosen format is checked against the manifest's
        size and sha256 before it is loaded (``verify``: see :mod:`rationalizer.integrity`).
        ``backend="http"`` runs the bundle's prompts on the OpenAI-compatible completions server at
        ``endpoint`` (``http://host:port/v1``), asking for ``model`` (default: the first it serves);
        no weights are loaded here (see :mod:`rationalizer.backends.http`).
        """
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a positive integer, not {threads!r}")
        if verify not in ("cached", "full", "off"):
            raise InputError(f"verify must be 'cached', 'full' or 'off', not {verify!r}")
        if (endpoint is not None or model is not None) and backend != "http":
            raise InputError("endpoint and model are for backend='http'")
        bundle = Bundle.load(path)
        if backend == "http":
            from .backends.http import HttpBackend

            if endpoint is None:
                raise InputError("backend 'http' needs endpoint='http://host:port/v1' (--endpoint URL)")
            remote = HttpBackend.connect(bundle, endpoint, model)
            return cls(bundle, remote, HttpBackend.name, "remote", "remote")
        backend_cls, fmt, concrete_device = choose_backend(bundle, backend, device)
        bundle.verify(fmt, verify)
        instance = backend_cls.open(bundle, fmt, concrete_device, threads)
        return cls(bundle, instance, backend_cls.name, fmt, concrete_device)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, manifest: Manifest, folder: str | Path | None = None,
                   fmt: str = "hf") -> "Rationalizer":
        """A model already in memory (a transformers causal LM and its tokenizer) run through the torch
        backend with ``manifest``'s template, control codes and parser: the trainer evaluates its policy
        and the exporter its fp32 reference this way. ``folder`` is where the bundle lies or will be
        written (``bundle.folder``; the working directory when None), ``fmt`` the weights it stands for."""
        from .backends.hf import TorchBackend  # torch only now, never at `import rationalizer`

        bundle = Bundle(Path(folder) if folder is not None else Path.cwd(), manifest)
        backend = TorchBackend.from_model(model, tokenizer, manifest)
        return cls(bundle, backend, TorchBackend.name, fmt, str(model.device))

    @property
    def name(self) -> str:
        """The bundle's model name."""
        return self.manifest.name

    @property
    def backend(self) -> Any:
        """The :class:`~rationalizer.backends.base.Backend` that runs the weights: its raw ``stream`` and
        ``loglikelihoods`` take prompts as given, with no template (``rationalize serve``'s completions route)."""
        return self._backend

    def generation_params(self, max_new_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
                          seed: int | None = None) -> GenerationParams:
        """Decoding settings checked as :meth:`rationalize` checks them (:class:`InputError` when out of range);
        the bundle's stop strings and token budget where none is given."""
        return self._params(max_new_tokens, temperature, top_p, seed)

    @property
    def backend_parallel(self) -> bool:
        """Whether concurrent calls run in parallel (True) or take turns (False)."""
        return bool(self._backend.parallel_calls)

    def quality_codes(self) -> dict[str, int]:
        """The control codes the bundle offers: reward name -> number of levels."""
        return {r.name: r.levels for r in self.manifest.control.rewards if r.offered}

    def prompt(self, question: str, choices: Sequence[str] | None = None, quality: Quality = "best") -> Prompt:
        """The exact model input for a question (after validation), for inspection or other runtimes.

        It is a :class:`~rationalizer.prompt_text.Prompt`: a ``str`` that also records which parts the
        template wrote, the only parts whose control tokens are real.
        """
        q, c, selection = self._prepare(question, choices, quality)
        return self._render(q, c, selection)

    def check_input(self, question: str, choices: Sequence[str] | None = None, quality: Quality = "best",
                    max_new_tokens: int | None = None) -> None:
        """Raise :class:`InputError` unless the question can be answered as asked: its length, its
        choices, the quality codes, and a prompt that leaves room in the context (counted in tokens)."""
        q, c, selection = self._prepare(question, choices, quality)
        self._plan(self._render(q, c, selection), c, self._params(max_new_tokens, 0.0, 1.0, None))

    def _plan(self, prompt: str, choices: list[str] | None, params: GenerationParams) -> GenerationParams:
        """Fit a generation into the context before it starts; the token budget is cut to what fits.

        The context must hold the prompt, the new tokens and, for a choice question whose text may name
        no choice, the marker and the longest choice that are scored after the rationale.
        """
        context = self.manifest.generation.context_length
        used = self._backend.count_tokens(prompt)
        reserve = 0
        if choices and self.manifest.parser.score_choices:
            marker = self.manifest.parser.marker
            reserve = max(self._backend.count_tokens(f" {marker}{choice_continuation(c)}") for c in choices)
        room = context - used - reserve
        if room < 1:
            extra = f" (+{reserve} to score the choices)" if reserve else ""
            raise InputError(f"the prompt is {used} tokens{extra}; this model's context holds {context}: "
                             "shorten the question or its choices")
        return replace(params, max_new_tokens=min(params.max_new_tokens, room))

    def _render(self, question: str, choices: list[str] | None, selection: dict[str, int]) -> Prompt:
        control = self.manifest.control
        return build_prompt(self.manifest.prompt, question, choices, render_codes(control, selection), control.placement)

    def _prepare(self, question: str, choices: Sequence[str] | None, quality: Quality):
        q = clean_question(question, self.manifest.generation.max_question_chars)
        c = clean_choices(choices)
        return q, c, resolve_quality(self.manifest.control, quality)

    def _params(self, max_new_tokens: int | None, temperature: float, top_p: float, seed: int | None) -> GenerationParams:
        n = self.manifest.generation.max_new_tokens if max_new_tokens is None else max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NEW_TOKENS_LIMIT:
            raise InputError(f"max_new_tokens must be an integer in 1..{MAX_NEW_TOKENS_LIMIT}, not {n!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 5:
            raise InputError(f"temperature must be a number in 0..5, not {temperature!r}")
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise InputError(f"top_p must be a number in (0, 1], not {top_p!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31):
            raise InputError(f"seed must be an integer in 0..2^31-1, not {seed!r}")
        return GenerationParams(n, float(temperature), float(top_p), seed, list(self.manifest.prompt.stop))

    def stream(
        self,
        question: str,
        choices: Sequence[str] | None = None,
        quality: Quality = "best",
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Iterator[str | Rationale]:
        """Yield the generated text in pieces as it comes, then the finished :class:`Rationale`."""
        q, c, selection = self._prepare(question, choices, quality)
        params = self._params(max_new_tokens, temperature, top_p, seed)
        yield from self._run(q, c, selection, params)

    def _run(self, q: str, c: list[str] | None, selection: dict[str, int],
             params: GenerationParams) -> Iterator[str | Rationale]:
        prompt = self._render(q, c, selection)
        params = self._plan(prompt, c, params)
        stats = GenerationStats()
        pieces: list[str] = []
        start = time.perf_counter()
        for piece in self._backend.stream(prompt, params, stats):
            pieces.append(piece)
            yield piece
        yield self._result(q, c, selection, "".join(pieces), stats, params, start)

    def _result(self, q: str, c: list[str] | None, selection: dict[str, int], text: str, stats: GenerationStats,
                params: GenerationParams, start: float) -> Rationale:
        parsed = parse_answer(text, c, self.manifest.parser)
        answer, rationale, scored = parsed.answer, parsed.rationale, False
        if answer is None and c and self.manifest.parser.score_choices:
            rationale = text_before_answer(text, self.manifest.parser.marker)
            answer, scored = self._likeliest(self._render(q, c, selection), rationale, c), True
        latency = time.perf_counter() - start
        first = None if stats.first_token_at is None else stats.first_token_at - start
        return Rationale(
            question=q,
            answer=answer,
            rationale=rationale,
            text=text,
            choices=c,
            quality=selection,
            prompt_tokens=stats.prompt_tokens,
            tokens_generated=stats.tokens,
            latency_s=latency,
            time_to_first_token_s=first,
            finish_reason=stats.finish_reason,
            backend=self.backend_name,
            model=self.name,
            mean_logprob=stats.logprob_sum / stats.tokens if params.logprobs and stats.tokens else None,
            answer_scored=scored,
        )

    def choice_logprobs(self, question: str, choices: Sequence[str], rationale: str = "",
                        quality: Quality = "best") -> dict[str, float]:
        """How likely the model finds each choice as the answer after ``rationale`` and the answer marker.

        Each value is the mean log-probability per token of `` <choice>.`` (length-normalized, as MaRio's
        simulator scores choices); with an empty rationale, the answer right after the question. This is
        what picks the answer when generated text names none of the choices.
        """
        q, c, selection = self._prepare(question, choices, quality)
        if c is None:
            raise InputError("choice_logprobs needs choices")
        return self._choice_scores(self._render(q, c, selection), rationale, c)

    def _choice_scores(self, prompt: str, rationale: str, choices: list[str]) -> dict[str, float]:
        marker = self.manifest.parser.marker
        context = self._scoring_context(prompt, rationale.strip(), marker, max(choices, key=len))
        scored = self._backend.loglikelihoods([(context, choice_continuation(c)) for c in choices])
        return {c: ll / max(n, 1) for c, (ll, n) in zip(choices, scored)}

    def _scoring_context(self, prompt: str, rationale: str, marker: str, longest: str) -> str:
        """``prompt + rationale + marker``, the rationale's start cut if choices could not be scored after it.

        Planning reserves room for this, but text can re-tokenize longer than the tokens that generated
        it (bytes of a broken character, say); the end of the rationale, next to the answer, is kept.
        """
        context_length = self.manifest.generation.context_length
        while True:
            context = answer_context(prompt, rationale, marker)
            excess = self._backend.count_tokens(context + choice_continuation(longest)) - context_length
            if excess <= 0 or not rationale:
                return context
            rationale = rationale[max(1, len(rationale) * excess // max(1, self._backend.count_tokens(rationale))):]

    def _likeliest(self, prompt: str, rationale: str, choices: list[str]) -> str:
        scores = self._choice_scores(prompt, rationale, choices)
        return max(choices, key=lambda c: scores[c])  # ties go to the earlier choice

    def rationalize(
        self,
        question: str,
        choices: Sequence[str] | None = None,
        quality: Quality = "best",
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        votes: int = 1,
    ) -> Rationale:
        """Answer ``question`` (optionally one of ``choices``) and explain why.

        ``quality`` selects the control codes: ``"best"``, a preset of the bundle,
        ``{"diversity": 3}`` or ``"diversity=3"``. Greedy when ``temperature`` is 0.
        ``votes=N`` (self-consistency): N rationales are sampled (at ``temperature``,
        or 0.7 when it is 0), the majority answer wins, and the rationale returned is
        the one for that answer with the highest mean token log-probability; its
        ``votes`` field counts the answers, its latency and token count cover all N.
        """
        if isinstance(votes, bool) or not isinstance(votes, int) or not 1 <= votes <= MAX_VOTES:
            raise InputError(f"votes must be an integer in 1..{MAX_VOTES}, not {votes!r}")
        if votes > 1:
            return self._vote(question, choices, quality, max_new_tokens, temperature, top_p, seed, votes)
        result = None
        for item in self.stream(question, choices, quality, max_new_tokens, temperature, top_p, seed):
            result = item
        assert isinstance(result, Rationale)
        return result

    def _vote(self, question: str, choices: Sequence[str] | None, quality: Quality, max_new_tokens: int | None,
              temperature: float, top_p: float, seed: int | None, votes: int) -> Rationale:
        q, c, selection = self._prepare(question, choices, quality)
        params = self._params(max_new_tokens, temperature if temperature > 0 else VOTE_TEMPERATURE, top_p, seed)
        params.logprobs = True
        first_seed = seed if seed is not None else random.getrandbits(30)
        samples = []
        for i in range(votes):
            params.seed = (first_seed + i) % 2**31
            *_, result = self._run(q, c, selection, params)
            samples.append(result)
        counts: Counter[str] = Counter()
        shown: dict[str, str] = {}
        for s in samples:
            if s.answer is not None:
                key = normalize_answer(s.answer)
                counts[key] += 1
                shown.setdefault(key, s.answer)

        def score(s: Rationale) -> float:
            return s.mean_logprob if s.mean_logprob is not None else float("-inf")

        if counts:
            # most votes; a tie goes to the answer whose best rationale the model finds likeliest
            best_of = {k: max((s for s in samples if s.answer and normalize_answer(s.answer) == k), key=score)
                       for k in counts}
            winner = max(counts, key=lambda k: (counts[k], score(best_of[k])))
            best = best_of[winner]
        else:
            best = max(samples, key=score)
        return replace(best, votes={shown[k]: n for k, n in counts.most_common()},
                       latency_s=sum(s.latency_s for s in samples),
                       tokens_generated=sum(s.tokens_generated for s in samples))

    def rationalize_many(
        self,
        questions: Iterable[str | Mapping[str, Any]],
        choices: Sequence[str] | None = None,
        **options: Any,
    ) -> list[Rationale]:
        """Answer several questions: strings (sharing ``choices``) or dicts with ``question`` and ``choices``.

        ``options`` are those of :meth:`rationalize`, plus ``batch_size``. All inputs
        are validated before any generation starts, so a bad item fails fast
        instead of after minutes of work. Backends that batch (ONNX Runtime, torch)
        run up to ``batch_size`` prompts (default: the backend's) per forward pass,
        prompts of similar length together; each result's latency is then that of
        its batch. llama.cpp answers one after another.
        """
        batch_size = options.pop("batch_size", None)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or not 1 <= batch_size <= 256):
            raise InputError(f"batch_size must be an integer in 1..256, not {batch_size!r}")
        items: list[tuple[str, Sequence[str] | None]] = []
        for i, item in enumerate(questions):
            if isinstance(item, Mapping):
                if "question" not in item:
                    raise InputError(f"item {i}: a dict needs a 'question' key")
                items.append((item["question"], item.get("choices", choices)))
            else:
                items.append((item, choices))
        params = self._params(options.get("max_new_tokens"), options.get("temperature", 0.0),
                              options.get("top_p", 1.0), options.get("seed"))
        prepared, prompts, planned = [], [], []
        for i, (q, c) in enumerate(items):
            try:
                prepared.append(self._prepare(q, c, options.get("quality", "best")))
                prompts.append(self._render(*prepared[-1]))
                planned.append(self._plan(prompts[-1], prepared[-1][1], params))
            except InputError as exc:
                raise InputError(f"item {i}: {exc}") from None
        size = batch_size or self._backend.max_batch_size
        if size < 2 or options.get("votes", 1) != 1 or len(items) < 2:
            return [self.rationalize(q, c, **options) for q, c in items]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Rationale | None] = [None] * len(prompts)
        for begin in range(0, len(order), size):
            rows = order[begin:begin + size]
            row_params = [replace(planned[i], seed=None if params.seed is None else (params.seed + i) % 2**31)
                          for i in rows]
            start = time.perf_counter()
            outputs = self._backend.generate_many([prompts[i] for i in rows], row_params)
            for i, p, (text, stats) in zip(rows, row_params, outputs):
                results[i] = self._result(*prepared[i], text, stats, p, start)
        return [r for r in results if r is not None]

    def answer_with_rationale(
        self,
        question: str,
        rationale: str,
        choices: Sequence[str] | None = None,
        quality: Quality = "best",
        max_new_tokens: int = 16,
    ) -> str | None:
        """The answer the model gives after a rationale that is forced on it (not its own).

        The rationale and the answer marker are appended to the prompt and the
        model completes the answer greedily (a completion that names no choice
        falls back to the likeliest choice, as in :meth:`rationalize`); SCOTT's
        faithfulness checks (oracle, perturbed and counterfactual rationales) are
        built on this.
        """
        q, c, selection = self._prepare(question, choices, quality)
        marker = self.manifest.parser.marker
        prompt = answer_context(self._render(q, c, selection), rationale, marker)
        params = self._plan(prompt, c, self._params(max_new_tokens, 0.0, 1.0, None))
        completion = "".join(self._backend.stream(prompt, params, GenerationStats()))
        answer = parse_answer(f"{marker}{completion}", c, ParserSettings(marker=marker, strategies=["marker"])).answer
        if answer is None and c and self.manifest.parser.score_choices:
            answer = self._likeliest(self._render(q, c, selection), rationale, c)
        return answer

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is for this model, BOS included; control tokens count only where a
        :class:`~rationalizer.prompt_text.Prompt` says the template wrote them (plain text has none)."""
        return self._backend.count_tokens(text)

    def close(self) -> None:
        """Free the model."""
        self._backend.close()

    def __enter__(self) -> "Rationalizer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
