"""Layer-level benchmarks of issue 5: cases 1 (LSTM), 2 (vanilla RNN), 5 (matmul roofline), 6 (compile time).

Contenders (every one computes the same thing; `check_agreement` asserts it before timing):

- jaxseq          `jaxseq.layers.lstm` / `rnn` (custom_vjp, hand backward) + `jax.grad`, jitted
- jaxseq-variant  a benchmark-local copy of the jaxseq LSTM / RNN with the performance levers
                  applied (`make_lstm_variant`, `make_rnn_variant` below; each lever measured
                  alone by `lstm_levers.py`); a proposal for `jaxseq/layers/`, not library code
- autodiff-scan   the same forward (input projection hoisted, one `lax.scan` over the
                  recurrence) differentiated by `jax.grad`, jitted
- flax            `nn.RNN(nn.OptimizedLSTMCell(H))` / `nn.RNN(nn.SimpleCell(H))` + `jax.grad`, jitted
- torch           `nn.LSTM` / `nn.RNN(nonlinearity='tanh')`, batch_first, float32, 2 threads
- numpy           a float32 NumPy reference: loop over time, hand backward (input projection
                  and weight gradients batched outside the loop, as in jaxseq)

"fwd+bwd" is the gradient of loss = sum(h * dout) with respect to x, h0, Wx, Wh and b (PyTorch:
the gradients of its parameters, input and h0); "fwd" is the forward pass alone (PyTorch under
`torch.inference_mode`).

FLOP counts (matmuls only; the O(N T H) elementwise work is left out):
    forward   F = 2 N T D G + 2 N T H G          with G = 4H (LSTM) or H (RNN)
    backward  2 F (dx = da Wx^T, dh = da Wh^T, dWx = x^T da, dWh = h^T da)
    fwd+bwd   3 F
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, NamedTuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

# N batch, T steps, D input, H hidden (issue 5)
SHAPES = {
    "a": (64, 16, 256, 512),
    "b": (25, 16, 256, 512),
    "c": (128, 32, 512, 512),
}
QUICK_SHAPES = {"q": (8, 4, 16, 32)}
GRAD_KEYS = ("dx", "dh0", "dWx", "dWh", "db")
AGREEMENT_RTOL = 1e-4


def shape_label(key: str, N: int, T: int, D: int, H: int) -> str:
    return f"({key}) N={N} T={T} D={D} H={H}"


def forward_flops(N: int, T: int, D: int, H: int, gates: int) -> float:
    """Matmul FLOPs of the forward pass: 2 N T D (gates H) + 2 N T H (gates H)."""
    return 2.0 * N * T * (D + H) * gates * H


def fwd_bwd_flops(N: int, T: int, D: int, H: int, gates: int) -> float:
    """Forward + backward: the backward has twice the forward's matmul FLOPs."""
    return 3.0 * forward_flops(N, T, D, H, gates)


def make_problem(N: int, T: int, D: int, H: int, gates: int, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 inputs, weights scaled 1/sqrt(fan-in) so the gates stay out of saturation."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return {
        "x": rng.standard_normal((N, T, D)).astype(f32),
        "h0": (0.5 * rng.standard_normal((N, H))).astype(f32),
        "Wx": (rng.standard_normal((D, gates * H)) / np.sqrt(D)).astype(f32),
        "Wh": (rng.standard_normal((H, gates * H)) / np.sqrt(H)).astype(f32),
        "b": (0.1 * rng.standard_normal(gates * H)).astype(f32),
        "dout": rng.standard_normal((N, T, H)).astype(f32),
    }


class Impl(NamedTuple):
    """One contender: zero-argument timed callables and converters to the common layout."""

    fwd_bwd: Callable[[], Any]  # -> raw gradients
    fwd: Callable[[], Any]  # -> raw output
    grads: Callable[[Any], dict]  # raw gradients -> {dx, dh0, dWx, dWh, db} (jaxseq layout, numpy)
    out: Callable[[Any], dict]  # raw output -> {"h": (N, T, H)}


# ----------------------------------------------------------------------------- JAX contenders


