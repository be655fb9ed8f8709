"""GGUF quantization through llama.cpp's own quantizer (``llama_model_quantize``)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from rationalizer.errors import UserError

from .formats import GGUF_QUANTS


def quantize_gguf(source: Path, out: Path, quant: str, threads: int | None = None) -> Path:
    """Quantize the f32/f16 GGUF ``source`` to ``quant`` at ``out`` with llama.cpp.

    Tensors whose rows are too short for a k-quant block fall back to a type
    llama.cpp chooses (it logs which); small models therefore mix types.
    """
    import llama_cpp

    if quant not in GGUF_QUANTS:
        raise UserError(f"unknown GGUF quantization {quant!r} (choose from {', '.join(GGUF_QUANTS)})")
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if status != 0 or not out.exists():
        raise UserError(f"llama.cpp could not quantize {source.name} to {quant} (status {status})")
    return out
