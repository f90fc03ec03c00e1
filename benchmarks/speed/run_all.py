"""Run every benchmark module and write the results (`make bench`, `jaxseq bench`).

Every `bench_<name>.py` next to this file is a benchmark module with a function
`run(quick: bool) -> list[dict]` returning `harness.bench` results. This script imports each
(or only those named by `--only`), runs it, and writes `latest.md`, `latest.json` and `latest.png`
(with `--quick`: `quick.md/json/png`, so a smoke test never overwrites a measurement) into
`--out`, by default `bench-output/` at the repository's root, which git ignores: a run never
changes the checkout. Recording a result is deliberate: `--out benchmarks/results` (committed). If no module measured the matmul roofline, a small one (XLA/torch/NumPy at
2048^2) is run so that every rate can be stated as a fraction of the best matmul rate.

    python benchmarks/speed/run_all.py [--quick] [--only NAME ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parents[1] / "bench-output"  # git-ignored (.gitignore)
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import harness  # noqa: E402

if "--single-core" in sys.argv:  # before any library starts its thread pool
    harness.single_core_mode()
QUIET = harness.quiet_thread_pools()  # before anything imports NumPy


def available_modules() -> list[str]:
    """Names of the benchmark modules here: bench_layers.py -> "layers"."""
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_all.py", description="Run the jaxseq benchmark suite.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes and few repetitions: a smoke test, not a measurement")
    parser.add_argument("--only", action="append", metavar="NAME", default=None,
                        help=f"run only this module (repeatable); available: {', '.join(available_modules())}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder (default: bench-output/, untracked; --out benchmarks/results "
                             "records the run in the committed tables)")
    parser.add_argument("--single-core", action="store_true",
                        help="load-robust mode: pin to one CPU, one thread per library, time by process "
                             "CPU time (for a machine shared with other work); writes <stem>-1core.*")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="keep freed memory in the heap (glibc mallopt) for the whole run: removes "
                             "XLA's per-call page faults; recorded in the output")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    names = available_modules()
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            print(f"run_all.py: error: unknown benchmark {', '.join(unknown)}; available: {', '.join(names)}",
                  file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    if args.tune_malloc:
        harness.tune_malloc()
    harness.setup()
    meta = harness.machine_info()
    meta["mode"] = "quick (smoke test: tiny shapes, few repetitions)" if args.quick else "full"
    meta["modules"] = names
    meta["quiet_thread_pools"] = QUIET
    results: list[dict] = []
    failed: list[str] = []
    from jaxseq.progress import progress_bar  # on stderr, shown on a terminal only

    bar = progress_bar(len(names), description="bench", unit="module")
    for name in names:
        bar.set_description_str(f"bench_{name}")
        print(f"== bench_{name} ({'quick' if args.quick else 'full'})", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench_{name}")
            results += module.run(quick=args.quick)
        except Exception:  # one broken module must not lose the others' results
            traceback.print_exc()
            failed.append(name)
        print(f"== bench_{name}: {time.perf_counter() - start:.0f} s", flush=True)
        bar.update(1)
    bar.close()
    if results and harness.best_matmul_gflops(results) is None:
        size = 256 if args.quick else 2048
        results += harness.matmul_roofline([(size, size, size, f"{size}^2")], reps=3 if args.quick else 7,
                                           warmup=1)
    meta["load_average_end"] = harness.load_average()
    if failed:
        meta["failed_modules"] = failed
    stem = ("quick" if args.quick else "latest") + ("-1core" if args.single_core else "")
    paths = harness.write_outputs(results, args.out, stem=stem, meta=meta)
    for kind, path in paths.items():
        print(f"wrote {path}")
    if failed:
        print(f"run_all.py: error: benchmark module(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
