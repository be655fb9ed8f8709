"""``Rationalizer``: load a bundle, ask questions, get answers with rationales."""

from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .backends import GenerationParams, GenerationStats, choose_backend
from .bundle import Bundle
from .errors import InputError
from .integrity import VerifyMode
from .manifest import Manifest, ParserSettings
from .prompting import Quality, build_prompt, clean_choices, clean_question, parse_answer, render_codes, resolve_quality
from .rationale import Rationale

MAX_NEW_TOKENS_LIMIT = 4096


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
    ) -> "Rationalizer":
        """Open a bundle (None: the embedded default model) with a backend for the device.

        Every weight file of the chosen format is checked against the manifest's
        size and sha256 before it is loaded (``verify``: see :mod:`rationalizer.integrity`).
        """
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a positive integer, not {threads!r}")
        if verify not in ("cached", "full", "off"):
            raise InputError(f"verify must be 'cached', 'full' or 'off', not {verify!r}")
        bundle = Bundle.load(path)
        backend_cls, fmt, concrete_device = choose_backend(bundle, backend, device)
        bundle.verify(fmt, verify)
        instance = backend_cls.open(bundle, fmt, concrete_device, threads)
        return cls(bundle, instance, backend_cls.name, fmt, concrete_device)

    @property
    def name(self) -> str:
        """The bundle's model name."""
        return self.manifest.name

    @property
    def backend_parallel(self) -> bool:
        """Whether concurrent calls run in parallel (True) or take turns (False)."""
        return bool(self._backend.parallel_calls)

    def quality_codes(self) -> dict[str, int]:
        """The bundle's control codes: reward name -> number of levels."""
        return {r.name: r.levels for r in self.manifest.control.rewards}

    def prompt(self, question: str, choices: Sequence[str] | None = None, quality: Quality = "best") -> str:
        """The exact model input for a question (after validation), for inspection or other runtimes."""
        q, c, selection = self._prepare(question, choices, quality)
        return self._render(q, c, selection)

    def _render(self, question: str, choices: list[str] | None, selection: dict[str, int]) -> str:
        return build_prompt(self.manifest.prompt, question, choices, render_codes(self.manifest.control, selection))

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
        prompt = self._render(q, c, selection)
        stats = GenerationStats()
        pieces: list[str] = []
        start = time.perf_counter()
        for piece in self._backend.stream(prompt, params, stats):
            pieces.append(piece)
            yield piece
        latency = time.perf_counter() - start
        first = None if stats.first_token_at is None else stats.first_token_at - start
        text = "".join(pieces)
        parsed = parse_answer(text, c, self.manifest.parser)
        yield Rationale(
            question=q,
            answer=parsed.answer,
            rationale=parsed.rationale,
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
        )

    def rationalize(
        self,
        question: str,
        choices: Sequence[str] | None = None,
        quality: Quality = "best",
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Rationale:
        """Answer ``question`` (optionally one of ``choices``) and explain why.

        ``quality`` selects the control codes: ``"best"``, a preset of the bundle,
        ``{"diversity": 3}`` or ``"diversity=3"``. Greedy when ``temperature`` is 0.
        """
        result = None
        for item in self.stream(question, choices, quality, max_new_tokens, temperature, top_p, seed):
            result = item
        assert isinstance(result, Rationale)
        return result

    def rationalize_many(
        self,
        questions: Iterable[str | Mapping[str, Any]],
        choices: Sequence[str] | None = None,
        **options: Any,
    ) -> list[Rationale]:
        """Answer several questions: strings (sharing ``choices``) or dicts with ``question`` and ``choices``.

        All inputs are validated before any generation starts, so a bad item
        fails fast instead of after minutes of work.
        """
        items: list[tuple[str, Sequence[str] | None]] = []
        for i, item in enumerate(questions):
            if isinstance(item, Mapping):
                if "question" not in item:
                    raise InputError(f"item {i}: a dict needs a 'question' key")
                items.append((item["question"], item.get("choices", choices)))
            else:
                items.append((item, choices))
        for i, (q, c) in enumerate(items):
            try:
                self._prepare(q, c, options.get("quality", "best"))
            except InputError as exc:
                raise InputError(f"item {i}: {exc}") from None
        return [self.rationalize(q, c, **options) for q, c in items]

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
        model completes the answer greedily; SCOTT's faithfulness checks (oracle,
        perturbed and counterfactual rationales) are built on this.
        """
        q, c, selection = self._prepare(question, choices, quality)
        marker = self.manifest.parser.marker
        prefix = f"{rationale.strip()} {marker}" if rationale.strip() else marker
        prompt = self._render(q, c, selection) + prefix
        params = self._params(max_new_tokens, 0.0, 1.0, None)
        completion = "".join(self._backend.stream(prompt, params, GenerationStats()))
        return parse_answer(f"{marker}{completion}", c, ParserSettings(marker=marker, strategies=["marker"])).answer

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is for this model (as a prompt, special tokens included)."""
        return self._backend.count_tokens(text)

    def close(self) -> None:
        """Free the model."""
        self._backend.close()

    def __enter__(self) -> "Rationalizer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
