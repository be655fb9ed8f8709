"""A small JSON-over-HTTP client with timeouts and retries, for OpenAI-compatible servers.

The standard library's urllib is enough for one request at a time; keeping
``requests``/``httpx`` out keeps the runtime install light.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

from .errors import BackendError

T = TypeVar("T")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class RetryPolicy:
    """How often and how patiently to retry a request."""

    attempts: int = 5
    timeout_s: float = 60.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0


def post_json(url: str, payload: dict[str, Any], api_key: str | None = None,
              policy: RetryPolicy | None = None) -> dict[str, Any]:
    """POST ``payload`` and return the decoded JSON reply.

    Retries with exponential backoff and jitter on 429, 5xx, timeouts and
    dropped connections (honouring ``Retry-After``); other HTTP errors fail at
    once with the server's message.
    """
    return _send(url, json.dumps(payload).encode("utf-8"), api_key, policy,
                 lambda reply: json.loads(reply.read().decode("utf-8")))


def get_json(url: str, api_key: str | None = None, policy: RetryPolicy | None = None) -> dict[str, Any]:
    """GET ``url`` and return the decoded JSON reply, retried as :func:`post_json` retries."""
    return _send(url, None, api_key, policy, lambda reply: json.loads(reply.read().decode("utf-8")))


def post_stream(url: str, payload: dict[str, Any], api_key: str | None = None,
                policy: RetryPolicy | None = None) -> Iterator[dict[str, Any]]:
    """POST ``payload`` and yield the JSON events of the server-sent-event reply, up to ``data: [DONE]``.

    Opening the stream is retried as :func:`post_json` retries; once events have come, a dropped
    connection or a read that waits longer than the policy's timeout is a :class:`BackendError`
    (the events already yielded cannot be taken back). Closing the generator closes the connection,
    which tells the server to stop generating.
    """
    reply = _send(url, json.dumps(payload).encode("utf-8"), api_key, policy, lambda reply: reply)
    try:
        for raw in reply:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue  # blank separators, comments (": ping"), event names
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except json.JSONDecodeError:
                raise BackendError(f"{url}: a streamed event is not JSON: {data[:200]!r}") from None
            if isinstance(event, dict) and "error" in event:
                raise BackendError(f"{url}: the server reported an error mid-stream: {str(event['error'])[:200]}")
            yield event
    except (TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc) or type(exc).__name__
        raise BackendError(f"{url}: the stream broke off ({reason})") from None
    finally:
        reply.close()


def _send(url: str, body: bytes | None, api_key: str | None, policy: RetryPolicy | None,
          read: Callable[[Any], T]) -> T:
    """One request (POST with ``body``, else GET) with retries; ``read`` turns the open reply into the result."""
    policy = policy or RetryPolicy()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    last = ""
    for attempt in range(policy.attempts):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
        wait = min(policy.max_backoff_s, policy.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
        try:
            reply = urllib.request.urlopen(request, timeout=policy.timeout_s)
            try:
                result = read(reply)
            except BaseException:
                reply.close()
                raise
            if result is not reply:
                reply.close()
            return result
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            last = f"HTTP {exc.code}: {detail}"
            if exc.code not in RETRY_STATUS:
                raise BackendError(f"{url}: {last}") from None
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            if retry_after and retry_after.isdigit():
                wait = min(policy.max_backoff_s, float(retry_after))
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            last = str(getattr(exc, "reason", exc)) or type(exc).__name__
        except json.JSONDecodeError:
            last = "reply is not JSON"
        if attempt + 1 < policy.attempts:
            time.sleep(wait)
    raise BackendError(f"{url}: failed after {policy.attempts} attempts ({last})")
