"""The command line of one benchmark module: `python bench_X.py [--quick] [--cases ...]
[--out PATH]` prints its tables, with the machine's load at the start and at the end (the
suite's is `run_all.py`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

from jaxseq.timing import load_average, setup

from .machine import machine_info
from .outputs import write_outputs
from .report import format_table
from .roofline import annotate_roofline


def main(run: Callable[..., list[dict]], title: str, description: str, cases: Sequence[str] | None = None) -> None:
    """Parse `--quick`, run `run(quick)` in the measured configuration and print the report.

    With `cases` (a module whose `run` takes `cases=`), `--cases` picks some of them; `--out
    PATH` also writes PATH.md, PATH.json and PATH.png (`write_outputs`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repetitions (a smoke test)")
    if cases is not None:
        parser.add_argument("--cases", nargs="+", choices=list(cases), default=list(cases), help="the cases to run")
    parser.add_argument("--out", help="also write <out>.md, <out>.json and <out>.png")
    args = parser.parse_args()
    setup()
    meta = machine_info()  # the load at the start; the end's is added after the run
    results = run(args.quick) if cases is None else run(args.quick, cases=tuple(args.cases))
    annotate_roofline(results)
    meta["load_average_end"] = load_average()
    print(format_table(results, title=title, meta=meta))
    if args.out:
        out = Path(args.out)
        write_outputs(results, out.parent, out.name, meta=meta, title=title)
