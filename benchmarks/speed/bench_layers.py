"""Layer-level benchmarks of issue 5: cases 1 (LSTM), 2 (vanilla RNN), 5 (matmul roofline), 6 (compile time).

Contenders (every one computes the same thing; `check_agreement` asserts it before timing):

- jaxseq          `jaxseq.layers.lstm` / `rnn` (custom_vjp, hand backward) + `jax.grad`, jitted
                  (the performance levers it uses were measured one by one: benchmarks/studies/README.md)
- autodiff-scan   the same forward (input projection hoisted, one `lax.scan` over the
                  recurrence) differentiated by `jax.grad`, jitted
- flax            `nn.RNN(nn.OptimizedLSTMCell(H))` / `nn.RNN(nn.SimpleCell(H))` + `jax.grad`, jitted
- torch           `nn.LSTM` / `nn.RNN(nonlinearity='tanh')`, batch_first, float32, 2 threads
- numpy           a float32 NumPy reference: loop over time, hand backward (input projection
                  and weight gradients batched outside the loop, as in jaxseq)

"fwd+bwd" is the gradient of loss = sum(h * dout) with respect to x, h0, Wx, Wh and b (PyTorch:
the gradients of its parameters, input and h0); "fwd" is the forward pass alone (PyTorch under
`torch.inference_mode`).

The contenders are built from the problem dict: a hidden bias `bh` (the GRU's) and `lengths`
(PyTorch's packed-sequence semantics) are used by every contender when the problem has them;
`bench_recurrent.py` (GRU, lengths) builds its cases from the same pieces (`LayerSpec`).

FLOP counts (matmuls only; the O(N T H) elementwise work is left out):
    forward   F = 2 N T D G + 2 N T H G          with G = 4H (LSTM), 3H (GRU) or H (RNN)
    backward  2 F (dx = da Wx^T, dh = da Wh^T, dWx = x^T da, dWh = h^T da)
    fwd+bwd   3 F
"""

from __future__ import annotations

import functools
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
PARAM_KEYS = ("x", "h0", "Wx", "Wh", "b")  # + "bh" for a problem with a hidden bias (GRU)
GRAD_KEYS = tuple("d" + k for k in PARAM_KEYS)
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
AGREEMENT_RTOL = 1e-4


def shape_label(key: str, N: int, T: int, D: int, H: int) -> str:
    return f"({key}) N={N} T={T} D={D} H={H}"


def forward_flops(N: int, T: int, D: int, H: int, gates: int) -> float:
    """Matmul FLOPs of the forward pass: 2 N T D (gates H) + 2 N T H (gates H)."""
    return 2.0 * N * T * (D + H) * gates * H


def fwd_bwd_flops(N: int, T: int, D: int, H: int, gates: int) -> float:
    """Forward + backward: the backward has twice the forward's matmul FLOPs."""
    return 3.0 * forward_flops(N, T, D, H, gates)