def lstm_scan(x, h0, Wx, Wh, b):
    """Plain LSTM (gates i, f, o, g): hoisted input projection, one lax.scan; for autodiff."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    H = h0.shape[-1]
    xw = jnp.einsum("ntd,dm->tnm", x, Wx) + b

    def step(carry, xw_t):
        h, c = carry
        a = xw_t + h @ Wh
        i = jax.nn.sigmoid(a[:, :H])
        f = jax.nn.sigmoid(a[:, H:2 * H])
        o = jax.nn.sigmoid(a[:, 2 * H:3 * H])
        g = jnp.tanh(a[:, 3 * H:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    _, h_tm = lax.scan(step, (h0, jnp.zeros_like(h0)), xw)
    return jnp.swapaxes(h_tm, 0, 1)


def rnn_scan(x, h0, Wx, Wh, b):
    """Plain tanh RNN: hoisted input projection, one lax.scan; for autodiff."""
    import jax.numpy as jnp
    from jax import lax

    xw = jnp.einsum("ntd,dm->tnm", x, Wx) + b

    def step(h, xw_t):
        h = jnp.tanh(xw_t + h @ Wh)
        return h, h

    _, h_tm = lax.scan(step, h0, xw)
    return jnp.swapaxes(h_tm, 0, 1)


def _grad_fn(layer):
    import jax
    import jax.numpy as jnp

    def loss(x, h0, Wx, Wh, b, dout):
        return jnp.sum(layer(x, h0, Wx, Wh, b) * dout)

    return jax.grad(loss, argnums=(0, 1, 2, 3, 4))


def jax_impl(layer, p: dict) -> Impl:
    """A JAX layer function (x, h0, Wx, Wh, b) -> h, jitted forward and jitted jax.grad."""
    import jax

    args = tuple(jax.device_put(p[k]) for k in ("x", "h0", "Wx", "Wh", "b"))
    dout = jax.device_put(p["dout"])
    grad = jax.jit(_grad_fn(layer))
    fwd = jax.jit(layer)
    return Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(*args, dout)),
        fwd=lambda: jax.block_until_ready(fwd(*args)),
        grads=lambda r: dict(zip(GRAD_KEYS, (np.asarray(a) for a in r))),
        out=lambda r: {"h": np.asarray(r)},
    )


# Flax OptimizedLSTMCell keeps one kernel per gate: input kernels i{gate} (no bias), hidden
# kernels h{gate} with the bias. jaxseq's 4H axis is ordered i, f, o, g.
_JAXSEQ_GATES = ("i", "f", "o", "g")


def flax_lstm_impl(p: dict) -> Impl:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    H = p["h0"].shape[1]
    model = nn.RNN(nn.OptimizedLSTMCell(H))
    cell = {}
    for k, gate in enumerate(_JAXSEQ_GATES):
        cols = slice(k * H, (k + 1) * H)
        cell[f"i{gate}"] = {"kernel": p["Wx"][:, cols]}
        cell[f"h{gate}"] = {"kernel": p["Wh"][:, cols], "bias": p["b"][cols]}
    params = jax.device_put({"params": {"cell": cell}})
    x, h0, dout = (jax.device_put(p[k]) for k in ("x", "h0", "dout"))

    def forward(params, x, h0):
        return model.apply(params, x, initial_carry=(jnp.zeros_like(h0), h0))

    def loss(params, x, h0, dout):
        return jnp.sum(forward(params, x, h0) * dout)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    fwd = jax.jit(forward)

    def grads(r):
        dparams, dx, dh0 = r
        c = dparams["params"]["cell"]
        return {
            "dx": np.asarray(dx),
            "dh0": np.asarray(dh0),
            "dWx": np.concatenate([np.asarray(c[f"i{g}"]["kernel"]) for g in _JAXSEQ_GATES], axis=1),
            "dWh": np.concatenate([np.asarray(c[f"h{g}"]["kernel"]) for g in _JAXSEQ_GATES], axis=1),
            "db": np.concatenate([np.asarray(c[f"h{g}"]["bias"]) for g in _JAXSEQ_GATES]),
        }

    return Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(params, x, h0, dout)),
        fwd=lambda: jax.block_until_ready(fwd(params, x, h0)),
        grads=grads,
        out=lambda r: {"h": np.asarray(r)},
    )


def flax_rnn_impl(p: dict) -> Impl:
    """nn.SimpleCell: h = tanh(Dense_i(x) + Dense_h(h)); the input Dense carries the bias."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    H = p["h0"].shape[1]
    model = nn.RNN(nn.SimpleCell(H))
    params = jax.device_put(
        {"params": {"cell": {"i": {"kernel": p["Wx"], "bias": p["b"]}, "h": {"kernel": p["Wh"]}}}}
    )
    x, h0, dout = (jax.device_put(p[k]) for k in ("x", "h0", "dout"))

    def forward(params, x, h0):
        return model.apply(params, x, initial_carry=h0)

    def loss(params, x, h0, dout):
        return jnp.sum(forward(params, x, h0) * dout)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    fwd = jax.jit(forward)

    def grads(r):
        dparams, dx, dh0 = r
        c = dparams["params"]["cell"]
        return {"dx": np.asarray(dx), "dh0": np.asarray(dh0), "dWx": np.asarray(c["i"]["kernel"]),
                "dWh": np.asarray(c["h"]["kernel"]), "db": np.asarray(c["i"]["bias"])}

    return Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(params, x, h0, dout)),
        fwd=lambda: jax.block_until_ready(fwd(params, x, h0)),
        grads=grads,
        out=lambda r: {"h": np.asarray(r)},
    )


# ----------------------------------------------------------------------------- PyTorch contender

# PyTorch's 4H axis is ordered i, f, g, o: jaxseq's blocks (i, f, o, g) taken as 0, 1, 3, 2.
_TORCH_BLOCKS = (0, 1, 3, 2)


def _to_torch_gates(a: np.ndarray, H: int) -> np.ndarray:
    """Reorder the last axis (4H) from jaxseq's i, f, o, g to PyTorch's i, f, g, o (an involution)."""
    return np.concatenate([a[..., k * H:(k + 1) * H] for k in _TORCH_BLOCKS], axis=-1)


