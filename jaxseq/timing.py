"""Side-by-side timing: interleaved repetitions, medians, ratios (DESIGN.md, "Performance rules").

A *contender* is a name and a zero-argument callable that runs one complete, already compiled
and warmed computation (JAX callables end in `jax.block_until_ready`; `bench` also blocks on
whatever the callable returns). A *case* is a list of contenders that compute the same thing;
`bench` times them in interleaved rounds (A B C A B C ...) after warm-up rounds, so that a
change in the machine's load hits every contender alike, and returns one result dict per
contender:

    case, variant, shape          what was measured ("lstm", "fwd+bwd", "N=64 T=16 D=256 H=512")
    contender, reference          who, and the contender the ratios are taken against
    median_ms, min_ms, max_ms     over the timed repetitions; times_ms holds them all
    ratio                         median / median of the reference (> 1: the reference is faster)
    page_faults                   median minor page faults per call (fresh memory touched)
    flops, gflops                 the case's FLOP count (stated by the caller) and flops / median
    frac_best_matmul              gflops / the best matmul rate measured in the same run (filled
                                  in by the benchmark suite; None here)
    reps, warmup, position        repetitions, warm-up rounds, place in each round
    order                         the contender names in the order they were timed (all rounds)
    load_before, load_after       os.getloadavg() around the case
    steps, us_per_step            with `steps` given: the contender's sequence length and
                                  median / steps in microseconds (else None)

`format_cases` prints them as Markdown tables, one per case. Nothing here asserts anything
about speed. `jaxseq demo` and the benchmark suite (benchmarks/speed/) both time with this
module; call `quiet_thread_pools` before NumPy is first imported.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from typing import Callable, Iterable, Sequence, TypedDict

Contender = tuple[str, Callable[[], object]]

DEFAULT_REPS = 11
DEFAULT_WARMUP = 2
QUICK_REPS, QUICK_WARMUP = 3, 1  # a smoke test, not a measurement

# Idle time between two timed calls (not timed): lets the previous contender's worker threads
# stop spinning before the next one starts (PyTorch's OpenMP threads spin ~ms after a call).
DEFAULT_GAP_S = 0.01
# Environment that keeps one library's idle threads from stealing a core from the next
# contender; must be in place before NumPy is imported (see `quiet_thread_pools`).
QUIET_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}
TORCH_THREADS = 2

# The clock and thread counts in effect: wall time by default; the benchmark suite's
# single-core mode switches to this process's CPU time (`use_clock`).
class TimingMode(TypedDict):
    """How `bench` times: the mode's name, its clock, PyTorch's thread count."""

    name: str
    clock: Callable[[], float]
    torch_threads: int


MODE: TimingMode = {"name": "wall", "clock": time.perf_counter, "torch_threads": TORCH_THREADS}
CLOCK_NAMES = {time.perf_counter: "wall", time.process_time: "process CPU time"}

LAST_FAULTS: dict[str, list[int]] = {}  # minor page faults per timed call, of the last time_interleaved


def repetitions(quick: bool) -> tuple[int, int]:
    """(reps, warmup) of a case: the quick smoke-test pair or the measurement's."""
    return (QUICK_REPS, QUICK_WARMUP) if quick else (DEFAULT_REPS, DEFAULT_WARMUP)


# ----------------------------------------------------------------------------- environment


def quiet_thread_pools() -> dict:
    """Set `QUIET_ENV` defaults: NumPy's OpenBLAS workers otherwise spin for ~0.1 s (a whole
    core) after every call, which on a 2-core machine slows whichever contender runs next
    (jaxseq measured 1.6x slower than it is). Only effective before NumPy is first imported;
    returns the values in effect."""
    effective = "numpy" not in sys.modules
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    return {**{key: os.environ.get(key) for key in QUIET_ENV}, "effective": effective}


def use_clock(name: str, clock: Callable[[], float], torch_threads: int) -> None:
    """Make `clock` the default timer of `bench` (described by `name`) and `torch_threads`
    the thread count `setup` gives PyTorch."""
    MODE.update({"name": name, "clock": clock, "torch_threads": torch_threads})


def setup(torch_threads: int | None = None) -> None:
    """Put the libraries in the measured configuration: PyTorch (where installed) on
    `torch_threads` threads (default: `MODE`'s, 2 unless the clock mode says otherwise)."""
    try:
        import torch
    except ImportError:  # torch is optional
        return
    torch.set_num_threads(torch_threads or MODE["torch_threads"])


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine's load is part of every result)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:  # not available on this platform
        return [float("nan")] * 3


# ----------------------------------------------------------------------------- timing


def _minor_faults() -> int:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, OSError):
        return 0


def _block(value):
    if "jax" not in sys.modules:
        return value
    import jax

    return jax.block_until_ready(value)


def _check_round(names: list[str], reps: int, warmup: int) -> None:
    if len(set(names)) != len(names):
        raise ValueError(f"contender names must be unique, got {names}")
    if reps < 1 or warmup < 0:
        raise ValueError(f"need reps >= 1 and warmup >= 0, got reps={reps} warmup={warmup}")