def make_problem(N: int, T: int, D: int, H: int, gates: int, seed: int = 0, *,
                 hidden_bias: bool = False) -> dict[str, np.ndarray]:
    """float32 inputs, weights scaled 1/sqrt(fan-in) so the gates stay out of saturation;
    `hidden_bias`: also `bh` (gates*H,), the GRU's second bias (drawn after the rest, so the
    other arrays do not depend on it)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    p = {
        "x": rng.standard_normal((N, T, D)).astype(f32),
        "h0": (0.5 * rng.standard_normal((N, H))).astype(f32),
        "Wx": (rng.standard_normal((D, gates * H)) / np.sqrt(D)).astype(f32),
        "Wh": (rng.standard_normal((H, gates * H)) / np.sqrt(H)).astype(f32),
        "b": (0.1 * rng.standard_normal(gates * H)).astype(f32),
        "dout": rng.standard_normal((N, T, H)).astype(f32),
    }
    if hidden_bias:
        p["bh"] = (0.1 * rng.standard_normal(gates * H)).astype(f32)
    return p


def param_keys(p: dict) -> tuple[str, ...]:
    """The differentiated arguments of the problem's layer, in the layer's order."""
    return PARAM_KEYS + (("bh",) if "bh" in p else ())


def grad_keys(p: dict) -> tuple[str, ...]:
    return tuple("d" + k for k in param_keys(p))


def valid_mask(lengths, T: int):
    """(N, T, 1) bool: step t of sequence n is inside its length; None without lengths."""
    if lengths is None:
        return None
    return (np.arange(T)[None, :] < np.asarray(lengths)[:, None])[..., None]


class Impl(NamedTuple):
    """One contender: zero-argument timed callables and converters to the common layout."""

    fwd_bwd: Callable[[], Any]  # -> raw gradients
    fwd: Callable[[], Any]  # -> raw output
    grads: Callable[[Any], dict]  # raw gradients -> {dx, dh0, dWx, dWh, db[, dbh]} (jaxseq layout, numpy)
    out: Callable[[Any], dict]  # raw output -> {"h": (N, T, H)}, and "h_n" (N, H) with the final state


def _outputs(state: bool) -> Callable[[Any], dict]:
    """Raw forward result -> {"h"} or, with the final state, (h, h_n, ...) -> {"h", "h_n"}."""
    if state:
        return lambda r: {"h": np.asarray(r[0]), "h_n": np.asarray(r[1])}
    return lambda r: {"h": np.asarray(r)}


# ----------------------------------------------------------------------------- JAX contenders


def recurrent_scan(cell, x, carry0, Wx, b, lengths=None, reverse=False):
    """The autodiff reference shared by every cell: the input projection x Wx + b hoisted out
    of the loop, then one `lax.scan` of `cell(carry, xw_t) -> (carry, h_t)`.

    With `lengths` (N,), PyTorch's packed-sequence semantics written as plain masks: the carry
    is frozen where t >= lengths[n] and h_t is 0 there. `reverse`: the scan runs from t = T-1
    down to 0; with the masks the carry stays the initial one until t = lengths[n] - 1, so each
    sequence is read backward within its own length (a bidirectional layer's backward
    direction). Returns (h (N, T, H), final carry).
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    xw = jnp.einsum("ntd,dm->tnm", x, Wx) + b
    if lengths is None:
        carry, h_tm = lax.scan(cell, carry0, xw, reverse=reverse)
        return jnp.swapaxes(h_tm, 0, 1), carry
    valid = (jnp.arange(x.shape[1])[:, None] < lengths[None, :])[..., None]  # (T, N, 1)

    def step(carry, inputs):
        xw_t, valid_t = inputs
        new, h = cell(carry, xw_t)
        new = jax.tree_util.tree_map(lambda n, o: jnp.where(valid_t, n, o), new, carry)
        return new, jnp.where(valid_t, h, 0.0)

    carry, h_tm = lax.scan(step, carry0, (xw, valid), reverse=reverse)
    return jnp.swapaxes(h_tm, 0, 1), carry


def lstm_scan(x, h0, Wx, Wh, b, *, lengths=None, reverse=False, return_state=False):
    """Plain LSTM (gates i, f, o, g, c0 = 0) on `recurrent_scan`, for autodiff; jaxseq's
    signature: h, or (h, h_n, c_n) with return_state."""
    import jax
    import jax.numpy as jnp

    H = h0.shape[-1]

    def cell(carry, xw_t):
        h, c = carry
        a = xw_t + h @ Wh
        i = jax.nn.sigmoid(a[:, :H])
        f = jax.nn.sigmoid(a[:, H:2 * H])
        o = jax.nn.sigmoid(a[:, 2 * H:3 * H])
        g = jnp.tanh(a[:, 3 * H:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    h, (h_n, c_n) = recurrent_scan(cell, x, (h0, jnp.zeros_like(h0)), Wx, b, lengths, reverse)
    return (h, h_n, c_n) if return_state else h


def rnn_scan(x, h0, Wx, Wh, b, *, lengths=None, return_state=False):
    """Plain tanh RNN on `recurrent_scan`, for autodiff: h, or (h, h_n) with return_state."""
    import jax.numpy as jnp

    def cell(h, xw_t):
        h = jnp.tanh(xw_t + h @ Wh)
        return h, h

    h, h_n = recurrent_scan(cell, x, h0, Wx, b, lengths)
    return (h, h_n) if return_state else h


def _grad_fn(layer, n_params: int = 5):
    """jax.grad of loss(*params, dout, **options) = sum(layer(*params, **options) * dout) with
    respect to the params (options such as `lengths` are passed through, not differentiated)."""
    import jax
    import jax.numpy as jnp

    def loss(*args, **options):
        *params, dout = args
        return jnp.sum(layer(*params, **options) * dout)

    return jax.grad(loss, argnums=tuple(range(n_params)))


@functools.lru_cache(maxsize=None)
def _jitted(layer, n_params: int, state: bool):
    """(jitted jax.grad, jitted forward) of a layer function, one pair per layer: contenders
    built again at a shape already compiled (tests, the demo) reuse the compilation."""
    import jax

    return jax.jit(_grad_fn(layer, n_params)), jax.jit(functools.partial(layer, return_state=True) if state else layer)


def jax_impl(layer, p: dict, *, state: bool = False) -> Impl:
    """A JAX layer function (x, h0, Wx, Wh, b[, bh], lengths=..., return_state=...) -> h, jitted
    forward and jitted jax.grad; `lengths` (when the problem has them) are a jit argument, so
    nothing is specialized on their values; `state`: the forward also returns h_n."""
    import jax

    keys = param_keys(p)
    args = tuple(jax.device_put(p[k]) for k in keys)
    dout = jax.device_put(p["dout"])
    options = {"lengths": jax.device_put(p["lengths"])} if "lengths" in p else {}
    grad, fwd = _jitted(layer, len(keys), state)
    return Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(*args, dout, **options)),
        fwd=lambda: jax.block_until_ready(fwd(*args, **options)),
        grads=lambda r: dict(zip(grad_keys(p), (np.asarray(a) for a in r))),
        out=_outputs(state),
    )


