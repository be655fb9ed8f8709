"""ONNX export through optimum (decoder with KV cache), then onnxruntime's quantizers."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from rationalizer.errors import UserError

from .formats import ONNX_TYPES

# Inputs of these projections carry the large outlier channels of small LLMs; one int8 scale per
# tensor for the activations then wipes out every other channel (measured on SmolLM2-135M:
# top-1 lost on every check prompt with them quantized).
DYNAMIC_INT8_SKIP = ("down_proj", "lm_head")
MODEL_FILE = "model.onnx"
KEEP = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def export_onnx_fp32(hf_dir: Path, out: Path) -> Path:
    """Export the checkpoint with optimum's ``text-generation-with-past`` task into ``out``."""
    from optimum.exporters.onnx import main_export

    raw = out.parent / (out.name + "-optimum")
    try:
        main_export(str(hf_dir), output=raw, task="text-generation-with-past", local_files_only=True,
                    do_validation=False, library_name="transformers")
        out.mkdir(parents=True, exist_ok=True)
        for path in raw.iterdir():
            if path.suffix in (".onnx", ".onnx_data") or path.name in KEEP:
                shutil.move(str(path), out / path.name)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"optimum could not export {hf_dir} to ONNX ({str(exc).splitlines()[0]})") from None
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    if not (out / MODEL_FILE).exists():
        raise UserError(f"optimum wrote no {MODEL_FILE} for {hf_dir}")
    return out


def quantize_onnx(fp32_dir: Path, out: Path, kind: str) -> Path:
    """Write a quantized copy of the fp32 export into ``out`` (tokenizer and configs copied along)."""
    if kind not in ONNX_TYPES:
        raise UserError(f"unknown ONNX type {kind!r} (choose from {', '.join(ONNX_TYPES)})")
    out.mkdir(parents=True, exist_ok=True)
    for path in fp32_dir.iterdir():
        if path.name in KEEP:
            shutil.copy2(path, out / path.name)
    source, target = fp32_dir / MODEL_FILE, out / MODEL_FILE
    if kind == "fp32":
        for path in fp32_dir.iterdir():
            if path.suffix in (".onnx", ".onnx_data"):
                shutil.copy2(path, out / path.name)
        return out
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    if kind == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-tensor weight scales: ORT's per-channel MatMulInteger path lost top-1 on every check prompt.
        quantize_dynamic(source, target, op_types_to_quantize=["MatMul"], per_channel=False,
                         weight_type=QuantType.QInt8, nodes_to_quantize=_dynamic_int8_nodes(source))
    else:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        bits = 8 if kind == "int8w" else 4
        # accuracy_level 4 (int8 compute): at 8 bits 9x the decode speed of float compute on the default
        # model (52 against 5.6 tok/s) for a little batch-dependent rounding; at 4 bits it doubled the error.
        quantizer = MatMulNBitsQuantizer(str(source), bits=bits, block_size=32, is_symmetric=True,
                                         accuracy_level=4 if bits == 8 else None)
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return out


def _dynamic_int8_nodes(model_path: Path) -> list[str]:
    """MatMul nodes with a constant weight, except those listed in ``DYNAMIC_INT8_SKIP``."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in weights
            and not any(skip in n.name for skip in DYNAMIC_INT8_SKIP)]
