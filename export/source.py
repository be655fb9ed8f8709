"""What an export starts from: a full-weight HF checkpoint, and the LoRA adapter when there is one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rationalizer import Bundle, base_model
from rationalizer.bundle import BASE_BUNDLE_DIR
from rationalizer.errors import UserError

from .merge import MergeCheck, merge_adapter

BaseResolver = Callable[[str], Path | str]

logger = logging.getLogger(__name__)
"""Turns a manifest's ``base_model`` (a folder, a hub id or ``default``) into a local checkpoint folder
(:func:`rationalizer.base_model.resolve` unless the caller builds the default base on demand)."""


@dataclass
class ExportSource:
    """The weights an export converts, all as local folders."""

    bundle: Bundle
    hf_dir: Path
    """Full weights (safetensors, config, tokenizer): the bundle's ``hf`` files or the merged adapter."""
    adapter_dir: Path | None = None
    """The LoRA adapter when the bundle has one (also when it carries merged weights beside it)."""
    base_dir: Path | None = None
    merge_check: MergeCheck | None = None
    base_resolver: BaseResolver | None = None

    def base(self) -> Path:
        """The adapter's base checkpoint, resolved on first use (only a ``lora`` export needs its weights)."""
        if self.base_dir is None:
            resolve = self.base_resolver or base_model.resolve
            self.base_dir = Path(resolve(self.bundle.manifest.base_model))
        return self.base_dir


def resolve_source(bundle: Bundle, work: Path, base_resolver: BaseResolver | None = None) -> ExportSource:
    """Find or build the full-weight checkpoint of ``bundle``; an adapter is merged into ``work/merged``.

    The bundle's files are read through staged views in ``work`` (:meth:`Bundle.stage`) holding only
    the files the manifest lists and :meth:`Bundle.verify` checked, never others lying in its folders.
    """
    resolve = base_resolver or base_model.resolve
    formats = bundle.formats()
    if "hf" in formats:
        bundle.verify("hf")
        adapter = None
        if "peft" in formats:  # a trainer bundle written with merge=True carries both
            bundle.verify("peft")
            adapter = bundle.stage("peft", work / "source-peft")
        return ExportSource(bundle, bundle.stage("hf", work / "source-hf"), adapter, base_resolver=resolve)
    if "peft" in formats:
        bundle.verify("peft")
        adapter = bundle.stage("peft", work / "source-peft")
        base = Path(resolve(bundle.manifest.base_model))
        logger.info("merging the LoRA adapter into %s", base.name)
        merged = work / "merged"
        check = merge_adapter(base, adapter, merged)
        logger.info("merged: max |logit difference| against the unmerged model %.2e", check.max_abs_logit_diff)
        return ExportSource(bundle, merged, adapter, base, check, resolve)
    if bundle.folder == BASE_BUNDLE_DIR.resolve():
        return ExportSource(bundle, Path(resolve(base_model.DEFAULT)))
    raise UserError(f"{bundle.folder}: has only {', '.join(formats)} weights; export needs the HF or PEFT bundle "
                    "the trainer wrote")
