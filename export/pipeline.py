"""One export run: source weights to verified GGUF and ONNX bundles, one folder each."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rationalizer import Bundle, __version__, base_model
from rationalizer.atomic import atomic_write_text
from rationalizer.errors import UserError
from rationalizer.integrity import sha256_file
from rationalizer.manifest import MANIFEST_NAME, Manifest, WeightFile
from rationalizer.progress import Progress, or_silent

from .bundles import export_manifest, publish, remove_own, remove_stale, temp_folder, weight_entry
from .config import ExportConfig
from .fidelity import FidelityRow, fidelity_rows, write_report
from .formats import FLOAT_TYPES, GENAI_TYPES, LORA
from .genai_export import build_genai, file_role
from .genai_tokenizer import genai_token_ids
from .gguf_convert import write_lora_gguf, write_model_gguf
from .gguf_quantize import quantize_gguf
from .onnx_export import export_onnx_fp32, quantize_onnx
from .quiet import native_output_silenced
from .source import BaseResolver, ExportSource, resolve_source
from .verify import Check, Reference, check_gguf, check_onnx, check_prompts, hf_reference, require_faithful

logger = logging.getLogger(__name__)

F32_TOLERANCE = 0.05
"""Largest |Δ log p| accepted for unquantized outputs: float32 kernels differ, conversions must not."""
SUMMARY_NAME = "exports.json"
WEIGHT_ROLES = ("model", "data", "adapter")
"""Files counted in an export's size (tokenizer and configs are not)."""


@dataclass
class ExportResult:
    """One published export bundle and how it compares with the fp32 HF model."""

    label: str
    folder: Path
    format: str
    quantization: str
    size_bytes: int
    """Weight files written by this export (a base shipped by another package not included)."""
    seconds: float
    check: Check

    def to_dict(self) -> dict[str, Any]:
        """As plain JSON values."""
        d = asdict(self)
        d["folder"] = str(self.folder)
        return d


@dataclass
class ExportOutcome:
    """What one run produced: the bundles, and the fidelity report when a dev file was given."""

    results: list[ExportResult]
    fidelity: list[FidelityRow] = field(default_factory=list)
    report: dict[str, Path] = field(default_factory=dict)


