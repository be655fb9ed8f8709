"""OpenAI's ``POST /v1/completions`` over the served bundle's raw backend: the prompt is used as given.

This is the route the remote backend (:mod:`rationalizer.backends.http`) talks to, so one
``rationalize serve`` can run a bundle's weights for clients that build the prompt from the manifest
themselves. The prompt is not wrapped in the bundle's template, and its control tokens are real (as on
vLLM's and llama.cpp's servers: the remote backend breaks look-alikes in untrusted text before it sends).

Choice scoring takes the remote backend's forced path: ``logit_bias`` of +50 or more on one token with
``max_tokens`` 1 makes that token the completion, its log-probability read from the unbiased
distribution (:meth:`Backend.loglikelihoods` of the token after the prompt, the very call local scoring
makes). ``echo`` is refused: the backends score a continuation as a whole, and per-token log-probabilities
of a prompt would each cost a pass over it. With ``logprobs`` the generated text's log-probability is
given as one entry covering all of it (a one-token completion's is that token's, exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from ..backends import GenerationStats
from ..errors import InputError
from ..prompt_text import Prompt
from ..runtime import Rationalizer

FORCE_BIAS = 50.0
"""A ``logit_bias`` at least this large forces its token (the remote backend sends +100)."""
_NEUTRAL = {"top_k": (0, -1), "min_p": (0,), "repeat_penalty": (1,), "presence_penalty": (0,),
            "frequency_penalty": (0,)}  # sampling fields other servers take; here only their no-op values


@dataclass
class Completion:
    """One completions request: the prompt as given and how to continue it."""

    prompt: str
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: bool = False
    forced: int | None = None
    """The token id ``logit_bias`` forces (then ``max_new_tokens`` is 1)."""
    include_usage: bool = False

    def batch_key(self) -> None:
        """Completions run alone: the batching path answers :class:`Rationale` questions only."""
        return None


@dataclass
class CompletionResult:
    """What a completion produced."""

    text: str
    finish_reason: str
    prompt_tokens: int
    tokens: int
    logprob: float | None


def parse_completion(body: Any) -> tuple[Completion, bool]:
    """``POST /v1/completions``'s body -> (the request, whether to stream). OpenAI's defaults hold
    (16 tokens, temperature 1); fields this server has no use for are ignored, as on other servers."""
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise InputError("'prompt' must be non-empty text (one prompt per request)")
    for name in ("n", "best_of"):
        if body.get(name) not in (None, 1) or isinstance(body.get(name), bool):
            raise InputError(f"{name} must be 1, not {body.get(name)!r}")
    if body.get("echo"):
        raise InputError("echo is not supported: the backends score a continuation as a whole; force each token "
                         "with logit_bias and max_tokens 1 to read its log-probability")
    if body.get("suffix"):
        raise InputError("suffix is not supported")
    for name, allowed in _NEUTRAL.items():
        if body.get(name) is not None and body[name] not in allowed:
            raise InputError(f"{name} must be {allowed[0]} (this server samples from the full, unpenalized "
                             f"distribution), not {body[name]!r}")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else ([] if stop is None else stop)
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 16:
        raise InputError("'stop' must be text or a list of at most 16 strings")
    logprobs = body.get("logprobs")
    if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int) or
                                 not 0 <= logprobs <= 20):
        raise InputError(f"'logprobs' must be an integer in 0..20 or null, not {logprobs!r}")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InputError("'stream_options' must be an object")
    completion = Completion(prompt, _number(body, "max_tokens", int, 16), _number(body, "temperature", float, 1.0),
                            _number(body, "top_p", float, 1.0), _number(body, "seed", int, None), stop,
                            logprobs is not None, include_usage=bool(options.get("include_usage")))
    completion.forced = _forced(body.get("logit_bias"), completion.max_new_tokens)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InputError(f"'stream' must be true or false, not {stream!r}")
    return completion, stream


def _number(body: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise InputError(f"'{name}' must be {'a number' if kind is float else 'an integer'}, not {value!r}")
    return value


def _forced(bias: Any, max_tokens: int) -> int | None:
    """The token ``logit_bias`` forces, or None without one; any other bias is refused, as the backends'
    samplers take none."""
    if not bias:
        return None
    if not isinstance(bias, dict):
        raise InputError("'logit_bias' must be an object {token id: bias}")
    try:
        entries = {int(k): float(v) for k, v in bias.items()}
    except (TypeError, ValueError):
        raise InputError("'logit_bias' maps token ids to numbers") from None
    if len(entries) != 1 or next(iter(entries.values())) < FORCE_BIAS or max_tokens != 1:
        raise InputError(f"logit_bias is supported only to force one token (a bias of at least {FORCE_BIAS:g}) "
                         "with max_tokens 1")
    token = next(iter(entries))
    if token < 0:
        raise InputError(f"token id {token} is negative")
    return token


def run_completion(rationalizer: Rationalizer, request: Completion) -> Iterator[str | CompletionResult]:
    """Yield the generated text in pieces, then the :class:`CompletionResult`. Model calls take the
    backend's lock, so they take turns with every other route's."""
    backend = rationalizer.backend
    prompt = Prompt.template(request.prompt)  # as given: its control tokens are real
    params = rationalizer.generation_params(request.max_new_tokens, request.temperature, request.top_p,
                                            request.seed)
    context = rationalizer.manifest.generation.context_length
    used = backend.count_tokens(prompt)
    if used >= context:
        raise InputError(f"the prompt is {used} tokens; this model's context holds {context}")
    if request.forced is not None:
        piece = _token_text(backend, request.forced)
        value, n = backend.loglikelihoods([(prompt, piece)])[0]
        if n != 1:
            raise InputError(f"token {request.forced} ({piece!r}) does not stay one token after this prompt")
        yield piece
        yield CompletionResult(piece, "length", used, 1, value if request.logprobs else None)
        return
    params = replace(params, max_new_tokens=min(params.max_new_tokens, context - used), stop=list(request.stop),
                     logprobs=request.logprobs)
    stats = GenerationStats()
    pieces = []
    for piece in backend.stream(prompt, params, stats):
        pieces.append(piece)
        yield piece
    yield CompletionResult("".join(pieces), "stop" if stats.finish_reason == "stop" else "length",
                           stats.prompt_tokens or used, stats.tokens,
                           stats.logprob_sum if request.logprobs else None)


def _token_text(backend: Any, token: int) -> str:
    """A token id's text, from the backend's tokenizer (the Backend interface has no decoding of its own)."""
    try:
        decode = getattr(backend, "decode", None)
        if callable(decode):
            return decode([token])
        llm = getattr(backend, "_llm", None)  # llama.cpp's
        if llm is not None:
            if token >= llm.n_vocab():
                raise ValueError
            return llm.detokenize([token], special=True).decode("utf-8", "replace")
    except (ValueError, IndexError, OverflowError, TypeError):
        raise InputError(f"token id {token} is not in this model's vocabulary") from None
    raise InputError(f"the {type(backend).__name__} backend cannot force a token")


def completion_body(result: CompletionResult, completion_id: str, created: int, model: str,
                    prompt: str) -> dict[str, Any]:
    """A ``text_completion`` object."""
    return {"id": completion_id, "object": "text_completion", "created": created, "model": model,
            "choices": [_choice(result.text, result, prompt)], "usage": completion_usage(result)}


def completion_chunk(completion_id: str, created: int, model: str, text: str,
                     result: CompletionResult | None = None, prompt: str = "") -> dict[str, Any]:
    """A streamed ``text_completion`` chunk: a piece of text, or (with ``result``) the last one, which
    carries the finish reason (and the log-probability)."""
    choice = _choice(text, result, prompt) if result is not None else \
        {"index": 0, "text": text, "logprobs": None, "finish_reason": None}
    return {"id": completion_id, "object": "text_completion", "created": created, "model": model,
            "choices": [choice]}


def usage_chunk(completion_id: str, created: int, model: str, result: CompletionResult) -> dict[str, Any]:
    """The chunk ``stream_options.include_usage`` asks for: no choices, the token counts."""
    return {"id": completion_id, "object": "text_completion", "created": created, "model": model,
            "choices": [], "usage": completion_usage(result)}


def completion_usage(result: CompletionResult) -> dict[str, int]:
    """OpenAI's token counts."""
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.tokens,
            "total_tokens": result.prompt_tokens + result.tokens}


def _choice(text: str, result: CompletionResult | None, prompt: str) -> dict[str, Any]:
    logprobs = None
    if result is not None and result.logprob is not None:
        logprobs = {"tokens": [result.text], "token_logprobs": [result.logprob], "top_logprobs": None,
                    "text_offset": [len(prompt)]}
    return {"index": 0, "text": text, "logprobs": logprobs,
            "finish_reason": result.finish_reason if result is not None else None}