def _flax_lstm_carry(h0):
    """OptimizedLSTMCell's carry is (c, h); jaxseq starts from c0 = 0."""
    import jax.numpy as jnp

    return jnp.zeros_like(h0), h0


def _flax_lstm_h(carry):
    return carry[1]


def _same(carry):
    """The carry of a cell whose state is h alone (SimpleCell, GRUCell), and its h."""
    return carry


def _flax_functions(model, initial_carry, final_h=_same):
    """forward(params, x, h0, lengths=None, state=False) -> h [, h_n] and loss(params, x, h0,
    dout, lengths=None) = sum(h * dout) of a Flax `nn.RNN`.

    With lengths: `seq_lengths=` is passed, and since Flax does not zero the outputs past a
    length (it only uses seq_lengths to pick the final carry), they are zeroed by a mask, so
    that the contender computes what the others do. `final_h` takes h out of the cell's carry.
    """
    import jax.numpy as jnp

    def forward(params, x, h0, lengths=None, state=False):
        options = {} if lengths is None else {"seq_lengths": lengths}
        result = model.apply(params, x, initial_carry=initial_carry(h0), return_carry=state, **options)
        carry, h = result if state else (None, result)
        if lengths is not None:
            h = jnp.where((jnp.arange(x.shape[1])[None, :] < lengths[:, None])[..., None], h, 0.0)
        return (h, final_h(carry)) if state else h

    def loss(params, x, h0, dout, lengths=None):
        return jnp.sum(forward(params, x, h0, lengths) * dout)

    return forward, loss


@functools.lru_cache(maxsize=None)
def _flax_jitted(cell_type, H: int, initial_carry, final_h, state: bool):
    """(jitted jax.grad, jitted forward) of `nn.RNN(cell_type(H))`, one pair per kind (as `_jitted`)."""
    import flax.linen as nn
    import jax

    forward, loss = _flax_functions(nn.RNN(cell_type(H)), initial_carry, final_h)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2))), jax.jit(functools.partial(forward, state=state))


def _flax_impl(cell_type, initial_carry, cell: dict, p: dict, weight_grads: Callable[[dict], dict], *,
               final_h=_same, state: bool = False) -> Impl:
    """`nn.RNN(cell_type(H))` with the given cell parameters; `weight_grads` maps the cell's
    parameter gradients to {dWx, dWh, db[, dbh]} in jaxseq's layout."""
    import jax

    grad, fwd = _flax_jitted(cell_type, p["h0"].shape[1], initial_carry, final_h, state)
    params = jax.device_put({"params": {"cell": cell}})
    x, h0, dout = (jax.device_put(p[k]) for k in ("x", "h0", "dout"))
    options = {"lengths": jax.device_put(p["lengths"])} if "lengths" in p else {}

    def grads(r):
        dparams, dx, dh0 = r
        return {"dx": np.asarray(dx), "dh0": np.asarray(dh0), **weight_grads(dparams["params"]["cell"])}

    return Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(params, x, h0, dout, **options)),
        fwd=lambda: jax.block_until_ready(fwd(params, x, h0, **options)),
        grads=grads,
        out=_outputs(state),
    )


