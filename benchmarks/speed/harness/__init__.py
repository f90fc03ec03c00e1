"""The speed suite's harness: what every `bench_*.py` module and `run_all.py` use, by job.

    jaxseq.timing    interleaved repetitions, medians, ratios, per-case tables (the package's:
                     `jaxseq demo` times with it too); re-exported here
    environment      the measured configuration: single-core mode, malloc tuning
    machine          what the numbers were measured on (CPU, libraries, load)
    roofline         the matmul roofline every rate is compared with
    report           the Markdown report: machine header and one table per case
    plots            the bar chart of the ratios
    outputs          <stem>.md, <stem>.json, <stem>.png of a run
    command_line     `python bench_X.py [--quick]` of one module

Contenders' agreement checks (`assert_agree`, `max_rel_error`) are `jaxseq.contenders`'.
Importing this package imports neither NumPy nor JAX, so that `single_core_mode` and
`quiet_thread_pools` can still take effect. Nothing here asserts anything about speed.
"""

from jaxseq.timing import (
    DEFAULT_GAP_S, DEFAULT_REPS, DEFAULT_WARMUP, LAST_FAULTS, MODE, QUICK_REPS, QUICK_WARMUP, QUIET_ENV,
    TORCH_THREADS, Contender, bench, format_cases, load_average, quiet_thread_pools, repetitions, setup,
    time_interleaved,
)

from .command_line import main
from .environment import single_core_mode, tune_malloc
from .machine import machine_info
from .outputs import write_outputs
from .plots import plot_ratios
from .report import format_table
from .roofline import ROOFLINE_CASE, annotate_roofline, best_matmul_gflops, matmul_contenders, matmul_roofline

__all__ = [
    "DEFAULT_GAP_S", "DEFAULT_REPS", "DEFAULT_WARMUP", "LAST_FAULTS", "MODE", "QUICK_REPS", "QUICK_WARMUP",
    "QUIET_ENV", "ROOFLINE_CASE", "TORCH_THREADS", "Contender", "annotate_roofline", "bench",
    "best_matmul_gflops", "format_cases", "format_table", "load_average", "machine_info", "main",
    "matmul_contenders", "matmul_roofline", "plot_ratios", "quiet_thread_pools",
    "repetitions", "setup", "single_core_mode", "time_interleaved", "tune_malloc", "write_outputs",
]