def torch_impl(p: dict, kind: str) -> Impl:
    """nn.LSTM (kind="lstm") or nn.RNN(nonlinearity='tanh') (kind="rnn"), batch_first, float32."""
    import torch

    N, T, D = p["x"].shape
    H = p["h0"].shape[1]
    if kind == "lstm":
        module = torch.nn.LSTM(D, H, batch_first=True)
        reorder = lambda a: _to_torch_gates(a, H)  # noqa: E731
    else:
        module = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True)
        reorder = lambda a: a  # noqa: E731
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(reorder(p["Wx"]).T)))
        module.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(reorder(p["Wh"]).T)))
        module.bias_ih_l0.copy_(torch.from_numpy(reorder(p["b"])))
        module.bias_hh_l0.zero_()
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    h0 = torch.from_numpy(p["h0"])[None].clone().requires_grad_(True)
    dout = torch.from_numpy(p["dout"])
    c0 = torch.zeros_like(h0)
    state = (lambda: (h0, c0)) if kind == "lstm" else (lambda: h0)
    leaves = [x, h0, *module.parameters()]

    def fwd_bwd():
        for leaf in leaves:
            leaf.grad = None
        out, _ = module(x, state())
        (out * dout).sum().backward()
        return x.grad, h0.grad, module.weight_ih_l0.grad, module.weight_hh_l0.grad, module.bias_ih_l0.grad

    def fwd():
        with torch.inference_mode():
            return module(x, state())[0]

    def grads(r):
        dx, dh0, dWih, dWhh, dbih = (t.detach().numpy() for t in r)
        return {"dx": dx, "dh0": dh0[0], "dWx": reorder(dWih.T), "dWh": reorder(dWhh.T), "db": reorder(dbih)}

    return Impl(fwd_bwd=fwd_bwd, fwd=fwd, grads=grads, out=lambda r: {"h": r.detach().numpy()})


# ----------------------------------------------------------------------------- NumPy reference


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # = 1 / (1 + exp(-a)), without overflow warnings


def np_lstm_forward(x, h0, Wx, Wh, b):
    """float32 NumPy LSTM (gates i, f, o, g, c0 = 0): returns h (N, T, H) and the cache."""
    N, T, D = x.shape
    H = h0.shape[1]
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))
    xw = (x_tm.reshape(T * N, D) @ Wx).reshape(T, N, 4 * H) + b
    h_tm = np.empty((T, N, H), np.float32)
    c_tm = np.empty((T, N, H), np.float32)
    gates = np.empty((T, N, 4 * H), np.float32)
    prev_h, prev_c = h0, np.zeros_like(h0)
    for t in range(T):
        a = xw[t] + prev_h @ Wh
        gates[t, :, :3 * H] = _sigmoid(a[:, :3 * H])
        gates[t, :, 3 * H:] = np.tanh(a[:, 3 * H:])
        i, f, o, g = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        c_tm[t] = f * prev_c + i * g
        h_tm[t] = o * np.tanh(c_tm[t])
        prev_h, prev_c = h_tm[t], c_tm[t]
    return h_tm.transpose(1, 0, 2), (x_tm, h0, Wx, Wh, h_tm, c_tm, gates)


def np_lstm_backward(dh, cache):
    x_tm, h0, Wx, Wh, h_tm, c_tm, gates = cache
    T, N, D = x_tm.shape
    H = h0.shape[1]
    WhT = np.ascontiguousarray(Wh.T)
    dh_tm = dh.transpose(1, 0, 2)
    da = np.empty((T, N, 4 * H), np.float32)
    dnext_h = np.zeros((N, H), np.float32)
    dnext_c = np.zeros((N, H), np.float32)
    for t in reversed(range(T)):
        i, f, o, g = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        prev_c = c_tm[t - 1] if t > 0 else np.zeros((N, H), np.float32)
        tc = np.tanh(c_tm[t])
        dh_t = dh_tm[t] + dnext_h
        dc = dnext_c + dh_t * o * (1.0 - tc * tc)
        da[t, :, :H] = dc * g * i * (1.0 - i)
        da[t, :, H:2 * H] = dc * prev_c * f * (1.0 - f)
        da[t, :, 2 * H:3 * H] = dh_t * tc * o * (1.0 - o)
        da[t, :, 3 * H:] = dc * i * (1.0 - g * g)
        dnext_c = dc * f
        dnext_h = da[t] @ WhT
    da_flat = da.reshape(T * N, 4 * H)
    dx = (da_flat @ Wx.T).reshape(T, N, D).transpose(1, 0, 2)
    h_prev = np.concatenate([h0[None], h_tm[:-1]], axis=0).reshape(T * N, H)
    dWx = x_tm.reshape(T * N, D).T @ da_flat
    dWh = h_prev.T @ da_flat
    return dx, dnext_h, dWx, dWh, da_flat.sum(axis=0)


def np_rnn_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    H = h0.shape[1]
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))
    xw = (x_tm.reshape(T * N, D) @ Wx).reshape(T, N, H) + b
    h_tm = np.empty((T, N, H), np.float32)
    prev_h = h0
    for t in range(T):
        h_tm[t] = np.tanh(xw[t] + prev_h @ Wh)
        prev_h = h_tm[t]
    return h_tm.transpose(1, 0, 2), (x_tm, h0, Wx, Wh, h_tm)


