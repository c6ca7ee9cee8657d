"""What every benchmark's ``--json`` file records besides its results: the machine, the date, the software."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from render.atomic import atomic_write_bytes


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine() -> dict:
    """The CPU model (``/proc/cpuinfo``), cores, memory and OS of this machine, and the cores this process may use."""
    mem_kib = _proc_field("/proc/meminfo", "MemTotal")
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "allowed_cores": allowed,
        "memory_gib": round(int(mem_kib.split()[0]) / 2**20, 1) if mem_kib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def _finite(obj):
    """JSON has no NaN or infinity: a figure that could not be measured is written as null."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write(path: str | Path, benchmark: str, settings: dict, results: dict, **extra) -> None:
    """Write one benchmark run as JSON: what ran, where, when, with which settings, and every figure printed."""
    record = {
        "benchmark": benchmark,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        **extra,
        "settings": settings,
        "results": results,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), (json.dumps(_finite(record), indent=2) + "\n").encode())
