"""Errors the SDK raises. Each carries a one-line message meant for a person.

The CLI maps :class:`UserError` subclasses to exit status 2 and everything else
derived from :class:`RationalizerError` to exit status 1, printing only the
message, never a traceback.
"""

from __future__ import annotations


class RationalizerError(Exception):
    """Base class of every error the project raises on purpose."""


class UserError(RationalizerError):
    """The caller asked for something that cannot be done as asked."""


class ConfigError(UserError):
    """A setting of a config dataclass is not allowed: ``key`` names it (``lora.r``), ``problem`` says why.

    The message reads ``<where>: <key> <problem>``; ``where`` is the config's class, or the file it was
    read from once :func:`rationalizer.config_file.load_config` has seen the error.
    """

    def __init__(self, where: str, key: str, problem: str) -> None:
        super().__init__(f"{where}: {key} {problem}")
        self.where, self.key, self.problem = where, key, problem

    def seen_from(self, where: str, parent: str | None = None) -> ConfigError:
        """The same error told by ``where``, with the key under ``parent`` (the field of a nested config)."""
        return ConfigError(where, f"{parent}.{self.key}" if parent else self.key, self.problem)


class InputError(UserError, ValueError):
    """A question, choice list or option value is not acceptable."""


class BundleError(UserError):
    """A bundle or its manifest is missing, corrupt or inconsistent."""


class ModelFileError(BundleError):
    """A weight file is there but its runtime cannot read it (truncated, corrupt or of another format)."""


class BackendError(RationalizerError):
    """A backend failed to load a model or to generate."""
