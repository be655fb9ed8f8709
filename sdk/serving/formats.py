"""What the HTTP API sends: error bodies, server-sent events and OpenAI's chat completion shapes."""

from __future__ import annotations

import json
from typing import Any

from ..rationale import Rationale

DONE = b"data: [DONE]\n\n"
"""The last event of every stream, as OpenAI ends its streams."""


class ApiError(Exception):
    """An answer with an HTTP error status and the JSON body ``{"error": {"message", "type"}}``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers

    def body(self) -> dict[str, Any]:
        """The JSON body (OpenAI's error shape, so its clients show the message)."""
        return error_body(self.message, self.kind)


def error_body(message: str, kind: str) -> dict[str, Any]:
    """``{"error": {"message": ..., "type": ...}}``."""
    return {"error": {"message": message, "type": kind}}


def event(data: Any) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")


def finish_reason(result: Rationale) -> str:
    """OpenAI's finish reason: ``length`` when the token budget ran out, else ``stop``."""
    return "length" if result.finish_reason == "length" else "stop"


def usage(result: Rationale) -> dict[str, int]:
    """OpenAI's token counts (``completion_tokens`` covers every vote)."""
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.tokens_generated,
            "total_tokens": result.prompt_tokens + result.tokens_generated}


def chat_completion(result: Rationale, completion_id: str, created: int) -> dict[str, Any]:
    """A ``chat.completion`` object: the message is all the model wrote (rationale and answer sentence);
    ``rationale`` is the parsed :class:`Rationale`."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": result.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "finish_reason": finish_reason(result), "logprobs": None}],
        "usage": usage(result),
        "rationale": result.to_dict(),
    }


def chat_chunk(completion_id: str, created: int, model: str, delta: dict[str, Any],
               finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object; ``extra`` adds top-level fields (the last chunk's ``rationale``)."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **extra,
    }
