"""A NumPy reference of the recurrent sequence layers: forwards and hand-written backwards.

Pure NumPy (no JAX), written apart from `jaxseq.layers` so that it can check it: the tests
compare the layers with it in float64, and the benchmarks time it as the NumPy contender in
float32. Each layer is vectorised over the batch and loops over time, the input projection
x Wx for all steps is one matmul before the loop and dx, dWx, dWh, db are one matmul or sum
each after the backward loop (what a fair NumPy implementation does). Arrays keep the dtype
of the inputs.

Shapes (batch-major; N batch, T time, D input, H hidden, G gate width):

    x (N, T, D)    h0, c0 (N, H)    Wx (D, G)    Wh (H, G)    b, bh (G,)    lengths (N,) or None

G = H (rnn), 4H (lstm: gates i, f, o, g, the course's order) or 3H (gru: PyTorch's r, z, n,
with its second bias bh inside r * (h Wh_n + bh_n)).

Semantics (PyTorch's packed sequences, as in `jaxseq.layers`): sequence n reads x[n, t] for
t = 0 .. lengths[n]-1 (`reverse=True`: from lengths[n]-1 down to 0); the output at each step
read is the new state, every other output is exactly 0; the final state is the state after
the last step read (the initial state when lengths[n] = 0).

    rnn_forward(x, h0, Wx, Wh, b)        -> (h (N, T, H), h_n (N, H), cache)
    lstm_forward(x, h0, Wx, Wh, b, c0=)  -> (h, h_n, c_n, cache)
    gru_forward(x, h0, Wx, Wh, b, bh)    -> (h, h_n, cache)
    <cell>_backward(dh, cache, dh_n=[, dc_n=]) -> {"dx", "dh0"[, "dc0"], "dWx", "dWh", "db"[, "dbh"]}

The backwards return the gradients of sum(h * dh) + sum(h_n * dh_n) (+ sum(c_n * dc_n)).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np


def sigmoid(a):
    """1 / (1 + exp(-a)) written as 0.5 (1 + tanh(a / 2)): the same value, no overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def valid_mask(lengths, T: int):
    """(N, T, 1) bool: step t of sequence n is inside its length; None without lengths."""
    if lengths is None:
        return None
    return (np.arange(T)[None, :] < np.asarray(lengths)[:, None])[..., None]


def reverse_within_lengths(x, lengths):
    """x (N, T, ...) with each sequence's first lengths[n] steps in reverse order."""
    out = np.array(x, copy=True)
    for n, length in enumerate(lengths):
        out[n, :length] = x[n, :length][::-1]
    return out


# ----------------------------------------------------------------------------- shared machinery


class _Sequence(NamedTuple):
    """What every cell's loop needs: the time-major input, its projection, the masks, the order."""

    x_tm: np.ndarray  # (T, N, D)
    xw: np.ndarray  # (T, N, G): x Wx + b for every step
    valid: np.ndarray | None  # (T, N, 1) bool, or None without lengths
    order: range  # the steps in the order they are read
    dtype: np.dtype


def _sequence(x, Wx, b, lengths, reverse: bool) -> _Sequence:
    x = np.asarray(x)
    N, T, D = x.shape
    mask = valid_mask(lengths, T)
    valid = None if mask is None else np.ascontiguousarray(mask.transpose(1, 0, 2))
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))
    xw = (x_tm.reshape(T * N, D) @ Wx).reshape(T, N, -1) + b
    order = range(T - 1, -1, -1) if reverse else range(T)
    return _Sequence(x_tm, xw, valid, order, xw.dtype)


def _keep(valid, t: int, new, old):
    """The state after step t: `new` where the step is read, else the frozen `old`."""
    return new if valid is None else np.where(valid[t], new, old)


def _outputs(h_tm, valid):
    """Outputs (N, T, H) from the states (T, N, H): the states, 0 past each length."""
    return (h_tm if valid is None else h_tm * valid).transpose(1, 0, 2)


