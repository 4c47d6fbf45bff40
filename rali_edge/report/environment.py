"""The machine and software a benchmark ran on: versions, CPU model, thread count, date."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

# Distribution names (as pip knows them) whose versions every report records.
PACKAGES = ("torch", "onnxruntime", "onnx", "coremltools", "tensorrt", "open_clip_torch", "transformers", "numpy", "rali-edge")
# CPU features that decide which kernels run (VNNI = fast INT8 dot products).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, None when absent (never imports the package)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpuinfo_fields(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    if not path.is_file():
        return {}
    fields: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in fields:   # first processor block is enough: cores are alike here
            fields[key] = value.strip()
    return fields


def cpu_model() -> str:
    """Human-readable CPU model ("Intel(R) Xeon(R) ..."), falling back to platform.processor()."""
    fields = _cpuinfo_fields()
    return fields.get("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU reports (Linux only; empty elsewhere)."""
    flags = set(_cpuinfo_fields().get("flags", "").split())
    return [f for f in CPU_FLAGS if f in flags]


def usable_cpus() -> int:
    """CPUs this process may run on (affinity-aware where the OS supports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def collect_environment(threads: int | None = None) -> dict:
    """Everything a reader needs to reproduce or compare a timing. `threads`: the thread count used."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "threads": threads if threads is not None else usable_cpus(),
        # Timings on a shared machine are only as good as its idleness; record how busy it was.
        "load_average_1m": load[0] if load else None,
    }
