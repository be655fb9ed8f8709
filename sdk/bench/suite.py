"""``rationalize bench``: every backend and format available here, against its peers, in one run.

For each bundle the SDK runs it with every backend that takes its format, on
the CPU and (where one is usable) the GPU; peers run the same weights: raw
llama-cpp-python for GGUF, optimum's ``ORTModelForCausalLM.generate`` for ONNX (onnxruntime-genai's
own ``Generator`` loop for exports of its model builder, where it is installed),
transformers ``generate`` for HF weights (and for the fp32 source of an ONNX
export, when it is on disk). Each measurement runs in its own process.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import base_model
from ..backends import REGISTRY, backend_class
from ..backends.base import default_threads
from ..bundle import BASE_BUNDLE_DIR, EMBEDDED, Bundle
from ..errors import UserError
from ..manifest import MANIFEST_NAME
from ..progress import Progress, or_silent
from .bandwidth import bound_tokens_per_s, read_bandwidth_gb_s
from .config import BenchConfig

logger = logging.getLogger(__name__)

WEIGHT_ROLES = ("model", "data", "adapter")


@dataclass
class BenchRow:
    """One runner on one bundle and device."""

    bundle: str
    runner: str
    format: str
    quantization: str
    device: str
    weight_bytes: int
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    bound_tok_s: float | None = None

    @property
    def bound_fraction(self) -> float | None:
        """Achieved decode speed as a share of the bandwidth bound."""
        speed = self.figures.get("decode_tok_s")
        return speed / self.bound_tok_s if speed and self.bound_tok_s else None


def find_bundles(paths: list[str]) -> list[str | None]:
    """Bundle folders named, or found one level inside a named folder (an export's output);
    ``default`` or nothing: the embedded model."""
    if not paths:
        return [None]
    found: list[str | None] = []
    for raw in paths:
        path = Path(raw)
        if raw in EMBEDDED:  # embedded names never mean a folder of the working directory
            found.append(None if raw == "default" else raw)
        elif (path / MANIFEST_NAME).exists():
            found.append(str(path))
        elif path.is_dir():
            found += [str(p.parent) for p in sorted(path.glob(f"*/{MANIFEST_NAME}"))]
        else:
            raise UserError(f"{path}: not a bundle folder or a folder of bundles")
    if not found:
        raise UserError(f"no bundle found in {', '.join(paths)}")
    return found


def _hf_source(bundle: Bundle) -> str | None:
    """Full-precision HF weights of the same model, for the transformers peer (None: not on disk)."""
    if "hf" in bundle.formats():
        return str(bundle.main_file("hf").parent)
    source = bundle.manifest.provenance.get("export", {}).get("source")
    if not source:
        return None
    if Path(source).resolve() == BASE_BUNDLE_DIR.resolve():
        try:
            return str(base_model.resolve(base_model.DEFAULT))
        except UserError:  # not built yet: the peer is skipped rather than built here
            return None
    try:
        origin = Bundle.load(source)
    except UserError:
        return None
    return str(origin.main_file("hf").parent) if "hf" in origin.formats() else None


def _jobs(plan: BenchConfig, bundles: list[str | None]) -> list[tuple[BenchRow, dict[str, Any]]]:
    jobs = []
    threads = plan.threads or default_threads()
    gpu_backends = [n for n in REGISTRY if _gpu(n)]
    devices = [d for d in plan.devices if d == "cpu" or gpu_backends]
    if "cuda" in plan.devices and not gpu_backends:
        logger.warning("no GPU usable here (torch sees no CUDA device, llama.cpp has no GPU offload, onnxruntime "
                       "has no CUDAExecutionProvider): the CUDA paths are skipped")
    for path in bundles:
        bundle = Bundle.load(path)
        label = path or "default"
        for fmt in bundle.formats():
            files = bundle.files(fmt)
            size = sum(wf.size for wf in files if wf.role in WEIGHT_ROLES)
            quant = next((wf.quantization for wf in files if wf.role == "model" and wf.quantization), "as trained")
            base = dict(bundle=path, threads=threads, tokens=plan.tokens, reps=plan.reps)
            for name, (_, _, formats, _) in REGISTRY.items():
                if fmt not in formats:
                    continue
                for device in devices:
                    if device == "cuda" and name not in gpu_backends:
                        continue
                    row = BenchRow(label, f"sdk ({name})", fmt, quant, device, size)
                    jobs.append((row, {**base, "runner": "sdk", "backend": name, "device": device}))
            if not plan.peers:
                continue
            peers = {"gguf": ["llama-cpp-python"], "onnx": ["optimum", "transformers"], "hf": ["transformers"],
                     "peft": []}[fmt]
            if fmt == "onnx" and _genai_bundle(files):  # optimum cannot run the builder's fused graph
                peers = ["onnxruntime-genai", "transformers"] if _genai_importable() else ["transformers"]
            for peer in peers:
                spec, peer_size = {**base, "runner": peer}, size
                if peer == "transformers":
                    hf_dir = _hf_source(bundle)
                    if hf_dir is None:
                        logger.warning("%s: no fp32 HF weights on disk for the transformers peer; skipped", label)
                        continue
                    spec["hf_dir"] = hf_dir
                    peer_size = sum(p.stat().st_size for p in Path(hf_dir).glob("*.safetensors"))
                for device in devices:
                    if device == "cuda" and not _peer_gpu(peer):
                        continue
                    peer_quant = "fp32" if peer == "transformers" and device == "cpu" else quant
                    jobs.append((BenchRow(label, peer, fmt, peer_quant, device, peer_size), {**spec, "device": device}))
    return jobs


def _genai_bundle(files: list) -> bool:
    """True for an export of onnxruntime-genai's model builder (it lists a ``genai_config.json``)."""
    return any(Path(wf.path).name == "genai_config.json" for wf in files)


def _genai_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime_genai") is not None


def _gpu(backend: str) -> bool:
    try:
        return backend_class(backend).gpu_available()
    except UserError:
        return False


def _peer_gpu(peer: str) -> bool:
    if peer == "onnxruntime-genai":  # its CPU wheel has no CUDA; onnxruntime-genai-cuda is another package
        import importlib.metadata

        try:
            importlib.metadata.version("onnxruntime-genai-cuda")
        except importlib.metadata.PackageNotFoundError:
            return False
        return True
    return _gpu({"llama-cpp-python": "llamacpp", "optimum": "onnx", "transformers": "torch"}[peer])


def run_bench(plan: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Measure the bandwidth bound, then every job in its own process; returns the settings and the rows.

    ``progress`` counts the jobs; messages (each job as it starts, failures) go to this module's logger.
    """
    progress = or_silent(progress)
    bundles = find_bundles(plan.bundles)  # a bad path fails before the bandwidth is measured
    threads = plan.threads or default_threads()
    logger.info("measuring memory read bandwidth with %d threads", threads)
    bandwidth = read_bandwidth_gb_s(threads)
    rows = []
    jobs = _jobs(plan, bundles)
    progress.start(len(jobs), "bench")
    for row, spec in jobs:
        logger.info("%s: %s on %s (%s %s)", row.bundle, row.runner, row.device, row.format, row.quantization)
        proc = subprocess.run([sys.executable, "-m", "rationalizer.bench.worker", json.dumps(spec)],
                              capture_output=True, text=True, timeout=plan.timeout_s)
        if proc.returncode != 0:
            row.error = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            logger.warning("  failed: %s", row.error)
        else:
            row.figures = json.loads(proc.stdout.strip().splitlines()[-1])
        if row.device == "cpu":  # the bandwidth measured is the CPU's
            row.bound_tok_s = bound_tokens_per_s(bandwidth, row.weight_bytes)
        rows.append(row)
        progress.update()
    return {"bandwidth_gb_s": bandwidth, "threads": threads, "tokens": plan.tokens, "reps": plan.reps,
            "rows": [dict(asdict(r), bound_fraction=r.bound_fraction) for r in rows]}


def markdown(result: dict[str, Any]) -> str:
    """The settings and the rows as a Markdown table."""
    lines = [f"memory read bandwidth: {result['bandwidth_gb_s']:.1f} GB/s ({result['threads']} threads); "
             f"decode over up to {result['tokens']} tokens, median of {result['reps']}", "",
             "| bundle | runner | format | quant | device | MB | load s | TTFT s | decode tok/s | bound tok/s | "
             "of bound | s/question | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        f = r["figures"]
        if r["error"]:
            lines.append(f"| {r['bundle']} | {r['runner']} | {r['format']} | {r['quantization']} | {r['device']} | "
                         f"{r['weight_bytes'] / 1e6:.0f} | failed: {r['error']} |||||||")
            continue
        bound = f"{r['bound_tok_s']:.0f}" if r["bound_tok_s"] else "-"
        share = f"{r['bound_fraction']:.0%}" if r["bound_fraction"] else "-"
        lines.append(f"| {r['bundle']} | {r['runner']} | {r['format']} | {r['quantization']} | {r['device']} | "
                     f"{r['weight_bytes'] / 1e6:.0f} | {f['load_s']:.2f} | {f['ttft_s']:.3f} | {f['decode_tok_s']:.1f} | "
                     f"{bound} | {share} | {f['latency_s']:.2f} | {f['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"
