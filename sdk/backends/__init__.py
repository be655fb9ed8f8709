"""Backend registry: which backend runs which weight format, imported only when used."""

from __future__ import annotations

import importlib
from typing import Literal, get_args

from ..bundle import Bundle
from ..errors import InputError, UserError
from .base import Backend, GenerationParams, GenerationStats

# name -> (module, class, formats it runs, pip extra that installs it). Modules are
# imported lazily so that `import rationalizer` never pulls a heavy runtime.
REGISTRY: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "llamacpp": ("rationalizer.backends.llamacpp", "LlamaCppBackend", ("gguf",), "gguf"),
    "onnx": ("rationalizer.backends.onnx", "OnnxBackend", ("onnx",), "onnx"),
    "torch": ("rationalizer.backends.hf", "TorchBackend", ("hf", "peft"), "train"),
    # no weights of its own: it runs on a server (Rationalizer.load(..., endpoint=...)), never picked by auto
    "http": ("rationalizer.backends.http", "HttpBackend", (), "gguf"),
}
Device = Literal["auto", "cpu", "cuda"]
"""Where a model runs (or trains): ``auto`` takes a usable GPU, else the CPU."""
DEVICES: tuple[str, ...] = get_args(Device)

__all__ = ["Backend", "GenerationParams", "GenerationStats", "REGISTRY", "Device", "DEVICES", "backend_class", "choose_backend"]


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered as ``name``."""
    if name not in REGISTRY:
        raise InputError(f"unknown backend {name!r} (known: auto, {', '.join(REGISTRY)})")
    module, cls, _, extra = REGISTRY[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise UserError(f"backend {name!r} needs extra packages: pip install 'rationalizer[{extra}]' ({exc})") from None


def choose_backend(bundle: Bundle, backend: str = "auto", device: str = "auto") -> tuple[type[Backend], str, str]:
    """Pick (backend class, weight format, concrete device) for a bundle.

    ``auto`` takes the first registered backend whose format the bundle has; the
    device ``auto`` becomes ``cuda`` only when that backend can use a GPU here.
    """
    if device not in DEVICES:
        raise InputError(f"unknown device {device!r} (known: {', '.join(DEVICES)})")
    formats = bundle.formats()
    if backend == "auto":
        candidates = [name for name, (_, _, fmts, _) in REGISTRY.items() if any(f in formats for f in fmts)]
        if not candidates:
            raise UserError(f"no backend runs the formats of this bundle ({', '.join(formats)})")
        backend = candidates[0]
    cls = backend_class(backend)
    fmt = next((f for f in cls.formats if f in formats), None)
    if fmt is None:
        raise UserError(
            f"backend {backend!r} runs {', '.join(cls.formats)} weights; this bundle has {', '.join(formats)}"
        )
    if device == "auto":
        device = "cuda" if "cuda" in cls.devices and cls.gpu_available() else "cpu"
    elif device not in cls.devices:
        raise InputError(f"backend {backend!r} does not run on {device!r} (it runs on {', '.join(cls.devices)})")
    return cls, fmt, device