def np_rnn_backward(dh, cache):
    x_tm, h0, Wx, Wh, h_tm = cache
    T, N, D = x_tm.shape
    H = h0.shape[1]
    WhT = np.ascontiguousarray(Wh.T)
    dh_tm = dh.transpose(1, 0, 2)
    da = np.empty((T, N, H), np.float32)
    dnext_h = np.zeros((N, H), np.float32)
    for t in reversed(range(T)):
        da[t] = (dh_tm[t] + dnext_h) * (1.0 - h_tm[t] * h_tm[t])
        dnext_h = da[t] @ WhT
    da_flat = da.reshape(T * N, H)
    dx = (da_flat @ Wx.T).reshape(T, N, D).transpose(1, 0, 2)
    h_prev = np.concatenate([h0[None], h_tm[:-1]], axis=0).reshape(T * N, H)
    return dx, dnext_h, x_tm.reshape(T * N, D).T @ da_flat, h_prev.T @ da_flat, da_flat.sum(axis=0)


def numpy_impl(p: dict, kind: str) -> Impl:
    forward, backward = (np_lstm_forward, np_lstm_backward) if kind == "lstm" else (np_rnn_forward, np_rnn_backward)
    args = tuple(p[k] for k in ("x", "h0", "Wx", "Wh", "b"))
    dout = p["dout"]

    def fwd_bwd():
        _, cache = forward(*args)
        return backward(dout, cache)  # d sum(h * dout) / dh = dout

    return Impl(
        fwd_bwd=fwd_bwd,
        fwd=lambda: forward(*args)[0],
        grads=lambda r: dict(zip(GRAD_KEYS, (np.asarray(a) for a in r))),
        out=lambda r: {"h": np.asarray(r)},
    )


# ----------------------------------------------------------------------------- jaxseq-variant (proposal)
#
# A benchmark-local copy of `jaxseq.layers.lstm` (same math, same custom_vjp structure, hand
# backward) whose performance levers can be switched one by one, so each is measured against
# the library in the same process (`benchmarks/lstm_levers.py`). `lstm_variant` is the
# combination proposed for `jaxseq/layers/lstm.py`.
#
#   layout   "einsum": the library's einsum("ntd,dm->tnm") projections (XLA picks a transposed
#                      dot plus copies for them)
#            "flat":   x is made time-major once (T*N, D); every big matmul is a plain 2-D
#                      row-major matmul on (T*N, .) arrays; dx is transposed back at the end
#   gates    "split":  sigmoid on i, f, o and tanh on g, then a concatenate (the library)
#            "tanh":   one pass over the 4H axis, sigmoid(a) = 0.5 tanh(a / 2) + 0.5:
#                      gates = s * tanh(s * a) + t with per-column constants s, t; the backward
#                      uses d gates / da = s^2 (1 - tanh^2) in one pass as well
#   unroll   lax.scan's unroll, forward and backward
#   store    "c":      the forward saves c_t; the backward recomputes tanh(c_t) (the library)
#            "tanh_c": the forward saves tanh(c_t) as well, the backward reads it
#            "deriv":  the forward saves the local derivatives instead of c and the gates:
#                      P = [g, c_{t-1}, tanh c_t, i] * d gates/da (N, 4H), q = o (1 - tanh^2 c_t)
#                      and f; the backward step is then dc = dnext_c + dh q,
#                      da = [dc, dc, dh, dc] * P, dprev_c = dc f (two light passes)
#   bias     "pre":    b is added to the input projection (one more pass over (T, N, 4H))
#            "step":   b is added inside the step's elementwise pass (free)
#   loop     "scan":   lax.scan with stacked outputs (zero-filled (T, N, 4H) buffers)
#            "inplace": lax.fori_loop over explicit buffers: the forward overwrites x Wx's
#                      (T, N, 4H) buffer with the gates (or P), the backward overwrites those
#                      with da; no zero-filled (T, N, 4H) buffers, updates in place. With
#                      store="c" XLA copies the whole buffer twice per backward step (the gates
#                      are read by several fusions before the update): use it with "deriv".
#   dgates   "concat": the backward builds da from four (N, H) products and a concatenate
#            "select": da in one elementwise pass over an (N, 4, H) view, each block selecting
#                      its factors (no concatenate)

VARIANT_LEVERS = {"layout": "flat", "gates": "tanh", "unroll": 1, "store": "deriv", "dgates": "concat",
                  "bias": "step", "loop": "inplace"}
_LIBRARY_LEVERS = {"layout": "einsum", "gates": "split", "unroll": 1, "store": "c", "dgates": "concat",
                   "bias": "pre", "loop": "scan"}


def _gate_constants(H, dtype):
    import jax.numpy as jnp

    scale = jnp.concatenate([jnp.full((3 * H,), 0.5, dtype), jnp.ones((H,), dtype)])
    shift = jnp.concatenate([jnp.full((3 * H,), 0.5, dtype), jnp.zeros((H,), dtype)])
    return scale, shift


