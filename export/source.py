"""What an export starts from: a full-weight HF checkpoint, and the LoRA adapter when there is one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rationalizer import Bundle
from rationalizer.backends.hf import base_model_path
from rationalizer.bundle import DEFAULT_BUNDLE_DIR
from rationalizer.errors import UserError

from .merge import MergeCheck, merge_adapter

BaseResolver = Callable[[str], str]
"""Turns a manifest's ``base_model`` (a folder, a hub id or ``default``) into a local checkpoint folder."""


@dataclass
class ExportSource:
    """The weights an export converts, all as local folders."""

    bundle: Bundle
    hf_dir: Path
    """Full weights (safetensors, config, tokenizer): the bundle's ``hf`` files or the merged adapter."""
    adapter_dir: Path | None = None
    base_dir: Path | None = None
    merge_check: MergeCheck | None = None


def resolve_source(bundle: Bundle, work: Path, base_resolver: BaseResolver | None = None,
                   progress: Callable[[str], None] = lambda _m: None) -> ExportSource:
    """Find or build the full-weight checkpoint of ``bundle``; an adapter is merged into ``work/merged``."""
    resolve = base_resolver or base_model_path
    formats = bundle.formats()
    if "hf" in formats:
        bundle.verify("hf")
        return ExportSource(bundle, bundle.main_file("hf").parent)
    if "peft" in formats:
        bundle.verify("peft")
        adapter = bundle.main_file("peft").parent
        base = Path(resolve(bundle.manifest.base_model))
        progress(f"merging the LoRA adapter into {base.name}")
        merged = work / "merged"
        check = merge_adapter(base, adapter, merged)
        progress(f"merged: max |logit difference| against the unmerged model {check.max_abs_logit_diff:.2e}")
        return ExportSource(bundle, merged, adapter, base, check)
    if bundle.folder == DEFAULT_BUNDLE_DIR.resolve():
        return ExportSource(bundle, Path(resolve("default")))
    raise UserError(f"{bundle.folder}: has only {', '.join(formats)} weights; export needs the HF or PEFT bundle "
                    "the trainer wrote")
