"""Export bundles on disk: built in a hidden temporary folder, checksummed, then renamed into place.

A reader (or a rerun after ``kill -9``) sees either a complete bundle under its
final name or nothing there: the manifest is written last inside the temporary
folder and the folder appears under its name by one ``rename``. Temporary
folders of dead processes are removed by the next export into the same place.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from rationalizer.integrity import sha256_file
from rationalizer.manifest import Manifest, WeightFile

TEMP_PREFIX = ".partial-"


def temp_folder(out: Path, name: str) -> Path:
    """A fresh hidden folder in ``out`` for building the export ``name``, tagged with this process id."""
    folder = out / f"{TEMP_PREFIX}{name}-{os.getpid()}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def remove_stale(out: Path) -> list[Path]:
    """Delete temporary folders left in ``out`` by export processes that no longer run."""
    removed = []
    if not out.is_dir():
        return removed
    for folder in out.glob(f"{TEMP_PREFIX}*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def remove_own(out: Path) -> None:
    """Delete this process's unfinished temporary folders in ``out`` (after a failed step)."""
    for folder in out.glob(f"{TEMP_PREFIX}*-{os.getpid()}"):
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def weight_entry(folder: Path, path: Path, role: str, quantization: str | None) -> WeightFile:
    """A manifest entry for a file inside ``folder``, with its size and sha256."""
    return WeightFile(path.relative_to(folder).as_posix(), sha256_file(path), path.stat().st_size, role,
                      quantization=quantization)


def export_manifest(source: Manifest, fmt: str, files: list[WeightFile], export_info: dict[str, Any]) -> Manifest:
    """The source's manifest (prompt, control codes, parser, eval results kept) with only the new
    ``fmt`` files and an ``export`` record in its provenance."""
    provenance = {**source.provenance, "export": export_info}
    return replace(source, files={fmt: files}, provenance=provenance,
                   description=f"{source.name} exported to {fmt} ({export_info.get('quantization')})")


def publish(temp: Path, final: Path) -> Path:
    """Move a finished bundle folder to its final name, replacing an older export there."""
    if final.exists():
        trash = final.parent / f"{TEMP_PREFIX}old-{final.name}-{os.getpid()}"
        os.rename(final, trash)
        os.rename(temp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(temp, final)
    return final