def _output_grads_tm(dh, valid):
    """dh (N, T, H) time-major, 0 past each length (those outputs are constant zeros)."""
    dh_tm = np.asarray(dh).transpose(1, 0, 2)
    return dh_tm if valid is None else dh_tm * valid


def _before(states_tm, initial, t: int, reverse: bool):
    """The state step t started from: the one after the step read before it, or `initial`."""
    s = t + 1 if reverse else t - 1
    return initial if s < 0 or s >= len(states_tm) else states_tm[s]


def _states_before(states_tm, initial, reverse: bool):
    """(T, N, H): the state every step started from (see `_before`), for the weight gradients."""
    if reverse:
        return np.concatenate([states_tm[1:], initial[None]], axis=0)
    return np.concatenate([initial[None], states_tm[:-1]], axis=0)


def _zeros_or(array, shape, dtype):
    return np.zeros(shape, dtype) if array is None else np.asarray(array, dtype)


def _sequence_grads(seq: _Sequence, Wx, h_before_tm, da, da_h=None) -> dict:
    """dx, dWx, dWh, db (and dbh from da_h, the hidden side's gradient, where it differs from
    the input side's da) as one matmul or sum each, after the backward loop."""
    T, N, D = seq.x_tm.shape
    G = da.shape[-1]
    da_flat = da.reshape(T * N, G)
    da_h_flat = da_flat if da_h is None else da_h.reshape(T * N, G)
    grads = {
        "dx": (da_flat @ Wx.T).reshape(T, N, D).transpose(1, 0, 2),
        "dWx": seq.x_tm.reshape(T * N, D).T @ da_flat,
        "dWh": h_before_tm.reshape(T * N, -1).T @ da_h_flat,
        "db": da_flat.sum(axis=0),
    }
    if da_h is not None:
        grads["dbh"] = da_h_flat.sum(axis=0)
    return grads


# ----------------------------------------------------------------------------- vanilla RNN


class RNNCache(NamedTuple):
    seq: _Sequence
    h0: np.ndarray
    Wx: np.ndarray
    Wh: np.ndarray
    h_tm: np.ndarray  # (T, N, H) the state after each step (frozen past the lengths)
    reverse: bool


def rnn_forward(x, h0, Wx, Wh, b, *, lengths=None, reverse=False):
    """h_t = tanh(x_t Wx + h_{t-1} Wh + b). Returns (h (N, T, H), h_n (N, H), cache)."""
    seq = _sequence(x, Wx, b, lengths, reverse)
    T, N, _ = seq.xw.shape
    h_tm = np.empty((T, N, h0.shape[1]), seq.dtype)
    prev_h = h0
    for t in seq.order:
        h_tm[t] = _keep(seq.valid, t, np.tanh(seq.xw[t] + prev_h @ Wh), prev_h)
        prev_h = h_tm[t]
    return _outputs(h_tm, seq.valid), prev_h, RNNCache(seq, h0, Wx, Wh, h_tm, reverse)


def rnn_backward(dh, cache: RNNCache, *, dh_n=None) -> dict:
    """Gradients {dx, dh0, dWx, dWh, db} of sum(h * dh) + sum(h_n * dh_n)."""
    seq, h0, Wx, Wh, h_tm, reverse = cache
    T, N, H = h_tm.shape
    WhT = np.ascontiguousarray(Wh.T)
    dh_tm = _output_grads_tm(dh, seq.valid)
    da = np.empty((T, N, H), seq.dtype)
    dnext_h = _zeros_or(dh_n, (N, H), seq.dtype)
    for t in reversed(seq.order):
        da[t] = (dh_tm[t] + dnext_h) * (1.0 - h_tm[t] * h_tm[t])
        if seq.valid is not None:
            da[t] *= seq.valid[t]
        dnext_h = _keep(seq.valid, t, da[t] @ WhT, dnext_h)
    grads = _sequence_grads(seq, Wx, _states_before(h_tm, h0, reverse), da)
    return {"dx": grads.pop("dx"), "dh0": dnext_h, **grads}


# ----------------------------------------------------------------------------- LSTM