# Flax OptimizedLSTMCell keeps one kernel per gate: input kernels i{gate} (no bias), hidden
# kernels h{gate} with the bias. jaxseq's 4H axis is ordered i, f, o, g.
_JAXSEQ_GATES = ("i", "f", "o", "g")


def flax_lstm_cell(Wx, Wh, b) -> dict:
    """OptimizedLSTMCell's parameters from jaxseq's layout: Wx (D, 4H), Wh (H, 4H), b (4H,)."""
    H = Wh.shape[0]
    cell = {}
    for k, gate in enumerate(_JAXSEQ_GATES):
        cols = slice(k * H, (k + 1) * H)
        cell[f"i{gate}"] = {"kernel": Wx[:, cols]}
        cell[f"h{gate}"] = {"kernel": Wh[:, cols], "bias": b[cols]}
    return cell


def flax_lstm_weight_grads(c: dict) -> dict:
    """OptimizedLSTMCell's parameter gradients as {dWx, dWh, db} in jaxseq's layout."""
    return {
        "dWx": np.concatenate([np.asarray(c[f"i{g}"]["kernel"]) for g in _JAXSEQ_GATES], axis=1),
        "dWh": np.concatenate([np.asarray(c[f"h{g}"]["kernel"]) for g in _JAXSEQ_GATES], axis=1),
        "db": np.concatenate([np.asarray(c[f"h{g}"]["bias"]) for g in _JAXSEQ_GATES]),
    }


def flax_lstm_impl(p: dict, state: bool = False) -> Impl:
    import flax.linen as nn

    cell = flax_lstm_cell(p["Wx"], p["Wh"], p["b"])
    return _flax_impl(nn.OptimizedLSTMCell, _flax_lstm_carry, cell, p, flax_lstm_weight_grads,
                      final_h=_flax_lstm_h, state=state)


def flax_rnn_impl(p: dict, state: bool = False) -> Impl:
    """nn.SimpleCell: h = tanh(Dense_i(x) + Dense_h(h)); the input Dense carries the bias."""
    import flax.linen as nn

    cell = {"i": {"kernel": p["Wx"], "bias": p["b"]}, "h": {"kernel": p["Wh"]}}

    def weight_grads(c):
        return {"dWx": np.asarray(c["i"]["kernel"]), "dWh": np.asarray(c["h"]["kernel"]),
                "db": np.asarray(c["i"]["bias"])}

    return _flax_impl(nn.SimpleCell, _same, cell, p, weight_grads, state=state)


# ----------------------------------------------------------------------------- PyTorch contender

# PyTorch's 4H axis is ordered i, f, g, o: jaxseq's blocks (i, f, o, g) taken as 0, 1, 3, 2.
_TORCH_BLOCKS = (0, 1, 3, 2)


def _to_torch_gates(a: np.ndarray, H: int) -> np.ndarray:
    """Reorder the last axis (4H) from jaxseq's i, f, o, g to PyTorch's i, f, g, o (an involution)."""
    return np.concatenate([a[..., k * H:(k + 1) * H] for k in _TORCH_BLOCKS], axis=-1)


