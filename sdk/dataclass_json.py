"""Dataclasses to and from JSON-ready dicts, with type checks and clear errors.

Manifests and configs are dataclasses (as in peft and trl) so that one object
configures code, the command line and saved files. The standard library's
``dataclasses.asdict`` covers the way out; the way in, with nested dataclasses,
``Optional`` fields and a message that names the offending key, it does not
cover, hence this module.
"""

from __future__ import annotations

import dataclasses
import functools
import reprlib
import types
import typing
from typing import Any, TypeVar, Union

from .errors import ConfigError

T = TypeVar("T")


class DataclassValueError(ValueError):
    """A dict does not fit the dataclass it should fill; the message names the key."""


def _show(value: Any) -> str:
    """A value from the input as a message shows it: a bounded, one-line repr (a 4,000-digit number
    or a megabyte of text would drown the message)."""
    try:
        return reprlib.repr(value)
    except ValueError:  # an integer past Python's int-to-text limit (4,300 digits) has no repr
        return f"<integer of about {int(value.bit_length() * 0.30103)} digits>"


def _key(key: Any) -> str:
    """A dict key as a location shows it: as it is when short and printable, else as a short repr."""
    return key if isinstance(key, str) and key.isprintable() and len(key) <= 40 else _show(key)


def to_dict(obj: Any) -> Any:
    """Turn a dataclass (possibly nested in lists and dicts) into JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build ``cls`` from ``data``, checking every field's type; unknown keys are refused."""
    return _convert(cls, data, where or cls.__name__)


@functools.cache
def field_types(tp: type) -> dict[str, Any]:
    """A dataclass's resolved annotations (resolving the strings of ``from __future__`` is slow)."""
    return typing.get_type_hints(tp)


@functools.cache
def _fields_of(tp: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """A dataclass's resolved type hints and init fields."""
    return field_types(tp), {f.name: f for f in dataclasses.fields(tp) if f.init}


def _convert(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise DataclassValueError(f"{where}: must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except DataclassValueError as exc:
                errors.append(str(exc))
        raise DataclassValueError(errors[0] if len(errors) == 1 else f"{where}: unexpected value {_show(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise DataclassValueError(f"{where}: expected an object, got {type(value).__name__}")
        hints, fields = _fields_of(tp)
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise DataclassValueError(f"{where}: unknown key {_show(unknown[0])} (known: {', '.join(fields)})")
        kwargs = {}
        for name, field in fields.items():
            if name in value:
                try:
                    kwargs[name] = _convert(hints[name], value[name], f"{where}.{name}")
                except ConfigError as exc:  # a nested config refused a setting: name it from here
                    raise exc.seen_from(tp.__name__, name) from None
            elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise DataclassValueError(f"{where}: missing key {name!r}")
        return tp(**kwargs)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise DataclassValueError(f"{where}: expected a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        return [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise DataclassValueError(f"{where}: expected an object, got {type(value).__name__}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {_convert(key_tp, k, where): _convert(val_tp, v, f"{where}.{_key(k)}") for k, v in value.items()}
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            # worded as a config's own check words it: "c.json.objective must be one of iro, multitask"
            raise DataclassValueError(f"{where} must be one of {', '.join(map(str, allowed))}, not {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataclassValueError(f"{where}: expected a number, got {_show(value)}")
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits has no float
            raise DataclassValueError(f"{where}: number {_show(value)} is too large") from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataclassValueError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise DataclassValueError(f"{where}: expected {tp.__name__}, got {_show(value)}")
        return value
    return value
