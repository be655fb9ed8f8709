"""The records of an eval in progress: appended as each example is done, read back to resume.

One run (a model at a quality over the chosen rows) writes to
``FOLDER/<key>.jsonl``, where the key is a hash of everything its records depend
on (the rows, the model's manifest, backend, device, quality, judges and
settings), so only a run with the same arguments resumes from it, and runs with
other arguments keep their own files. The first line holds that fingerprint.
Each record is one ``write`` of one line, flushed at once, so a ``kill -9``
loses at most the example in progress; a torn last line is cut off when the
file is opened again. The file is synced to disk every few seconds and at the
end (a killed process loses nothing that was flushed; a power cut, at most
those seconds). An exclusive lock refuses a second process on the same run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from ..dataclass_json import to_dict
from ..errors import UserError

FORMAT = 1
SYNC_EVERY_S = 5.0

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, a second writer is not detected
    fcntl = None  # type: ignore[assignment]


def json_line(record: dict[str, Any]) -> bytes:
    """One record as a JSONL line; text that UTF-8 cannot carry (a lone surrogate) is written escaped."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record) + "\n").encode("ascii")


def fingerprint(model: Any, quality: dict[str, int], settings: dict[str, Any], examples: list[Any],
                lines: list[int], counterfactuals: list[Any], judges: dict[str, str | None]) -> dict[str, Any]:
    """What the records of one run depend on, as JSON-ready data (the run's identity for resuming)."""
    from .. import __version__

    def digest(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=True).encode()).hexdigest()

    return {
        "format": FORMAT,
        "rationalizer": __version__,
        "model": model.name,
        "manifest_sha256": digest(to_dict(model.manifest)),
        "backend": model.backend_name,
        "format_loaded": model.format,
        "device": model.device,
        "quality": quality,
        "settings": settings,
        "judges": judges,
        "rows_sha256": digest([[line, e.to_dict()] for line, e in zip(lines, examples)]),
        "counterfactuals_sha256": digest([e.to_dict() for e in counterfactuals]),
    }


class RecordStore:
    """The append-only records of one run, keyed by the example's position in the run."""

    def __init__(self, folder: str | Path, identity: dict[str, Any]) -> None:
        self.identity = json.loads(json.dumps(identity, sort_keys=True))  # as it reads back from the file
        key = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:24]
        self.path = Path(folder) / f"{key}.jsonl"
        self._handle: IO[bytes] | None = None
        self._done: dict[int, dict[str, Any]] = {}
        self._synced_at = 0.0

    def open(self) -> dict[int, dict[str, Any]]:
        """Lock the file, repair a torn tail and return the records already done, by position.

        Opening an open store returns the same records (a caller may look before :func:`evaluate` runs).
        """
        if self._handle is not None:
            return self._done
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+b")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise UserError(f"another eval with the same arguments is writing {self.path}; "
                                "wait for it to finish") from None
        self._handle = handle
        handle.seek(0)
        data = handle.read()
        done: dict[int, dict[str, Any]] = {}
        lines = data.split(b"\n")
        complete = lines[:-1]  # the part after the last newline is empty, or a line torn by a kill
        header_ok = False
        if complete:
            try:
                header_ok = json.loads(complete[0]).get("eval_partial") == self.identity
            except (ValueError, AttributeError):
                header_ok = False
        if not header_ok:  # empty, torn before the header was whole, or not ours: start it over
            complete = []
        for raw in complete[1:]:
            try:
                record = json.loads(raw)
                done[int(record["index"])] = record
            except (ValueError, KeyError, TypeError):
                continue  # cannot happen for lines this class wrote whole; never worth a failed run
        keep = sum(len(line) + 1 for line in complete)
        if keep != len(data):
            handle.truncate(keep)
        if not complete:
            handle.write(json_line({"eval_partial": self.identity}))
            handle.flush()
        self._done = done
        return done

    def append(self, record: dict[str, Any]) -> None:
        """Add one finished record; it is in the file (flushed) when this returns."""
        assert self._handle is not None, "open() first"
        self._handle.write(json_line(record))
        self._handle.flush()
        now = time.monotonic()
        if now - self._synced_at >= SYNC_EVERY_S:
            os.fsync(self._handle.fileno())
            self._synced_at = now

    def close(self) -> None:
        """Sync and unlock; the records stay for a later resume until :meth:`discard`."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
            self._done = {}

    def discard(self) -> None:
        """Remove the file (the run's outputs are published, or a fresh start was asked for)."""
        self.close()
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()  # only when no other run's records are left in it
        except OSError:
            pass
