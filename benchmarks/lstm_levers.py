"""The LSTM performance levers of issue 5, measured one by one against `jaxseq.layers.lstm`.

Every contender is `jax.jit(jax.grad(sum(lstm(...) * dout)))` with respect to all five
inputs, at one shape (default (a): N=64 T=16 D=256 H=512), timed interleaved in one process
with the library's version as the reference. The variants are `bench_layers.make_lstm_variant`
with one lever changed at a time (see the lever list there); each is first checked to agree
with jaxseq (relative 1e-4), except where the lever changes precision on purpose (reported).

    python benchmarks/lstm_levers.py [--shape a|b|c] [--reps 11] [--part fwd+bwd|fwd|pieces]

`--part pieces` times the parts of the library's forward+backward separately (the profile):
input projection, forward scan, backward scan, the matmuls after it, and the same scans with
the gate math removed (the matmuls alone).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

if "--tune-malloc" in sys.argv:  # must happen before JAX allocates anything
    sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
    import harness as _h

    _h.tune_malloc()

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_layers as bl  # noqa: E402
import harness  # noqa: E402

_L = bl._LIBRARY_LEVERS
LEVER_SETS = {
    # one lever at a time, from the library's choices
    "library levers (copy)": _L,
    "layout=flat": {**_L, "layout": "flat"},
    "gates=tanh": {**_L, "gates": "tanh"},
    "bias=step": {**_L, "bias": "step"},
    "store=tanh_c": {**_L, "store": "tanh_c"},
    "store=deriv": {**_L, "store": "deriv"},
    "dgates=select": {**_L, "dgates": "select"},
    "loop=inplace": {**_L, "loop": "inplace"},
    "unroll=2": {**_L, "unroll": 2},
    # cumulative
    "flat+tanh": {**_L, "layout": "flat", "gates": "tanh"},
    "flat+tanh+bias=step": {**_L, "layout": "flat", "gates": "tanh", "bias": "step"},
    "flat+tanh+bias=step+inplace": {**_L, "layout": "flat", "gates": "tanh", "bias": "step", "loop": "inplace"},
    "flat+tanh+bias=step+deriv": {**_L, "layout": "flat", "gates": "tanh", "bias": "step", "store": "deriv"},
    "flat+tanh+bias=step+inplace+deriv": {**_L, "layout": "flat", "gates": "tanh", "bias": "step",
                                          "loop": "inplace", "store": "deriv"},
    "... +unroll=2": {**_L, "layout": "flat", "gates": "tanh", "bias": "step", "loop": "inplace",
                      "store": "deriv", "unroll": 2},
    "... +unroll=4": {**_L, "layout": "flat", "gates": "tanh", "bias": "step", "loop": "inplace",
                      "store": "deriv", "unroll": 4},
}


RNN_LEVER_SETS = {
    "library levers (copy)": {"layout": "einsum", "bias": "pre", "loop": "scan"},
    "layout=flat": {"layout": "flat", "bias": "pre", "loop": "scan"},
    "bias=step": {"layout": "einsum", "bias": "step", "loop": "scan"},
    "loop=inplace": {"layout": "einsum", "bias": "pre", "loop": "inplace"},
    "flat+bias=step": {"layout": "flat", "bias": "step", "loop": "scan"},
    "flat+bias=step+inplace": {"layout": "flat", "bias": "step", "loop": "inplace"},
}


def lever_contenders(p: dict, part: str, sets: dict, layer: str = "lstm") -> tuple[list, dict]:
    import jax
    import jax.numpy as jnp

    import jaxseq.layers

    args = tuple(jax.device_put(p[k]) for k in ("x", "h0", "Wx", "Wh", "b", "dout"))
    layers = {"jaxseq": getattr(jaxseq.layers, layer)}
    make = bl.make_lstm_variant if layer == "lstm" else bl.make_rnn_variant
    for name, levers in sets.items():
        layers[name] = make(**levers)
    fns = {}
    for name, layer in layers.items():
        if part == "fwd":
            fns[name] = jax.jit(layer)
        else:
            fns[name] = jax.jit(bl._grad_fn(layer))

    def bf16_grad(*a):
        with jax.default_matmul_precision("bfloat16"):
            return bl._grad_fn(bl.make_lstm_variant(**bl.VARIANT_LEVERS))(*a)

    if part != "fwd" and layer == "lstm":
        fns["proposal + default_matmul_precision(bfloat16)"] = jax.jit(bf16_grad)
    call = {name: (lambda f=f: jax.block_until_ready(f(*args[:5]) if part == "fwd" else f(*args)))
            for name, f in fns.items()}
    # agreement with the library before timing
    ref = call["jaxseq"]()
    ref = (ref,) if part == "fwd" else ref
    errors = {}
    for name, fn in call.items():
        out = fn()
        out = (out,) if part == "fwd" else out
        errors[name] = max(harness.max_rel_error(a, r) for a, r in zip(out, ref))
        if "precision" not in name:
            assert errors[name] < 1e-4, f"{name} disagrees with jaxseq: {errors[name]:.2e}"
    del jnp
    return list(call.items()), errors


def pieces_contenders(p: dict) -> list:
    """The library's fwd+bwd cut into parts (each jitted alone, inputs precomputed)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    import jaxseq.layers

    LL = importlib.import_module("jaxseq.layers.lstm")
    R = importlib.import_module("jaxseq.layers.rnn")
    x, h0, Wx, Wh, b, dout = (jax.device_put(p[k]) for k in ("x", "h0", "Wx", "Wh", "b", "dout"))
    T, H = x.shape[1], h0.shape[1]
    full = jax.jit(bl._grad_fn(jaxseq.layers.lstm))
    fwd_res = jax.jit(LL._lstm_forward)
    _, cache = fwd_res(x, h0, Wx, Wh, b)
    bwd = jax.jit(LL.lstm_backward)
    proj = jax.jit(R.input_projection_tm)
    xw = proj(x, Wx, b)

    def fscan(xw, h0, Wh):
        def step(carry, xw_t):
            prev_h, prev_c = carry
            next_h, next_c, gates = LL.lstm_cell(xw_t + prev_h @ Wh, prev_c)
            return (next_h, next_c), (next_h, next_c, gates)

        return lax.scan(step, (h0, jnp.zeros_like(h0)), xw)[1]

    def bscan(dh, c_tm, gates_tm, h0, Wh):
        WhT = Wh.T
        prev_c_tm = R.previous_states_tm(jnp.zeros_like(h0), c_tm)

        def step(carry, inputs):
            dnext_h, dnext_c = carry
            dh_t, c_t, prev_c, gates = inputs
            da_t, dprev_c = LL.lstm_cell_backward(dh_t + dnext_h, dnext_c, c_t, prev_c, gates)
            return (da_t @ WhT, dprev_c), da_t

        zeros = jnp.zeros_like(h0)
        return lax.scan(step, (zeros, zeros), (jnp.swapaxes(dh, 0, 1), c_tm, prev_c_tm, gates_tm), reverse=True)

    fscan, bscan = jax.jit(fscan), jax.jit(bscan)
    (_, _), da_tm = bscan(dout, cache.c_tm, cache.gates_tm, h0, Wh)

    def after(da_tm, x, h0, h_tm, Wx):
        dx = jnp.einsum("tnm,dm->ntd", da_tm, Wx)
        return dx, R.weight_gradients(x, R.previous_states_tm(h0, h_tm), da_tm)

    after = jax.jit(after)

    def mm_chain(h0, W):  # T dependent (N, H) x (H, 4H) matmuls, nothing else
        return lax.scan(lambda h, _: ((h @ W)[:, :H], None), h0, None, length=T)[0]

    def mmT_chain(h0, WT):  # T dependent (N, 4H) x (4H, H) matmuls
        return lax.scan(lambda h, _: (jnp.tile(h, (1, 4)) @ WT, None), h0, None, length=T)[0]

    mm_chain, mmT_chain = jax.jit(mm_chain), jax.jit(mmT_chain)
    WhT = jax.device_put(np.ascontiguousarray(p["Wh"].T))
    c = [
        ("full fwd+bwd", lambda: full(x, h0, Wx, Wh, b, dout)),
        ("forward (with residuals)", lambda: fwd_res(x, h0, Wx, Wh, b)),
        ("backward (lstm_backward)", lambda: bwd(dout, cache)),
        ("  input projection einsum", lambda: proj(x, Wx, b)),
        ("  forward scan", lambda: fscan(xw, h0, Wh)),
        ("  backward scan", lambda: bscan(dout, cache.c_tm, cache.gates_tm, h0, Wh)),
        ("  dx, dWx, dWh, db after the scan", lambda: after(da_tm, x, h0, cache.h_tm, Wx)),
        ("  T x (h Wh) alone", lambda: mm_chain(h0, Wh)),
        ("  T x (da Wh^T) alone", lambda: mmT_chain(h0, WhT)),
    ]
    return [(name, (lambda f=f: jax.block_until_ready(f()))) for name, f in c]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="a", choices=sorted(bl.SHAPES))
    parser.add_argument("--layer", default="lstm", choices=["lstm", "rnn"])
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--part", default="fwd+bwd", choices=["fwd+bwd", "fwd", "pieces"])
    parser.add_argument("--sets", default=None, help="comma-separated names of LEVER_SETS (default: all)")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="keep freed memory in the heap (harness.tune_malloc) before anything runs")
    parser.add_argument("--clock", default="wall", choices=["wall", "process"],
                        help="wall time (default) or this process's CPU time; 'process' is meant for "
                             "a run pinned to one core (taskset -c 0 ...), where it is robust to "
                             "other processes' load")
    args = parser.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    harness.setup()
    N, T, D, H = bl.SHAPES[args.shape]
    gates = 4 if args.layer == "lstm" else 1
    p = bl.make_problem(N, T, D, H, gates)
    label = bl.shape_label(args.shape, N, T, D, H)
    if args.part == "pieces":
        results = harness.bench("lstm profile", pieces_contenders(p), variant="parts of jaxseq fwd+bwd",
                                shape=label, reference="full fwd+bwd", reps=args.reps, verbose=False,
                                clock=clock)
    else:
        all_sets = LEVER_SETS if args.layer == "lstm" else RNN_LEVER_SETS
        sets = all_sets if not args.sets else {k: all_sets[k] for k in args.sets.split(",")}
        contenders, errors = lever_contenders(p, args.part, sets, args.layer)
        flops = (bl.forward_flops if args.part == "fwd" else bl.fwd_bwd_flops)(N, T, D, H, gates)
        results = harness.bench(f"{args.layer} levers", contenders, variant=args.part, shape=label, flops=flops,
                                reps=args.reps, verbose=False, clock=clock,
                                notes="max rel. error vs jaxseq: " + ", ".join(f"{k}: {v:.1e}" for k, v in errors.items()))
    print(f"clock: {args.clock}; CPUs this process may use: {sorted(os.sched_getaffinity(0))}")
    print(harness.format_table(results, title=None, with_meta=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
