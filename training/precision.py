"""Training precision: fp32, or bf16 autocast with fp32 LoRA weights and optimizer state.

``auto`` picks bf16 only where the hardware computes it natively: a CUDA device
that supports bf16, or a CPU with AVX-512 BF16 or AMX instructions (x86) or the
BF16 extension (Arm). Elsewhere torch emulates bf16 matmuls on CPU, which is
slower than fp32, so ``auto`` stays on fp32 there.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Callable, ContextManager, Literal, get_args

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
_X86_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has native bf16 arithmetic, read from ``/proc/cpuinfo``'s flags."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    arm = platform.machine().lower() in ("aarch64", "arm64")
    return bool(flags & _X86_BF16_FLAGS) or (arm and "bf16" in flags)


def choose_precision(requested: str, device_type: str) -> tuple[str, str]:
    """(``fp32`` or ``bf16``, why) for ``requested`` on a ``cpu`` or ``cuda`` device."""
    if requested not in PRECISIONS:
        from rationalizer.errors import UserError

        raise UserError(f"unknown precision {requested!r} (known: {', '.join(PRECISIONS)})")
    if requested != "auto":
        return requested, "asked for"
    if device_type == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return "bf16", "this CUDA device computes bf16"
        return "fp32", "this CUDA device has no bf16"
    if cpu_has_bf16():
        return "bf16", "this CPU has native bf16 (AVX-512 BF16, AMX or Arm BF16)"
    return "fp32", "this CPU has no native bf16 (torch would emulate it, slower than fp32)"


def autocast_factory(precision: str, device_type: str) -> Callable[[], ContextManager]:
    """A function that opens the forward pass's autocast context (a no-op for fp32)."""
    if precision != "bf16":
        return contextlib.nullcontext
    import torch

    return lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16)
