"""The llama.cpp backend (GGUF files) through llama-cpp-python.

It drives ``Llama.generate`` token by token rather than ``create_completion``:
that gives exact token counts, our own stop-string handling shared with other
backends, and no per-token work beyond what generation needs.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import random
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from ..bundle import Bundle
from ..errors import BackendError, InputError, ModelFileError
from ..prompt_text import llama_encoder
from .base import Backend, GenerationParams, GenerationStats, StopStringFilter, default_threads

JUDGE_CONTEXT = 1024
"""Tokens a judge's context holds: enough for a question, its rationale and the verifier's question, while
``logits_all`` keeps n_ctx x vocabulary floats (200 MB for SmolLM2's 49k tokens)."""


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - llama-cpp-python is a core dependency
        raise BackendError(f"llama-cpp-python is not installed or failed to import ({exc}); pip install llama-cpp-python") from None
    return llama_cpp


def gguf_files(bundle: Bundle) -> tuple[Path, Path | None]:
    """The bundle's GGUF model and, where it ships one, the GGUF LoRA adapter llama.cpp applies over it."""
    adapters = [bundle.path_of(wf) for wf in bundle.files("gguf") if wf.role == "adapter"]
    return bundle.main_file("gguf"), adapters[0] if adapters else None


@functools.lru_cache(maxsize=1)
def _cpu_has_amx() -> bool:
    """True on a CPU with AMX tiles (Intel Sapphire Rapids and later), read from ``/proc/cpuinfo``."""
    try:
        return " amx_int8" in Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False


_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def plain_cpu_buffers() -> Iterator[None]:
    """While a model loads, its weights stay in plain CPU buffers where the CPU has AMX.

    llama.cpp (0.3.36's vendored build) puts Q4_0/Q4_1/Q8_0 weights in its AMX buffer on such a CPU,
    and the first decode then crashes the process (SIGSEGV in ``llama_decode``, the base model as
    well as with a LoRA). ``llama_model_params.use_extra_bufts = False`` (llama.cpp's ``--no-repack``)
    avoids it, but ``Llama()`` takes no such argument and fills its params from
    ``llama_model_default_params()`` inside its constructor: so the defaults are switched for that
    one call, under a lock, and restored. Every ``Llama()`` this project builds goes through it.
    """
    if not _cpu_has_amx():
        yield
        return
    with _LOAD_LOCK:
        module = sys.modules[_llama_cpp().Llama.__module__]
        default = module.llama_cpp.llama_model_default_params

        def params():
            value = default()
            value.use_extra_bufts = False
            return value

        module.llama_cpp.llama_model_default_params = params
        try:
            yield
        finally:
            module.llama_cpp.llama_model_default_params = default


def _load_llama(llama_cpp, model_path: Path, adapter: Path | None, **options):
    """``llama_cpp.Llama`` over the model (and adapter); a file it cannot read is a :class:`ModelFileError`."""
    try:
        with plain_cpu_buffers():
            return llama_cpp.Llama(model_path=str(model_path), lora_path=str(adapter) if adapter else None,
                                   verbose=False, **options)
    except (ValueError, RuntimeError, OSError) as exc:
        names = f"{model_path}" + (f" with adapter {adapter}" if adapter else "")
        raise ModelFileError(f"{names}: llama.cpp cannot load this GGUF file; truncated, corrupt or not GGUF "
                             f"({str(exc).splitlines()[0]})") from None


class LlamaCppBackend(Backend):
    """Runs GGUF weights on CPU, or offloads every layer when ``device="cuda"``."""

    name = "llamacpp"
    formats = ("gguf",)
    devices = ("cpu", "cuda")
    parallel_calls = False

    def __init__(self, llm, context_length: int, prefix: str = "", all_logits: bool = False) -> None:
        super().__init__()
        self._llm = llm
        self._all_logits = all_logits  # a judge's context (logits_all): texts are scored in one pass
        self.context_length = context_length
        self._encoder = llama_encoder(llm)
        self._prefix = self._tokenize(prefix)[:-1] if prefix else []  # the last token may merge with the user text

    @classmethod
    def gpu_available(cls) -> bool:
        """True when llama.cpp was built with a GPU backend (CUDA, Metal, Vulkan...)."""
        return bool(_llama_cpp().llama_supports_gpu_offload())

    @classmethod
    def open(cls, bundle: Bundle, fmt: str, device: str, threads: int | None) -> "LlamaCppBackend":
        """Load the bundle's GGUF model (and a GGUF LoRA adapter if the bundle has one)."""
        llama_cpp = _llama_cpp()
        cls._check_device(device)
        from ..errors import BundleError
        from ..manifest import MANIFEST_NAME

        model_path, adapter = gguf_files(bundle)
        n_threads = threads or default_threads()
        context = bundle.manifest.generation.context_length

        def too_long(trained: int) -> BundleError:
            return BundleError(f"{bundle.folder / MANIFEST_NAME}: generation.context_length {context} is more than "
                               f"{model_path.name} was trained for ({trained} tokens); set it to at most {trained}")

        # llama.cpp takes n_ctx as a uint32 (2**32+64 wraps to 64, and a full context then aborts the
        # process) and allocates the whole KV cache up front: a large context is checked against the
        # model's trained context (read from the GGUF header with the vocabulary only) before a context
        # exists. Up to 8192 tokens the cache is small, and the check after the load costs nothing.
        if context > 8192:
            params = llama_cpp.llama_model_default_params()
            params.vocab_only = True
            try:
                header = llama_cpp._internals.LlamaModel(path_model=str(model_path), params=params, verbose=False)
            except (ValueError, RuntimeError, OSError):
                header = None  # the load below names what is wrong with the file
            if header is not None:
                metadata = header.metadata()
                header.close()
                trained = str(metadata.get(f"{metadata.get('general.architecture')}.context_length", ""))
                if trained.isdigit() and 0 < int(trained) < context:
                    raise too_long(int(trained))
        llm = _load_llama(llama_cpp, model_path, adapter, n_ctx=context, n_threads=n_threads,
                          n_threads_batch=n_threads, n_gpu_layers=-1 if device == "cuda" else 0)
        trained = llm._model.n_ctx_train()
        if (trained > 0 and context > trained) or llm.n_ctx() < context:
            llm.close()
            raise too_long(trained if trained > 0 else llm.n_ctx())
        from ..prompting import fixed_prefix

        return cls(llm, context, fixed_prefix(bundle.manifest.prompt))

    @classmethod
    def open_judge(cls, bundle: Bundle, fmt: str, device: str, threads: int | None) -> "LlamaCppBackend":
        """Load the bundle's GGUF model (and adapter) to score texts as a judge: a second kind of context
        that keeps the logits of every position (``logits_all``), so each text is evaluated in one
        batched pass rather than token by token, in :data:`JUDGE_CONTEXT` tokens."""
        cls._check_device(device)
        model_path, adapter = gguf_files(bundle)
        n_threads = threads or default_threads()
        llm = _load_llama(_llama_cpp(), model_path, adapter, n_ctx=JUDGE_CONTEXT, n_threads=n_threads,
                          n_threads_batch=n_threads, n_gpu_layers=-1 if device == "cuda" else 0, logits_all=True)
        return cls(llm, JUDGE_CONTEXT, all_logits=True)

    @classmethod
    def _check_device(cls, device: str) -> None:
        if device == "cuda" and not cls.gpu_available():
            raise BackendError(
                "device 'cuda' asked, but this llama-cpp-python was built without GPU offload; reinstall it with "
                "CMAKE_ARGS=\"-DGGML_CUDA=on\" pip install --force-reinstall --no-cache-dir llama-cpp-python"
            )

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` (control tokens only from a template's :class:`Prompt` parts, BOS as the model wants)."""
        with self._lock:
            return len(self._tokenize(text))

    def _tokenize(self, text: str) -> list[int]:
        return self._encoder.encode(text)

    def _stream_locked(self, prompt: str, params: GenerationParams, stats: GenerationStats) -> Iterator[str]:
        """Generate after ``prompt`` with llama.cpp's own sampler (one context: :meth:`stream` takes turns)."""
        llama_cpp = _llama_cpp()
        tokens = self._tokenize(prompt)
        stats.prompt_tokens = len(tokens)
        budget = min(params.max_new_tokens, self.context_length - len(tokens))
        if budget < 1:
            stats.finish_reason = "length"
            return
        greedy = params.temperature <= 0
        self._llm.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stop = StopStringFilter(params.stop)
        vocab = self._llm._model.vocab
        stats.finish_reason = "length"
        self._restore_prefix(tokens)
        generator = self._llm.generate(
            tokens,
            temp=0.0 if greedy else params.temperature,
            top_k=0,
            top_p=1.0 if greedy else params.top_p,
            min_p=0.0,
            repeat_penalty=1.0,
        )
        try:
            for token in generator:
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    stats.finish_reason = "stop"
                    break
                stats.tokens += 1
                if params.logprobs:
                    stats.logprob_sum += self._last_logprob(token)
                if stats.first_token_at is None:
                    stats.first_token_at = time.perf_counter()
                piece = stop.feed(decoder.decode(self._llm.detokenize([token])))
                if piece:
                    yield piece
                if stop.stopped:
                    stats.finish_reason = "stop"
                    break
                if stats.tokens >= budget:
                    break
        finally:
            generator.close()
        tail = stop.feed(decoder.decode(b"", final=True)) + stop.flush()
        if tail:
            yield tail

    def loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]:
        """(sum of log-probs, token count) of each continuation after its context: a generation context keeps
        only the last position's logits, so it steps one token at a time on the KV cache; a judge's
        (:meth:`open_judge`) evaluates each text in one pass and reads the logits of every position."""
        from .scoring import stepwise_loglikelihoods

        if self._all_logits:
            with self._lock:
                return [self._score_text(context, continuation) for context, continuation in pairs]

        def run_context(ids: list[int]):
            self._restore_prefix(ids)
            self._llm.eval(ids[self._llm.n_tokens:])
            return self._last_logits().copy(), None

        def run_token(state, token: int, position: int):
            self._llm.n_tokens = position  # drops what an earlier continuation left after this point
            self._llm.eval([token])
            return self._last_logits(), None

        with self._lock:
            return stepwise_loglikelihoods(pairs, self._tokenize, self.context_length, run_context, run_token)

    def _score_text(self, context: str, continuation: str) -> tuple[float, int]:
        """One pair on a ``logits_all`` context, reusing the KV cache of what the last text shares with it
        (the context of a question's choices is evaluated once)."""
        import numpy as np

        from ..logprobs import log_softmax
        from .scoring import common_prefix, split_continuation

        full = self._tokenize(context + continuation)
        if len(full) > self.context_length:
            raise InputError(f"text of {len(full)} tokens is longer than the judge's context of {self.context_length}")
        start = split_continuation(full, self._tokenize(context))
        llm = self._llm
        # only the tokens after what the cache shares with this text are evaluated (none shared, as for
        # a model without BOS: all of them); the last token's own logits are never read
        cached = common_prefix(full, llm.input_ids[:llm.n_tokens].tolist())
        if cached < len(full) - 1:
            llm.n_tokens = cached
            llm.eval(full[cached:])
        rows = log_softmax(llm.scores[start - 1:len(full) - 1])
        targets = full[start:]
        return float(rows[np.arange(len(targets)), targets].sum()), len(targets)

    def _restore_prefix(self, tokens: list[int]) -> None:
        """Leave exactly the template's fixed prefix in the KV cache, evaluated on its own.

        llama-cpp-python reuses the longest cached prefix of the previous call, and a
        prompt evaluated in a different split gives slightly different floats: enough
        to flip a near-tie, so a call's result would depend on the call before it.
        Here every prompt is evaluated as [fixed prefix][rest], the prefix cached
        across calls, so results are reproducible and the shared system prompt is
        computed once.
        """
        llm, keep = self._llm, len(self._prefix)
        if not keep or tokens[:keep] != self._prefix or len(tokens) <= keep:
            llm.reset()
            return
        if llm.n_tokens >= keep and list(llm.input_ids[:keep]) == self._prefix:
            llm.n_tokens = keep
        else:
            llm.reset()
            llm.eval(self._prefix)

    def _last_logprob(self, token: int) -> float:
        """log p(token) from the logits llama.cpp sampled it from (still in the context until the next eval)."""
        from .sampling import token_logprob

        return token_logprob(self._last_logits(), token)

    def _last_logits(self):
        """The logits of the last evaluated position: a view of llama.cpp's buffer, valid until the next eval."""
        import numpy as np

        pointer = _llama_cpp().llama_get_logits_ith(self._llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._llm.n_vocab(),))

    def close(self) -> None:
        """Free the llama.cpp model and context."""
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
