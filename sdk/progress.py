"""How long jobs (teach, train, eval, export, bench) report how far they are: one small interface.

A job calls ``start(total, label)`` when it knows how many steps it has, ``update(n, **fields)`` as
steps are done (fields are figures worth showing beside the count: ``loss``, ``tokens_per_s``...);
``start`` again begins a new count (each MaRio round counts its own steps). ``close()`` belongs to
whoever made the progress (the CLI, in a ``finally``), not to the jobs it is passed to. Library
functions take ``progress: Progress | None = None`` and report through :func:`or_silent`, so they
never print; what a progress bar looks like is the caller's business
(the CLI draws one on stderr). Messages go through :mod:`logging`, never through a progress.
"""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    """Receives the progress of one long job."""

    def start(self, total: int, label: str) -> None:
        """A count of ``total`` steps named ``label`` begins (ending the previous count, if any)."""

    def update(self, n: int = 1, **fields: Any) -> None:
        """``n`` more steps are done; ``fields`` are the latest figures to show beside the count."""

    def close(self) -> None:
        """The job is over (also after a failure); nothing more is reported."""


class SilentProgress:
    """A progress that shows nothing: what a job reports to when its caller passed none."""

    def start(self, total: int, label: str) -> None:
        """Ignore the start of a count."""

    def update(self, n: int = 1, **fields: Any) -> None:
        """Ignore an update."""

    def close(self) -> None:
        """Nothing to close."""


def or_silent(progress: Progress | None) -> Progress:
    """``progress``, or a :class:`SilentProgress` when it is None."""
    return SilentProgress() if progress is None else progress