def time_interleaved(
    contenders: Sequence[Contender], reps: int = DEFAULT_REPS, warmup: int = DEFAULT_WARMUP,
    clock: Callable[[], float] | None = None, gap_s: float = DEFAULT_GAP_S,
) -> tuple[dict[str, list[float]], list[str]]:
    """Call the contenders in rounds A B C A B C ...: `warmup` untimed rounds, then `reps` timed.

    `clock` is the timer (`MODE`'s by default: wall time, or process CPU time in single-core
    mode). `gap_s` seconds of idle time separate two calls (untimed). Minor page faults per
    call go to `LAST_FAULTS`.
    Returns ({name: [seconds per timed call]}, the names in the order they were timed).
    """
    clock = clock or MODE["clock"]
    names = [name for name, _ in contenders]
    _check_round(names, reps, warmup)
    for _ in range(warmup):
        for _, fn in contenders:
            _block(fn())
            if gap_s:
                time.sleep(gap_s)
    times: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    order: list[str] = []
    for _ in range(reps):
        for name, fn in contenders:
            faults_before = _minor_faults()
            start = clock()
            _block(fn())
            times[name].append(clock() - start)
            faults[name].append(_minor_faults() - faults_before)
            order.append(name)
            if gap_s:
                time.sleep(gap_s)
    LAST_FAULTS.clear()
    LAST_FAULTS.update(faults)
    return times, order


def _timing_fields(ts: list[float], ref_median: float | None, flops: float | None, n_steps: int | None) -> dict:
    """The per-contender numbers of a result dict, from its times in seconds."""
    median = statistics.median(ts)
    return {
        "median_ms": median * 1e3,
        "min_ms": min(ts) * 1e3,
        "max_ms": max(ts) * 1e3,
        "times_ms": [t * 1e3 for t in ts],
        "ratio": (median / ref_median) if ref_median else None,
        "flops": flops,
        "gflops": (flops / median / 1e9) if flops else None,
        "frac_best_matmul": None,
        "steps": n_steps,
        "us_per_step": (median * 1e6 / n_steps) if n_steps else None,
    }


def bench(
    case: str,
    contenders: Sequence[Contender],
    *,
    variant: str = "",
    shape: str = "",
    flops: float | None = None,
    reference: str | None = "jaxseq",
    reps: int = DEFAULT_REPS,
    warmup: int = DEFAULT_WARMUP,
    unit: str = "ms",
    notes: str = "",
    verbose: bool = True,
    clock: Callable[[], float] | None = None,
    gap_s: float = DEFAULT_GAP_S,
    steps: int | dict[str, int] | None = None,
) -> list[dict]:
    """Time one case's contenders interleaved; one result dict per contender (module docstring),
    printed as a table when `verbose`.

    `reference` names the contender the ratios are taken against (None or absent: no ratios).
    `flops` is the case's floating-point operation count; it gives GFLOP/s.
    `steps`: the number of time steps each call runs (one number, or one per contender name,
    as in a sweep over sequence lengths); it gives the time per step.
    """
    clock = clock or MODE["clock"]
    load_before = load_average()
    times, order = time_interleaved(contenders, reps=reps, warmup=warmup, clock=clock, gap_s=gap_s)
    load_after = load_average()
    ref_median = statistics.median(times[reference]) if reference in times else None
    shared = {"reps": reps, "warmup": warmup, "order": order, "load_before": load_before, "load_after": load_after,
              "unit": unit, "clock": CLOCK_NAMES.get(clock, getattr(clock, "__name__", str(clock))),
              "gap_s": gap_s, "notes": notes}
    results = []
    for position, (name, _) in enumerate(contenders):
        n_steps = steps.get(name) if isinstance(steps, dict) else steps
        results.append({
            "case": case, "variant": variant, "shape": shape, "contender": name,
            "reference": reference if ref_median is not None else None,
            **_timing_fields(times[name], ref_median, flops, n_steps),
            "page_faults": statistics.median(LAST_FAULTS.get(name) or [0]),
            "position": position,
            **shared,
        })
    if verbose:
        print(format_cases(results), flush=True)
    return results


# ----------------------------------------------------------------------------- tables


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def _time_fmt(ms: float) -> str:
    return f"{ms:.3g}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def group_cases(results: Iterable[dict]) -> list[tuple[tuple[str, str, str], list[dict]]]:
    """The results grouped by (case, variant, shape), in the order they first appear."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["case"], r["variant"], r["shape"]), []).append(r)
    return list(groups.items())


def _row(r: dict, per_step: bool) -> str:
    frac = r.get("frac_best_matmul")
    return (
        f"| {r['contender']} | {_time_fmt(r['median_ms'])} | {_time_fmt(r['min_ms'])}..{_time_fmt(r['max_ms'])} "
        f"| {_fmt(r['ratio'], '.2f')} | {_fmt(r['gflops'], '.0f')} "
        f"| {_fmt(None if frac is None else 100 * frac, '.0f')} | {_fmt(r.get('page_faults'), '.0f')} |"
        + (f" {_fmt(r.get('steps'), 'd')} | {_fmt(r.get('us_per_step'), '.3g')} |" if per_step else "")
    )


def format_case(rows: Sequence[dict]) -> list[str]:
    """The lines of one case's Markdown table (a `### case · variant · shape` heading first)."""
    first = rows[0]
    unit = first.get("unit", "ms")
    head = " · ".join(part for part in (first["case"], first["variant"], first["shape"]) if part)
    per_step = any(r.get("us_per_step") for r in rows)  # a sweep over sequence lengths
    return [
        f"### {head}",
        "",
        f"reps {first['reps']}, warm-up {first['warmup']}, load {first['load_before']} -> "
        f"{first['load_after']}" + (f"; {first['notes']}" if first.get("notes") else ""),
        "",
        f"| contender | median {unit} | min..max {unit} | ratio to {first.get('reference') or '–'} | GFLOP/s "
        "| % best mm | page faults/call |" + (" steps | µs/step |" if per_step else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if per_step else ""),
        *(_row(r, per_step) for r in rows),
        "",
    ]


def format_cases(results: Sequence[dict]) -> str:
    """Markdown: one table per case."""
    return "\n".join(line for _, rows in group_cases(results) for line in format_case(rows))
