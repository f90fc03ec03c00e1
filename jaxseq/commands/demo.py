"""`jaxseq demo`: the main job end to end on built-in data (what `make demo` runs).

The demo is a list of steps; each step is a function `step(args) -> None` that prints its
own section (importing what it needs only when it runs, so `jaxseq --help` stays fast).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from jaxseq.commands import demo_steps
from jaxseq.commands._options import random_seed


def _gradient_checks(args: argparse.Namespace) -> None:
    from jaxseq.commands.check import print_check_table

    print_check_table(seed=args.seed)


BENCH_SHAPE = (25, 16, 256, 512)  # N, T, D, H: the course's captioning batch with LSTM sizes


def _quiet_thread_pools() -> None:
    """`jaxseq.timing`'s thread-pool settings, which only work before NumPy is imported:
    without them NumPy's OpenBLAS workers spin after the NumPy contender and slow whichever
    contender runs next (on 2 cores jaxseq measured 1.6x slower than it is)."""
    from jaxseq.timing import quiet_thread_pools  # imports no NumPy

    quiet_thread_pools()


def _short_benchmark(args: argparse.Namespace) -> None:
    """LSTM forward+backward, jaxseq vs autodiff scan vs Flax vs PyTorch (where installed) vs
    NumPy, 5 interleaved repetitions: the package's contenders and timing, no benchmarks/."""
    from jaxseq import contenders, timing

    timing.setup()
    N, T, D, H = BENCH_SHAPE
    impls = contenders.lstm_impls(contenders.make_problem(N, T, D, H, gates=4))
    errors = contenders.check_agreement(impls)  # the contenders compute the same thing
    timing.bench(  # prints its table
        "lstm", [(name, impl.fwd_bwd) for name, impl in impls.items()], variant="fwd+bwd",
        shape=f"(demo) N={N} T={T} D={D} H={H}", flops=contenders.fwd_bwd_flops(N, T, D, H, 4),
        reps=5, warmup=1, notes=contenders.agreement_note(errors),
    )
    if "torch" not in impls:
        print("(PyTorch is not installed: no torch row)")
    print("(5 interleaved repetitions, indicative only; the full suite is `make bench`, or "
          "`jaxseq bench` in a checkout of the repository: benchmarks/speed/)")


DEMO_STEPS: list[tuple[str, Callable[[argparse.Namespace], object]]] = [
    ("Layer gradient checks", _gradient_checks),
    ("LSTM captioning on the built-in set", demo_steps.captioning),
    ("Transformer sentence classifier", demo_steps.classifier),
    ("Character language model", demo_steps.language_model),
    ("Short benchmark", _short_benchmark),
]


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the main job end to end on built-in data")
    parser.add_argument("--output-dir", type=Path, default=Path("demo-output"),
                        help="where plots and results are written (default: demo-output)")
    parser.add_argument("--seed", type=random_seed, default=0, help="random seed (default: 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _quiet_thread_pools()  # first: before any step imports NumPy
    from jaxseq.train.interrupt import TrainingInterrupted

    args.output_dir.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for title, step in DEMO_STEPS:
        print(f"\n=== {title} ===", flush=True)
        start = time.perf_counter()
        try:
            step(args)
        except TrainingInterrupted as stopped:  # the demo starts afresh each time: no --resume here
            print(f"demo stopped by {stopped.signal_name} in step {title!r}", file=sys.stderr)
            return stopped.exit_code
        seconds[title] = time.perf_counter() - start
        print(f"[{title}: {seconds[title]:.1f} s]", flush=True)
    print("\n=== Summary ===")
    for title, elapsed in seconds.items():
        print(f"  {title:<40} {elapsed:6.1f} s")
    written = sorted(str(path) for path in args.output_dir.rglob("*") if path.is_file())
    print(f"  outputs in {args.output_dir}/: " + (", ".join(written) if written else "none"))
    return 0