def torch_impl(p: dict, kind: str, state: bool = False) -> Impl:
    """nn.LSTM (kind="lstm"), nn.GRU ("gru": gates r, z, n as jaxseq, bias_hh = bh) or
    nn.RNN(nonlinearity='tanh') ("rnn"), batch_first, float32; bias_hh is 0 for LSTM and RNN.

    With lengths, the timed call is what a PyTorch user runs: `pack_padded_sequence(x,
    lengths, batch_first=True, enforce_sorted=False)`, the module, `pad_packed_sequence(...,
    total_length=T)`.
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    N, T, D = p["x"].shape
    H = p["h0"].shape[1]
    if kind == "lstm":
        module = torch.nn.LSTM(D, H, batch_first=True)
    elif kind == "gru":
        module = torch.nn.GRU(D, H, batch_first=True)
    else:
        module = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True)
    reorder = (lambda a: _to_torch_gates(a, H)) if kind == "lstm" else (lambda a: a)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(reorder(p["Wx"]).T)))
        module.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(reorder(p["Wh"]).T)))
        module.bias_ih_l0.copy_(torch.from_numpy(reorder(p["b"])))
        if "bh" in p:
            module.bias_hh_l0.copy_(torch.from_numpy(reorder(p["bh"])))
        else:
            module.bias_hh_l0.zero_()
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    h0 = torch.from_numpy(p["h0"])[None].clone().requires_grad_(True)
    dout = torch.from_numpy(p["dout"])
    c0 = torch.zeros_like(h0)
    initial = (lambda: (h0, c0)) if kind == "lstm" else (lambda: h0)
    final_h = (lambda final: final[0][0]) if kind == "lstm" else (lambda final: final[0])
    leaves = [x, h0, *module.parameters()]
    lengths = torch.from_numpy(np.asarray(p["lengths"], np.int64)) if "lengths" in p else None

    def run():
        if lengths is None:
            return module(x, initial())
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = module(packed, initial())
        return pad_packed_sequence(out, batch_first=True, total_length=T)[0], final

    def fwd_bwd():
        for leaf in leaves:
            leaf.grad = None
        out, _ = run()
        (out * dout).sum().backward()
        biases = (module.bias_ih_l0.grad,) + ((module.bias_hh_l0.grad,) if "bh" in p else ())
        return (x.grad, h0.grad, module.weight_ih_l0.grad, module.weight_hh_l0.grad, *biases)

    def fwd():
        with torch.inference_mode():
            out, final = run()
            return (out, final_h(final)) if state else out

    def grads(r):
        dx, dh0, dWih, dWhh, *dbiases = (t.detach().numpy() for t in r)
        named = {"dx": dx, "dh0": dh0[0], "dWx": reorder(dWih.T), "dWh": reorder(dWhh.T)}
        return {**named, **dict(zip(("db", "dbh"), (reorder(d) for d in dbiases)))}

    return Impl(fwd_bwd=fwd_bwd, fwd=fwd, grads=grads, out=_outputs(state))


# ----------------------------------------------------------------------------- NumPy reference

# Every NumPy forward returns (h (N, T, H) zero past each length, h_n (N, H), cache) and takes
# `lengths` (N,) or None; masks follow PyTorch's packed sequences as the JAX layers do.


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # = 1 / (1 + exp(-a)), without overflow warnings


def _np_valid_tm(lengths, T: int):
    """(T, N, 1) bool, t < lengths[n]; None without lengths."""
    mask = valid_mask(lengths, T)
    return None if mask is None else np.ascontiguousarray(mask.transpose(1, 0, 2))


def _np_keep(valid_tm, t: int, new, old):
    """The state after step t: `new` where the step is valid, else the frozen `old`."""
    return new if valid_tm is None else np.where(valid_tm[t], new, old)


def _np_output_grads_tm(dh, valid_tm):
    """The upstream gradient dh (N, T, H) time-major, 0 past each length (the outputs there
    are constant zeros: nothing flows back from them)."""
    dh_tm = dh.transpose(1, 0, 2)
    return dh_tm if valid_tm is None else dh_tm * valid_tm


def _np_outputs(h_tm, valid_tm):
    """Outputs (N, T, H) from the states (T, N, H): the states, 0 past each length."""
    return (h_tm if valid_tm is None else h_tm * valid_tm).transpose(1, 0, 2)


def _np_sequence_grads(x_tm, Wx, h0, h_tm, da, da_h=None):
    """dx, dWx, dWh, db (and dbh from da_h, the hidden side's gradient, when it differs from
    the input side's da) as one matmul or sum each, after the backward loop."""
    T, N, D = x_tm.shape
    G = da.shape[-1]
    da_flat = da.reshape(T * N, G)
    dx = (da_flat @ Wx.T).reshape(T, N, D).transpose(1, 0, 2)
    h_prev = np.concatenate([h0[None], h_tm[:-1]], axis=0).reshape(T * N, h0.shape[1])
    dWx = x_tm.reshape(T * N, D).T @ da_flat
    if da_h is None:
        return dx, dWx, h_prev.T @ da_flat, da_flat.sum(axis=0)
    da_h_flat = da_h.reshape(T * N, G)
    return dx, dWx, h_prev.T @ da_h_flat, da_flat.sum(axis=0), da_h_flat.sum(axis=0)


def np_lstm_forward(x, h0, Wx, Wh, b, lengths=None):
    """float32 NumPy LSTM (gates i, f, o, g, c0 = 0): (h (N, T, H), h_n, cache)."""
    N, T, D = x.shape
    H = h0.shape[1]
    valid = _np_valid_tm(lengths, T)
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
        next_c = f * prev_c + i * g
        c_tm[t] = _np_keep(valid, t, next_c, prev_c)
        h_tm[t] = _np_keep(valid, t, o * np.tanh(next_c), prev_h)
        prev_h, prev_c = h_tm[t], c_tm[t]
    return _np_outputs(h_tm, valid), prev_h, (x_tm, h0, Wx, Wh, h_tm, c_tm, gates, valid)


def np_lstm_backward(dh, cache):
    x_tm, h0, Wx, Wh, h_tm, c_tm, gates, valid = cache
    T, N, D = x_tm.shape
    H = h0.shape[1]
    WhT = np.ascontiguousarray(Wh.T)
    dh_tm = _np_output_grads_tm(dh, valid)
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
        if valid is not None:
            da[t] *= valid[t]
        dnext_c = _np_keep(valid, t, dc * f, dnext_c)
        dnext_h = _np_keep(valid, t, da[t] @ WhT, dnext_h)
    dx, dWx, dWh, db = _np_sequence_grads(x_tm, Wx, h0, h_tm, da)
    return dx, dnext_h, dWx, dWh, db


def np_rnn_forward(x, h0, Wx, Wh, b, lengths=None):
    N, T, D = x.shape
    H = h0.shape[1]
    valid = _np_valid_tm(lengths, T)
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))
    xw = (x_tm.reshape(T * N, D) @ Wx).reshape(T, N, H) + b
    h_tm = np.empty((T, N, H), np.float32)
    prev_h = h0
    for t in range(T):
        h_tm[t] = _np_keep(valid, t, np.tanh(xw[t] + prev_h @ Wh), prev_h)
        prev_h = h_tm[t]
    return _np_outputs(h_tm, valid), prev_h, (x_tm, h0, Wx, Wh, h_tm, valid)


