"""NNX vs Linen (issue 25): `jaxseq.nnx.LSTM` / `GRU` under `nnx.jit` against the `jaxseq.nn`
Linen module under `jax.jit`, on the stacked case of `bench_stacked`.

The same problem (`bench_stacked.make_problem`: N=64 T=32 D=256 H=256, 2 layers bidirectional,
lengths uniform in [T/2, T], float32; `--quick`: N=8 T=4 D=16 H=32) and the same fwd+bwd:
the gradient, with respect to x and all 16 parameters, of

    loss = sum(out * dout) + sum(h_n * dh_n) [+ sum(c_n * dc_n), the LSTM]

Contenders (checked to agree first, `bench_layers.check_agreement`):

- jaxseq       `jaxseq.nn.LSTM` / `GRU` (Linen): `jax.jit(jax.grad(loss))` of `module.apply`
               with the parameters as an argument (`bench_stacked.jaxseq_impl`)
- jaxseq-nnx   `jaxseq.nnx.LSTM` / `GRU` loaded from the same PyTorch weights
               (`params_from_torch`), in eval mode: `nnx.jit(nnx.grad(loss, argnums=(0, 1)))`
               called on the model, the way an NNX training step is written
- jaxseq-nnx tree   the same with `nnx.jit(..., graph=False)` (NNX's tree mode: the model
               flattened as a pytree, without the graph protocol's per-call work)

Target (issue 25): the NNX module adds no time, ratio (jaxseq-nnx median / jaxseq median)
within 3%. Both run the same Linen stack, so the only difference is `nnx.jit`'s own work per
call (splitting the model into its graph and state and merging it back). The medians are of
interleaved rounds; on a shared machine run with many repetitions (`--reps`).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_layers as bl  # noqa: E402
import bench_stacked as bs  # noqa: E402
import harness  # noqa: E402

TARGET = 0.03  # |nnx / linen - 1| at most 3%
FULL_REPS = 31  # more than the suite's 11: a 3% question on a loaded machine


def nnx_impl(p: dict, kind: str, graph: bool = True) -> bl.Impl:
    """`jaxseq.nnx.LSTM` / `GRU`, num_layers=2, bidirectional, loaded from the PyTorch weights;
    `graph=False`: `nnx.jit`'s tree mode (the model as a plain pytree, less work per call)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    import jaxseq.nnx as jnnx

    N, T, D = p["x"].shape
    H = p["dstates"][0].shape[-1]
    cls = {"lstm": jnnx.LSTM, "gru": jnnx.GRU}[kind]
    model = cls(D, H, num_layers=bs.NUM_LAYERS, bidirectional=True, rngs=nnx.Rngs(0))
    jnnx.params_from_torch(model, p["params"])
    model.eval()
    x, lengths, dout = (jax.device_put(p[k]) for k in ("x", "lengths", "dout"))
    dstates = jax.device_put(p["dstates"])

    def forward(model, x, lengths):
        out, final = model(x, lengths=lengths)
        return out, (final if kind == "lstm" else (final,))

    def loss(model, x, lengths, dout, dstates):
        out, states = forward(model, x, lengths)
        return jnp.sum(out * dout) + sum(jnp.sum(s * d) for s, d in zip(states, dstates))

    grad = nnx.jit(nnx.grad(loss, argnums=(0, 1)), graph=graph)
    fwd = nnx.jit(forward, graph=graph)

    def grads(r):
        dmodel, dx = r
        return {"dx": np.asarray(dx), **{"d" + k: v for k, v in jnnx.params_to_torch(model, dmodel).items()}}

    return bl.Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(model, x, lengths, dout, dstates)),
        fwd=lambda: jax.block_until_ready(fwd(model, x, lengths)),
        grads=grads,
        out=bs._outputs(kind),
    )


def bench_nnx(kind: str, shape: tuple, *, reps: int, warmup: int) -> list[dict]:
    """fwd+bwd of the stacked `kind`, Linen vs NNX; the notes start with the ratio."""
    N, T, D, H = shape
    p = bs.make_problem(N, T, D, H, kind)
    impls = {"jaxseq": bs.jaxseq_impl(p, kind), "jaxseq-nnx": nnx_impl(p, kind),
             "jaxseq-nnx tree": nnx_impl(p, kind, graph=False)}
    errors = bl.check_agreement(impls, valid=bl.valid_mask(p["lengths"], T))
    fns = [(name, impl.fwd_bwd) for name, impl in impls.items()]
    flops = 3 * bs.stacked_flops(p["lengths"], D, H, bl.GATES[kind])
    note = (f"{bs.loss_note(kind)}; {bl.agreement_note(errors)} on out, the final states and every gradient; "
            "jaxseq: jaxseq.nn (Linen) under jax.jit; jaxseq-nnx: jaxseq.nnx under nnx.jit; jaxseq-nnx tree: "
            "the same under nnx.jit(graph=False)")
    case = harness.bench(f"nnx vs linen, stacked {kind}", fns, variant="fwd+bwd", shape=bs.shape_label(N, T, D, H),
                         flops=flops, reps=reps, warmup=warmup, notes=note)
    ratios = {r["contender"]: r["ratio"] for r in case}
    met = abs(ratios["jaxseq-nnx"] - 1) <= TARGET
    summary = (f"NNX / Linen = {ratios['jaxseq-nnx']:.3f}, tree mode {ratios['jaxseq-nnx tree']:.3f} "
               f"(target: NNX within {TARGET:.0%}: {'met' if met else 'not met'})")
    print(summary, flush=True)
    for r in case:
        r["notes"] = f"{summary}; {r['notes']}"
    return case


def run(quick: bool = False, kinds=bs.KINDS, reps: int | None = None) -> list[dict]:
    """The Linen-vs-NNX stacked LSTM and GRU cases; `quick`: the tiny shape, few repetitions."""
    harness.setup()
    shape = bs.QUICK_SHAPE if quick else bs.SHAPE
    default_reps, warmup = harness.repetitions(quick)
    reps = reps or (default_reps if quick else FULL_REPS)
    return [r for kind in kinds for r in bench_nnx(kind, shape, reps=reps, warmup=warmup)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repetitions (a smoke test)")
    parser.add_argument("--reps", type=int, default=None, help=f"timed rounds (default {FULL_REPS}; quick: the suite's)")
    parser.add_argument("--out", default=None, help="also write nnx-vs-linen.{md,json,png} to this folder")
    args = parser.parse_args()
    harness.setup()
    meta = harness.machine_info()
    results = run(args.quick, reps=args.reps)
    title = "NNX vs Linen, stacked LSTM / GRU"
    if args.out:
        paths = harness.write_outputs(results, args.out, stem="nnx-vs-linen", meta=meta, title=title)
        print(paths["md"].read_text())
    else:
        meta["load_average_end"] = harness.load_average()
        print(harness.format_table(results, title=title, meta=meta))
