"""How the CLI reports on stderr: the library's log messages as plain lines, and one progress bar.

The two share the terminal line: a message written while a bar is drawn clears the bar, takes its
own line and redraws the bar under it, so neither garbles the other.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from typing import Any, TextIO

import click

from rationalizer.progress import Progress, SilentProgress

_FIELDS = {"loss": "loss {:.3f}", "tokens_per_s": "{:.0f} tok/s", "per_minute": "{:.1f}/min"}
"""How the fields the jobs report are shown; any other shows as ``name value``."""
_REDRAW_S = 0.1
"""Least time between two redraws of the bar (a fast job must not spend its time drawing)."""

_active: "StderrProgress | None" = None
"""The bar now drawn on the terminal, which a log line must clear and redraw."""


def install_log_handler(level: int = logging.INFO) -> None:
    """Send the ``rationalizer`` logger's messages of ``level`` and above to stderr as plain lines.

    Called for every command; a second call (tests run many commands in one process) only sets the level.
    """
    logger = logging.getLogger("rationalizer")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines())


def new_progress() -> Progress:
    """The progress a command passes to a long job: a bar on stderr, or nothing under ``--quiet``."""
    if logging.getLogger("rationalizer").getEffectiveLevel() > logging.INFO:
        return SilentProgress()
    return StderrProgress()


class _StderrLines(logging.Handler):
    """Writes each record's message as one line on the current stderr (looked up per line: test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if _active is not None:
                _active.clear()
            click.echo(message, err=True)
            if _active is not None:
                _active.draw(force=True)
        except Exception:  # logging must never break the job it reports on
            self.handleError(record)


def _shown(fields: dict[str, Any]) -> str:
    return ", ".join(_FIELDS[k].format(v) if k in _FIELDS else f"{k} {v}" for k, v in fields.items())


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


class StderrProgress:
    """A :class:`rationalizer.progress.Progress` drawn as one line on stderr.

    On a terminal: ``label [####----] done/total eta fields``, redrawn in place. Elsewhere (a log
    file, a pipe) a plain line each time another tenth of the count is done, and nothing between.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self.total, self.label, self.done = 0, "", 0
        self._fields: dict[str, Any] = {}
        self._started = self._drawn_at = 0.0
        self._tenths = 0
        self._open = False

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    @property
    def _tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def start(self, total: int, label: str) -> None:
        """Begin a count of ``total`` steps (the bar of a previous count stays above it)."""
        global _active
        self.close()
        self.total, self.label, self.done, self._fields, self._tenths = max(total, 0), label, 0, {}, 0
        self._started, self._open = time.perf_counter(), True
        _active = self
        self.draw(force=True)

    def update(self, n: int = 1, **fields: Any) -> None:
        """Count ``n`` more steps and show the latest ``fields``."""
        if not self._open:
            return
        self.done += n
        self._fields.update(fields)
        self.draw()

    def close(self) -> None:
        """Leave the final state of the bar on its line and stop drawing."""
        global _active
        if not self._open:
            return
        self.draw(force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
        self._open = False
        if _active is self:
            _active = None

    def clear(self) -> None:
        """Blank the bar's line, so a message can take it."""
        if self._open and self._tty:
            self.stream.write("\r\033[K")

    def draw(self, force: bool = False) -> None:
        """Show the count: redrawn in place on a terminal, a plain line per tenth elsewhere."""
        if not self._open:
            return
        if not self._tty:
            tenths = 10 * self.done // self.total if self.total else 0
            if tenths > self._tenths:
                self._tenths = tenths
                click.echo(self._text(), file=self.stream)
            return
        now = time.perf_counter()
        if not force and now - self._drawn_at < _REDRAW_S and self.done < self.total:
            return
        self._drawn_at = now
        self.stream.write("\r" + self._text(bar=True)[: shutil.get_terminal_size().columns - 1] + "\033[K")
        self.stream.flush()

    def _text(self, bar: bool = False) -> str:
        parts = [self.label]
        if bar:
            width = 30
            filled = width * min(self.done, self.total) // self.total if self.total else 0
            parts.append("[" + "#" * filled + "-" * (width - filled) + "]")
        parts.append(f"{self.done}/{self.total}")
        elapsed = time.perf_counter() - self._started
        if bar and 0 < self.done < self.total:
            parts.append("eta " + _clock(elapsed / self.done * (self.total - self.done)))
        if self._fields:
            parts.append(_shown(self._fields))
        return "  ".join(parts)
