"""What a measurement ran on: CPU, cores, memory, versions, load; and process memory."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def facts() -> dict[str, Any]:
    """The machine and software a result belongs to (recorded in every JSON)."""
    import keras
    import keras_tuner
    import tensorflow as tf

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_meminfo_kib("MemTotal") / 2**20, 1),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_tuner": keras_tuner.__version__,
        "revision": _revision(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def load_average() -> float:
    """The 1-minute load average: above the core count, other work competed with ours."""
    return round(os.getloadavg()[0], 2)


def peak_rss_mib(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process, in MiB."""
    return round(_status_kib(pid, "VmHWM") / 1024, 1)


def rss_mib(pid: int | str = "self") -> float:
    """Current resident memory (VmRSS) of a process, in MiB."""
    return round(_status_kib(pid, "VmRSS") / 1024, 1)


def _status_kib(pid: int | str, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}; is this Linux?")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def _revision() -> str:
    try:
        found = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return found.stdout.strip() or "unknown"
