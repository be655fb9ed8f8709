"""The remote backend: generation and choice scoring on an OpenAI-compatible completions server.

The bundle still supplies the prompt, the control codes and the parser; the server (vLLM serving the
merged HF export, llama-cpp-python's server serving the GGUF and its LoRA adapter, another
``rationalize serve``) runs the weights. Only the standard library talks to it
(:mod:`rationalizer.http_client`): no torch, no transformers.

The prompt's trust boundary (:mod:`rationalizer.prompt_text`) holds here too, although a completions
server parses control tokens anywhere in the text it gets: a control token's text inside an untrusted
part (a question, a choice, a rationale) is broken with a zero-width space before it is sent, so only
the template's own control tokens reach the model as control tokens.

Choice scoring reads log-probabilities of the continuation's tokens. vLLM's ``echo`` returns the
prompt tokens' log-probabilities, one request per text; llama-cpp-python 0.3.36's echo pairs each
prompt token with the distribution *after* it (off by one for a model without BOS, such as SmolLM2),
which is useless. So the first scoring call checks the server's echo against a generated token's
log-probability, and where they disagree each continuation token is forced instead (``logit_bias``
+100 on it, ``max_tokens`` 1), its log-probability read from the unbiased logits the server reports.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..bundle import Bundle
from ..errors import BackendError, InputError, UserError
from ..http_client import RetryPolicy, get_json, post_json, post_stream
from ..prompt_text import Prompt, PromptEncoder, parts_of
from .base import Backend, GenerationParams, GenerationStats, StopStringFilter
from .scoring import split_continuation

API_KEY_ENV = "RATIONALIZER_API_KEY"
"""The environment variable whose value, when set, is sent as the bearer token (as the served teacher does)."""
FORCE_BIAS = 100.0  # the most vLLM accepts; far above any logit gap of a real model
_PROBE = "The capital of France is"
_BREAK = "\n\n"  # a prompt no template starts with
# a control token's look where the bundle gives no tokenizer to read them from
_CONTROL_LOOK = r"<\|[^\s<>|]{1,40}\|>|</?s>"


class HttpBackend(Backend):
    """Runs a bundle's prompts on an OpenAI-compatible completions server (``endpoint``: its ``/v1`` URL)."""

    name = "http"
    formats = ()
    devices = ("remote",)
    parallel_calls = True

    def __init__(self, endpoint: str, model: str | None, context_length: int, encoder: PromptEncoder | None,
                 api_key: str | None = None, policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.context_length = context_length
        self._encoder = encoder
        self._api_key = api_key
        self.policy = policy or RetryPolicy()
        self.llama_defaults = True
        """Send llama.cpp's sampling fields (top_k, min_p, repeat_penalty) that undo its server's defaults."""
        self._scoring: str | None = None  # "echo" or "forced", found out by the first scoring call
        self._tokenize_url: str | None = None
        self._counts: dict[tuple, list[int]] = {}
        names = sorted(encoder.control, key=len, reverse=True) if encoder is not None else []
        self._control = re.compile("|".join(re.escape(n) for n in names if len(n) > 1) or _CONTROL_LOOK)

    @classmethod
    def open(cls, bundle: Bundle, fmt: str, device: str, threads: int | None) -> "HttpBackend":
        """Not for this backend: it needs a server (:meth:`connect`)."""
        raise UserError("backend 'http' needs a server: Rationalizer.load(bundle, backend='http', "
                        "endpoint='http://host:port/v1'), or --backend http --endpoint URL")

    @classmethod
    def connect(cls, bundle: Bundle, endpoint: str, model: str | None = None, api_key: str | None = None,
                policy: RetryPolicy | None = None) -> "HttpBackend":
        """Reach the server at ``endpoint`` (``GET /models``, retried) and take ``model`` (default: the
        first model it serves). Tokens are counted with the bundle's own tokenizer where it ships one
        (its GGUF vocabulary, or a ``tokenizer.json``), else with the server's tokenize route."""
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise InputError(f"endpoint must be an http(s) URL such as http://127.0.0.1:8080/v1, not {endpoint!r}")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        backend = cls(endpoint, model, bundle.manifest.generation.context_length, local_encoder(bundle), key, policy)
        served = [m for m in get_json(f"{backend.endpoint}/models", key, backend.policy).get("data") or []
                  if isinstance(m, dict)]
        if model is None and served:
            backend.model = served[0].get("id")
        # vLLM samples from the full distribution by default, and an older one refuses top_k=0
        backend.llama_defaults = not any(m.get("owned_by") == "vllm" for m in served)
        return backend

    # ------------------------------------------------------------------ text on the wire

    def _wire(self, text: str) -> Prompt:
        """``text`` as it is sent: control-token look-alikes in its untrusted parts broken up."""
        return Prompt((part if trusted else self._control.sub(lambda m: m.group()[0] + "\u200b" + m.group()[1:], part),
                       trusted) for part, trusted in parts_of(text))

    def _ids(self, text: str) -> list[int]:
        """Token ids of ``text`` as the server will see it (BOS included where the model wants one)."""
        wire = self._wire(text)
        if self._encoder is not None:
            with self._lock:
                return self._encoder.encode(wire)
        key = (str(wire), wire.parts)
        ids = self._counts.get(key)
        if ids is None:
            ids = self._server_tokenize(str(wire))
            if len(self._counts) > 512:
                self._counts.clear()
            self._counts[key] = ids
        return ids

    def _server_tokenize(self, text: str) -> list[int]:
        """Ids from the server: llama-cpp-python's ``/extras/tokenize``, else vLLM's and llama.cpp's ``/tokenize``."""
        root = self.endpoint[:-3] if self.endpoint.endswith("/v1") else self.endpoint
        payload = {"model": self.model, "input": text, "prompt": text, "content": text}
        urls = [self._tokenize_url] if self._tokenize_url else [f"{root}/extras/tokenize", f"{root}/tokenize"]
        for url in urls:
            try:
                reply = post_json(url, payload, self._api_key, self.policy)
            except BackendError as exc:
                if len(urls) > 1 and ("HTTP 404" in str(exc) or "HTTP 405" in str(exc)):
                    continue
                raise
            tokens = reply.get("tokens")
            if isinstance(tokens, list):
                self._tokenize_url = url
                return [int(t) for t in tokens]
        raise BackendError(f"{self.endpoint}: the server offers no tokenize route (/extras/tokenize, /tokenize), "
                           "and the bundle ships no tokenizer to count tokens with")

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` is for the served model (the bundle's tokenizer, or the server's)."""
        return len(self._ids(text))

    # ------------------------------------------------------------------ generation

    def _request(self, prompt: str, max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, **extra: Any) -> dict[str, Any]:
        payload = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, **extra}
        if self.llama_defaults:
            # llama.cpp's server defaults (top_k 40, min_p 0.05, repeat_penalty 1.1) would change the answers;
            # the local backends sample from the full distribution, unpenalized
            payload.update(top_k=0, min_p=0.0, repeat_penalty=1.0)
        if self.model:
            payload["model"] = self.model
        if seed is not None:
            payload["seed"] = seed
        return payload

    def stream(self, prompt: str, params: GenerationParams, stats: GenerationStats) -> Iterator[str]:
        """Stream a completion from the server; calls from several threads run in parallel there."""
        yield from self._stream_locked(prompt, params, stats)

    def _stream_locked(self, prompt: str, params: GenerationParams, stats: GenerationStats) -> Iterator[str]:
        stats.prompt_tokens = self.count_tokens(prompt)
        greedy = params.temperature <= 0
        payload = self._request(str(self._wire(prompt)), params.max_new_tokens, 0.0 if greedy else params.temperature,
                                1.0 if greedy else params.top_p, params.seed, stream=True,
                                stream_options={"include_usage": True})
        if params.stop:
            payload["stop"] = list(params.stop)
        if params.logprobs:
            payload["logprobs"] = 1
        stop = StopStringFilter(params.stop)
        finish: str | None = None
        stats.finish_reason = "length"
        events = post_stream(f"{self.endpoint}/completions", payload, self._api_key, self.policy)
        try:
            for event in events:
                usage = event.get("usage")
                if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
                    stats.tokens = int(usage["completion_tokens"])
                for choice in event.get("choices") or []:
                    text = choice.get("text") or ""
                    logprobs = choice.get("logprobs") or {}
                    values = [v for v in logprobs.get("token_logprobs") or [] if v is not None]
                    if values or text:
                        stats.tokens += len(values) if logprobs else 1
                        stats.logprob_sum += sum(values)
                        if stats.first_token_at is None:
                            stats.first_token_at = time.perf_counter()
                    piece = stop.feed(text)
                    if piece:
                        yield piece
                    finish = choice.get("finish_reason") or finish
                if stop.stopped:
                    finish = "stop"
                    break  # closing the stream tells the server to stop
        finally:
            events.close()
        if finish is None:
            raise BackendError(f"{self.endpoint}: the server ended the stream without a finish reason "
                               "(llama-cpp-python's server cuts a stream short when another request arrives: "
                               "start it with --interrupt_requests False)")
        stats.finish_reason = "stop" if finish == "stop" else "length"
        tail = stop.flush()
        if tail:
            yield tail

    # ------------------------------------------------------------------ scoring

    def loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, int]]:
        """(sum of log-probs, token count) of each continuation after its context, read from the server."""
        out = []
        for context, continuation in pairs:
            full = self._ids(context + continuation)
            if len(full) > self.context_length:
                raise InputError(f"text of {len(full)} tokens is longer than the model's context of "
                                 f"{self.context_length}")
            start = split_continuation(full, self._ids(context))
            if self._scoring_mode() == "echo":
                values = self._echo(str(self._wire(context + continuation)), len(full) - start)
            else:
                values = self._forced(context, full, start)
            out.append((float(sum(values)), len(full) - start))
        return out

    def _scoring_mode(self) -> str:
        """``echo`` where the server's echoed prompt log-probabilities are those of the tokens they stand
        beside (a generated token's log-probability, seen again in the echo of prompt + token), else ``forced``."""
        if self._scoring is None:
            reply = post_json(f"{self.endpoint}/completions",
                              self._request(_PROBE, 1, logprobs=1), self._api_key, self.policy)
            choice = (reply.get("choices") or [{}])[0]
            token = choice.get("text") or ""
            generated = ((choice.get("logprobs") or {}).get("token_logprobs") or [None])[0]
            mode = "forced"
            if token and generated is not None:
                try:
                    echoed = self._echo(_PROBE + token, 1)[0]
                    mode = "echo" if abs(echoed - generated) <= 1e-3 + 1e-3 * abs(generated) else "forced"
                except (BackendError, IndexError, TypeError):
                    mode = "forced"  # no echo, or not with log-probabilities
            self._scoring = mode
        return self._scoring

    def _echo(self, text: str, n: int) -> list[float]:
        """Log-probabilities of the last ``n`` prompt tokens of ``text``, echoed by the server."""
        reply = post_json(f"{self.endpoint}/completions", self._request(text, 1, echo=True, logprobs=1),
                          self._api_key, self.policy)
        logprobs = ((reply.get("choices") or [{}])[0]).get("logprobs") or {}
        offsets, values = logprobs.get("text_offset") or [], logprobs.get("token_logprobs") or []
        # the echo holds the prompt's tokens (BOS left out by some servers) and then the generated ones
        prompt_values = [v for off, v in zip(offsets, values) if off < len(text)]
        tail = prompt_values[-n:]
        if len(tail) < n or any(v is None for v in tail):
            raise BackendError(f"{self.endpoint}: the echoed prompt has no log-probabilities for its last {n} tokens")
        return [float(v) for v in tail]

    def _forced(self, context: str, full: list[int], start: int) -> list[float]:
        """Each continuation token forced in turn after the text before it; its unbiased log-probability."""
        prefix = self._text_of(context, full[:start])
        # llama.cpp's server reuses the cached prefix of its last prompt; where that holds the whole
        # context (the question's previous choice) it re-evaluates only the context's last token, and
        # one token alone gives other floats than a batch (0.1 nats apart here). A prompt that shares
        # nothing in between makes it evaluate the context in one batch, as the local backend does.
        post_json(f"{self.endpoint}/completions", self._request(_BREAK, 1), self._api_key, self.policy)
        values = []
        for token in full[start:]:
            reply = post_json(f"{self.endpoint}/completions",
                              self._request(str(self._wire(prefix)), 1, logprobs=1,
                                            logit_bias={str(token): FORCE_BIAS}), self._api_key, self.policy)
            choice = (reply.get("choices") or [{}])[0]
            value = ((choice.get("logprobs") or {}).get("token_logprobs") or [None])[0]
            if value is None:
                raise BackendError(f"{self.endpoint}: the server returned no log-probability for a forced token")
            values.append(float(value))
            prefix = prefix + (choice.get("text") or "")
        return values

    def _text_of(self, context: str, ids: list[int]) -> str:
        """The start of ``context`` that tokenizes to ``ids``: all of it, unless its last token merged
        with the continuation's first (then a few characters less)."""
        for end in range(len(context), max(0, len(context) - 64), -1):
            piece = context.head(end) if isinstance(context, Prompt) else context[:end]
            if self._ids(piece) == ids:
                return piece
        raise BackendError("cannot find the text of the scored context: its tokens merge with the continuation's")

    def close(self) -> None:
        """Nothing runs here; the server keeps its model."""
        self._encoder = None


class _GgufVocab:
    """What :func:`~rationalizer.prompt_text.llama_encoder` reads from a ``Llama``, from a vocabulary-only load."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return self._model.tokenize(text, add_bos, special)

    def n_vocab(self) -> int:
        return self._model.n_vocab()


def local_encoder(bundle: Bundle) -> PromptEncoder | None:
    """The bundle's own tokenizer, if its files are here: the GGUF vocabulary (read without the weights'
    memory) or a ``tokenizer.json``; None when neither is (the server then counts)."""
    from ..errors import BundleError

    for fmt in bundle.formats():
        try:
            if fmt == "gguf":
                path = bundle.main_file("gguf")
                if path.is_file():
                    import llama_cpp

                    from ..prompt_text import llama_encoder

                    params = llama_cpp.llama_model_default_params()
                    params.vocab_only = True
                    model = llama_cpp._internals.LlamaModel(path_model=str(path), params=params, verbose=False)
                    return llama_encoder(_GgufVocab(model))
                continue
            for wf in bundle.files(fmt):
                path = bundle.path_of(wf)
                if Path(wf.path).name == "tokenizer.json" and path.is_file():
                    from tokenizers import Tokenizer

                    from ..prompt_text import tokenizers_encoder

                    return tokenizers_encoder(Tokenizer.from_file(str(path)))
        except (BundleError, ImportError, OSError, ValueError, RuntimeError):
            continue
    return None

