"""Checks of config dataclasses, read from their fields: allowed values, ranges, non-empty settings.

Every config of the project declares its settings as peft and trl do, one
``field(default=..., metadata={"help": ...})`` each, so code (the CLI's options,
documentation) can read the help. The same metadata carries what a value may be:
``"range": Range(1, 4096)`` for a number (or each number of a list) and
``"nonempty": True`` (or the problem to tell) for text or a list that must not be empty or
hold blank text; a ``Literal``
annotation lists the allowed strings. A config's ``__post_init__`` calls
:func:`check_settings`, so a config built by code is checked as one read from a
file is, and the error names the setting the way ``<where>: <name> must be ...``.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

from .dataclass_json import field_types
from .errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The numbers a setting allows: ``low`` to ``high``, ``low`` itself excluded with ``low_open``."""

    low: float
    high: float
    low_open: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside the range (None: it is inside)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, not {shown(value)}"
        finite = isinstance(value, int) or math.isfinite(value)  # isfinite() cannot take a 400-digit integer
        if finite and (value > self.low or (value == self.low and not self.low_open)) and value <= self.high:
            return None
        lowest = f"above {shown(self.low)}" if self.low_open else f"at least {shown(self.low)}"
        return f"must be {lowest} and at most {shown(self.high)}, not {shown(value)}"


def shown(value: Any) -> str:
    """A value as a message shows it: whole floats without a fraction, huge values shortened."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    try:
        return reprlib.repr(value)
    except ValueError:  # an integer past the int-to-text limit
        return "a number of more than 4,300 digits"


def literal_choices(annotation: Any) -> tuple[str, ...] | None:
    """The strings a ``Literal`` annotation allows, also inside ``Optional[...]`` and ``list[...]``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)
    if origin in (Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            choices = literal_choices(arg)
            if choices:
                return choices
    return None


def check_settings(config: Any) -> None:
    """Raise :class:`ConfigError` for the first field of ``config`` whose value its declaration refuses:
    a string outside its ``Literal``, a number outside its ``Range``, an empty ``nonempty`` setting.
    None passes where a field is optional. Nested configs check themselves when they are built."""
    where = type(config).__name__
    hints = field_types(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        key = f"{f.name}[]" if items is value else f.name
        choices = literal_choices(hints[f.name])
        for item in items if choices else ():
            if item not in choices:
                raise ConfigError(where, key, f"must be one of {', '.join(choices)}, not {shown(item)}")
        bounds = f.metadata.get("range")
        for item in items if bounds else ():
            problem = bounds.problem(item)
            if problem:
                raise ConfigError(where, key, problem)
        empty = f.metadata.get("nonempty")  # True, or the problem to tell
        if empty and (not items or any(isinstance(i, str) and not i.strip() for i in items)):
            raise ConfigError(where, f.name, empty if isinstance(empty, str) else "must not be empty")
