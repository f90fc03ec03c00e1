"""Layer benchmark of issue 11, case 3: fwd+bwd time against the sequence length T.

`jaxseq.layers.lstm`, `gru` and `rnn` (fwd+bwd: the gradient of sum(h * dout) w.r.t. every
input, jitted) at growing T, in two sweeps:

- long   N=1 D=4 H=8, T = 1000, 2000, 5000, 10000, 20000: the loop's per-step overhead
         dominates; a loop that copied its buffers every step would be O(T^2) here (the LSTM
         backward was: 80 / 182 / 2475 ms at T = 5k / 10k / 20k before it was fixed)
- wide   N=64 D=64 H=128, T = 64, 128, 256, 512, 1024: the matmuls dominate

`--quick`: a tiny sweep of each. Within one sweep and layer the T values are the contenders
of one interleaved case, so they share the machine's load; the ratio is to the shortest T
(linear in T: the ratio grows as T / T_min) and µs/step is the median over T, flat when the
time is linear in T.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_layers as bl  # noqa: E402
import bench_recurrent as br  # noqa: E402
import harness  # noqa: E402

LAYERS = ("lstm", "gru", "rnn")
SWEEPS = {  # name: ((N, D, H), T values)
    "long": ((1, 4, 8), (1000, 2000, 5000, 10000, 20000)),
    "wide": ((64, 64, 128), (64, 128, 256, 512, 1024)),
}
QUICK_SWEEPS = {
    "long": ((1, 4, 8), (100, 200)),
    "wide": ((4, 8, 16), (8, 16)),
}
CASE = "T sweep"


def sweep_contenders(kind: str, N: int, D: int, H: int, Ts) -> list[harness.Contender]:
    """One jitted fwd+bwd of the jaxseq layer per T, named "T=<T>"."""
    layer = br.spec(kind).jaxseq
    return [(f"T={T}", bl.jax_impl(layer, br.make_problem(N, T, D, H, kind)).fwd_bwd) for T in Ts]


def bench_sweep(kind: str, name: str, dims: tuple[int, int, int], Ts, *, reps: int, warmup: int) -> list[dict]:
    N, D, H = dims
    return harness.bench(
        CASE, sweep_contenders(kind, N, D, H, Ts), variant=f"{kind} fwd+bwd", shape=f"({name}) N={N} D={D} H={H}",
        reference=f"T={Ts[0]}", steps={f"T={T}": T for T in Ts}, reps=reps, warmup=warmup,
        notes=f"jaxseq.layers.{kind} + jax.grad, jitted; one contender per T, interleaved; "
              f"linear in T: ratio ~ T / {Ts[0]}, µs/step flat",
    )


def summary_table(results: list[dict]) -> str:
    """Markdown: one row per (sweep, T), one column per layer, "ms (µs/step)"."""
    rows: dict[tuple[str, int], dict[str, str]] = {}
    layers: list[str] = []
    for r in results:
        if r["case"] == CASE:
            layer = r["variant"].split()[0]
            layers += [layer] if layer not in layers else []
            cell = f"{r['median_ms']:.3g} ms ({r['us_per_step']:.3g} µs)"
            rows.setdefault((r["shape"], r["steps"]), {})[layer] = cell
    lines = ["| sweep | T | " + " | ".join(layers) + " |", "|---|---:|" + "---:|" * len(layers)]
    for (shape, T), cells in rows.items():
        lines.append(f"| {shape} | {T} | " + " | ".join(cells.get(layer, "–") for layer in layers) + " |")
    return "\n".join(lines)


def run(quick: bool = False, layers=LAYERS) -> list[dict]:
    """Every layer (of `layers`) over both sweeps; `quick`: the tiny sweeps, few repetitions."""
    harness.setup()
    sweeps = QUICK_SWEEPS if quick else SWEEPS
    reps, warmup = harness.repetitions(quick)
    results = []
    for kind in layers:
        for name, (dims, Ts) in sweeps.items():
            results += bench_sweep(kind, name, dims, Ts, reps=reps, warmup=warmup)
    print(summary_table(results), flush=True)
    return results


if __name__ == "__main__":
    harness.main(run, "T sweep", __doc__.splitlines()[0])
