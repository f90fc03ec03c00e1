"""The command line of one benchmark module: `python bench_X.py [--quick]` prints its tables,
with the machine's load at the start and at the end (the suite's is `run_all.py`)."""

from __future__ import annotations

import argparse
from typing import Callable

from jaxseq.timing import load_average, setup

from .machine import machine_info
from .report import format_table
from .roofline import annotate_roofline


def main(run: Callable[[bool], list[dict]], title: str, description: str) -> None:
    """Parse `--quick`, run `run(quick)` in the measured configuration and print the report."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repetitions (a smoke test)")
    args = parser.parse_args()
    setup()
    meta = machine_info()  # the load at the start; the end's is added after the run
    results = run(args.quick)
    annotate_roofline(results)
    meta["load_average_end"] = load_average()
    print(format_table(results, title=title, meta=meta))