class _Run:
    """State shared by the steps of one export."""

    def __init__(self, config: ExportConfig, source: ExportSource, out: Path, work: Path, progress: Progress) -> None:
        self.config, self.source, self.out, self.work = config, source, out, work
        self.manifest: Manifest = source.bundle.manifest
        self.progress = progress
        self.prompts = check_prompts(self.manifest)
        self.reference: Reference | None = None

    def info(self, fmt: str, quantization: str, check: Check, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        manifest_file = self.source.bundle.folder / MANIFEST_NAME
        return {
            "source": str(self.source.bundle.folder), "source_name": self.manifest.name,
            "source_manifest_sha256": sha256_file(manifest_file) if manifest_file.exists() else None,
            "format": fmt, "quantization": quantization, "check": check.to_dict(),
            "exported_by": f"rationalizer {__version__}", "libraries": _versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "merge_check": asdict(self.source.merge_check) if self.source.merge_check else None, **(extra or {}),
        }

    def finish(self, label: str, temp: Path, fmt: str, quantization: str, files: list[WeightFile], check: Check,
               started: float, extra: dict[str, Any] | None = None) -> ExportResult:
        manifest = export_manifest(self.manifest, fmt, files, self.info(fmt, quantization, check, extra))
        manifest.save(temp)
        final = publish(temp, self.out / label)
        size = sum(wf.size for wf in files if wf.package is None and wf.role in WEIGHT_ROLES)
        seconds = time.perf_counter() - started
        logger.info("%s: %.1f MB, top-1 %.2f, greedy match %.2f, max |Δ log p| %.3f (%.1fs)", label, size / 1e6,
                    check.top1_agreement, check.greedy_match, check.max_abs_logprob_diff, seconds)
        self.progress.update()
        return ExportResult(label, final, fmt, quantization, size, seconds, check)


def _versions() -> dict[str, str]:
    found = {}
    for dist in ("gguf", "llama-cpp-python", "optimum", "optimum-onnx", "onnxruntime", "onnxruntime-genai", "transformers", "torch"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def run_export(config: ExportConfig, base_resolver: BaseResolver | None = None,
               progress: Progress | None = None) -> ExportOutcome:
    """Export ``config.source`` to every requested type; each output is verified, then published.

    With ``config.dev`` every export and the fp32 model then answer the dev
    questions for the fidelity report (written into ``config.out``).

    A failure or a kill leaves the outputs finished before it in place and no
    partial bundle (see :mod:`rationalizer.export.bundles`). ``progress`` counts the published
    outputs, then each model's questions of the fidelity report; messages go to this module's logger.
    """
    if config.dev and not Path(config.dev).is_file():  # before the exports, not after them
        raise UserError(f"{config.dev}: no such dev file")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale(out):
        logger.info("removed %s, left by an export that did not finish", stale.name)
    bundle = Bundle.load(config.source)
    work = temp_folder(out, "work")
    outcome = ExportOutcome([])
    results = outcome.results
    try:
        source = resolve_source(bundle, work, base_resolver)
        run = _Run(config, source, out, work, or_silent(progress))
        logger.info("reference: fp32 HF model from %s", source.hf_dir)
        run.reference = hf_reference(source.hf_dir, run.prompts)
        models = [k for k in config.gguf if k != LORA]
        run.progress.start(len(config.gguf) + len(config.onnx), "export")
        if models:
            results += _gguf_models(run, models)
        if LORA in config.gguf:
            results.append(_gguf_lora(run))
        if config.onnx:
            results += _onnx_models(run, config.onnx)
        _write_summary(out, results)
        if config.dev:
            outcome.fidelity = _fidelity(run, results)
            meta = {"source": str(bundle.folder), "dev": config.dev, "questions": outcome.fidelity[0].n}
            outcome.report = write_report(outcome.fidelity, out, meta)
    finally:
        remove_own(out)
    return outcome


def _fidelity(run: _Run, results: list[ExportResult]) -> list[FidelityRow]:
    """Rows for the fp32 reference (the source checkpoint through the torch backend) and every export."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rationalizer import Rationalizer
    from rationalizer.backends.base import default_threads
    from rationalizer.dataset import read_examples

    examples = read_examples(run.config.dev, limit=run.config.dev_limit)
    torch.set_num_threads(run.config.threads or default_threads())
    model = AutoModelForCausalLM.from_pretrained(run.source.hf_dir, use_safetensors=True, dtype=torch.float32,
                                                 local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(run.source.hf_dir, local_files_only=True)
    reference = Rationalizer.from_model(model, tokenizer, run.manifest, run.source.bundle.folder)
    return fidelity_rows(reference, results, examples, run.config.max_new_tokens, run.config.threads, run.progress)


def _write_summary(out: Path, results: list[ExportResult]) -> None:
    path = out / SUMMARY_NAME
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    previous.update({r.label: r.to_dict() for r in results})
    atomic_write_text(path, json.dumps(previous, indent=2) + "\n")


def _f32_gguf(run: _Run) -> Path:
    """The verified f32 GGUF every other GGUF type is made from (written once per run)."""
    path = run.work / "model-f32.gguf"
    if not path.exists():
        logger.info("GGUF: converting to f32 with gguf-py")
        write_model_gguf(run.source.hf_dir, path, "f32", run.manifest.name)
        require_faithful("GGUF f32", check_gguf(run.reference, run.prompts, path), F32_TOLERANCE)
    return path


def _gguf_models(run: _Run, kinds: list[str]) -> list[ExportResult]:
    results = []
    for kind in kinds:
        started = time.perf_counter()
        f32 = _f32_gguf(run)
        label = f"gguf-{kind}"
        logger.info("%s: writing", label)
        temp = temp_folder(run.out, label)
        target = temp / f"model-{kind}.gguf"
        if kind == "f32":
            shutil.copyfile(f32, target)
        elif kind in FLOAT_TYPES:
            write_model_gguf(run.source.hf_dir, target, kind, run.manifest.name)
        else:
            with native_output_silenced():
                quantize_gguf(f32, target, kind, run.config.threads)
        check = check_gguf(run.reference, run.prompts, target)
        files = [weight_entry(temp, target, "model", kind)]
        results.append(run.finish(label, temp, "gguf", kind, files, check, started))
    return results


def _gguf_lora(run: _Run) -> ExportResult:
    """The LoRA adapter alone as GGUF, over the embedded default's GGUF or a base GGUF written beside it."""
    source = run.source
    if source.adapter_dir is None:
        raise UserError(f"{source.bundle.folder}: has no LoRA adapter to export as GGUF (export 'lora' needs a PEFT bundle)")
    started = time.perf_counter()
    label = "gguf-lora"
    logger.info("%s: converting the adapter", label)
    temp = temp_folder(run.out, label)
    adapter = write_lora_gguf(source.adapter_dir, source.hf_dir, temp / "adapter.gguf", run.manifest.name,
                              run.config.adapter_dtype)
    if run.manifest.base_model == base_model.DEFAULT:
        embedded = Bundle.load(base_model.SOURCE_BUNDLE)
        base_entry = embedded.files("gguf")[0]
        base_path = embedded.path_of(base_entry)
        base_files = [base_entry]
    else:
        kind = run.config.lora_base
        base_path = temp / f"base-{kind}.gguf"
        if kind in FLOAT_TYPES:
            write_model_gguf(source.base(), base_path, kind, f"{run.manifest.name}-base")
        else:
            f32 = run.work / "base-f32.gguf"
            write_model_gguf(source.base(), f32, "f32", f"{run.manifest.name}-base")
            with native_output_silenced():
                quantize_gguf(f32, base_path, kind, run.config.threads)
        base_files = [weight_entry(temp, base_path, "model", kind)]
    check = check_gguf(run.reference, run.prompts, base_path, adapter)
    files = [*base_files, weight_entry(temp, adapter, "adapter", run.config.adapter_dtype)]
    quant = f"lora over {base_files[0].quantization or 'the default base'}"
    return run.finish(label, temp, "gguf", quant, files, check, started)


def _onnx_models(run: _Run, kinds: list[str]) -> list[ExportResult]:
    from rationalizer.backends.onnx import OnnxBackend

    results = []
    fp32_dir = run.work / "onnx-fp32"
    for kind in kinds:
        if kind in GENAI_TYPES:
            results.append(_genai_model(run, kind))
            continue
        started = time.perf_counter()
        if not fp32_dir.exists():
            logger.info("ONNX: exporting with optimum (decoder with KV cache)")
            with native_output_silenced():
                export_onnx_fp32(run.source.hf_dir, fp32_dir)
        label = f"onnx-{kind}"
        logger.info("%s: writing", label)
        temp = temp_folder(run.out, label)
        with native_output_silenced():
            quantize_onnx(fp32_dir, temp, kind)
        files = [weight_entry(temp, p, _onnx_role(p), kind) for p in sorted(temp.iterdir())]
        files.sort(key=lambda wf: wf.role != "model")
        backend = OnnxBackend.open(Bundle(temp, export_manifest(run.manifest, "onnx", files, {})), "onnx", "cpu",
                                   run.config.threads)
        try:
            check = check_onnx(run.reference, run.prompts, backend)
        finally:
            backend.close()
        if kind == "fp32":
            require_faithful("ONNX fp32", check, F32_TOLERANCE)
        results.append(run.finish(label, temp, "onnx", kind, files, check, started))
    return results


def _genai_model(run: _Run, kind: str) -> ExportResult:
    """One onnxruntime-genai builder export, verified through the ONNX backend like the optimum ones."""
    from rationalizer.backends.onnx import OnnxBackend

    started = time.perf_counter()
    label = f"onnx-{kind}"
    logger.info("%s: running onnxruntime-genai's model builder", label)
    temp = temp_folder(run.out, label)
    with native_output_silenced():
        paths = build_genai(run.source.hf_dir, temp, kind, run.config.genai, run.work / "genai-cache")
    files = sorted((weight_entry(temp, p, file_role(p), kind) for p in paths), key=lambda wf: wf.role != "model")
    backend = OnnxBackend.open(Bundle(temp, export_manifest(run.manifest, "onnx", files, {})), "onnx", "cpu",
                               run.config.threads)
    try:
        check = check_onnx(run.reference, run.prompts, backend)
        ids = [backend.encode(p) for p in run.prompts]
    finally:
        backend.close()
    # the same bundle must read the same in onnxruntime-genai, its other runtime
    genai_ids = genai_token_ids(temp, run.prompts)
    if genai_ids is not None and genai_ids != ids:
        raise UserError(f"{label}: onnxruntime-genai's tokenizer gives other ids than the ONNX backend's")
    if kind == "genai-fp32":
        require_faithful("ONNX genai-fp32", check, F32_TOLERANCE)
    extra = {"builder": asdict(run.config.genai), "genai_tokenizer_identical": genai_ids == ids if genai_ids else None}
    return run.finish(label, temp, "onnx", kind, files, check, started, extra)


def _onnx_role(path: Path) -> str:
    if path.suffix == ".onnx":
        return "model"
    return "data" if path.suffix == ".onnx_data" else "config"
