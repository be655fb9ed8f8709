"""Option parsing shared by several subcommands."""

from __future__ import annotations

import sys

from rationalizer.errors import InputError


def split_choices(value: str | None) -> list[str] | None:
    """``"a|b|c"`` -> ``["a", "b", "c"]``; None stays None (free-form answer)."""
    if value is None:
        return None
    return [part.strip() for part in value.split("|")]


def parse_quality(value: str | None) -> str:
    """A quality preset name or ``name=level,...`` text, passed on to the SDK as is."""
    return value.strip() if value and value.strip() else "best"


def read_question(words: tuple[str, ...]) -> str:
    """The question from the arguments; ``-`` reads it from stdin (UTF-8)."""
    if words == ("-",):
        stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
        data = stdin.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"stdin is not UTF-8 text (bad byte at offset {exc.start})") from None
    if not words:
        raise InputError("no question given: rationalize \"your question\" (or - to read stdin)")
    return " ".join(words)
