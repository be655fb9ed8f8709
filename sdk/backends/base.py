"""The backend interface: one class per runtime (llama.cpp, ONNX Runtime, torch).

A backend turns a prompt string into a stream of text pieces. Prompt building,
control codes and answer parsing stay in :mod:`rationalizer.prompting`, so every
backend sees exactly the same input text.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator, Sequence

from ..bundle import Bundle


@dataclass
class GenerationParams:
    """Decoding settings for one generation."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: bool = False
    """Sum the log-probabilities of the generated tokens into ``GenerationStats.logprob_sum``."""


@dataclass
class GenerationStats:
    """Filled in by a backend while it streams: token counts and why it stopped."""

    prompt_tokens: int = 0
    tokens: int = 0
    finish_reason: str = ""
    first_token_at: float | None = None
    """``time.perf_counter()`` when the first new token was sampled."""
    logprob_sum: float = 0.0
    """Sum of log p(token) over the generated tokens (with ``GenerationParams.logprobs``)."""


class Backend(ABC):
    """Runs one bundle's weights. Implementations live one per file in this package."""

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    parallel_calls: ClassVar[bool] = False
    """True if concurrent calls from several threads run in parallel; False if they serialize."""
    max_batch_size: int = 1
    """Prompts one :meth:`generate_many` call runs in a single forward pass (1: one after another)."""

    def __init__(self) -> None:
        # one model state (KV cache, llama.cpp context) per backend: calls from several threads take turns
        self._lock = threading.Lock()

    @classmethod
    @abstractmethod
    def open(cls, bundle: Bundle, fmt: str, device: str, threads: int | None) -> "Backend":
        """Load the bundle's ``fmt`` weights for ``device``."""

    @classmethod
    def open_judge(cls, bundle: Bundle, fmt: str, device: str, threads: int | None) -> "Backend":
        """Load the bundle's ``fmt`` weights to score texts only, as a judge does
        (:mod:`rationalizer.evaluation.judges`): :meth:`open` unless a backend scores faster another way."""
        return cls.open(bundle, fmt, device, threads)

    @classmethod
    def gpu_available(cls) -> bool:
        """Whether this backend can use a GPU on this machine."""
        return False

    def stream(self, prompt: str, params: GenerationParams, stats: GenerationStats) -> Iterator[str]:
        """Yield the generated text piece by piece, updating ``stats``; stop strings are not yielded.
        Calls from several threads take turns."""
        with self._lock:
            yield from self._stream_locked(prompt, params, stats)

    @abstractmethod
    def _stream_locked(self, prompt: str, params: GenerationParams, stats: GenerationStats) -> Iterator[str]:
        """:meth:`stream`'s work, run holding the backend's lock."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` encodes to (special tokens parsed, BOS included)."""

    @abstractmethod
    def loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]:
        """(sum of log-probabilities, token count) of each continuation after its context.

        The one scoring protocol: the runtime scores choices with it, the judges' metrics
        (:mod:`rationalizer.metrics.simulation`) score with it. The continuation starts where the
        tokens of ``context + continuation`` stop matching those of ``context``, at least one token
        is scored, and a text longer than the model's context is an :class:`InputError`.
        """

    def generate_many(self, prompts: list[str], params: list[GenerationParams]) -> list[tuple[str, GenerationStats]]:
        """Generate for several prompts; backends with ``max_batch_size > 1`` batch them, this one loops."""
        results = []
        for prompt, p in zip(prompts, params):
            stats = GenerationStats()
            results.append(("".join(self.stream(prompt, p, stats)), stats))
        return results

    def close(self) -> None:
        """Free the model's memory; the backend is unusable afterwards."""


def default_threads() -> int:
    """CPU threads for generation: the cores this process may use that other work leaves free.

    Cores that may be used: the affinity mask (``sched_getaffinity``: ``taskset``, a container's
    cpuset), capped by a cgroup CPU quota (``docker --cpus``). Of those, every one up to 4, half
    beyond (many logical CPUs are mostly hyperthreads, which slow llama.cpp's decode down). Then
    the cores other runnable tasks keep busy are left out: the busy share of each allowed core over
    0.1 s, read from ``/proc/stat`` while this process sleeps (the 1-minute load average where that
    file is missing), rounded to whole cores. At least 1.

    Why load matters: llama.cpp's threads wait for each other at every step, so one thread that
    must share its core with another job stalls them all. With one busy job on 2 cores an answer
    took 40.5 s on 2 threads and 0.64 s on 1; too few threads costs at most a proportional
    slowdown. A job that starts later is not seen; ``threads=`` (``--threads``) overrides this.
    """
    from . import cpu_load

    cpus = cpu_load.allowed_cpus()
    usable = cpu_load.usable_cores()
    share = cpu_load.busy_cores(cpus)
    if share is None:
        share = cpu_load.loadavg_busy(len(cpus)) or 0.0
    busy = int(share * usable / max(len(cpus), 1) + 0.5)  # under a quota, others' work spreads over all of cpus
    wanted = usable if usable <= 4 else usable // 2
    return max(1, min(wanted, usable - busy))


class StopStringFilter:
    """Cuts streamed text at the first stop string without ever emitting part of one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add text; return what is safe to emit now (empty once a stop string was seen)."""
        if self.stopped:
            return ""
        self.pending += text
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self.pending = self.pending[:cut], ""
            return out
        keep = len(self.pending) - self.hold
        if keep <= 0:
            return ""
        out, self.pending = self.pending[:keep], self.pending[keep:]
        return out

    def flush(self) -> str:
        """Return text still held back (at the end of generation)."""
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


class TokenText:
    """Turns generated token ids into streamed text for backends that decode whole sequences.

    Each token re-decodes the sequence (tokenizers merge bytes across tokens) and
    emits only the new part, holding back a half-received UTF-8 character and
    anything that could be the start of a stop string.
    """

    def __init__(self, decode: Callable[[list[int]], str], stops: list[str]) -> None:
        self._decode = decode
        self._stop = StopStringFilter(stops)
        self.ids: list[int] = []
        self._shown = ""

    @property
    def stopped(self) -> bool:
        """True once a stop string appeared; nothing more is emitted."""
        return self._stop.stopped

    def add(self, token: int) -> str:
        """Append a token and return the text that is safe to emit now."""
        self.ids.append(token)
        text = self._decode(self.ids)
        if text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            return ""
        piece = self._stop.feed(text[len(self._shown):])
        self._shown = text
        return piece

    def finish(self) -> str:
        """The text still held back when generation ends."""
        tail = "" if self.stopped else self._decode(self.ids)[len(self._shown):]
        return self._stop.feed(tail) + self._stop.flush()


def count_token(stats: GenerationStats, params: GenerationParams, logprob: Callable[[], float]) -> None:
    """Book one generated token in ``stats`` (its log-probability only when asked for)."""
    stats.tokens += 1
    if params.logprobs:
        stats.logprob_sum += logprob()
    if stats.first_token_at is None:
        stats.first_token_at = time.perf_counter()
