"""The measured configuration of a benchmark process: single-core mode and malloc tuning.

Both change the whole process and must run before the work starts (single-core mode before
JAX, PyTorch or NumPy start their thread pools). What is in effect is recorded in every
result file (`machine.machine_info`).
"""

from __future__ import annotations

import os
import sys
import time

from jaxseq import process_memory, timing

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
    """Make glibc malloc keep freed memory instead of returning it to the OS, for every contender
    in this process (`jaxseq.process_memory.keep_freed_memory`, which the `jaxseq` command applies
    to its own process): XLA:CPU and PyTorch allocate their temporaries afresh on every call, and
    large blocks from mmap are page-faulted in again each time (about 9,300 minor faults per LSTM
    fwd+bwd at shape (a), 39,000 at (c)). Returns False where glibc's mallopt is not available.
    Call it before the work starts."""
    STATE["malloc_tuned"] = process_memory.keep_freed_memory()
    return STATE["malloc_tuned"]
