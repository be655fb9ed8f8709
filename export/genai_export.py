"""ONNX export through onnxruntime-genai's model builder (``onnxruntime_genai.models.builder``).

Why onnxruntime-genai 0.15.2 (constraints.txt) and not 0.18: the builder of every release from 0.16 on
imports transformers classes that first appear in transformers 5 (``Qwen3_5ForConditionalGeneration``
and others, at the top of ``builders/base.py``), so with the transformers < 4.58 this project pins for
optimum-onnx it cannot even be imported; and 0.18 collapses ``config.rope_scaling`` into
``rope_parameters`` by iterating over it, which is None for a plain Llama under transformers 4.x. The
0.15.2 builder imports only AutoConfig & co. and reads ``rope_parameters`` or else ``rope_scaling``,
and its runtime needs onnxruntime >= 1.28 (the pinned 1.31.1 is kept). The builder runs in a child
process: its package puts its own folder on ``sys.path`` (modules named ``builders``, ``quantization``)
and loads the full torch model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rationalizer.errors import UserError

from .config import GenaiOptions
from .genai_tokenizer import write_canonical_tokenizer

GENAI_CONFIG = "genai_config.json"
MODEL_FILE = "model.onnx"
COPIED = ("config.json", "generation_config.json")
"""Read by the ONNX backend (stop and pad ids) next to the builder's own files."""
KEPT = (MODEL_FILE, "model.onnx.data", GENAI_CONFIG, "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json")
# fp16 targets the CUDA provider: for "fp16 cpu" (not a combination the builder supports) it writes
# MultiHeadAttention with position_ids instead of GroupQueryAttention; the CUDA graph runs on
# onnxruntime's CPU provider too.
PRECISIONS = {"genai-fp32": ("fp32", "cpu"), "genai-fp16": ("fp16", "cuda"), "genai-int8": ("int8", "cpu"),
              "genai-int4": ("int4", "cpu")}


def builder_arguments(kind: str, options: GenaiOptions, tied: bool) -> tuple[str, str, list[str]]:
    """(precision, execution provider, ``--extra_options`` key=value pairs) for the export ``kind``."""
    if kind not in PRECISIONS:
        raise UserError(f"unknown genai type {kind!r} (choose from {', '.join(PRECISIONS)})")
    precision, provider = PRECISIONS[kind]
    quantized = precision in ("int8", "int4")
    if precision == "int8" and options.algo != "default":
        # the 0.15.2 builder then quantizes the body to 4 bits whatever -p says (checked after the build too)
        raise UserError(f"genai-int8 takes --genai-algo default only (asked: {options.algo}); the pinned "
                        "onnxruntime-genai builder writes 4-bit weights for int8 with rtn or k_quant")
    # its int8 shared-embedding path names a 4-bit tensor it never writes (the graph does not load)
    shared = options.shared_embeddings and tied and precision != "int8"
    if shared and options.int8_head and options.algo == "default" and precision == "int4":
        # the same naming fault: the shared 8-bit head is looked up under rtn's tensor names
        raise UserError("--genai-int8-head with shared embeddings needs --genai-algo rtn or k_quant (the pinned "
                        "builder writes a graph that does not load with default), or --no-genai-shared-embeddings")
    extra = ["hf_token=false", f"shared_embeddings={str(shared).lower()}"]
    if quantized:
        extra += [f"block_size={options.block_size}", f"is_symmetric={str(options.symmetric).lower()}"]
        if options.algo != "default":
            extra.append(f"algo_config={options.algo}")
        if options.accuracy_level is not None:
            extra.append(f"accuracy_level={options.accuracy_level}")
        if options.int8_head and precision == "int4":
            extra.append("matmul_mixed_precision=last_matmul:int8")
    return precision, provider, extra


def _model_config(hf_dir: Path) -> dict:
    try:
        return json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{hf_dir / 'config.json'}: cannot read the model config ({exc})") from None


def head_size(config: dict) -> int:
    """Attention head size of an HF model config."""
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def build_genai(hf_dir: Path, out: Path, kind: str, options: GenaiOptions, cache: Path) -> list[Path]:
    """Run the model builder on the checkpoint ``hf_dir``; write the bundle files into ``out``, return them.

    The tokenizer is rewritten in its plain byte-level form (:mod:`.genai_tokenizer`) and the quantized
    weights are checked to have the bit width asked for.
    """
    if importlib.util.find_spec("onnxruntime_genai") is None:
        raise UserError("the genai-* exports need onnxruntime-genai: pip install -c constraints.txt "
                        "'rationalizer[export]'")
    config = _model_config(hf_dir)
    if head_size(config) % 16:
        raise UserError(f"{hf_dir}: attention head size {head_size(config)} is not a multiple of 16, which "
                        "onnxruntime's GroupQueryAttention (the builder's attention) requires on the CPU")
    precision, provider, extra = builder_arguments(kind, options, bool(config.get("tie_word_embeddings")))
    raw = out.parent / f"{out.name}-builder"
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(raw),
               "-p", precision, "-e", provider, "-c", str(cache), "--extra_options", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()] or ["failed"]
            hint = (" (its version does not run with this transformers; pip install -c constraints.txt "
                    "onnxruntime-genai)" if "ImportError" in lines[-1] else "")
            raise UserError(f"onnxruntime-genai's model builder failed on {hf_dir}: {lines[-1][:300]}{hint}")
        out.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            if (raw / name).exists():
                shutil.move(str(raw / name), out / name)
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    for name in (MODEL_FILE, GENAI_CONFIG, "tokenizer.json"):
        if not (out / name).exists():
            raise UserError(f"onnxruntime-genai's model builder wrote no {name} for {hf_dir}")
    for name in COPIED:
        if (hf_dir / name).exists():
            shutil.copyfile(hf_dir / name, out / name)
    write_canonical_tokenizer(out / "tokenizer.json")
    check_bits(out / MODEL_FILE, precision, options)
    return sorted(p for p in out.iterdir() if p.is_file())


def check_bits(model: Path, precision: str, options: GenaiOptions) -> None:
    """Fail when the builder quantized to other bit widths than ``precision`` (and the int8 head) ask for."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    bits = {n.name: next((a.i for a in n.attribute if a.name == "bits"), 4) for n in graph.node
            if n.op_type == "MatMulNBits"}
    if precision in ("fp32", "fp16"):
        expected: set[int] = set()
    elif precision == "int8":
        expected = {8}
    else:
        expected = {4, 8} if options.int8_head else {4}
    body = {b for name, b in bits.items() if "lm_head" not in name}
    if set(bits.values()) - expected or (precision in ("int8", "int4") and body != {int(precision[3:])}):
        found = ", ".join(f"{b}-bit" for b in sorted(set(bits.values()))) or "no quantized"
        raise UserError(f"onnxruntime-genai's builder wrote {found} MatMuls for {precision} ({model.name}); "
                        "the export is refused rather than labelled wrongly")


def file_role(path: Path) -> str:
    """The manifest role of a file the builder wrote."""
    if path.suffix == ".onnx":
        return "model"
    return "data" if path.name.endswith((".onnx.data", ".onnx_data")) else "config"
