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
from typing import Any

from .errors import BackendError

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
    policy = policy or RetryPolicy()
    body = json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    last = ""
    for attempt in range(policy.attempts):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        wait = min(policy.max_backoff_s, policy.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
        try:
            with urllib.request.urlopen(request, timeout=policy.timeout_s) as reply:
                return json.loads(reply.read().decode("utf-8"))
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
