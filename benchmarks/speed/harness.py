"""A small harness for side-by-side timings (DESIGN.md, "Performance rules").

A *contender* is a name and a zero-argument callable that runs one complete, already
compiled and warmed computation and blocks until it is done (JAX callables end in
`jax.block_until_ready`; the harness also blocks on whatever the callable returns). A
*case* is a list of contenders that compute the same thing; `bench` times them in
interleaved rounds (A B C A B C ...) after warm-up rounds, so that a change in the machine's
load hits every contender alike, and returns one result dict per contender:

    case, variant, shape          what was measured ("lstm", "fwd+bwd", "N=64 T=16 D=256 H=512")
    contender, reference          who, and the contender the ratios are taken against
    median_ms, min_ms, max_ms     over the timed repetitions; times_ms holds them all
    ratio                         median / median of the reference (> 1: the reference is faster)
    page_faults                   median minor page faults per call (fresh memory touched)
    flops, gflops                 the case's FLOP count (stated by the caller) and flops / median
    frac_best_matmul              gflops / the best matmul rate measured in the same run
    reps, warmup, position        repetitions, warm-up rounds, place in each round
    order                         the contender names in the order they were timed (all rounds)
    load_before, load_after       os.getloadavg() around the case
    steps, us_per_step            with `steps` given: the contender's sequence length and
                                  median / steps in microseconds (else None)

`write_outputs` turns a list of results into `<stem>.md` (Markdown tables), `<stem>.json`
and `<stem>.png` (a bar chart of the ratios). Nothing here asserts anything about speed.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

Contender = tuple[str, Callable[[], object]]

DEFAULT_REPS = 11
DEFAULT_WARMUP = 2
QUICK_REPS, QUICK_WARMUP = 3, 1  # --quick: a smoke test, not a measurement


def repetitions(quick: bool) -> tuple[int, int]:
    """(reps, warmup) of a case: the quick smoke-test pair or the measurement's."""
    return (QUICK_REPS, QUICK_WARMUP) if quick else (DEFAULT_REPS, DEFAULT_WARMUP)


# Idle time between two timed calls (not timed): lets the previous contender's worker threads
# stop spinning before the next one starts (PyTorch's OpenMP threads spin ~ms after a call).
DEFAULT_GAP_S = 0.01
# Environment that keeps one library's idle threads from stealing a core from the next
# contender; must be in place before NumPy is imported (see `quiet_thread_pools`).
QUIET_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}
TORCH_THREADS = 2
ROOFLINE_CASE = "matmul roofline"


# ----------------------------------------------------------------------------- setup


MODE = {"name": "wall", "clock": time.perf_counter, "torch_threads": TORCH_THREADS}


def single_core_mode() -> int:
    """Switch this process to the load-robust mode: pinned to one CPU, one thread per library,
    timed by this process's CPU time (`time.process_time`). On a machine shared with other
    work, wall times of multi-threaded code mostly measure the scheduler; CPU time on one core
    measures the work. Must run before JAX, PyTorch or NumPy start their thread pools.
    Returns the CPU pinned to."""
    import sys

    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[key] = "1"
    started = [m for m in ("jax", "torch", "numpy") if m in sys.modules]
    if started:
        raise RuntimeError(f"single_core_mode() must run before importing {', '.join(started)}")
    MODE.update(name=f"single-core CPU time (pinned to CPU {cpu})", clock=time.process_time, torch_threads=1)
    return cpu


def setup(torch_threads: int | None = None) -> None:
    """Put the libraries in the measured configuration: PyTorch on `torch_threads` threads
    (default: 2, or 1 in single-core mode)."""
    try:
        import torch
    except ImportError:  # torch is optional for the harness itself
        return
    torch.set_num_threads(torch_threads or MODE["torch_threads"])


def quiet_thread_pools() -> dict:
    """Set `QUIET_ENV` defaults: NumPy's OpenBLAS workers otherwise spin for ~0.1 s (a whole
    core) after every call, which on a 2-core machine slows whichever contender runs next.
    Only effective before NumPy is first imported; returns the values in effect."""
    import sys

    effective = "numpy" not in sys.modules
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    return {**{key: os.environ.get(key) for key in QUIET_ENV}, "effective": effective}


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
    global MALLOC_TUNED
    MALLOC_TUNED = bool(ok)
    return MALLOC_TUNED


MALLOC_TUNED = False


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine's load is part of every result)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:  # not available on this platform
        return [float("nan")] * 3


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags)
    except OSError:
        pass
    return []


