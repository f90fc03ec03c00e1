"""The measured configuration of a benchmark process: single-core mode and malloc tuning.

Both change the whole process and must run before the work starts (single-core mode before
JAX, PyTorch or NumPy start their thread pools). What is in effect is recorded in every
result file (`machine.machine_info`).
"""

from __future__ import annotations

import os
import sys
import time

from jaxseq import timing

STATE = {"malloc_tuned": False}


def single_core_mode() -> int:
    """Switch this process to the load-robust mode: pinned to one CPU, one thread per library,
    timed by this process's CPU time (`time.process_time`). On a machine shared with other
    work, wall times of multi-threaded code mostly measure the scheduler; CPU time on one core
    measures the work. Must run before JAX, PyTorch or NumPy start their thread pools.
    Returns the CPU pinned to."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[key] = "1"
    started = [m for m in ("jax", "torch", "numpy") if m in sys.modules]
    if started:
        raise RuntimeError(f"single_core_mode() must run before importing {', '.join(started)}")
    timing.use_clock(f"single-core CPU time (pinned to CPU {cpu})", time.process_time, torch_threads=1)
    return cpu


def tune_malloc() -> bool:
    """Make glibc malloc keep freed memory instead of returning it to the OS (process-wide).

    XLA:CPU allocates its temporary buffer (and outputs) afresh on every call; large blocks
    come from mmap and go back with munmap, so every call page-faults all of its memory in
    again (about 9,300 minor faults per LSTM fwd+bwd at shape (a), 39,000 at (c)). One arena,
    no mmap and no trimming turn that into heap reuse. Costs: the process keeps its peak heap.
    Returns False where glibc's mallopt is not available. Call it before the work starts.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
    ok = libc.mallopt(M_ARENA_MAX, 1) == 1  # large blocks from worker threads otherwise fall back to mmap
    ok &= libc.mallopt(M_MMAP_MAX, 0) == 1
    ok &= libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    STATE["malloc_tuned"] = bool(ok)
    return STATE["malloc_tuned"]