class LSTMCache(NamedTuple):
    seq: _Sequence
    h0: np.ndarray
    c0: np.ndarray
    Wx: np.ndarray
    Wh: np.ndarray
    h_tm: np.ndarray  # (T, N, H) states after each step (frozen past the lengths)
    c_tm: np.ndarray  # (T, N, H) cell states likewise
    gates: np.ndarray  # (T, N, 4H) i, f, o, g after their nonlinearities
    reverse: bool


def lstm_forward(x, h0, Wx, Wh, b, *, c0=None, lengths=None, reverse=False):
    """The course's LSTM: a = x_t Wx + h_{t-1} Wh + b, i, f, o = sigmoid, g = tanh (along 4H
    in that order), c_t = f c_{t-1} + i g, h_t = o tanh(c_t); c0 = 0 unless given.
    Returns (h (N, T, H), h_n (N, H), c_n (N, H), cache)."""
    seq = _sequence(x, Wx, b, lengths, reverse)
    T, N, _ = seq.xw.shape
    H = h0.shape[1]
    h_tm = np.empty((T, N, H), seq.dtype)
    c_tm = np.empty((T, N, H), seq.dtype)
    gates = np.empty((T, N, 4 * H), seq.dtype)
    c0 = _zeros_or(c0, (N, H), seq.dtype)
    prev_h, prev_c = h0, c0
    for t in seq.order:
        a = seq.xw[t] + prev_h @ Wh
        gates[t, :, :3 * H] = sigmoid(a[:, :3 * H])
        gates[t, :, 3 * H:] = np.tanh(a[:, 3 * H:])
        i, f, o, g = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        next_c = f * prev_c + i * g
        c_tm[t] = _keep(seq.valid, t, next_c, prev_c)
        h_tm[t] = _keep(seq.valid, t, o * np.tanh(next_c), prev_h)
        prev_h, prev_c = h_tm[t], c_tm[t]
    cache = LSTMCache(seq, h0, c0, Wx, Wh, h_tm, c_tm, gates, reverse)
    return _outputs(h_tm, seq.valid), prev_h, prev_c, cache


def lstm_backward(dh, cache: LSTMCache, *, dh_n=None, dc_n=None) -> dict:
    """Gradients {dx, dh0, dc0, dWx, dWh, db} of sum(h * dh) + sum(h_n * dh_n) + sum(c_n * dc_n)."""
    seq, h0, c0, Wx, Wh, h_tm, c_tm, gates, reverse = cache
    T, N, H = h_tm.shape
    WhT = np.ascontiguousarray(Wh.T)
    dh_tm = _output_grads_tm(dh, seq.valid)
    da = np.empty((T, N, 4 * H), seq.dtype)
    dnext_h = _zeros_or(dh_n, (N, H), seq.dtype)
    dnext_c = _zeros_or(dc_n, (N, H), seq.dtype)
    for t in reversed(seq.order):
        i, f, o, g = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        prev_c = _before(c_tm, c0, t, reverse)
        tc = np.tanh(c_tm[t])
        dh_t = dh_tm[t] + dnext_h
        dc = dnext_c + dh_t * o * (1.0 - tc * tc)
        da[t, :, :H] = dc * g * i * (1.0 - i)
        da[t, :, H:2 * H] = dc * prev_c * f * (1.0 - f)
        da[t, :, 2 * H:3 * H] = dh_t * tc * o * (1.0 - o)
        da[t, :, 3 * H:] = dc * i * (1.0 - g * g)
        if seq.valid is not None:
            da[t] *= seq.valid[t]
        dnext_c = _keep(seq.valid, t, dc * f, dnext_c)
        dnext_h = _keep(seq.valid, t, da[t] @ WhT, dnext_h)
    grads = _sequence_grads(seq, Wx, _states_before(h_tm, h0, reverse), da)
    return {"dx": grads.pop("dx"), "dh0": dnext_h, "dc0": dnext_c, **grads}


# ----------------------------------------------------------------------------- GRU


