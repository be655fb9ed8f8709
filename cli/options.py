"""Option parsing shared by several subcommands."""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

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


def remote_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--endpoint URL`` and ``--endpoint-model NAME``: the server ``--backend http`` runs the bundle on."""
    command = click.option("--endpoint-model", help="Model name to ask the server for (default: the first it serves).")(
        command)
    return click.option("--endpoint", metavar="URL",
                        help="With --backend http: the OpenAI-compatible completions server, e.g. "
                             "http://127.0.0.1:8080/v1 (vLLM, llama.cpp's server, rationalize serve).")(command)


def check_remote(backend: str, endpoint: str | None, endpoint_model: str | None) -> None:
    """A usage error unless ``--backend http`` and ``--endpoint`` come together."""
    if backend == "http" and not endpoint:
        raise click.UsageError("--backend http needs --endpoint URL (the server's /v1 address)")
    if backend != "http" and (endpoint or endpoint_model):
        raise click.UsageError("--endpoint and --endpoint-model go with --backend http")
