"""glibc's malloc told to keep freed memory: a setting of the `jaxseq` command's own process.

XLA:CPU allocates every call's temporary buffer afresh (272 MB for the char language model's
training step, 62.5 MB for the word model's), and so does PyTorch. glibc hands a block that large
to a worker thread from `mmap` and returns it with `munmap` when it is freed, so every step
page-faults all of its memory in again: about 82,000 minor faults per char step, 16,500 per
word step. One arena, no `mmap` and no trimming turn that into reuse of the same heap.

Measured (`benchmarks/results/lm_speed.md`, 2-core Xeon, the library's training step): char
565 -> 527 ms (1.07x), word 60.7 -> 47.7 ms (1.27x). The cost: the process keeps its peak heap
until it exits, which suits a command that trains or evaluates and then ends, not a library
imported into someone else's program. So only the `jaxseq` command applies it
(`jaxseq.cli.entry_point`), before JAX starts its threads; importing jaxseq changes nothing, and
`JAXSEQ_MALLOC=system` keeps glibc's defaults for the command too.
"""

from __future__ import annotations

import ctypes
import os
import platform

ENV = "JAXSEQ_MALLOC"
# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse, process-wide (module docstring): one
    arena (large blocks from worker threads otherwise fall back to mmap), no mmap, no trimming.
    Call it before any thread starts allocating. Returns False where there is no glibc (other
    C libraries, other systems) or it refused a setting."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return all([libc.mallopt(_M_ARENA_MAX, 1) == 1, libc.mallopt(_M_MMAP_MAX, 0) == 1,
                libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1])


def wanted_for_command() -> bool:
    """Whether the `jaxseq` command should apply `keep_freed_memory`: yes unless
    JAXSEQ_MALLOC=system. Any other value is an error naming the variable."""
    value = os.environ.get(ENV, "keep").strip().lower()
    if value not in ("keep", "system"):
        raise ValueError(f"{ENV} must be 'keep' (the default: malloc keeps freed memory) or 'system' "
                         f"(glibc's defaults), not {os.environ[ENV]!r}")
    return value == "keep"
