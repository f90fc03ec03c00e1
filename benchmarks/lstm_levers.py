"""The LSTM / RNN performance levers of issue 5, measured one by one against `jaxseq.layers`.

The record of the lever study. Its winning combination (`ADOPTED_LEVERS`, `ADOPTED_RNN_LEVERS`)
was adopted into `jaxseq.layers.lstm` and `jaxseq.layers.rnn` on 2026-11-29; this script keeps
a lever-parameterized copy of the layers (`make_lstm`, `make_rnn`) so that each lever can still
be switched on and off and timed against the library in one process.

What the study measured (one pinned core, process CPU time, LSTM fwd+bwd; a ratio is the new
time over the previous library's, lower is better):

    adopted combination   0.70 at (a) N=64 T=16 D=256 H=512, 0.87 at (b) N=25, 0.85 at
                          (c) N=128 T=32 D=512; the RNN (layout=flat) 0.92
    layout=flat           time-major 2-D matmuls on (T*N, .) rows instead of einsum: 0.93
    gates=tanh            one tanh for all four gates: 0.98 alone, 0.90 together with flat
    bias=step             b added inside the step's elementwise pass instead of to x Wx:
                          removes ~9,300 page faults per call at (a)
    store=deriv           the forward saves the backward's local derivatives P, q, f: ~2-3%
    loop=inplace          da overwrites P, P overwrites x Wx (`scan_in_place`): 0.71 -> 0.69
                          at (a), 0.87 -> 0.79 at (c)
    no gain               unroll, dgates=select (the masked da), bf16 matmul precision, and the
                          XLA:CPU flags of `xla_flags_scan.py`

Every contender is `jax.jit(jax.grad(sum(layer(...) * dout)))` with respect to all five inputs
(`--part fwd`: the forward alone), timed interleaved with `jaxseq` (the library) as the reference.
Each is first checked to agree with the library (relative 1e-4), except where the lever changes
precision on purpose (reported).

    python benchmarks/lstm_levers.py [--layer lstm|rnn] [--shape a|b|c] [--reps 11]
                                     [--part fwd+bwd|fwd|pieces] [--sets NAME,...] [--quick]

`--part pieces` times the parts of the library's LSTM forward+backward separately (the
profile): input projection, forward loop, backward loop, the matmuls after it, and chains of
the recurrence's matmuls alone. `--quick`: a tiny shape and 3 repetitions (a smoke test).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

if "--tune-malloc" in sys.argv:  # before NumPy's and XLA's threads allocate anything
    harness.tune_malloc()

import numpy as np  # noqa: E402

import bench_layers as bl  # noqa: E402


def _library_modules():
    """The modules `jaxseq.layers.lstm_fast` (the LSTM's fast path) and
    `jaxseq.layers.sequence` (the machinery every cell shares)."""
    return importlib.import_module("jaxseq.layers.lstm_fast"), importlib.import_module("jaxseq.layers.sequence")


# ----------------------------------------------------------------------------- the levers
#
#   layout   "einsum": einsum("ntd,dm->tnm") projections (XLA picks a transposed dot plus
#                      copies of the (T, N, M) result)
#            "flat":   x as time-major rows (T*N, D) once; every all-steps matmul a plain 2-D
#                      row-major matmul (`jaxseq.layers.sequence.input_projection_tm` and friends)
#   gates    "split":  sigmoid on i, f, o and tanh on g, then a concatenate
#            "tanh":   one pass over the 4H axis, sigmoid(a) = 0.5 tanh(a / 2) + 0.5:
#                      gates = s * tanh(s * a) + t with per-column constants s, t; the backward
#                      uses d gates / da = s^2 (1 - tanh^2) in one pass as well
#   unroll   lax.scan's unroll, forward and backward (loop="scan" only)
#   store    "c":      the forward saves c_t and the gates; the backward recomputes tanh(c_t)
#            "tanh_c": the forward saves tanh(c_t) as well, the backward reads it
#            "deriv":  the forward saves the local derivatives instead of c and the gates:
#                      P = [g, c_{t-1}, tanh c_t, i] * d gates/da (N, 4H), q = o (1 - tanh^2 c_t)
#                      and f; a backward step is then dc = dnext_c + dh q,
#                      da = [dc, dc, dh, dc] * P, dprev_c = dc f (two light passes)
#   bias     "pre":    b added to the input projection (one more pass over (T, N, 4H))
#            "step":   b added inside the step's elementwise pass (free)
#   loop     "scan":   lax.scan with stacked outputs (zero-filled (T, N, 4H) buffers)
#            "inplace": `jaxseq.layers.sequence.scan_in_place`: the forward overwrites x Wx's
#                      (T, N, 4H) buffer with the gates (or P), the backward overwrites those
#                      with da. With store="c" XLA copies the whole buffer twice per backward
#                      step (the gates are read by several fusions before the update).
#   dgates   "concat": the backward builds da from four (N, H) products and a concatenate
#            "select": da in one elementwise pass over an (N, 4, H) view, each block selecting
#                      its factors (no concatenate; store="c" or "tanh_c" only)

LEVER_CHOICES = {"layout": ("einsum", "flat"), "gates": ("split", "tanh"), "store": ("c", "tanh_c", "deriv"),
                 "dgates": ("concat", "select"), "bias": ("pre", "step"), "loop": ("scan", "inplace")}
PREVIOUS_LEVERS = {"layout": "einsum", "gates": "split", "unroll": 1, "store": "c", "dgates": "concat",
                   "bias": "pre", "loop": "scan"}  # jaxseq.layers.lstm before 2026-11-29
ADOPTED_LEVERS = {"layout": "flat", "gates": "tanh", "unroll": 1, "store": "deriv", "dgates": "concat",
                  "bias": "step", "loop": "inplace"}  # jaxseq.layers.lstm since


def make_lstm(layout: str = "flat", gates: str = "tanh", unroll: int = 1, store: str = "deriv",
              dgates: str = "concat", bias: str = "step", loop: str = "inplace"):
    """An LSTM (x, h0, Wx, Wh, b) -> h (c0 = 0, gates i, f, o, g) with a hand backward
    (custom_vjp) and the given levers; the defaults are `ADOPTED_LEVERS`."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    LL, R = _library_modules()

    chosen = {"layout": layout, "gates": gates, "store": store, "dgates": dgates, "bias": bias, "loop": loop}
    assert all(v in LEVER_CHOICES[k] for k, v in chosen.items()), chosen
    assert unroll == 1 or loop == "scan", "unroll applies to lax.scan (scan_in_place has none)"

    def activate(a, H):
        """Activated gates (N, 4H) and, for gates="tanh", the raw tanh (None otherwise)."""
        if gates == "tanh":
            s, t = LL._gate_scale(H, a.dtype)
            tanh_a = jnp.tanh(s * a)
            return s * tanh_a + t, tanh_a
        return jnp.concatenate([jax.nn.sigmoid(a[:, :3 * H]), jnp.tanh(a[:, 3 * H:])], axis=-1), None

    def gate_derivative(gv, H, tanh_a=None):
        """d gates / d a (N, 4H), from the activated gates (or the raw tanh of gates="tanh")."""
        if gates == "tanh":
            s, t = LL._gate_scale(H, gv.dtype)
            tanh_a = (gv - t) / s if tanh_a is None else tanh_a
            return s * s * (1.0 - tanh_a * tanh_a)
        sg, g = gv[:, :3 * H], gv[:, 3 * H:]
        return jnp.concatenate([sg * (1.0 - sg), 1.0 - g * g], axis=-1)

    def split4(v, H):
        return v[:, :H], v[:, H:2 * H], v[:, 2 * H:3 * H], v[:, 3 * H:]

    def project(x, Wx, b):
        """x Wx (+ b with bias="pre") for all steps, time-major (T, N, 4H)."""
        b_pre = b if bias == "pre" else None
        if layout == "flat":
            return R.input_projection_tm(x, Wx, b_pre)
        xw = jnp.einsum("ntd,dm->tnm", x, Wx)
        return xw if b_pre is None else xw + b_pre

    def run_loop(step, carry, big, others=(), reverse=False):
        """`step(carry, (big[t], *others[t])) -> (carry, (new_big_t, *outs_t))` over t."""
        if loop == "scan":
            return lax.scan(step, carry, (big, *others), reverse=reverse, unroll=unroll)
        return R.scan_in_place(step, carry, big, others, reverse=reverse)

    def forward(x, h0, Wx, Wh, b):
        H = h0.shape[-1]
        b_step = b if bias == "step" else 0.0

        def step(carry, inputs):
            prev_h, prev_c = carry
            gv, tanh_a = activate(inputs[0] + b_step + prev_h @ Wh, H)
            i, f, o, g = split4(gv, H)
            next_c = f * prev_c + i * g
            tanh_c = jnp.tanh(next_c)
            next_h = o * tanh_c
            if store == "deriv":
                P = jnp.concatenate([g, prev_c, tanh_c, i], axis=-1) * gate_derivative(gv, H, tanh_a)
                saved = (P, next_h, o * (1.0 - tanh_c * tanh_c), f)
            else:
                saved = (gv, next_h, next_c) + ((tanh_c,) if store == "tanh_c" else ())
            return (next_h, next_c), saved

        _, saved = run_loop(step, (h0, jnp.zeros_like(h0)), project(x, Wx, b))
        return jnp.swapaxes(saved[1], 0, 1), (x, h0, Wx, Wh) + tuple(saved)

    def backward(cache, dh):
        x, h0, Wx, Wh, big_tm, h_tm = cache[:6]
        _, N, H = h_tm.shape
        WhT = Wh.T
        dh_tm = jnp.swapaxes(dh, 0, 1)
        zeros = jnp.zeros_like(h0)
        if store == "deriv":
            def step(carry, inputs):
                dnext_h, dnext_c = carry
                P, dh_t, q, f = inputs
                dh_t = dh_t + dnext_h
                dc = dnext_c + dh_t * q
                da = jnp.concatenate([dc, dc, dh_t, dc], axis=-1) * P
                return (da @ WhT, dc * f), (da,)

            others = (dh_tm, *cache[6:])
        else:
            c_tm = cache[6]
            prev_c_tm = R.previous_states_tm(zeros, c_tm)

            def step(carry, inputs):
                dnext_h, dnext_c = carry
                gv, dh_t, c_or_tanh_c, prev_c = inputs
                i, f, o, g = split4(gv, H)
                dh_t = dh_t + dnext_h
                tanh_c = c_or_tanh_c if store == "tanh_c" else jnp.tanh(c_or_tanh_c)
                dc = dnext_c + dh_t * o * (1.0 - tanh_c * tanh_c)
                if dgates == "select":
                    k = lax.broadcasted_iota(jnp.int32, (1, 4, 1), 1)
                    up = jnp.where(k == 2, dh_t[:, None], dc[:, None])
                    other = jnp.where(k == 0, g[:, None], jnp.where(k == 1, prev_c[:, None],
                                                                   jnp.where(k == 2, tanh_c[:, None], i[:, None])))
                    da = (up * other * gate_derivative(gv, H).reshape(N, 4, H)).reshape(N, 4 * H)
                else:
                    da = jnp.concatenate([dc * g, dc * prev_c, dh_t * tanh_c, dc * i], axis=-1) * gate_derivative(gv, H)
                return (da @ WhT, dc * f), (da,)

            others = (dh_tm, cache[7] if store == "tanh_c" else c_tm, prev_c_tm)
        (dh0, _), (da_tm,) = run_loop(step, (zeros, zeros), big_tm, others, reverse=True)
        return _input_and_weight_gradients(layout, x, h0, Wx, h_tm, da_tm, dh0)

    def forward_only(x, h0, Wx, Wh, b):
        """Forward without residuals (what runs when nothing is differentiated)."""
        H = h0.shape[-1]
        b_step = b if bias == "step" else 0.0

        def step(carry, xw_t):
            prev_h, prev_c = carry
            i, f, o, g = split4(activate(xw_t + b_step + prev_h @ Wh, H)[0], H)
            next_c = f * prev_c + i * g
            next_h = o * jnp.tanh(next_c)
            return (next_h, next_c), next_h

        _, h_tm = lax.scan(step, (h0, jnp.zeros_like(h0)), project(x, Wx, b), unroll=unroll)
        return jnp.swapaxes(h_tm, 0, 1)

    @jax.custom_vjp
    def lstm(x, h0, Wx, Wh, b):
        return forward_only(x, h0, Wx, Wh, b)

    lstm.defvjp(forward, backward)
    return lstm


def _input_and_weight_gradients(layout, x, h0, Wx, h_tm, da_tm, dh0):
    """(dx, dh0, dWx, dWh, db) from the backward loop's da (T, N, M), for either layout."""
    import jax.numpy as jnp

    _, R = _library_modules()

    h_prev_tm = R.previous_states_tm(h0, h_tm)
    if layout == "flat":
        dx, dWx, dWh, db = R.sequence_gradients(x, Wx, h_prev_tm, da_tm, lengths=None, reverse=False)
        return dx, dh0, dWx, dWh, db
    return (jnp.einsum("tnm,dm->ntd", da_tm, Wx), dh0, jnp.einsum("ntd,tnm->dm", x, da_tm),
            jnp.einsum("tnh,tnm->hm", h_prev_tm, da_tm), da_tm.sum(axis=(0, 1)))


PREVIOUS_RNN_LEVERS = {"layout": "einsum", "bias": "pre", "loop": "scan"}  # before 2026-11-29
ADOPTED_RNN_LEVERS = {"layout": "flat", "bias": "pre", "loop": "scan"}  # jaxseq.layers.rnn since


def make_rnn(layout: str = "flat", bias: str = "pre", loop: str = "scan"):
    """A tanh RNN (x, h0, Wx, Wh, b) -> h with a hand backward and the LSTM's levers that apply
    (`layout`, `bias`, `loop`; with loop="inplace" da overwrites the upstream gradient dh[t]).
    The defaults are `ADOPTED_RNN_LEVERS`."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    LL, R = _library_modules()

    assert all(v in LEVER_CHOICES[k] for k, v in {"layout": layout, "bias": bias, "loop": loop}.items())

    def forward(x, h0, Wx, Wh, b):
        b_pre, b_step = (b, 0.0) if bias == "pre" else (None, b)
        if layout == "flat":
            xw_tm = R.input_projection_tm(x, Wx, b_pre)
        else:
            xw_tm = jnp.einsum("ntd,dm->tnm", x, Wx) + (0.0 if b_pre is None else b_pre)

        def step(prev_h, xw_t):
            next_h = jnp.tanh(xw_t + b_step + prev_h @ Wh)
            return next_h, next_h

        _, h_tm = lax.scan(step, h0, xw_tm)
        return jnp.swapaxes(h_tm, 0, 1), (x, h0, Wx, Wh, h_tm)

    def backward(cache, dh):
        x, h0, Wx, Wh, h_tm = cache
        WhT = Wh.T

        def step(dnext_h, inputs):
            dh_t, h_t = inputs
            da = (dh_t + dnext_h) * (1.0 - h_t * h_t)
            return da @ WhT, (da,)

        zeros, dh_tm = jnp.zeros_like(h0), jnp.swapaxes(dh, 0, 1)
        if loop == "inplace":
            dh0, (da_tm,) = R.scan_in_place(step, zeros, dh_tm, (h_tm,), reverse=True)
        else:
            dh0, (da_tm,) = lax.scan(step, zeros, (dh_tm, h_tm), reverse=True)
        return _input_and_weight_gradients(layout, x, h0, Wx, h_tm, da_tm, dh0)

    @jax.custom_vjp
    def rnn(x, h0, Wx, Wh, b):
        return forward(x, h0, Wx, Wh, b)[0]

    rnn.defvjp(forward, backward)
    return rnn


# ----------------------------------------------------------------------------- the sets measured

_P = PREVIOUS_LEVERS
LEVER_SETS = {
    "previous library": _P,
    # one lever at a time, from the previous library
    "layout=flat": {**_P, "layout": "flat"},
    "gates=tanh": {**_P, "gates": "tanh"},
    "bias=step": {**_P, "bias": "step"},
    "store=tanh_c": {**_P, "store": "tanh_c"},
    "store=deriv": {**_P, "store": "deriv"},
    "dgates=select": {**_P, "dgates": "select"},
    "loop=inplace": {**_P, "loop": "inplace"},
    "unroll=2": {**_P, "unroll": 2},
    "unroll=4": {**_P, "unroll": 4},
    # cumulative, up to the adopted combination
    "flat+tanh": {**_P, "layout": "flat", "gates": "tanh"},
    "flat+tanh+bias=step": {**_P, "layout": "flat", "gates": "tanh", "bias": "step"},
    "flat+tanh+bias=step+inplace": {**_P, "layout": "flat", "gates": "tanh", "bias": "step", "loop": "inplace"},
    "flat+tanh+bias=step+deriv": {**_P, "layout": "flat", "gates": "tanh", "bias": "step", "store": "deriv"},
    "adopted (copy)": ADOPTED_LEVERS,
    "adopted with lax.scan, unroll=2": {**ADOPTED_LEVERS, "loop": "scan", "unroll": 2},
}

RNN_LEVER_SETS = {
    "previous library": PREVIOUS_RNN_LEVERS,
    "bias=step": {**PREVIOUS_RNN_LEVERS, "bias": "step"},
    "loop=inplace": {**PREVIOUS_RNN_LEVERS, "loop": "inplace"},
    "adopted (copy): layout=flat": ADOPTED_RNN_LEVERS,
    "flat+bias=step": {**ADOPTED_RNN_LEVERS, "bias": "step"},
    "flat+bias=step+inplace": {**ADOPTED_RNN_LEVERS, "bias": "step", "loop": "inplace"},
}

BF16 = "jaxseq + default_matmul_precision(bfloat16)"


def lever_contenders(p: dict, part: str, sets: dict, layer: str = "lstm") -> tuple[list, dict]:
    """The library and one contender per lever set, each checked against the library first.

    Returns (contenders for `harness.bench`, {name: max relative error vs the library}).
    """
    import jax

    import jaxseq.layers

    library = getattr(jaxseq.layers, layer)
    make = make_lstm if layer == "lstm" else make_rnn
    layers = {"jaxseq": library, **{name: make(**levers) for name, levers in sets.items()}}
    fns = {name: jax.jit(f if part == "fwd" else bl._grad_fn(f)) for name, f in layers.items()}
    if part != "fwd" and layer == "lstm":
        def bf16_grad(*a):
            with jax.default_matmul_precision("bfloat16"):
                return bl._grad_fn(library)(*a)

        fns[BF16] = jax.jit(bf16_grad)
    args = tuple(jax.device_put(p[k]) for k in ("x", "h0", "Wx", "Wh", "b", "dout"))
    args = args[:5] if part == "fwd" else args
    call = {name: (lambda f=f: jax.block_until_ready(f(*args))) for name, f in fns.items()}
    # agreement with the library before timing
    as_tuple = lambda out: (out,) if part == "fwd" else out  # noqa: E731
    ref = as_tuple(call["jaxseq"]())
    errors = {}
    for name, fn in call.items():
        errors[name] = max(harness.max_rel_error(a, r) for a, r in zip(as_tuple(fn()), ref))
        if name != BF16:
            assert errors[name] < bl.AGREEMENT_RTOL, f"{name} disagrees with jaxseq: {errors[name]:.2e}"
    return list(call.items()), errors


def pieces_contenders(p: dict) -> list:
    """The library's LSTM fwd+bwd cut into parts (each jitted alone, inputs precomputed)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    import jaxseq.layers
    LL, R = _library_modules()

    x, h0, Wx, Wh, b, dout = (jax.device_put(p[k]) for k in ("x", "h0", "Wx", "Wh", "b", "dout"))
    T, H = x.shape[1], h0.shape[1]
    full = jax.jit(bl._grad_fn(jaxseq.layers.lstm))
    fwd_res = jax.jit(LL.lstm_fast_forward)
    _, cache = fwd_res(x, h0, Wx, Wh, b)
    bwd = jax.jit(LL.lstm_fast_backward)
    proj = jax.jit(R.input_projection_tm)
    xw = proj(x, Wx)

    @jax.jit
    def floop(xw, h0, Wh, b):  # the forward's loop: as in LL.lstm_fast_forward
        def step(carry, inputs):
            next_h, next_c, P, q, f = LL.lstm_cell(inputs[0] + b + carry[0] @ Wh, carry[1])
            return (next_h, next_c), (P, next_h, next_c, q, f)

        return R.scan_in_place(step, (h0, jnp.zeros_like(h0)), xw)[1]

    @jax.jit
    def bloop(dh, P_tm, q_tm, f_tm, Wh):  # the backward's loop: as in LL.lstm_fast_backward
        WhT = Wh.T

        def step(carry, inputs):
            P, dh_t, q, f = inputs
            da, dprev_c = LL.lstm_cell_backward(dh_t + carry[0], carry[1], P, q, f)
            return (da @ WhT, dprev_c), (da,)

        zeros = jnp.zeros_like(dh[:, 0])
        return R.scan_in_place(step, (zeros, zeros), P_tm, (jnp.swapaxes(dh, 0, 1), q_tm, f_tm), reverse=True)

    _, (da_tm,) = bloop(dout, cache.P_tm, cache.q_tm, cache.f_tm, Wh)

    @jax.jit
    def after(da_tm, x, h0, h_tm, Wx):
        return R.sequence_gradients(x, Wx, R.previous_states_tm(h0, h_tm), da_tm, lengths=None, reverse=False)

    @jax.jit
    def mm_chain(h0, W):  # T dependent (N, H) x (H, 4H) matmuls, nothing else
        return lax.scan(lambda h, _: ((h @ W)[:, :H], None), h0, None, length=T)[0]

    @jax.jit
    def mmT_chain(h0, WT):  # T dependent (N, 4H) x (4H, H) matmuls
        return lax.scan(lambda h, _: (jnp.tile(h, (1, 4)) @ WT, None), h0, None, length=T)[0]

    WhT = jax.device_put(np.ascontiguousarray(p["Wh"].T))
    parts = [
        ("full fwd+bwd", lambda: full(x, h0, Wx, Wh, b, dout)),
        ("forward (with residuals)", lambda: fwd_res(x, h0, Wx, Wh, b)),
        ("backward (lstm_backward)", lambda: bwd(dout, cache)),
        ("  input projection", lambda: proj(x, Wx)),
        ("  forward loop", lambda: floop(xw, h0, Wh, b)),
        ("  backward loop", lambda: bloop(dout, cache.P_tm, cache.q_tm, cache.f_tm, Wh)),
        ("  dx, dWx, dWh, db after the loop", lambda: after(da_tm, x, h0, cache.h_tm, Wx)),
        ("  T x (h Wh) alone", lambda: mm_chain(h0, Wh)),
        ("  T x (da Wh^T) alone", lambda: mmT_chain(h0, WhT)),
    ]
    return [(name, (lambda f=f: jax.block_until_ready(f()))) for name, f in parts]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="lstm", choices=["lstm", "rnn"])
    parser.add_argument("--shape", default="a", choices=sorted(bl.SHAPES))
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--part", default="fwd+bwd", choices=["fwd+bwd", "fwd", "pieces"])
    parser.add_argument("--sets", default=None,
                        help="comma-separated names of LEVER_SETS / RNN_LEVER_SETS (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help=f"shape {bl.QUICK_SHAPES['q']} and 3 repetitions: a smoke test, not a measurement")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="keep freed memory in the heap (harness.tune_malloc) before anything runs")
    parser.add_argument("--clock", default="wall", choices=["wall", "process"],
                        help="wall time (default) or this process's CPU time; 'process' is meant for "
                             "a run pinned to one core (taskset -c 0 ...), where it is robust to "
                             "other processes' load")
    args = parser.parse_args(argv)
    if args.part == "pieces" and args.layer != "lstm":
        parser.error("--part pieces profiles the LSTM only")
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    reps, warmup = (3, 1) if args.quick else (args.reps, harness.DEFAULT_WARMUP)
    harness.setup()
    key = "q" if args.quick else args.shape
    N, T, D, H = (bl.QUICK_SHAPES if args.quick else bl.SHAPES)[key]
    gates = 4 if args.layer == "lstm" else 1
    p = bl.make_problem(N, T, D, H, gates)
    label = bl.shape_label(key, N, T, D, H)
    if args.part == "pieces":
        results = harness.bench("lstm profile", pieces_contenders(p), variant="parts of jaxseq fwd+bwd",
                                shape=label, reference="full fwd+bwd", reps=reps, warmup=warmup,
                                verbose=False, clock=clock)
    else:
        all_sets = LEVER_SETS if args.layer == "lstm" else RNN_LEVER_SETS
        sets = all_sets if not args.sets else {k: all_sets[k] for k in args.sets.split(",")}
        contenders, errors = lever_contenders(p, args.part, sets, args.layer)
        flops = (bl.forward_flops if args.part == "fwd" else bl.fwd_bwd_flops)(N, T, D, H, gates)
        results = harness.bench(f"{args.layer} levers", contenders, variant=args.part, shape=label, flops=flops,
                                reps=reps, warmup=warmup, verbose=False, clock=clock,
                                notes="max rel. error vs jaxseq: " + ", ".join(f"{k}: {v:.1e}" for k, v in errors.items()))
    print(f"clock: {args.clock}; CPUs this process may use: {sorted(os.sched_getaffinity(0))}")
    print(harness.format_table(results, title=None, with_meta=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