def make_lstm_variant(layout: str = "flat", gates: str = "tanh", unroll: int = 1, store: str = "c",
                      dgates: str = "concat", bias: str = "pre", loop: str = "scan"):
    """An LSTM (x, h0, Wx, Wh, b) -> h with a hand backward (custom_vjp) and the given levers."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    assert layout in ("einsum", "flat") and gates in ("split", "tanh") and store in ("c", "tanh_c", "deriv")
    assert dgates in ("concat", "select") and bias in ("pre", "step") and loop in ("scan", "inplace")

    def activate(a, H):
        """Activated gates (N, 4H) and, for gates="tanh", the raw tanh t (None otherwise)."""
        if gates == "tanh":
            scale, shift = _gate_constants(H, a.dtype)
            t = jnp.tanh(scale * a)
            return scale * t + shift, t
        return jnp.concatenate([jax.nn.sigmoid(a[:, :3 * H]), jnp.tanh(a[:, 3 * H:])], axis=-1), None

    def gate_derivative(gv, H, t=None):
        """d gates / d a (N, 4H), from the activated gates (or the raw tanh t of gates="tanh")."""
        if gates == "tanh":
            scale, shift = _gate_constants(H, gv.dtype)
            t = (gv - shift) / scale if t is None else t
            return scale * scale * (1.0 - t * t)
        s, g = gv[:, :3 * H], gv[:, 3 * H:]
        return jnp.concatenate([s * (1.0 - s), 1.0 - g * g], axis=-1)

    def split4(v, H):
        return v[:, :H], v[:, H:2 * H], v[:, 2 * H:3 * H], v[:, 3 * H:]

    def project(x, Wx, b_pre):
        """x Wx (+ b) for all steps, time-major (T, N, 4H); also the x the backward uses."""
        N, T, D = x.shape
        if layout == "flat":
            x2 = jnp.swapaxes(x, 0, 1).reshape(T * N, D)  # time-major rows: one copy of x
            return (x2 @ Wx + b_pre).reshape(T, N, Wx.shape[1]), x2
        return jnp.einsum("ntd,dm->tnm", x, Wx) + b_pre, x

    def run_loop(step, carry, big, others, T, reverse=False):
        """Run `step(carry, (big[t], *others[t])) -> (carry, (new_big_t, *outs_t))` over t.

        loop="scan": lax.scan with stacked outputs (fresh zero-filled buffers).
        loop="inplace": a fori_loop that writes new_big_t over big[t] (same shape), so XLA
        updates that buffer in place; the other outputs get (T, ...) buffers of their own.
        """
        if loop == "scan":
            return lax.scan(step, carry, (big, *others), reverse=reverse, unroll=unroll)
        at = lambda arr, t: lax.dynamic_index_in_dim(arr, t, 0, keepdims=False)  # noqa: E731
        put = lambda arr, v, t: lax.dynamic_update_index_in_dim(arr, v, t, 0)  # noqa: E731
        out_shapes = jax.eval_shape(lambda c, xs: step(c, xs)[1][1:], carry,
                                    tuple(at(a, 0) for a in (big, *others)))
        outs = tuple(jnp.zeros((T, *s.shape), s.dtype) for s in out_shapes)

        def body(k, state):
            carry, big, outs = state
            t = T - 1 - k if reverse else k
            carry, (new_big, *new_outs) = step(carry, tuple(at(a, t) for a in (big, *others)))
            return carry, put(big, new_big, t), tuple(put(o, v, t) for o, v in zip(outs, new_outs))

        carry, big, outs = lax.fori_loop(0, T, body, (carry, big, outs), unroll=unroll)
        return carry, (big, *outs)

    def forward(x, h0, Wx, Wh, b):
        N, T, D = x.shape
        H = h0.shape[-1]
        b_pre, b_step = (b, 0.0) if bias == "pre" else (0.0, b)
        xw_tm, x2 = project(x, Wx, b_pre)

        def step(carry, inputs):
            prev_h, prev_c = carry
            gv, t = activate(inputs[0] + b_step + prev_h @ Wh, H)
            i, f, o, g = split4(gv, H)
            next_c = f * prev_c + i * g
            tanh_c = jnp.tanh(next_c)
            next_h = o * tanh_c
            if store == "deriv":
                # the backward's local derivatives, computed while the step's values are at hand:
                # da = [dc, dc, dh, dc] * P and dc = dnext_c + dh * q
                P = jnp.concatenate([g, prev_c, tanh_c, i], axis=-1) * gate_derivative(gv, H, t)
                saved = (P, next_h, o * (1.0 - tanh_c * tanh_c), f)
            else:
                saved = (gv, next_h, next_c) + ((tanh_c,) if store == "tanh_c" else ())
            return (next_h, next_c), saved

        _, saved = run_loop(step, (h0, jnp.zeros_like(h0)), xw_tm, (), T)
        return jnp.swapaxes(saved[1], 0, 1), (x2, h0, Wx, Wh) + tuple(saved)

    def backward(cache, dh):
        x2, h0, Wx, Wh, big_tm, h_tm = cache[:6]
        T, N, H = h_tm.shape
        WhT = Wh.T
        dh_tm = jnp.swapaxes(dh, 0, 1)
        zeros = jnp.zeros_like(h0)
        if store == "deriv":
            q_tm, f_tm = cache[6:]

            def step(carry, inputs):
                dnext_h, dnext_c = carry
                P, dh_t, q, f = inputs
                dh_t = dh_t + dnext_h
                dc = dnext_c + dh_t * q
                da = jnp.concatenate([dc, dc, dh_t, dc], axis=-1) * P
                return (da @ WhT, dc * f), (da,)

            (dh0, _), (da_tm,) = run_loop(step, (zeros, zeros), big_tm, (dh_tm, q_tm, f_tm), T, reverse=True)
        else:
            c_tm = cache[6]
            per_step_c = cache[7] if store == "tanh_c" else c_tm
            prev_c_tm = jnp.concatenate([zeros[None], c_tm[:-1]], axis=0)

            def step(carry, inputs):
                dnext_h, dnext_c = carry
                gv, dh_t, c_or_tanh_c, prev_c = inputs
                i, f, o, g = split4(gv, H)
                dh_t = dh_t + dnext_h
                tanh_c = c_or_tanh_c if store == "tanh_c" else jnp.tanh(c_or_tanh_c)
                dc = dnext_c + dh_t * o * (1.0 - tanh_c * tanh_c)
                if dgates == "select":
                    # one elementwise pass over (N, 4, H): block k of da picks its own factors
                    k = lax.broadcasted_iota(jnp.int32, (1, 4, 1), 1)
                    up = jnp.where(k == 2, dh_t[:, None], dc[:, None])
                    other = jnp.where(k == 0, g[:, None], jnp.where(k == 1, prev_c[:, None],
                                                                   jnp.where(k == 2, tanh_c[:, None], i[:, None])))
                    da = (up * other * gate_derivative(gv, H).reshape(N, 4, H)).reshape(N, 4 * H)
                else:
                    da = jnp.concatenate([dc * g, dc * prev_c, dh_t * tanh_c, dc * i], axis=-1) * gate_derivative(gv, H)
                return (da @ WhT, dc * f), (da,)

            (dh0, _), (da_tm,) = run_loop(step, (zeros, zeros), big_tm, (dh_tm, per_step_c, prev_c_tm), T,
                                          reverse=True)
        h_prev_tm = jnp.concatenate([h0[None], h_tm[:-1]], axis=0)
        if layout == "flat":
            D = x2.shape[1]
            da2 = da_tm.reshape(T * N, 4 * H)
            dx = jnp.swapaxes((da2 @ Wx.T).reshape(T, N, D), 0, 1)
            dWx = x2.T @ da2
            dWh = h_prev_tm.reshape(T * N, H).T @ da2
            db = da2.sum(axis=0)
        else:
            dx = jnp.einsum("tnm,dm->ntd", da_tm, Wx)
            dWx = jnp.einsum("ntd,tnm->dm", x2, da_tm)
            dWh = jnp.einsum("tnh,tnm->hm", h_prev_tm, da_tm)
            db = da_tm.sum(axis=(0, 1))
        return dx, dh0, dWx, dWh, db

    def primal(x, h0, Wx, Wh, b):
        """Forward without residuals (what runs when nothing is differentiated)."""
        H = h0.shape[-1]
        b_pre, b_step = (b, 0.0) if bias == "pre" else (0.0, b)
        xw_tm, _ = project(x, Wx, b_pre)

        def step(carry, xw_t):
            prev_h, prev_c = carry
            i, f, o, g = split4(activate(xw_t + b_step + prev_h @ Wh, H)[0], H)
            next_c = f * prev_c + i * g
            next_h = o * jnp.tanh(next_c)
            return (next_h, next_c), next_h

        return jnp.swapaxes(lax.scan(step, (h0, jnp.zeros_like(h0)), xw_tm, unroll=unroll)[1], 0, 1)

    @jax.custom_vjp
    def lstm(x, h0, Wx, Wh, b):
        return primal(x, h0, Wx, Wh, b)

    lstm.defvjp(forward, backward)
    return lstm


def make_rnn_variant(layout: str = "flat", bias: str = "step", loop: str = "inplace"):
    """A tanh RNN (x, h0, Wx, Wh, b) -> h with a hand backward and the LSTM's levers that apply:
    `layout` and `bias` as for the LSTM; `loop="inplace"`: the backward overwrites the
    (time-major copy of the) upstream gradient dh[t] with da_t instead of stacking scan outputs."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    assert layout in ("einsum", "flat") and bias in ("pre", "step") and loop in ("scan", "inplace")

    def forward(x, h0, Wx, Wh, b):
        N, T, D = x.shape
        H = h0.shape[-1]
        b_pre, b_step = (b, 0.0) if bias == "pre" else (0.0, b)
        if layout == "flat":
            x2 = jnp.swapaxes(x, 0, 1).reshape(T * N, D)
            xw_tm = (x2 @ Wx + b_pre).reshape(T, N, H)
        else:
            x2 = x
            xw_tm = jnp.einsum("ntd,dm->tnm", x, Wx) + b_pre

        def step(prev_h, xw_t):
            next_h = jnp.tanh(xw_t + b_step + prev_h @ Wh)
            return next_h, next_h

        _, h_tm = lax.scan(step, h0, xw_tm)
        return jnp.swapaxes(h_tm, 0, 1), (x2, h0, Wx, Wh, h_tm)

    def backward(cache, dh):
        x2, h0, Wx, Wh, h_tm = cache
        T, N, H = h_tm.shape
        WhT = Wh.T
        dh_tm = jnp.swapaxes(dh, 0, 1)

        def step(dnext_h, inputs):
            dh_t, h_t = inputs
            da = (dh_t + dnext_h) * (1.0 - h_t * h_t)
            return da @ WhT, da

        if loop == "inplace":
            def body(k, state):
                carry, buf = state
                t = T - 1 - k
                at = lambda arr: lax.dynamic_index_in_dim(arr, t, 0, keepdims=False)  # noqa: E731
                carry, da = step(carry, (at(buf), at(h_tm)))
                return carry, lax.dynamic_update_index_in_dim(buf, da, t, 0)

            dh0, da_tm = lax.fori_loop(0, T, body, (jnp.zeros_like(h0), dh_tm))
        else:
            dh0, da_tm = lax.scan(step, jnp.zeros_like(h0), (dh_tm, h_tm), reverse=True)
        h_prev_tm = jnp.concatenate([h0[None], h_tm[:-1]], axis=0)
        if layout == "flat":
            D = x2.shape[1]
            da2 = da_tm.reshape(T * N, H)
            dx = jnp.swapaxes((da2 @ Wx.T).reshape(T, N, D), 0, 1)
            return dx, dh0, x2.T @ da2, h_prev_tm.reshape(T * N, H).T @ da2, da2.sum(axis=0)
        dx = jnp.einsum("tnh,dh->ntd", da_tm, Wx)
        return (dx, dh0, jnp.einsum("ntd,tnm->dm", x2, da_tm), jnp.einsum("tnh,tnm->hm", h_prev_tm, da_tm),
                da_tm.sum(axis=(0, 1)))

    @jax.custom_vjp
    def rnn(x, h0, Wx, Wh, b):
        return forward(x, h0, Wx, Wh, b)[0]

    rnn.defvjp(forward, backward)
    return rnn


