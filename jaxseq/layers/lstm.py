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
scan, and computes dx, dWx, dWh, db after the backward scan (see `jaxseq.layers.rnn`). Its
forward also stores, per step, the local derivatives the backward multiplies by:

    P_t = [g, c_{t-1}, tanh c_t, i] * [i(1-i), f(1-f), o(1-o), 1-g**2]     (N, 4H)
    q_t = o (1 - tanh(c_t)**2),  f_t                                        (N, H)

so that a backward step is  dc = dc_t + dh_t q_t,  da = [dc, dc, dh_t, dc] * P_t,
dc_{t-1} = dc f_t,  dh_{t-1} = da Wh^T  (the same equations as above, regrouped).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxseq.layers._validation import validate_recurrent_args
from jaxseq.layers.rnn import (
    input_gradient,
    input_projection_tm,
    previous_states_tm,
    validate_sequence_args,
    weight_gradients,
)


def _gate_scale(H, dtype):
    """(s, t) along the 4H axis: 0.5 for i, f, o and 1 for g; 0.5 for i, f, o and 0 for g.

    With them all four activations are one tanh: gates = s * tanh(s * a) + t, because
    sigmoid(a) = 0.5 * tanh(a / 2) + 0.5; and d gates / da = s**2 * (1 - tanh(s * a)**2).
    """
    s = jnp.concatenate([jnp.full((3 * H,), 0.5, dtype), jnp.ones((H,), dtype)])
    t = jnp.concatenate([jnp.full((3 * H,), 0.5, dtype), jnp.zeros((H,), dtype)])
    return s, t


def lstm_cell(a, prev_c):
    """The cell update from pre-activations a (N, 4H) and prev_c (N, H).

    Returns: (next_h, next_c, P, q, f): the new state (N, H) each, and the local
    derivatives the backward multiplies by (module docstring): P (N, 4H), q and f (N, H).
    Callers that only need the state drop the rest; inside `jit` XLA never computes it.
    """
    s, t = _gate_scale(prev_c.shape[-1], a.dtype)
    tanh_a = jnp.tanh(s * a)
    i, f, o, g = jnp.split(s * tanh_a + t, 4, axis=-1)  # sigmoid(a_i, a_f, a_o), tanh(a_g)
    next_c = f * prev_c + i * g
    tanh_c = jnp.tanh(next_c)
    next_h = o * tanh_c
    P = jnp.concatenate([g, prev_c, tanh_c, i], axis=-1) * (s * s * (1.0 - tanh_a * tanh_a))
    return next_h, next_c, P, o * (1.0 - tanh_c * tanh_c), f


def lstm_cell_backward(dnext_h, dnext_c, P, q, f):
    """Pre-activation gradient and the gradient to prev_c from the cell's local derivatives.

    Inputs: dnext_h, dnext_c (N, H) total gradients reaching the step's outputs; P (N, 4H),
      q, f (N, H) from `lstm_cell`.
    Returns: (da (N, 4H), dprev_c (N, H)).
    """
    dc = dnext_c + dnext_h * q
    da = jnp.concatenate([dc, dc, dnext_h, dc], axis=-1) * P
    return da, dc * f


# ----------------------------------------------------------------------------- one step


class LSTMStepCache(NamedTuple):
    x: jax.Array  # (N, D)
    prev_h: jax.Array  # (N, H)
    Wx: jax.Array  # (D, 4H)
    Wh: jax.Array  # (H, 4H)
    P: jax.Array  # (N, 4H) [g, c_{t-1}, tanh c_t, i] * d(i, f, o, g)/da
    q: jax.Array  # (N, H) o (1 - tanh(c_t)**2)
    f: jax.Array  # (N, H) forget gate


def _validate_step(x, prev_h, prev_c, Wx, Wh, b):
    states = {"prev_h": prev_h, "prev_c": prev_c}
    return validate_recurrent_args(x, states, Wx, Wh, b, gates=4, sequence=False)


def _lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    next_h, next_c, P, q, f = lstm_cell(x @ Wx + prev_h @ Wh + b, prev_c)
    return next_h, next_c, LSTMStepCache(x, prev_h, Wx, Wh, P, q, f)


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
    da, dprev_c = lstm_cell_backward(dnext_h, dnext_c, cache.P, cache.q, cache.f)
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
    """What `lstm_backward` needs; per-step values are stored time-major (module docstring)."""

    x: jax.Array  # (N, T, D)
    h0: jax.Array  # (N, H)
    Wx: jax.Array  # (D, 4H)
    Wh: jax.Array  # (H, 4H)
    h_tm: jax.Array  # (T, N, H) hidden states h_1 .. h_T
    c_tm: jax.Array  # (T, N, H) cell states c_1 .. c_T
    P_tm: jax.Array  # (T, N, 4H) [g, c_{t-1}, tanh c_t, i] * d(i, f, o, g)/da
    q_tm: jax.Array  # (T, N, H) o (1 - tanh(c_t)**2)
    f_tm: jax.Array  # (T, N, H) forget gates