def np_rnn_backward(dh, cache):
    x_tm, h0, Wx, Wh, h_tm, valid = cache
    T, N, D = x_tm.shape
    H = h0.shape[1]
    WhT = np.ascontiguousarray(Wh.T)
    dh_tm = _np_output_grads_tm(dh, valid)
    da = np.empty((T, N, H), np.float32)
    dnext_h = np.zeros((N, H), np.float32)
    for t in reversed(range(T)):
        da[t] = (dh_tm[t] + dnext_h) * (1.0 - h_tm[t] * h_tm[t])
        if valid is not None:
            da[t] *= valid[t]
        dnext_h = _np_keep(valid, t, da[t] @ WhT, dnext_h)
    dx, dWx, dWh, db = _np_sequence_grads(x_tm, Wx, h0, h_tm, da)
    return dx, dnext_h, dWx, dWh, db


def numpy_impl(p: dict, forward, backward, state: bool = False) -> Impl:
    """A NumPy forward (see above) and its hand backward -> (dx, dh0, dWx, dWh, db[, dbh])."""
    args = tuple(p[k] for k in param_keys(p))
    dout, lengths = p["dout"], p.get("lengths")

    def fwd_bwd():
        _, _, cache = forward(*args, lengths=lengths)
        return backward(dout, cache)  # d sum(h * dout) / dh = dout

    def fwd():
        h, h_n, _ = forward(*args, lengths=lengths)
        return (h, h_n) if state else h

    return Impl(
        fwd_bwd=fwd_bwd,
        fwd=fwd,
        grads=lambda r: dict(zip(grad_keys(p), (np.asarray(a) for a in r))),
        out=_outputs(state),
    )


# ----------------------------------------------------------------------------- contenders per case


class LayerSpec(NamedTuple):
    """One recurrent layer as each contender writes it."""

    jaxseq: Callable  # the library function
    scan: Callable  # the autodiff-scan reference, same signature
    flax: Callable[..., Impl]  # (p, state) -> Impl
    torch_kind: str  # "lstm", "gru" or "rnn" for `torch_impl`
    numpy: tuple[Callable, Callable]  # (forward, backward)


