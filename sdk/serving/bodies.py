"""Request bodies of the HTTP API, read into :class:`~rationalizer.serving.scheduler.Question` objects.

Only the JSON types are checked here; the ranges (``max_tokens``, ``temperature``...), the question's
length and the quality codes are the runtime's to check, so the server and the SDK refuse the same
inputs with the same messages.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .scheduler import Question

RATIONALIZE_FIELDS = ("question", "choices", "quality", "max_tokens", "temperature", "top_p", "seed", "votes",
                      "stream")


def parse_rationalize(body: Any) -> tuple[Question, bool]:
    """``POST /v1/rationalize``'s body -> (the question, whether to stream). Unknown fields are refused:
    a misspelt option would otherwise be ignored without a word."""
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object")
    unknown = sorted(set(body) - set(RATIONALIZE_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(map(repr, unknown))}; this route takes "
                         f"{', '.join(RATIONALIZE_FIELDS)}")
    if "question" not in body:
        raise InputError("the body needs a 'question'")
    question = _options(body, body["question"])
    stream = _flag(body, "stream")
    if stream and question.votes > 1:
        raise InputError("stream and votes > 1 cannot be combined (the answer is known after all votes)")
    return question, stream


def parse_chat(body: Any) -> tuple[Question, bool]:
    """``POST /v1/chat/completions``'s body -> (the question, whether to stream).

    The last user message is the question (the bundle's own prompt template frames it; system and
    earlier messages are not shown to the model). ``quality``, ``choices`` and ``votes`` are extra
    fields; OpenAI's fields this server has no use for are ignored, as other compatible servers do.
    """
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("'messages' must be a non-empty list of {role, content} objects")
    if not all(isinstance(m, dict) for m in messages):
        raise InputError("each message must be a {role, content} object")
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise InputError("'messages' has no message with role 'user' (its last one is the question)")
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise InputError(f"n must be 1, not {n!r}")
    options = dict(body)
    if options.get("max_completion_tokens") is not None:
        options["max_tokens"] = options["max_completion_tokens"]
    question = _options(options, _content(users[-1].get("content")))
    stream = _flag(body, "stream")
    if stream and question.votes > 1:
        raise InputError("stream and votes > 1 cannot be combined (the answer is known after all votes)")
    return question, stream


def _content(content: Any) -> str:
    """A message's text: a string, or OpenAI's list of content parts (only text parts are allowed)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InputError("a message's content parts must be {type: 'text', text: ...}: this model reads text")
            texts.append(part["text"])
        return "\n".join(texts)
    raise InputError(f"a message's content must be text, not {_kind(content)}")


def _options(body: dict[str, Any], question: Any) -> Question:
    if not isinstance(question, str):
        raise InputError(f"the question must be text, not {_kind(question)}")
    choices = body.get("choices")
    if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
        raise InputError("'choices' must be a list of strings (or null for a free-form answer)")
    quality = body.get("quality")
    if quality is None:
        quality = "best"
    elif not isinstance(quality, (str, dict)):
        raise InputError(f"'quality' must be a preset name, 'name=level,...' text or a {{name: level}} object, "
                         f"not {_kind(quality)}")
    return Question(
        question=question,
        choices=choices,
        quality=quality,
        max_new_tokens=_typed(body, "max_tokens", int),
        temperature=_typed(body, "temperature", float, 0.0),
        top_p=_typed(body, "top_p", float, 1.0),
        seed=_typed(body, "seed", int),
        votes=_typed(body, "votes", int, 1),
    )


def _typed(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    allowed = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise InputError(f"'{name}' must be {'a number' if kind is float else 'an integer'}, not {_kind(value)}")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(f"'{name}' must be true or false, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """A JSON value's type as a person reads it."""
    names = {dict: "an object", list: "a list", str: "text", bool: "a boolean", int: "a number", float: "a number",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)