RNN_VARIANT_LEVERS = {"layout": "flat", "bias": "pre", "loop": "scan"}
_RNN_VARIANT = None


def rnn_variant(x, h0, Wx, Wh, b):
    """The tanh RNN with `RNN_VARIANT_LEVERS`: the proposal measured as "jaxseq-variant" in case 2."""
    global _RNN_VARIANT
    if _RNN_VARIANT is None:
        _RNN_VARIANT = make_rnn_variant(**RNN_VARIANT_LEVERS)
    return _RNN_VARIANT(x, h0, Wx, Wh, b)


_VARIANTS: dict = {}


def lstm_variant(x, h0, Wx, Wh, b, **levers):
    """The LSTM with `VARIANT_LEVERS` (or the given levers): the proposal measured as "jaxseq-variant"."""
    key = tuple(sorted({**VARIANT_LEVERS, **levers}.items()))
    if key not in _VARIANTS:
        _VARIANTS[key] = make_lstm_variant(**dict(key))
    return _VARIANTS[key](x, h0, Wx, Wh, b)


# ----------------------------------------------------------------------------- contenders per case


def lstm_impls(p: dict, with_variant: bool = True) -> dict[str, Impl]:
    import jaxseq.layers

    impls = {"jaxseq": jax_impl(jaxseq.layers.lstm, p)}
    if with_variant:
        impls["jaxseq-variant"] = jax_impl(lstm_variant, p)
    impls["autodiff-scan"] = jax_impl(lstm_scan, p)
    impls["flax"] = flax_lstm_impl(p)
    impls["torch"] = torch_impl(p, "lstm")
    impls["numpy"] = numpy_impl(p, "lstm")
    return impls