def layer_spec(kind: str) -> LayerSpec:
    """The LSTM's or the RNN's contenders (the GRU's: `bench_recurrent.gru_spec`)."""
    import jaxseq.layers

    if kind == "lstm":
        return LayerSpec(jaxseq.layers.lstm, lstm_scan, flax_lstm_impl, "lstm", (np_lstm_forward, np_lstm_backward))
    if kind == "rnn":
        return LayerSpec(jaxseq.layers.rnn, rnn_scan, flax_rnn_impl, "rnn", (np_rnn_forward, np_rnn_backward))
    raise ValueError(f"unknown layer kind {kind!r}: expected 'lstm' or 'rnn'")


def spec_impls(spec: LayerSpec, p: dict, *, state: bool = False) -> dict[str, Impl]:
    """The five contenders of one layer on problem `p` (with its `bh`, `lengths` if any), jaxseq
    first; `state`: their forwards also return the final hidden state h_n."""
    return {
        "jaxseq": jax_impl(spec.jaxseq, p, state=state),
        "autodiff-scan": jax_impl(spec.scan, p, state=state),
        "flax": spec.flax(p, state=state),
        "torch": torch_impl(p, spec.torch_kind, state=state),
        "numpy": numpy_impl(p, *spec.numpy, state=state),
    }


def layer_impls(p: dict, kind: str) -> dict[str, Impl]:
    """The contenders of case 1 (kind="lstm") or case 2 (kind="rnn"), jaxseq first."""
    return spec_impls(layer_spec(kind), p)


def _assert_zero_padding(name: str, out: dict, grads: dict, valid: np.ndarray) -> None:
    """Outputs and input gradients past each length must be exactly 0 (packed-sequence semantics)."""
    pad = ~valid[..., 0]
    for what, array in (("h", out["h"]), ("dx", grads["dx"])):
        worst = float(np.max(np.abs(array[pad]), initial=0.0))
        if worst != 0.0:
            raise AssertionError(f"{name}: {what} is not 0 past the lengths (largest |value| {worst:.2e})")


def check_agreement(impls: dict[str, Impl], rtol: float = AGREEMENT_RTOL, reference: str = "jaxseq",
                    valid: np.ndarray | None = None) -> dict:
    """Assert that every contender's output and gradients match the reference's (float32, rtol).

    `valid` (N, T, 1) bool, for problems with lengths: also assert that every contender's
    outputs and input gradients past each length are exactly 0.
    Returns {contender: {array: relative error}}; raises AssertionError on a mismatch, so a
    benchmark never times different computations.
    """
    computed = {name: (impl.grads(impl.fwd_bwd()), impl.out(impl.fwd())) for name, impl in impls.items()}
    if valid is not None:
        for name, (grads, out) in computed.items():
            _assert_zero_padding(name, out, grads, valid)
    ref_grads, ref_out = computed[reference]
    errors = {}
    for name, (grads, out) in computed.items():
        if name == reference:
            continue
        errs = harness.assert_agree(name + " (fwd+bwd)", grads, ref_grads, rtol, reference)
        errs.update(harness.assert_agree(name + " (fwd)", out, ref_out, rtol, reference))
        errors[name] = errs
    return errors


def agreement_note(errors: dict) -> str:
    worst = max((max(e.values()) for e in errors.values()), default=0.0)
    return f"all contenders agree with jaxseq (largest relative error {worst:.1e})"


def bench_fwd_bwd_and_fwd(case: str, impls: dict[str, Impl], label: str, fwd_flops: float, *, reps: int,
                          warmup: int, notes: str, variants=("fwd+bwd", "fwd")) -> list[dict]:
    """Time the contenders' fwd+bwd and fwd (interleaved, each variant its own table)."""
    results = []
    for variant in variants:
        fns = [(name, impl.fwd_bwd if variant == "fwd+bwd" else impl.fwd) for name, impl in impls.items()]
        results += harness.bench(case, fns, variant=variant, shape=label,
                                 flops=3 * fwd_flops if variant == "fwd+bwd" else fwd_flops,
                                 reps=reps, warmup=warmup, notes=notes)
    return results


def bench_recurrent(kind: str, shapes: dict, *, reps: int, warmup: int) -> list[dict]:
    gates = GATES[kind]
    results = []
    for key, (N, T, D, H) in shapes.items():
        p = make_problem(N, T, D, H, gates, seed=0)
        impls = layer_impls(p, kind)
        note = agreement_note(check_agreement(impls))
        results += bench_fwd_bwd_and_fwd(kind, impls, shape_label(key, N, T, D, H), forward_flops(N, T, D, H, gates),
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
    reps, warmup = harness.repetitions(quick)
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
