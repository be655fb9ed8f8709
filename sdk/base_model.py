"""Base models: the one place that knows the default base and turns any base spec into a local folder.

The default base (spec ``default``) is SmolLM2-135M-Instruct as the embedded ``base`` bundle ships it:
one Q4_1 GGUF. Training, merging and the torch backend need it as an HF checkpoint, so it is rebuilt
from that GGUF once into the user cache. Rebuilding needs torch and transformers and lives in
:mod:`rationalizer.training.base_student`; this module only says where the checkpoint lies and how
to ask for it, so that ``import rationalizer`` stays light.

Any other spec is an HF model folder or a hub id already in the local Hugging Face cache. Nothing is
downloaded at run time: a base that is not on this machine is a one-line error that names it.
"""

from __future__ import annotations

from pathlib import Path

from .bundle import Bundle
from .errors import BundleError, UserError
from .paths import cache_dir

DEFAULT = "default"
"""The spec (``--base``, a manifest's ``base_model``) that names the default base."""
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The default base's name on the Hugging Face hub, for files that must not name this machine's cache."""
SOURCE_BUNDLE = "base"
"""The embedded bundle whose GGUF the default base checkpoint is rebuilt from."""
BUILD_COMMAND = "python -c 'from rationalizer.training.base_student import build_default_base as b; b()'"
"""How a person builds the default base checkpoint (``rationalize train`` and ``export`` build it themselves)."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")
"""Any of these makes a folder hold a tokenizer (tokenizer_config.json alone holds no vocabulary)."""


def default_checkpoint() -> Path:
    """Where the default base's HF checkpoint is cached; the folder name carries the GGUF's hash, so a
    new GGUF gets a new checkpoint rather than a stale one."""
    gguf = Bundle.load(SOURCE_BUNDLE).files("gguf")[0]
    return cache_dir() / "base" / f"smollm2-135m-instruct-{gguf.sha256[:12]}"


def resolve(spec: str) -> Path:
    """The local folder transformers loads for the base ``spec``: the default base's cached checkpoint,
    an HF model folder as given, or a hub id's snapshot already in the Hugging Face cache.

    Nothing is built or downloaded: a default base not built yet, a folder that is no HF model, or a
    base not on this machine is a one-line :class:`UserError` naming ``spec``.
    """
    if spec == DEFAULT:
        path = default_checkpoint()
        if not (path / "model.safetensors").is_file():
            raise UserError(f"the default base checkpoint is not built yet ({path}); build it with `{BUILD_COMMAND}`")
        return path
    folder = Path(spec).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise UserError(f"base model {spec!r}: {folder} holds no config.json (an HF model folder is needed)")
        return folder
    if folder.exists():
        raise UserError(f"base model {spec!r}: {folder} is a file, not an HF model folder")
    cached = _hub_snapshot(spec)
    if cached is not None:
        return cached
    raise UserError(f"base model {spec!r} is not on this machine and nothing is downloaded at run time; give "
                    f"{DEFAULT!r} or a local HF model folder (train --base, or the manifest's base_model), or put "
                    f"the model in the Hugging Face cache beforehand (`hf download {spec}` where there is network)")


def _hub_snapshot(repo_id: str) -> Path | None:
    """The folder of ``repo_id``'s cached snapshot in the Hugging Face cache, looked up offline; None
    when it is not there (or ``repo_id`` is no hub id)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, not a valid repo id, or no huggingface_hub: all mean "not on disk"
        return None


def tokenizer_folder(adapter_dir: Path, base: str | Path | None = None, label: str | Path | None = None) -> str:
    """Where a model's tokenizer lies: ``adapter_dir`` (a staged view of the bundle's listed files) when
    it holds one (the trainer saves it beside the adapter), else its resolved ``base`` folder (an adapter
    shipped without a copy of an unchanged tokenizer); :class:`BundleError` when neither has one, naming
    ``adapter_dir`` as ``label`` (the bundle's folder rather than its temporary view)."""
    for folder in (adapter_dir, *([Path(base)] if base is not None else [])):
        if any((folder / name).is_file() for name in TOKENIZER_FILES):
            return str(folder)
    where = f", nor does its base {base} hold one" if base is not None else ""
    raise BundleError(f"{label or adapter_dir}: lists no tokenizer ({', '.join(TOKENIZER_FILES)}){where}; "
                      "a bundle must carry the tokenizer its model was trained with")