def scan_in_place(step, carry, buffer, xs=(), *, reverse=False):
    """`lax.scan(step, carry, (buffer, *xs), reverse=reverse)` for a step whose first output
    has the shape of `buffer[t]`: that output is written over `buffer[t]`, so XLA updates the
    buffer in place instead of filling a new stacked output with zeros first.

    Returns (carry, (buffer, *stacked other outputs)).
    """
    T = buffer.shape[0]
    at = lambda a, t: lax.dynamic_index_in_dim(a, t, 0, keepdims=False)  # noqa: E731
    put = lambda a, v, t: lax.dynamic_update_index_in_dim(a, v, t, 0)  # noqa: E731
    out_shapes = jax.eval_shape(lambda c, x: step(c, x)[1][1:], carry, tuple(at(a, 0) for a in (buffer, *xs)))
    outs = tuple(jnp.zeros((T, *o.shape), o.dtype) for o in out_shapes)

    def body(k, state):
        carry, buffer, outs = state
        t = T - 1 - k if reverse else k
        carry, (new, *new_outs) = step(carry, tuple(at(a, t) for a in (buffer, *xs)))
        return carry, put(buffer, new, t), tuple(put(o, v, t) for o, v in zip(outs, new_outs))

    carry, buffer, outs = lax.fori_loop(0, T, body, (carry, buffer, outs))
    return carry, (buffer, *outs)


def _lstm_forward(x, h0, Wx, Wh, b):
    xw_tm = input_projection_tm(x, Wx)  # b is added inside the step, in its elementwise pass

    def step(carry, inputs):
        (xw_t,) = inputs
        prev_h, prev_c = carry
        next_h, next_c, P, q, f = lstm_cell(xw_t + b + prev_h @ Wh, prev_c)
        return (next_h, next_c), (P, next_h, next_c, q, f)

    # P_t overwrites (x Wx)_t: no zero-filled (T, N, 4H) buffer, one buffer fewer
    _, (P_tm, h_tm, c_tm, q_tm, f_tm) = scan_in_place(step, (h0, jnp.zeros_like(h0)), xw_tm)
    return jnp.swapaxes(h_tm, 0, 1), LSTMCache(x, h0, Wx, Wh, h_tm, c_tm, P_tm, q_tm, f_tm)


def _lstm_forward_only(x, h0, Wx, Wh, b):
    """`_lstm_forward` without the cache: what runs when nothing is differentiated."""

    def step(carry, xw_t):
        prev_h, prev_c = carry
        next_h, next_c, *_ = lstm_cell(xw_t + b + prev_h @ Wh, prev_c)
        return (next_h, next_c), next_h

    _, h_tm = lax.scan(step, (h0, jnp.zeros_like(h0)), input_projection_tm(x, Wx))
    return jnp.swapaxes(h_tm, 0, 1)


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

    def step(carry, inputs):
        dnext_h, dnext_c = carry
        P, dh_t, q, f = inputs
        da, dprev_c = lstm_cell_backward(dh_t + dnext_h, dnext_c, P, q, f)
        return (da @ WhT, dprev_c), (da,)

    zeros = jnp.zeros_like(cache.h0)
    # da_t overwrites P_t, walking t = T-1 .. 0
    (dh0, _), (da_tm,) = scan_in_place(
        step, (zeros, zeros), cache.P_tm, (jnp.swapaxes(dh, 0, 1), cache.q_tm, cache.f_tm), reverse=True
    )
    dWx, dWh, db = weight_gradients(cache.x, previous_states_tm(cache.h0, cache.h_tm), da_tm)
    return input_gradient(da_tm, cache.Wx), dh0, dWx, dWh, db


@jax.custom_vjp
def _lstm(x, h0, Wx, Wh, b):
    return _lstm_forward_only(x, h0, Wx, Wh, b)


_lstm.defvjp(_lstm_forward, lambda cache, dh: lstm_backward(dh, cache))


def lstm(x, h0, Wx, Wh, b):
    """Differentiable LSTM over a sequence (c0 = 0); `jax.grad` runs `lstm_backward`.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,); gates i, f, o, g.
    Returns: h (N, T, H).

    >>> import numpy as np
    >>> N, T, D, H = 2, 5, 3, 4
    >>> z = lambda *shape: np.zeros(shape, np.float32)
    >>> h = lstm(z(N, T, D), z(N, H), z(D, 4 * H), z(H, 4 * H), z(4 * H))
    >>> h.shape, h.dtype
    ((2, 5, 4), dtype('float32'))
    """
    return _lstm(*validate_sequence_args(x, h0, Wx, Wh, b, gates=4))
