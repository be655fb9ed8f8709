"""Config files: a JSON object whose keys mirror a config dataclass, with command-line flags on top."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from .dataclass_json import DataclassValueError, from_dict, to_dict
from .errors import ConfigError, UserError

T = TypeVar("T")

COMMAND_LINE = "command line"
"""Who an error blames when the setting came from a flag rather than from the file."""


def load_config(cls: type[T], path: str | None, overrides: dict[str, Any] | None = None) -> T:
    """Build ``cls`` from the JSON file at ``path`` (None: no file) with ``overrides`` applied on top.

    ``overrides`` are the flags given (None values are left out, so an absent flag keeps the file's
    value); a nested dict sets keys of a nested config (``{"lora": {"r": 8}}``). Every error is one
    :class:`UserError` naming the file (or the command line, for a flag's value) and the key.
    """
    data = read_config_file(path) if path else {}
    given = _merge(data, overrides or {})
    where = Path(path).name if path else cls.__name__
    try:
        return from_dict(cls, data, where=where)
    except DataclassValueError as exc:
        raise UserError(str(exc)) from None
    except ConfigError as exc:
        from_flag = exc.key.split(".")[0].removesuffix("[]") in given
        raise exc.seen_from(COMMAND_LINE if from_flag else where) from None


def read_config_file(path: str) -> dict[str, Any]:
    """The JSON object in ``path``; anything else is one :class:`UserError` that names the file."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError:  # json.loads' only other error: an integer past the int-from-text limit
        raise UserError(f"{path}: not valid JSON (a number of more than 4,300 digits)") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of settings, got {type(data).__name__}")
    return data


def _merge(data: dict[str, Any], overrides: dict[str, Any]) -> set[str]:
    """Put ``overrides`` into ``data`` (nested dicts key by key); returns the top-level keys set."""
    given = set()
    for key, value in overrides.items():
        if isinstance(value, dict):
            inner = data[key] if isinstance(data.get(key), dict) else {}
            if _merge(inner, value):
                data[key] = inner
                given.add(key)
        elif value is not None:
            data[key] = value
            given.add(key)
    return given


def save_config(config: Any, path: Path) -> None:
    """Write a config as JSON (the format :func:`load_config` reads)."""
    from .atomic import atomic_write_text

    atomic_write_text(path, json.dumps(to_dict(config), indent=2) + "\n")
