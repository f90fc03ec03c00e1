"""`jaxseq bench`: run the benchmark suite (`benchmarks/speed/run_all.py`, what `make bench` runs).

The `benchmarks/` folder is part of the repository, not of the installed package, so it is
looked for in the current directory and its parents, then next to the package's source
(an editable install). The suite runs as its own process with this Python interpreter.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

RUNNER = Path("benchmarks") / "speed" / "run_all.py"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmark suite (jaxseq vs autodiff vs Flax vs PyTorch vs NumPy; about 25 minutes "
             "on 2 cores); writes bench-output/latest.{md,json,png}",
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes and few repetitions: a smoke test, not a measurement "
                             "(writes results/quick.*)")
    parser.add_argument("--only", action="append", metavar="NAME", default=None,
                        help="run only the module benchmarks/speed/bench_NAME.py (repeatable), e.g. layers")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="run with glibc malloc keeping freed memory (no per-call page faults)")
    parser.add_argument("--single-core", action="store_true",
                        help="load-robust mode for a shared machine: one pinned CPU, process CPU time")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default: bench-output/ in the checkout, untracked); "
                             "--out benchmarks/results records the run in the committed tables")
    parser.set_defaults(func=run)


def find_runner(start: Path | None = None) -> Path:
    """benchmarks/speed/run_all.py in `start` (default: the current directory) or a parent, else
    next to the jaxseq source tree; FileNotFoundError saying where it looked."""
    start = Path.cwd() if start is None else Path(start)
    candidates = [folder / RUNNER for folder in (start.resolve(), *start.resolve().parents)]
    candidates.append(Path(__file__).resolve().parents[2] / RUNNER)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{RUNNER} not found in {start.resolve()}, its parents or next to the jaxseq package "
        f"({Path(__file__).resolve().parents[2]}); the benchmarks are not installed with the "
        "package: run `jaxseq bench` from a checkout of the jaxseq repository"
    )


def build_command(args: argparse.Namespace, runner: Path) -> list[str]:
    command = [sys.executable, str(runner)]
    if args.quick:
        command.append("--quick")
    for name in args.only or ():
        command += ["--only", name]
    if getattr(args, "tune_malloc", False):
        command.append("--tune-malloc")
    if getattr(args, "single_core", False):
        command.append("--single-core")
    if getattr(args, "out", None) is not None:
        command += ["--out", str(Path(args.out).resolve())]  # the runner runs in the checkout's root
    return command


def run(args: argparse.Namespace) -> int:
    runner = find_runner()
    command = build_command(args, runner)
    print(f"running {' '.join(command)}", flush=True)
    return subprocess.call(command, cwd=runner.parents[2], env=os.environ.copy())
