"""Reading a manifest's JSON text safely: repeated keys, deep nesting, lone surrogates and huge numbers
become one :class:`BundleError` line naming the file, before any field is looked at."""

from __future__ import annotations

import json
import reprlib
import sys
from typing import Any

from .errors import BundleError

MAX_DEPTH = 64
"""Deepest nesting of JSON objects and lists a manifest may have (a real one has under 10 levels)."""


def read_json_object(text: str, source: str) -> dict[str, Any]:
    """The manifest's JSON object, parsed and checked (nesting, valid Unicode); ``source`` names the file."""
    data = _parse_json(text, source)
    if not isinstance(data, dict):
        raise BundleError(f"{source}: expected a JSON object")
    _check_tree(data, source)
    return data


class _RepeatedKey(ValueError):
    """A JSON object names one key twice (raised from inside ``json.loads``)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses repeated keys: ``json`` keeps the last one silently, so
    a manifest with two ``files`` entries would read one way here and another way elsewhere."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def _parse_json(text: str, source: str) -> Any:
    """``json.loads`` with every way it can fail turned into one :class:`BundleError` line."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except _RepeatedKey as exc:
        raise BundleError(f"{source}: key {short(exc.args[0])} appears twice in one object") from None
    except RecursionError:
        raise BundleError(f"{source}: JSON nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # an integer longer than Python's int-conversion limit
        if "integer string conversion" in str(exc):
            raise BundleError(f"{source}: a number has more than {sys.get_int_max_str_digits()} digits") from None
        raise BundleError(f"{source}: not valid JSON ({short(str(exc))})") from None


def _check_tree(data: Any, source: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and text that is not valid Unicode (a lone
    surrogate from ``"\\ud800"`` cannot be printed, encoded for a tokenizer, or used in a path)."""
    if _tree_is_sound(data):
        return
    # a second, slower walk that keeps each value's location, to name it
    stack: list[tuple[Any, str, int]] = [(data, "manifest", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BundleError(f"{source}: JSON nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, f"{where} key", source)
                stack.append((item, f"{where}.{key_text(key)}", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where, source)


def _tree_is_sound(data: Any) -> bool:
    """Whether :func:`_check_tree` would pass, found without building locations (the common case)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    try:
        while stack:
            value, depth = stack.pop()
            if depth > MAX_DEPTH:
                return False
            if isinstance(value, dict):
                for key, item in value.items():
                    key.encode("utf-8")
                    stack.append((item, depth + 1))
            elif isinstance(value, list):
                stack.extend((item, depth + 1) for item in value)
            elif isinstance(value, str):
                value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(text: str, where: str, source: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BundleError(f"{source}: {where}: not valid Unicode text (lone surrogate "
                          f"{text[exc.start]!r} at character {exc.start})") from None


def key_text(key: str) -> str:
    """A key as a message shows it: as it is when short and printable, else as a short repr."""
    return key if key.isprintable() and len(key) <= 40 else short(key)


def short(value: Any) -> str:
    """A bounded one-line repr of a value read from the file, for messages."""
    try:
        return reprlib.repr(value)
    except ValueError:  # an integer past Python's int-to-text limit (4,300 digits) has no repr
        return f"<integer of about {int(value.bit_length() * 0.30103)} digits>"