def rnn_impls(p: dict) -> dict[str, Impl]:
    import jaxseq.layers

    return {
        "jaxseq": jax_impl(jaxseq.layers.rnn, p),
        "jaxseq-variant": jax_impl(rnn_variant, p),
        "autodiff-scan": jax_impl(rnn_scan, p),
        "flax": flax_rnn_impl(p),
        "torch": torch_impl(p, "rnn"),
        "numpy": numpy_impl(p, "rnn"),
    }


def check_agreement(impls: dict[str, Impl], rtol: float = AGREEMENT_RTOL, reference: str = "jaxseq") -> dict:
    """Assert that every contender's output and gradients match the reference's (float32, rtol).

    Returns {contender: {array: relative error}}; raises AssertionError on a mismatch, so a
    benchmark never times different computations.
    """
    ref = impls[reference]
    ref_grads = ref.grads(ref.fwd_bwd())
    ref_out = ref.out(ref.fwd())
    errors = {}
    for name, impl in impls.items():
        if name == reference:
            continue
        errs = harness.assert_agree(name + " (fwd+bwd)", impl.grads(impl.fwd_bwd()), ref_grads, rtol, reference)
        errs.update(harness.assert_agree(name + " (fwd)", impl.out(impl.fwd()), ref_out, rtol, reference))
        errors[name] = errs
    return errors


