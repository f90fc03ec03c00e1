"""`jaxseq demo`: the main job end to end on built-in data (what `make demo` runs).

The demo is a list of steps; each step is a function `step(args) -> None` that prints its
own section (importing what it needs only when it runs, so `jaxseq --help` stays fast).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _gradient_checks(args: argparse.Namespace) -> None:
    from jaxseq.commands.check import print_check_table

    print_check_table(seed=args.seed)


def _captioning(args: argparse.Namespace) -> None:
    from jaxseq.commands.caption import demo_step

    demo_step(args)


def _classifier(args: argparse.Namespace) -> None:
    from jaxseq.commands.classifier_demo import demo_step

    demo_step(args)


DEMO_STEPS = [
    ("Layer gradient checks", _gradient_checks),
    ("LSTM captioning on the built-in set", _captioning),
    ("Transformer sentence classifier", _classifier),
]


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the main job end to end on built-in data")
    parser.add_argument("--output-dir", type=Path, default=Path("demo-output"),
                        help="where plots and results are written (default: demo-output)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for title, step in DEMO_STEPS:
        print(f"\n=== {title} ===", flush=True)
        start = time.perf_counter()
        step(args)
        print(f"[{title}: {time.perf_counter() - start:.1f} s]", flush=True)
    return 0
