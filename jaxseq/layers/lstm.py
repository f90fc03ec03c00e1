"""LSTM: one step and a whole sequence, with hand-derived backward passes.

Equations (gate order along the 4H axis is i, f, o, g — the course convention):

    a = x_t Wx + h_{t-1} Wh + b                  (N, 4H), split into a_i, a_f, a_o, a_g
    i = sigmoid(a_i), f = sigmoid(a_f), o = sigmoid(a_o), g = tanh(a_g)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

Backward, given dh_t and dc_t flowing into step t:

    tc = tanh(c_t)
    do = dh_t * tc
    dc = dc_t + dh_t * o * (1 - tc**2)           the cell's total gradient
    di = dc * g,  df = dc * c_{t-1},  dg = dc * i,  dc_{t-1} = dc * f
    da = [di * i(1-i), df * f(1-f), do * o(1-o), dg * (1-g**2)]
    dh_{t-1} = da Wh^T,  dx_t = da Wx^T,  dWx = sum x_t^T da,  dWh = sum h_{t-1}^T da,  db = sum da

The sequence version starts from c0 = 0, projects all inputs with one matmul before the
scan, and computes dx, dWx, dWh, db after the backward scan (see `jaxseq.layers.rnn`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxseq.layers._validation import as_float_array, common_float_dtype, expect_shape
from jaxseq.layers.rnn import (
    input_projection_tm,
    previous_states_tm,
    validate_sequence_args,
    weight_gradients,
)


def lstm_gates(a):
    """Activated gates from pre-activations a (..., 4H): (i, f, o, g), each (..., H)."""
    a_i, a_f, a_o, a_g = jnp.split(a, 4, axis=-1)
    return jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jax.nn.sigmoid(a_o), jnp.tanh(a_g)


def lstm_cell(a, prev_c):
    """The cell update from pre-activations a (N, 4H) and prev_c (N, H).

    Returns: (next_h, next_c, gates) with gates (N, 4H) the activated i, f, o, g.
    """
    i, f, o, g = lstm_gates(a)
    next_c = f * prev_c + i * g
    next_h = o * jnp.tanh(next_c)
    return next_h, next_c, jnp.concatenate([i, f, o, g], axis=-1)


def lstm_cell_backward(dnext_h, dnext_c, next_c, prev_c, gates):
    """Pre-activation gradient and the gradient to prev_c, from the cell's saved values.

    Inputs: dnext_h, dnext_c, next_c, prev_c (N, H); gates (N, 4H) activated i, f, o, g.
    Returns: (da (N, 4H), dprev_c (N, H)).
    """
    i, f, o, g = jnp.split(gates, 4, axis=-1)
    tanh_c = jnp.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1.0 - tanh_c**2)
    da = jnp.concatenate(
        [
            dc * g * i * (1.0 - i),
            dc * prev_c * f * (1.0 - f),
            dnext_h * tanh_c * o * (1.0 - o),
            dc * i * (1.0 - g**2),
        ],
        axis=-1,
    )
    return da, dc * f


# ----------------------------------------------------------------------------- one step


class LSTMStepCache(NamedTuple):
    x: jax.Array  # (N, D)
    prev_h: jax.Array  # (N, H)
    prev_c: jax.Array  # (N, H)
    Wx: jax.Array  # (D, 4H)
    Wh: jax.Array  # (H, 4H)
    next_c: jax.Array  # (N, H)
    gates: jax.Array  # (N, 4H) activated i, f, o, g


def _validate_step(x, prev_h, prev_c, Wx, Wh, b):
    x = as_float_array("x", x, 2)
    prev_h = as_float_array("prev_h", prev_h, 2)
    prev_c = as_float_array("prev_c", prev_c, 2)
    Wx = as_float_array("Wx", Wx, 2)
    Wh = as_float_array("Wh", Wh, 2)
    b = as_float_array("b", b, 1)
    (N, D), H = x.shape, prev_h.shape[-1]
    expect_shape("prev_h", prev_h, (N, H), "(N, H)")
    expect_shape("prev_c", prev_c, (N, H), "(N, H)")
    expect_shape("Wx", Wx, (D, 4 * H), "(D, 4H)")
    expect_shape("Wh", Wh, (H, 4 * H), "(H, 4H)")
    expect_shape("b", b, (4 * H,), "(4H,)")
    dtype = common_float_dtype(x, prev_h, prev_c, Wx, Wh, b)
    return tuple(a.astype(dtype) for a in (x, prev_h, prev_c, Wx, Wh, b))


def _lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    next_h, next_c, gates = lstm_cell(x @ Wx + prev_h @ Wh + b, prev_c)
    return next_h, next_c, LSTMStepCache(x, prev_h, prev_c, Wx, Wh, next_c, gates)


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step.

    Inputs: x (N, D), prev_h (N, H), prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,).
    Returns: (next_h (N, H), next_c (N, H), cache: LSTMStepCache).
    """
    return _lstm_step_forward(*_validate_step(x, prev_h, prev_c, Wx, Wh, b))


