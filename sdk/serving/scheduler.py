"""The model's side of the server: a bounded queue of requests and the worker threads that answer them.

Model calls never run on the event loop. On a backend whose calls take turns (llama.cpp; every backend
whose ``parallel_calls`` is False) one worker thread answers one request after another; on a backend
that batches (ONNX Runtime, torch: ``max_batch_size > 1``) the worker waits a few milliseconds for more
requests that generate alike and answers them with one :meth:`Rationalizer.rationalize_many` call. A
streaming request is generated piece by piece and stops between two pieces once its client is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError, RationalizerError
from ..runtime import Rationalizer
from .completions import Completion, run_completion

log = logging.getLogger(__name__)

END = object()
"""Pushed after a stream's last item."""
_STOP = object()


class ServerBusy(RationalizerError):
    """The queue is full: the request is refused (HTTP 503), not kept waiting without bound."""


@dataclass
class Question:
    """One question and how to generate for it: :meth:`Rationalizer.rationalize`'s arguments (a
    :class:`~rationalizer.serving.completions.Completion` is queued the same way, and runs alone)."""

    question: Any
    choices: Any = None
    quality: Any = "best"
    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    votes: int = 1

    def generation(self) -> dict[str, Any]:
        """Everything but the question and its choices: what requests must share to be batched."""
        return {k: v for k, v in asdict(self).items() if k not in ("question", "choices")}

    def batch_key(self) -> str | None:
        """Requests with equal keys may share a batch; None: this one runs alone. A seeded sampled
        request runs alone because a batch gives each row its own seed (the first one's plus its row)."""
        if self.votes != 1 or (self.seed is not None and self.temperature > 0):
            return None
        return json.dumps(self.generation(), sort_keys=True, default=str)


class Ticket:
    """A request admitted to the queue, as its handler on the event loop sees it: the items the worker
    pushes (text pieces, then the :class:`Rationale`, then :data:`END`; or an exception) and a way to
    tell the worker the client has gone."""

    def __init__(self, question: Question | Completion, stream: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.question = question
        self.stream = stream
        self.cancelled = threading.Event()
        self.stopped_early = False
        """Set by the worker when the request was skipped or its generation stopped because it was cancelled."""
        self._loop = loop
        self._items: asyncio.Queue[Any] = asyncio.Queue()

    async def get(self) -> Any:
        """The next item; an exception the model call raised is raised here."""
        item = await self._items.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> None:
        """Stop the generation (between two pieces) or skip it if it has not started."""
        self.cancelled.set()

    def push(self, item: Any) -> None:
        """Hand an item to the handler (from a worker thread)."""
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is waiting any more
            self.cancelled.set()


@dataclass
class SchedulerStats:
    """Counters shown by ``GET /health``."""

    in_flight: int = 0
    served: int = 0
    refused: int = 0
    cancelled: int = 0
    batches: int = 0
    largest_batch: int = 0


@dataclass
class Scheduler:
    """Admits up to ``max_queue`` requests at once and answers them on worker threads."""

    rationalizer: Rationalizer
    max_queue: int = 64
    batch_window_s: float = 0.005
    workers: int = 4
    """Worker threads when the backend's calls run in parallel; one otherwise."""
    stats: SchedulerStats = field(default_factory=SchedulerStats)

    def __post_init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.batch_size = max(1, int(getattr(self.rationalizer._backend, "max_batch_size", 1)))

    def start(self) -> None:
        """Start the worker threads."""
        count = self.workers if self.rationalizer.backend_parallel else 1
        for i in range(count):
            thread = threading.Thread(target=self._work, name=f"rationalizer-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout: float = 30.0) -> None:
        """Let the workers finish what they are doing and stop them."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def submit(self, question: Question | Completion, stream: bool) -> Ticket:
        """Queue a request (on the event loop); :class:`ServerBusy` when ``max_queue`` are already in."""
        with self._lock:
            if self.stats.in_flight >= self.max_queue:
                self.stats.refused += 1
                raise ServerBusy(f"the server is busy: {self.max_queue} requests are already queued or running; "
                                 "retry later")
            self.stats.in_flight += 1
        ticket = Ticket(question, stream, asyncio.get_running_loop())
        self._queue.put(ticket)
        return ticket

    def _done(self, ticket: Ticket) -> None:
        with self._lock:
            self.stats.in_flight -= 1
            if ticket.stopped_early:
                self.stats.cancelled += 1
            else:
                self.stats.served += 1

    def _work(self) -> None:
        held: deque[Any] = deque()  # taken while gathering a batch they could not join: next in line
        while True:
            ticket = held.popleft() if held else self._queue.get()
            if ticket is _STOP:
                return
            batch = [ticket]
            key = None if ticket.stream else ticket.question.batch_key()
            if key is not None and self.batch_size > 1:
                batch = self._gather(ticket, key, held)
            live = [t for t in batch if not t.cancelled.is_set()]  # a client gone while queued is skipped
            for t in batch:
                t.stopped_early = t not in live
            try:
                if len(live) > 1:
                    self._answer_batch(live)
                elif live and ticket.stream:
                    self._answer_stream(ticket)
                elif live:
                    self._answer_one(live[0])
            finally:
                for t in batch:
                    self._done(t)

    def _gather(self, first: Ticket, key: str, held: deque[Any]) -> list[Ticket]:
        """``first`` and the requests with its batch key that arrive within the batch window."""
        batch = [first]
        for t in list(held):
            if len(batch) < self.batch_size and isinstance(t, Ticket) and not t.stream \
                    and t.question.batch_key() == key:
                held.remove(t)
                batch.append(t)
        deadline = time.monotonic() + self.batch_window_s
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                t = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(t, Ticket) and not t.stream and t.question.batch_key() == key:
                batch.append(t)
            else:
                held.append(t)
        return batch

    def _answer_one(self, ticket: Ticket) -> None:
        q = ticket.question
        try:
            if isinstance(q, Completion):
                *_, result = run_completion(self.rationalizer, q)
            else:
                result = self.rationalizer.rationalize(q.question, q.choices, **q.generation())
        except Exception as exc:  # handed to the request's handler, which answers with an error
            ticket.push(_reported(exc))
            return
        ticket.push(result)

    def _answer_batch(self, batch: list[Ticket]) -> None:
        items = [{"question": t.question.question, "choices": t.question.choices} for t in batch]
        try:
            results = self.rationalizer.rationalize_many(items, **batch[0].question.generation())
        except InputError:  # one bad request must not fail the others: each gets its own answer or error
            for t in batch:
                self._answer_one(t)
            return
        except Exception as exc:
            for t in batch:
                t.push(_reported(exc))
            return
        with self._lock:
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for t, result in zip(batch, results):
            t.push(result)

    def _answer_stream(self, ticket: Ticket) -> None:
        q = ticket.question
        pieces = run_completion(self.rationalizer, q) if isinstance(q, Completion) else \
            self.rationalizer.stream(q.question, q.choices, q.quality, q.max_new_tokens, q.temperature, q.top_p,
                                     q.seed)
        try:
            for item in pieces:
                if ticket.cancelled.is_set():
                    ticket.stopped_early = True
                    return  # closing the generator below stops the backend's decode loop
                ticket.push(item)
            ticket.push(END)
        except Exception as exc:
            ticket.push(_reported(exc))
        finally:
            pieces.close()


def _reported(exc: Exception) -> Exception:
    if not isinstance(exc, RationalizerError):
        log.exception("a model call failed", exc_info=exc)
    return exc