def machine_info() -> dict:
    """What the numbers were measured on: CPU, cores, library versions, threads, load, time."""
    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host_cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
    }
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except ImportError:
        pass
    try:
        import flax

        info["flax"] = flax.__version__
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    import numpy

    info["numpy"] = numpy.__version__
    info["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    info["malloc_tuned"] = MALLOC_TUNED
    info["timing_mode"] = MODE["name"]
    info["cpu_affinity"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    info["env"] = {key: os.environ.get(key) for key in (*QUIET_ENV, "OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    return info


# ----------------------------------------------------------------------------- timing


LAST_FAULTS: dict[str, list[int]] = {}  # minor page faults per timed call, of the last time_interleaved


def _minor_faults() -> int:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, OSError):
        return 0


def _block(value):
    try:
        import jax
    except ImportError:
        return value
    return jax.block_until_ready(value)


def time_interleaved(
    contenders: Sequence[Contender], reps: int = DEFAULT_REPS, warmup: int = DEFAULT_WARMUP,
    clock: Callable[[], float] | None = None, gap_s: float = DEFAULT_GAP_S,
) -> tuple[dict[str, list[float]], list[str]]:
    """Call the contenders in rounds A B C A B C ...: `warmup` untimed rounds, then `reps` timed.

    `clock` is the timer (wall time by default; `time.process_time` gives the CPU time of this
    process, a load-robust measure when the process is pinned to one core, e.g. `taskset -c 0`).
    `gap_s` seconds of idle time separate two calls (untimed).
    Returns ({name: [seconds per timed call]}, the names in the order they were timed).
    """
    clock = clock or MODE["clock"]
    names = [name for name, _ in contenders]
    if len(set(names)) != len(names):
        raise ValueError(f"contender names must be unique, got {names}")
    if reps < 1 or warmup < 0:
        raise ValueError(f"need reps >= 1 and warmup >= 0, got reps={reps} warmup={warmup}")
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
    """Time one case's contenders interleaved; one result dict per contender (module docstring).

    `reference` names the contender the ratios are taken against (None or absent: no ratios).
    `flops` is the case's floating-point operation count; it gives GFLOP/s.
    `steps`: the number of time steps each call runs (one number, or one per contender name,
    as in a sweep over sequence lengths); it gives the time per step.
    """
    clock = clock or MODE["clock"]
    load_before = load_average()
    times, order = time_interleaved(contenders, reps=reps, warmup=warmup, clock=clock, gap_s=gap_s)
    load_after = load_average()
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    ref_median = medians.get(reference) if reference else None
    results = []
    for position, (name, _) in enumerate(contenders):
        ts = times[name]
        median = medians[name]
        n_steps = steps.get(name) if isinstance(steps, dict) else steps
        results.append(
            {
                "case": case,
                "variant": variant,
                "shape": shape,
                "contender": name,
                "reference": reference if ref_median is not None else None,
                "median_ms": median * 1e3,
                "min_ms": min(ts) * 1e3,
                "max_ms": max(ts) * 1e3,
                "times_ms": [t * 1e3 for t in ts],
                "page_faults": statistics.median(LAST_FAULTS.get(name) or [0]),
                "ratio": (median / ref_median) if ref_median else None,
                "flops": flops,
                "gflops": (flops / median / 1e9) if flops else None,
                "frac_best_matmul": None,
                "reps": reps,
                "warmup": warmup,
                "position": position,
                "order": order,
                "load_before": load_before,
                "load_after": load_after,
                "unit": unit,
                "clock": {time.perf_counter: "wall", time.process_time: "process CPU time"}.get(
                    clock, getattr(clock, "__name__", str(clock))),
                "gap_s": gap_s,
                "steps": n_steps,
                "us_per_step": (median * 1e6 / n_steps) if n_steps else None,
                "notes": notes,
            }
        )
    if verbose:
        print(format_table(results, title=None, with_meta=False), flush=True)
    return results


# ----------------------------------------------------------------------------- roofline


def best_matmul_gflops(results: Iterable[dict]) -> float | None:
    rates = [r["gflops"] for r in results if r["case"] == ROOFLINE_CASE and r.get("gflops")]
    return max(rates) if rates else None


def annotate_roofline(results: list[dict], best: float | None = None) -> float | None:
    """Fill `frac_best_matmul` of every result with a rate, from the best roofline rate."""
    best = best if best is not None else best_matmul_gflops(results)
    if best:
        for r in results:
            if r.get("gflops"):
                r["frac_best_matmul"] = r["gflops"] / best
    return best


def matmul_contenders(m: int, k: int, n: int, seed: int = 0) -> list[Contender]:
    """(m, k) x (k, n) float32 matmul as XLA (jit), torch.mm and NumPy `@`; 2*m*k*n FLOPs."""
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    contenders: list[Contender] = []
    a_j, b_j = jax.device_put(a), jax.device_put(b)
    xla_mm = jax.jit(lambda u, v: u @ v)
    xla_mm(a_j, b_j).block_until_ready()
    contenders.append(("xla", lambda: xla_mm(a_j, b_j).block_until_ready()))
    try:
        import torch

        a_t, b_t = torch.from_numpy(a), torch.from_numpy(b)
        contenders.append(("torch", lambda: torch.mm(a_t, b_t)))
    except ImportError:
        pass
    contenders.append(("numpy", lambda: a @ b))
    return contenders


def matmul_roofline(shapes: Sequence[tuple[int, int, int, str]], *, reps: int, warmup: int) -> list[dict]:
    """Time float32 matmuls (m, k, n, label) as XLA, torch and NumPy; ratios are to XLA."""
    results = []
    for m, k, n, label in shapes:
        results += bench(
            ROOFLINE_CASE,
            matmul_contenders(m, k, n),
            variant=label,
            shape=f"({m}x{k}) @ ({k}x{n})",
            flops=2.0 * m * k * n,
            reference="xla",
            reps=reps,
            warmup=warmup,
        )
    return results


# ----------------------------------------------------------------------------- numerical agreement


def max_rel_error(actual, expected) -> float:
    """max |actual - expected| / max |expected| (scale-relative, robust to entries near zero)."""
    import numpy as np

    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape mismatch: {actual.shape} vs {expected.shape}")
    scale = max(float(np.max(np.abs(expected))) if expected.size else 0.0, 1e-30)
    return float(np.max(np.abs(actual - expected))) / scale if actual.size else 0.0


def assert_agree(name: str, actual: dict, expected: dict, rtol: float = 1e-4, against: str = "jaxseq") -> dict:
    """Check that contender `name` computed the same arrays as `against` (same keys, rel error < rtol).

    Returns {key: relative error}; raises AssertionError naming the contender and array.
    """
    if set(actual) != set(expected):
        raise AssertionError(f"{name}: outputs {sorted(actual)} differ from {against}'s {sorted(expected)}")
    errors = {key: max_rel_error(actual[key], expected[key]) for key in expected}
    bad = {key: err for key, err in errors.items() if not err < rtol}
    if bad:
        detail = ", ".join(f"{key}: {err:.2e}" for key, err in bad.items())
        raise AssertionError(f"{name} disagrees with {against} beyond relative {rtol:g}: {detail}")
    return errors


# ----------------------------------------------------------------------------- output


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def _time_fmt(ms: float) -> str:
    return f"{ms:.3g}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def _groups(results: Iterable[dict]) -> list[tuple[tuple[str, str, str], list[dict]]]:
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["case"], r["variant"], r["shape"]), []).append(r)
    return list(groups.items())


def format_table(results: Sequence[dict], *, title: str | None = "Benchmarks", meta: dict | None = None,
                 with_meta: bool = True) -> str:
    """Markdown: an optional header (machine, load) and one table per case."""
    lines: list[str] = []
    if title:
        lines += [f"# {title}", ""]
    if with_meta and meta:
        lines += [
            f"- Machine: {meta.get('host_cpu')} ({meta.get('cpu_count')} cores; "
            f"{', '.join(meta.get('cpu_flags', []))}), {meta.get('platform')}",
            f"- Software: jax {meta.get('jax')} ({meta.get('jax_backend')}), flax {meta.get('flax')}, "
            f"torch {meta.get('torch')} (torch threads: {meta.get('torch_threads')}), numpy {meta.get('numpy')}, "
            f"python {meta.get('python')}",
            f"- Date: {meta.get('date')}; XLA_FLAGS: `{meta.get('xla_flags') or '(none)'}`; "
            f"malloc tuned: {meta.get('malloc_tuned')}",
            f"- Timing: {meta.get('timing_mode')}",
            f"- Load average (1/5/15 min) at start: {meta.get('load_average')}, at end: "
            f"{meta.get('load_average_end')}",
        ]
        if meta.get("best_matmul_gflops"):
            lines.append(f"- Best matmul rate measured: {meta['best_matmul_gflops']:.0f} GFLOP/s "
                         f"(the '% best mm' column is relative to it)")
        if meta.get("mode"):
            lines.append(f"- Mode: {meta['mode']}")
        lines += [
            "- Medians of interleaved rounds (A B C A B C ...) after warm-up; ratio = contender "
            "median / reference median (> 1: the reference is faster). float32 throughout.",
            "",
        ]
    for (case, variant, shape), rows in _groups(results):
        ref = rows[0].get("reference")
        unit = rows[0].get("unit", "ms")
        head = " · ".join(part for part in (case, variant, shape) if part)
        per_step = any(r.get("us_per_step") for r in rows)  # a sweep over sequence lengths
        lines += [
            f"### {head}",
            "",
            f"reps {rows[0]['reps']}, warm-up {rows[0]['warmup']}, load {rows[0]['load_before']} -> "
            f"{rows[0]['load_after']}" + (f"; {rows[0]['notes']}" if rows[0].get("notes") else ""),
            "",
            f"| contender | median {unit} | min..max {unit} | ratio to {ref or '–'} | GFLOP/s | % best mm "
            "| page faults/call |" + (" steps | µs/step |" if per_step else ""),
            "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if per_step else ""),
        ]
        for r in rows:
            frac = r.get("frac_best_matmul")
            lines.append(
                f"| {r['contender']} | {_time_fmt(r['median_ms'])} | {_time_fmt(r['min_ms'])}..{_time_fmt(r['max_ms'])} "
                f"| {_fmt(r['ratio'], '.2f')} | {_fmt(r['gflops'], '.0f')} "
                f"| {_fmt(None if frac is None else 100 * frac, '.0f')} | {_fmt(r.get('page_faults'), '.0f')} |"
                + (f" {_fmt(r.get('steps'), 'd')} | {_fmt(r.get('us_per_step'), '.3g')} |" if per_step else "")
            )
        lines.append("")
    return "\n".join(lines)


def plot_ratios(results: Sequence[dict], path: Path, title: str = "time / reference time") -> Path | None:
    """Horizontal bar chart of every non-reference contender's ratio, grouped by case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors = [], [], []
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = sorted({r["contender"] for r in results})
    for (case, variant, shape), rows in _groups(results):
        for r in rows:
            if r.get("ratio") is None or r["contender"] == r.get("reference"):
                continue
            labels.append(f"{case} {variant} {shape} — {r['contender']} / {r['reference']}")
            values.append(r["ratio"])
            colors.append(palette[names.index(r["contender"]) % len(palette)])
    if not values:
        return None
    height = max(2.5, 0.28 * len(values) + 1.2)
    fig, ax = plt.subplots(figsize=(11, height))
    y = list(range(len(values)))[::-1]
    ax.barh(y, values, color=colors)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("median time / reference median time (log scale; > 1: the reference is faster)")
    ax.set_title(title, fontsize=10)
    for yy, v in zip(y, values):
        ax.text(v, yy, f" {v:.2f}", va="center", fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_outputs(results: list[dict], directory: Path, stem: str = "latest", meta: dict | None = None,
                  title: str = "jaxseq benchmarks") -> dict[str, Path]:
    """Write `<stem>.md`, `<stem>.json` and `<stem>.png` under `directory`; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or machine_info())
    meta.setdefault("load_average_end", load_average())
    best = annotate_roofline(results)
    if best:
        meta["best_matmul_gflops"] = best
    paths = {"md": directory / f"{stem}.md", "json": directory / f"{stem}.json"}
    paths["md"].write_text(format_table(results, title=title, meta=meta) + "\n")
    paths["json"].write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    png = plot_ratios(results, directory / f"{stem}.png",
                      title=f"{title}: ratios to the reference ({meta.get('host_cpu')}, load {meta.get('load_average')})")
    if png:
        paths["png"] = png
    return paths


def main(run: Callable[[bool], list[dict]], title: str, description: str) -> None:
    """Command line of a `bench_*.py` module: `python bench_X.py [--quick]` prints its tables,
    with the machine's load at the start and at the end."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repetitions (a smoke test)")
    args = parser.parse_args()
    setup()
    meta = machine_info()  # the load at the start; the end's is added after the run
    results = run(args.quick)
    annotate_roofline(results)
    meta["load_average_end"] = load_average()
    print(format_table(results, title=title, meta=meta))
