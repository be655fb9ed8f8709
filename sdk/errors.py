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


class InputError(UserError, ValueError):
    """A question, choice list or option value is not acceptable."""


class BundleError(UserError):
    """A bundle or its manifest is missing, corrupt or inconsistent."""


class ModelFileError(BundleError):
    """A weight file is there but its runtime cannot read it (truncated, corrupt or of another format)."""


class BackendError(RationalizerError):
    """A backend failed to load a model or to generate."""
