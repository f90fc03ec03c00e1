"""What the numbers were measured on: CPU, cores, library versions, threads, load, time."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path

from jaxseq import timing

from .environment import STATE

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def _cpuinfo_field(name: str) -> str | None:
    """The first `name : value` line's value in /proc/cpuinfo (None where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    flags = set((_cpuinfo_field("flags") or "").split())
    return sorted(f for f in CPU_FLAGS if f in flags)


def _library_versions() -> dict:
    """jax (backend, devices), flax, torch (threads), numpy: those installed."""
    info = {}
    try:
        import jax

        info.update(jax=jax.__version__, jax_backend=jax.default_backend(),
                    jax_devices=[str(d) for d in jax.devices()])
    except ImportError:
        pass
    try:
        import flax

        info["flax"] = flax.__version__
    except ImportError:
        pass
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        pass
    import numpy

    info["numpy"] = numpy.__version__
    return info


def machine_info() -> dict:
    """The machine, its load, the libraries and the measured configuration, as one dict."""
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host_cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": timing.load_average(),
        **_library_versions(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "malloc_tuned": STATE["malloc_tuned"],
        "timing_mode": timing.MODE["name"],
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "env": {key: os.environ.get(key) for key in (*timing.QUIET_ENV, "OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
    }