def _agreement_note(errors: dict) -> str:
    worst = max((max(e.values()) for e in errors.values()), default=0.0)
    return f"all contenders agree with jaxseq (largest relative error {worst:.1e})"


def bench_recurrent(kind: str, shapes: dict, *, reps: int, warmup: int) -> list[dict]:
    gates = 4 if kind == "lstm" else 1
    results = []
    for key, (N, T, D, H) in shapes.items():
        p = make_problem(N, T, D, H, gates, seed=0)
        impls = lstm_impls(p) if kind == "lstm" else rnn_impls(p)
        note = _agreement_note(check_agreement(impls))
        label = shape_label(key, N, T, D, H)
        results += harness.bench(kind, [(name, impl.fwd_bwd) for name, impl in impls.items()],
                                 variant="fwd+bwd", shape=label, flops=fwd_bwd_flops(N, T, D, H, gates),
                                 reps=reps, warmup=warmup, notes=note)
        results += harness.bench(kind, [(name, impl.fwd) for name, impl in impls.items()],
                                 variant="fwd", shape=label, flops=forward_flops(N, T, D, H, gates),
                                 reps=reps, warmup=warmup, notes=note)
        del impls
    return results


def roofline_shapes(shapes: dict, square: int) -> list[tuple[int, int, int, str]]:
    """The square matmul and each LSTM shape's own matmuls (m, k, n, label)."""
    out = [(square, square, square, f"{square}^2")]
    for key, (N, T, D, H) in shapes.items():
        out += [
            (N * T, D, 4 * H, f"({key}) x Wx"),  # input projection, all steps
            (N, H, 4 * H, f"({key}) h Wh"),  # the recurrence, one step
            (N, 4 * H, H, f"({key}) da Wh^T"),  # backward recurrence, one step
            (D, N * T, 4 * H, f"({key}) x^T da"),  # weight gradient, all steps
        ]
    return out


def compile_contenders(p_lstm: dict, p_rnn: dict) -> list[harness.Contender]:
    """Trace + lower + compile of each JAX fwd+bwd from scratch (a fresh function every call)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    import jaxseq.layers

    def timer(layer, p):
        args = tuple(jax.device_put(p[k]) for k in ("x", "h0", "Wx", "Wh", "b", "dout"))

        def compile_once():
            fresh = _grad_fn(lambda *a: layer(*a))  # a new function: no trace-cache hit
            return jax.jit(fresh).lower(*args).compile()

        return compile_once

    def flax_timer(p):
        H = p["h0"].shape[1]
        x, h0, dout = (jax.device_put(p[k]) for k in ("x", "h0", "dout"))
        params = jax.device_put(nn.RNN(nn.OptimizedLSTMCell(H)).init(jax.random.key(0), x))

        def compile_once():
            model = nn.RNN(nn.OptimizedLSTMCell(H))

            def loss(params, x, h0, dout):
                return jnp.sum(model.apply(params, x, initial_carry=(jnp.zeros_like(h0), h0)) * dout)

            return jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(params, x, h0, dout).compile()

        return compile_once

    return [
        ("jaxseq", timer(jaxseq.layers.lstm, p_lstm)),
        ("jaxseq-variant", timer(lstm_variant, p_lstm)),
        ("autodiff-scan", timer(lstm_scan, p_lstm)),
        ("flax", flax_timer(p_lstm)),
        ("jaxseq rnn", timer(jaxseq.layers.rnn, p_rnn)),
        ("autodiff-scan rnn", timer(rnn_scan, p_rnn)),
    ]


def run(quick: bool = False) -> list[dict]:
    """All layer cases; `quick`: tiny shapes and few repetitions (a smoke test, not a measurement)."""
    harness.setup()
    shapes = QUICK_SHAPES if quick else SHAPES
    reps, warmup = (3, 1) if quick else (harness.DEFAULT_REPS, harness.DEFAULT_WARMUP)
    results = []
    # case 1: LSTM fwd+bwd and fwd at (a), (b), (c)
    results += bench_recurrent("lstm", shapes, reps=reps, warmup=warmup)
    # case 2: vanilla RNN at (a)
    rnn_shapes = shapes if quick else {"a": SHAPES["a"]}
    results += bench_recurrent("rnn", rnn_shapes, reps=reps, warmup=warmup)
    # case 5: matmul roofline (2048^2 and the LSTM's own matmuls)
    results += harness.matmul_roofline(roofline_shapes(shapes, 256 if quick else 2048), reps=reps, warmup=warmup)
    # case 6: compile time of the LSTM / RNN fwd+bwd (trace + lower + compile)
    key = next(iter(shapes))
    N, T, D, H = shapes[key]
    results += harness.bench(
        "compile", compile_contenders(make_problem(N, T, D, H, 4), make_problem(N, T, D, H, 1)),
        variant="fwd+bwd jit (trace+lower+compile)", shape=shape_label(key, N, T, D, H),
        reps=min(reps, 7), warmup=1, notes="a fresh function per call, so nothing is cached")
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = run(quick=args.quick)
    harness.annotate_roofline(out)
    print(harness.format_table(out, title="layers", meta=harness.machine_info()))
