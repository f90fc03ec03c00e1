"""XLA:CPU flags (and the malloc setting) as levers for the LSTM fwd+bwd: one process per setting.

XLA_FLAGS is read once per process, so each setting runs in its own child process; the
children are run in interleaved rounds (setting A, B, C, A, B, C, ...) so that a change in the
machine's load hits every setting alike, and each child times the `jaxseq` LSTM fwd+bwd (after
warm-up). Reported: the median over rounds of each child's median. (Result of the lever study,
benchmarks/studies/README.md: no setting gained.)

    python benchmarks/studies/xla_flags_scan.py [--shape a] [--rounds 3] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "speed")  # the speed suite

SETTINGS = {
    "default": {},
    "ynn +eltwise fusion": {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+eltwise"},
    "oneDNN dots": {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=-dot "
                                 "--xla_cpu_experimental_onednn_fusion_type=dot"},
    "XNNPACK dots": {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=-dot "
                                  "--xla_cpu_experimental_xnn_fusion_type=dot"},
    "Eigen dots (no library fusion)": {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="},
    "fast math": {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"},
    "malloc tuned (harness.tune_malloc)": {"JAXSEQ_BENCH_TUNE_MALLOC": "1"},
}

CHILD = r"""
import os, sys, json
sys.path.insert(0, {here!r})
import harness
if os.environ.get("JAXSEQ_BENCH_TUNE_MALLOC"):
    harness.tune_malloc()
harness.setup()
import bench_layers as bl, jaxseq.layers as L
N, T, D, H = bl.SHAPES[{shape!r}]
p = bl.make_problem(N, T, D, H, 4)
impl = bl.jax_impl(L.lstm, p)
res = harness.bench("x", [("jaxseq", impl.fwd_bwd)], reps={reps}, verbose=False)
print("RESULT " + json.dumps({{r["contender"]: r["median_ms"] for r in res}}))
"""


def run_child(env_extra: dict, shape: str, reps: int) -> dict:
    env = {**os.environ, **env_extra}
    code = CHILD.format(here=HERE, shape=shape, reps=reps)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"child failed for {env_extra}:\n{out.stderr[-2000:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="a")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", default=None, help="comma-separated setting names")
    args = parser.parse_args(argv)
    settings = SETTINGS if not args.only else {k: SETTINGS[k] for k in args.only.split(",")}
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, env in settings.items():
            runs[name].append(run_child(env, args.shape, args.reps))
    load_after = os.getloadavg()
    print(f"shape ({args.shape}), {args.rounds} rounds x {args.reps} reps; load {load_before} -> {load_after}")
    print("| setting | jaxseq ms |")
    print("|---|---:|")
    for name, rs in runs.items():
        print(f"| {name} | {statistics.median(r['jaxseq'] for r in rs):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
