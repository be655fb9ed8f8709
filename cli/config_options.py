"""Click options generated from a config dataclass, as trl's ``HfArgumentParser`` builds its arguments.

``@options_from(SFTConfig)`` adds one option per field, named after it (``--batch-size``),
with the field's ``metadata["help"]``, plus ``--config FILE``; the command receives
``config``: the file's settings with the flags given on top. Every option defaults to
None, so a flag left out keeps the file's value (or the dataclass default); the values
a setting allows are checked once, by the config's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Union

import click

from rationalizer.config_checks import literal_choices
from rationalizer.config_file import load_config
from rationalizer.dataclass_json import field_types

F = typing.TypeVar("F", bound=Callable[..., Any])


class ChoiceList(click.Choice):
    """Choices given as a comma list (``--gguf q8_0,q4_k_m``), repeatable; each is checked."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, list):
            return value
        return [super(ChoiceList, self).convert(part.strip().lower(), param, ctx)
                for part in str(value).split(",") if part.strip()]


@dataclass
class _Option:
    """One generated option: its dotted key in the config (``lora.r``), declarations and click settings."""

    key: str
    decls: list[str]
    settings: dict[str, Any]

    @property
    def param(self) -> str:
        return self.key.replace(".", "__")


def options_from(cls: type, exclude: tuple[str, ...] = (), names: dict[str, str] | None = None) -> Callable[[F], F]:
    """Add ``cls``'s fields as options and ``--config FILE`` to a click command, which then gets ``config``.

    ``exclude``: fields (dotted for a nested config: ``fields.kind``) with no option; ``names``: the option
    for a field when it is not ``--field-name`` (``{"max_new_tokens": "--max-tokens"}``). Fields of a nested
    config become ``--parent-field``. A command argument named after a field (``bundles``) also sets it.
    """
    options = list(_options(cls, "", set(exclude), names or {}))
    top_level = {f.name for f in dataclasses.fields(cls)}
    required = [f.name for f in dataclasses.fields(cls) if f.default is MISSING and f.default_factory is MISSING]

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            path = kwargs.pop("config_file")
            overrides: dict[str, Any] = {}
            for option in options:
                value = kwargs.pop(option.param)
                if value is None or value == ():
                    continue
                *parents, leaf = option.key.split(".")
                target = overrides
                for parent in parents:
                    target = target.setdefault(parent, {})
                target[leaf] = _plain(value)
            for name in [k for k in kwargs if k in top_level]:  # arguments named after a field
                value = kwargs.pop(name)
                if value is not None and value != ():
                    overrides[name] = _plain(value)
            missing = [name for name in required if name not in overrides]
            if missing and path is None:  # said as click says it, rather than as a missing key of no file
                raise click.UsageError(f"Missing {_named(missing[0])} (or --config FILE).")
            return command(config=load_config(cls, path, overrides), **kwargs)

        for option in reversed(options):
            run = click.option(*option.decls, option.param, **option.settings)(run)
        help_text = f"JSON file of {cls.__name__} settings (keys are the field names); flags given override it."
        run = click.option("--config", "config_file", type=click.Path(dir_okay=False), help=help_text)(run)
        return typing.cast(F, run)

    return decorate


def _options(cls: type, prefix: str, exclude: set[str], names: dict[str, str]):
    """The options of ``cls``'s fields, nested configs flattened (``lora.r`` -> ``--lora-r``)."""
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if key in exclude:
            continue
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            yield from _options(annotation, f"{key}.", exclude, names)
            continue
        flag = names.get(key, "--" + key.replace(".", "-").replace("_", "-"))
        settings = _click_type(annotation)
        if settings.pop("is_bool"):
            flag = flag if "/" in flag else f"{flag}/--no-{flag[2:]}"
        settings["default"] = None  # only the flags given override the file
        repeat = (" A comma list; the option repeats." if isinstance(settings.get("type"), ChoiceList)
                  else " Repeat the option for several." if settings.get("multiple") else "")
        settings["help"] = f.metadata.get("help", "") + repeat + _shown_default(f)
        yield _Option(key, [flag], settings)


def _named(param_name: str) -> str:
    """How click's messages name a parameter of the running command: ``option '--out'``, ``argument 'BUNDLE'``."""
    for param in click.get_current_context().command.params:
        if param.name == param_name:
            kind = "argument" if isinstance(param, click.Argument) else "option"
            shown = param.human_readable_name.strip("[]") if kind == "argument" else param.opts[0]
            return f"{kind} '{shown}'"
    return f"setting '{param_name}'"


def _click_type(annotation: Any) -> dict[str, Any]:
    """Click settings for a field's type: Literal as a choice, lists as repeatable options, bool as a flag."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        annotation = args[0]  # Optional[X]: None is the option's "not given"
    choices = literal_choices(annotation)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        kind = ChoiceList(choices) if choices else {int: int, float: float}.get(item, str)
        return {"is_bool": False, "multiple": True, "type": kind}
    if choices:
        return {"is_bool": False, "type": click.Choice(choices)}
    if annotation is bool:
        return {"is_bool": True}
    return {"is_bool": False, "type": {int: int, float: float}.get(annotation, str)}


def _shown_default(f: dataclasses.Field) -> str:
    """`` [default: x]`` for the help, from the field's default (the option's own default is None)."""
    value = f.default_factory() if f.default_factory is not MISSING else f.default
    if value is MISSING or value is None or value == "" or value == []:
        return ""
    if isinstance(value, bool):
        value = "on" if value else "off"
    elif isinstance(value, list):
        value = ", ".join(map(str, value))
    elif dataclasses.is_dataclass(value):
        return ""
    return f"  [default: {value}]"


def _plain(value: Any) -> Any:
    """A click value as a config file would hold it: repeated options (tuples) as lists, comma lists flat."""
    if isinstance(value, tuple):
        return [v for item in value for v in (item if isinstance(item, list) else [item])]
    return value