def lstm_step_backward(dnext_h, dnext_c, cache: LSTMStepCache):
    """Backward of one LSTM step.

    Inputs: dnext_h (N, H), dnext_c (N, H), the cache of `lstm_step_forward`.
    Returns: (dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)).
    """
    da, dprev_c = lstm_cell_backward(dnext_h, dnext_c, cache.next_c, cache.prev_c, cache.gates)
    return da @ cache.Wx.T, da @ cache.Wh.T, dprev_c, cache.x.T @ da, cache.prev_h.T @ da, da.sum(axis=0)


def _lstm_step_fwd_rule(x, prev_h, prev_c, Wx, Wh, b):
    next_h, next_c, cache = _lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    return (next_h, next_c), cache


@jax.custom_vjp
def _lstm_step(x, prev_h, prev_c, Wx, Wh, b):
    return _lstm_step_fwd_rule(x, prev_h, prev_c, Wx, Wh, b)[0]


_lstm_step.defvjp(_lstm_step_fwd_rule, lambda cache, douts: lstm_step_backward(douts[0], douts[1], cache))


def lstm_step(x, prev_h, prev_c, Wx, Wh, b):
    """Differentiable LSTM step; `jax.grad` runs the hand-written `lstm_step_backward`.

    Inputs: x (N, D), prev_h (N, H), prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,).
    Returns: (next_h (N, H), next_c (N, H)).
    """
    return _lstm_step(*_validate_step(x, prev_h, prev_c, Wx, Wh, b))


# ----------------------------------------------------------------------------- sequence


class LSTMCache(NamedTuple):
    """What `lstm_backward` needs; per-step values are stored time-major."""

    x: jax.Array  # (N, T, D)
    h0: jax.Array  # (N, H)
    Wx: jax.Array  # (D, 4H)
    Wh: jax.Array  # (H, 4H)
    h_tm: jax.Array  # (T, N, H) hidden states h_1 .. h_T
    c_tm: jax.Array  # (T, N, H) cell states c_1 .. c_T
    gates_tm: jax.Array  # (T, N, 4H) activated i, f, o, g


def _lstm_forward(x, h0, Wx, Wh, b):
    xw_tm = input_projection_tm(x, Wx, b)

    def step(carry, xw_t):
        prev_h, prev_c = carry
        next_h, next_c, gates = lstm_cell(xw_t + prev_h @ Wh, prev_c)
        return (next_h, next_c), (next_h, next_c, gates)

    _, (h_tm, c_tm, gates_tm) = lax.scan(step, (h0, jnp.zeros_like(h0)), xw_tm)
    return jnp.swapaxes(h_tm, 0, 1), LSTMCache(x, h0, Wx, Wh, h_tm, c_tm, gates_tm)


def lstm_forward(x, h0, Wx, Wh, b):
    """LSTM over a whole sequence, starting from h0 and c0 = 0.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,).
    Returns: (h (N, T, H), cache: LSTMCache).
    """
    return _lstm_forward(*validate_sequence_args(x, h0, Wx, Wh, b, gates=4))


def lstm_backward(dh, cache: LSTMCache):
    """Backward of `lstm_forward`.

    Inputs: dh (N, T, H) upstream gradients of every hidden state, the cache.
    Returns: (dx (N, T, D), dh0 (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)).
    """
    WhT = cache.Wh.T
    prev_c_tm = previous_states_tm(jnp.zeros_like(cache.h0), cache.c_tm)

    def step(carry, inputs):
        dnext_h, dnext_c = carry
        dh_t, c_t, prev_c, gates = inputs
        da_t, dprev_c = lstm_cell_backward(dh_t + dnext_h, dnext_c, c_t, prev_c, gates)
        return (da_t @ WhT, dprev_c), da_t

    zeros = jnp.zeros_like(cache.h0)
    (dh0, _), da_tm = lax.scan(
        step, (zeros, zeros), (jnp.swapaxes(dh, 0, 1), cache.c_tm, prev_c_tm, cache.gates_tm), reverse=True
    )
    dx = jnp.einsum("tnm,dm->ntd", da_tm, cache.Wx)
    dWx, dWh, db = weight_gradients(cache.x, previous_states_tm(cache.h0, cache.h_tm), da_tm)
    return dx, dh0, dWx, dWh, db


@jax.custom_vjp
def _lstm(x, h0, Wx, Wh, b):
    return _lstm_forward(x, h0, Wx, Wh, b)[0]


_lstm.defvjp(_lstm_forward, lambda cache, dh: lstm_backward(dh, cache))


def lstm(x, h0, Wx, Wh, b):
    """Differentiable LSTM over a sequence (c0 = 0); `jax.grad` runs `lstm_backward`.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,); gates i, f, o, g.
    Returns: h (N, T, H).
    """
    return _lstm(*validate_sequence_args(x, h0, Wx, Wh, b, gates=4))
