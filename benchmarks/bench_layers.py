"""Layer-level benchmarks of issue 5: cases 1 (LSTM), 2 (vanilla RNN), 5 (matmul roofline), 6 (compile time).

Contenders (every one computes the same thing; `check_agreement` asserts it before timing):

- jaxseq          `jaxseq.layers.lstm` / `rnn` (custom_vjp, hand backward) + `jax.grad`, jitted
                  (the performance levers it uses were measured one by one in `lstm_levers.py`)
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


def _flax_functions(model, initial_carry):
    """forward(params, x, h0) -> h and loss(params, x, h0, dout) = sum(h * dout) of a Flax `nn.RNN`."""
    import jax.numpy as jnp

    def forward(params, x, h0):
        return model.apply(params, x, initial_carry=initial_carry(h0))

    def loss(params, x, h0, dout):
        return jnp.sum(forward(params, x, h0) * dout)

    return forward, loss


def _flax_lstm_carry(h0):
    """OptimizedLSTMCell's carry is (c, h); jaxseq starts from c0 = 0."""
    import jax.numpy as jnp

    return jnp.zeros_like(h0), h0


def _flax_impl(model, initial_carry, cell: dict, p: dict, weight_grads: Callable[[dict], dict]) -> Impl:
    """A Flax `nn.RNN` with the given cell parameters; `weight_grads` maps the cell's parameter
    gradients to {dWx, dWh, db} in jaxseq's layout."""
    import jax

    forward, loss = _flax_functions(model, initial_carry)
    params = jax.device_put({"params": {"cell": cell}})
    x, h0, dout = (jax.device_put(p[k]) for k in ("x", "h0", "dout"))
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    fwd = jax.jit(forward)

    def grads(r):
        dparams, dx, dh0 = r
        return {"dx": np.asarray(dx), "dh0": np.asarray(dh0), **weight_grads(dparams["params"]["cell"])}

    return Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(params, x, h0, dout)),
        fwd=lambda: jax.block_until_ready(fwd(params, x, h0)),
        grads=grads,
        out=lambda r: {"h": np.asarray(r)},
    )


# Flax OptimizedLSTMCell keeps one kernel per gate: input kernels i{gate} (no bias), hidden
# kernels h{gate} with the bias. jaxseq's 4H axis is ordered i, f, o, g.
_JAXSEQ_GATES = ("i", "f", "o", "g")


def flax_lstm_impl(p: dict) -> Impl:
    import flax.linen as nn

    H = p["h0"].shape[1]
    cell = {}
    for k, gate in enumerate(_JAXSEQ_GATES):
        cols = slice(k * H, (k + 1) * H)
        cell[f"i{gate}"] = {"kernel": p["Wx"][:, cols]}
        cell[f"h{gate}"] = {"kernel": p["Wh"][:, cols], "bias": p["b"][cols]}

    def weight_grads(c):
        return {
            "dWx": np.concatenate([np.asarray(c[f"i{g}"]["kernel"]) for g in _JAXSEQ_GATES], axis=1),
            "dWh": np.concatenate([np.asarray(c[f"h{g}"]["kernel"]) for g in _JAXSEQ_GATES], axis=1),
            "db": np.concatenate([np.asarray(c[f"h{g}"]["bias"]) for g in _JAXSEQ_GATES]),
        }

    return _flax_impl(nn.RNN(nn.OptimizedLSTMCell(H)), _flax_lstm_carry, cell, p, weight_grads)


def flax_rnn_impl(p: dict) -> Impl:
    """nn.SimpleCell: h = tanh(Dense_i(x) + Dense_h(h)); the input Dense carries the bias."""
    import flax.linen as nn

    cell = {"i": {"kernel": p["Wx"], "bias": p["b"]}, "h": {"kernel": p["Wh"]}}

    def weight_grads(c):
        return {"dWx": np.asarray(c["i"]["kernel"]), "dWh": np.asarray(c["h"]["kernel"]),
                "db": np.asarray(c["i"]["bias"])}

    return _flax_impl(nn.RNN(nn.SimpleCell(p["h0"].shape[1])), lambda h0: h0, cell, p, weight_grads)


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


# ----------------------------------------------------------------------------- contenders per case


def layer_impls(p: dict, kind: str) -> dict[str, Impl]:
    """The contenders of case 1 (kind="lstm") or case 2 (kind="rnn"), jaxseq first."""
    import jaxseq.layers

    lstm = kind == "lstm"
    return {
        "jaxseq": jax_impl(jaxseq.layers.lstm if lstm else jaxseq.layers.rnn, p),
        "autodiff-scan": jax_impl(lstm_scan if lstm else rnn_scan, p),
        "flax": flax_lstm_impl(p) if lstm else flax_rnn_impl(p),
        "torch": torch_impl(p, kind),
        "numpy": numpy_impl(p, kind),
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
        impls = layer_impls(p, kind)
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
            _, loss = _flax_functions(nn.RNN(nn.OptimizedLSTMCell(H)), _flax_lstm_carry)
            return jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(params, x, h0, dout).compile()

        return compile_once

    return [
        ("jaxseq", timer(jaxseq.layers.lstm, p_lstm)),
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
    harness.main(run, "layers", __doc__.splitlines()[0])