class GRUCache(NamedTuple):
    seq: _Sequence
    h0: np.ndarray
    Wx: np.ndarray
    Wh: np.ndarray
    h_tm: np.ndarray  # (T, N, H) states after each step (frozen past the lengths)
    gates: np.ndarray  # (T, N, 3H) r, z, n
    hw_n: np.ndarray  # (T, N, H) (h_{t-1} Wh + bh)_n, needed by dr
    reverse: bool


def gru_forward(x, h0, Wx, Wh, b, bh, *, lengths=None, reverse=False):
    """PyTorch's GRU: r = sigmoid(xw_r + hw_r), z = sigmoid(xw_z + hw_z), n = tanh(xw_n + r hw_n),
    h_t = (1 - z) n + z h_{t-1}, with xw = x_t Wx + b and hw = h_{t-1} Wh + bh.
    Returns (h (N, T, H), h_n (N, H), cache)."""
    seq = _sequence(x, Wx, b, lengths, reverse)
    T, N, _ = seq.xw.shape
    H = h0.shape[1]
    h_tm = np.empty((T, N, H), seq.dtype)
    gates = np.empty((T, N, 3 * H), seq.dtype)
    hw_n = np.empty((T, N, H), seq.dtype)
    prev_h = h0
    for t in seq.order:
        xw, hw = seq.xw[t], prev_h @ Wh + bh
        gates[t, :, :2 * H] = sigmoid(xw[:, :2 * H] + hw[:, :2 * H])
        r, z = gates[t, :, :H], gates[t, :, H:2 * H]
        hw_n[t] = hw[:, 2 * H:]
        gates[t, :, 2 * H:] = n = np.tanh(xw[:, 2 * H:] + r * hw_n[t])
        h_tm[t] = _keep(seq.valid, t, (1.0 - z) * n + z * prev_h, prev_h)
        prev_h = h_tm[t]
    return _outputs(h_tm, seq.valid), prev_h, GRUCache(seq, h0, Wx, Wh, h_tm, gates, hw_n, reverse)


def gru_backward(dh, cache: GRUCache, *, dh_n=None) -> dict:
    """Gradients {dx, dh0, dWx, dWh, db, dbh} of sum(h * dh) + sum(h_n * dh_n)
    (jaxseq/layers/gru.py's equations)."""
    seq, h0, Wx, Wh, h_tm, gates, hw_n, reverse = cache
    T, N, H = h_tm.shape
    WhT = np.ascontiguousarray(Wh.T)
    dh_tm = _output_grads_tm(dh, seq.valid)
    dxw = np.empty((T, N, 3 * H), seq.dtype)  # gradient of x Wx + b
    dhw = np.empty((T, N, 3 * H), seq.dtype)  # gradient of h Wh + bh
    dnext_h = _zeros_or(dh_n, (N, H), seq.dtype)
    for t in reversed(seq.order):
        r, z, n = (gates[t, :, k * H:(k + 1) * H] for k in range(3))
        prev_h = _before(h_tm, h0, t, reverse)
        dh_t = dh_tm[t] + dnext_h
        da_n = dh_t * (1.0 - z) * (1.0 - n * n)
        dxw[t, :, :H] = dhw[t, :, :H] = da_n * hw_n[t] * r * (1.0 - r)
        dxw[t, :, H:2 * H] = dhw[t, :, H:2 * H] = dh_t * (prev_h - n) * z * (1.0 - z)
        dxw[t, :, 2 * H:] = da_n
        dhw[t, :, 2 * H:] = da_n * r
        if seq.valid is not None:
            dxw[t] *= seq.valid[t]
            dhw[t] *= seq.valid[t]
        dnext_h = _keep(seq.valid, t, dhw[t] @ WhT + dh_t * z, dnext_h)
    grads = _sequence_grads(seq, Wx, _states_before(h_tm, h0, reverse), dxw, dhw)
    return {"dx": grads.pop("dx"), "dh0": dnext_h, **grads}


LAYERS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "rnn": (rnn_forward, rnn_backward),
    "lstm": (lstm_forward, lstm_backward),
    "gru": (gru_forward, gru_backward),
}
"""cell name -> (forward, backward)."""
