"""Writing a trained student as a bundle the runtime loads (PEFT adapter, optionally merged weights)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from rationalizer.manifest import ControlScheme, GenerationDefaults, Manifest, ParserSettings, PromptTemplate, WeightFile


def _entries(folder: Path, root: Path, main: str) -> list[WeightFile]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        role = "model" if path.name == main else "config"
        files.append(WeightFile(path.relative_to(root).as_posix(), digest, path.stat().st_size, role))
    files.sort(key=lambda f: f.role != "model")
    return files


def context_length(model, default: int = GenerationDefaults().context_length) -> int:
    """The bundle's context: the default, or less where the model was trained on shorter sequences
    (llama.cpp refuses a context past the trained one)."""
    trained = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(default, trained) if isinstance(trained, int) and trained > 0 else default


def write_bundle(out: Path, model, tokenizer, name: str, base: str, template: PromptTemplate,
                 control: ControlScheme | None = None, provenance: dict[str, Any] | None = None,
                 eval_results: dict[str, Any] | None = None, merge: bool = False,
                 max_new_tokens: int = 96) -> Manifest:
    """Save the adapter (and merged weights when asked) under ``out`` and write the manifest last,
    so a folder with a manifest always holds complete weights."""
    adapter = out / "adapter"
    if adapter.exists():
        shutil.rmtree(adapter)
    model.save_pretrained(adapter, safe_serialization=True)
    tokenizer.save_pretrained(adapter)
    files = {"peft": _entries(adapter, out, "adapter_model.safetensors")}
    if merge:
        merged = out / "merged"
        if merged.exists():
            shutil.rmtree(merged)
        model.merge_and_unload(safe_merge=True).save_pretrained(merged, safe_serialization=True)
        tokenizer.save_pretrained(merged)
        files = {"hf": _entries(merged, out, "model.safetensors"), **files}
    manifest = Manifest(
        name=name, base_model=base, files=files, distilled=True,
        description=f"{name}: LoRA-distilled from {base} by rationalizer",
        prompt=template, control=control or ControlScheme(), parser=ParserSettings(strategies=["marker"]),
        generation=GenerationDefaults(max_new_tokens=max_new_tokens, context_length=context_length(model)),
        provenance=provenance or {},
        eval_results=eval_results or {},
    )
    manifest.save(out)
    return manifest
