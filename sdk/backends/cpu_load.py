"""Which CPU cores this process may use, and how many of them other work keeps busy (Linux).

The default thread count of the backends is built from these figures
(:func:`rationalizer.backends.base.default_threads`). Everything here is read from
the kernel without privileges; where a figure cannot be read the functions say
so (``None``) rather than guess.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

# /proc/stat columns after the cpu name: user nice system idle iowait irq softirq steal (guest time is
# already inside user and nice). idle and iowait are time no task wanted the core.
_IDLE_COLUMNS = (3, 4)
_COLUMNS = 8


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask, e.g. ``taskset`` or a container's cpuset)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def cgroup_cpu_limit(path: str | Path = "/sys/fs/cgroup/cpu.max") -> float | None:
    """The CPU quota of this process's cgroup (v2) in cores, e.g. 1.5 for ``docker --cpus 1.5``; None if unlimited."""
    try:
        quota, period = Path(path).read_text(encoding="ascii").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def cpu_times(path: str | Path = "/proc/stat") -> dict[int, tuple[int, int]]:
    """(busy, total) clock ticks of every CPU since boot, by CPU number; empty if unreadable."""
    out: dict[int, tuple[int, int]] = {}
    try:
        lines = Path(path).read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return out
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        try:
            ticks = [int(v) for v in rest.split()[:_COLUMNS]]
        except ValueError:
            continue
        total = sum(ticks)
        out[int(name[3:])] = (total - sum(ticks[i] for i in _IDLE_COLUMNS if i < len(ticks)), total)
    return out


def busy_cores(cpus: set[int], window_s: float = 0.1, path: str | Path = "/proc/stat") -> float | None:
    """How many of ``cpus`` other tasks keep busy: their summed busy share over ``window_s``.

    This process sleeps through the window, so what is measured is everyone else (other
    processes, and other threads of this one). Stolen time (a VM's host running others) counts
    as busy. None where /proc/stat cannot be read or shows none of ``cpus``.
    """
    before = cpu_times(path)
    time.sleep(window_s)
    after = cpu_times(path)
    busy, seen = 0.0, False
    for cpu in cpus:
        if cpu in before and cpu in after:
            elapsed = after[cpu][1] - before[cpu][1]
            if elapsed > 0:
                busy += min(1.0, (after[cpu][0] - before[cpu][0]) / elapsed)
                seen = True
    return busy if seen else None


def loadavg_busy(cpus: int) -> float | None:
    """Fallback without /proc/stat: the 1-minute load average, as a share of ``cpus`` of the machine's cores."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return load * cpus / max(os.cpu_count() or cpus, cpus)


def usable_cores() -> int:
    """Cores this process may use: its affinity mask, capped by a cgroup CPU quota (rounded up)."""
    cores = len(allowed_cpus()) or 1
    quota = cgroup_cpu_limit()
    return max(1, min(cores, math.ceil(quota))) if quota else cores
