"""Vanilla (tanh) RNN: one step and a whole sequence, with hand-derived backward passes.

Equations (batch-major; N batch, T time, D input, H hidden):

    a_t = x_t Wx + h_{t-1} Wh + b          (N, H)
    h_t = tanh(a_t)                        (N, H)

Backward, given dL/dh_t (the upstream gradient plus what flows back from step t+1):

    da_t      = dh_t * (1 - h_t**2)        tanh' written with the output we already have
    dh_{t-1}  = da_t Wh^T                  flows to the previous step
    dx_t      = da_t Wx^T
    dWx = sum_t x_t^T da_t,  dWh = sum_t h_{t-1}^T da_t,  db = sum_{n,t} da_t

For the sequence, `x Wx` for all T steps is one matmul before the scan, `lax.scan` runs only
the recurrence, the backward scan yields the per-step `da_t`, and `dx`, `dWx`, `dWh`, `db`
are each one batched matmul or reduction after it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxseq.layers._validation import validate_recurrent_args

# ----------------------------------------------------------------------------- one step


class RNNStepCache(NamedTuple):
    """What `rnn_step_backward` needs: the step's inputs and its output."""

    x: jax.Array  # (N, D)
    prev_h: jax.Array  # (N, H)
    Wx: jax.Array  # (D, H)
    Wh: jax.Array  # (H, H)
    next_h: jax.Array  # (N, H)


def _validate_step(x, prev_h, Wx, Wh, b):
    return validate_recurrent_args(x, {"prev_h": prev_h}, Wx, Wh, b, gates=1, sequence=False)


def _rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = jnp.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, RNNStepCache(x, prev_h, Wx, Wh, next_h)


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One tanh RNN step.

    Inputs: x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,).
    Returns: (next_h (N, H), cache: RNNStepCache).
    """
    return _rnn_step_forward(*_validate_step(x, prev_h, Wx, Wh, b))


def rnn_step_backward(dnext_h, cache: RNNStepCache):
    """Backward of one RNN step.

    Inputs: dnext_h (N, H), the cache of `rnn_step_forward`.
    Returns: (dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,)).
    """
    da = dnext_h * (1.0 - cache.next_h**2)
    dx = da @ cache.Wx.T
    dprev_h = da @ cache.Wh.T
    dWx = cache.x.T @ da
    dWh = cache.prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


@jax.custom_vjp
def _rnn_step(x, prev_h, Wx, Wh, b):
    return _rnn_step_forward(x, prev_h, Wx, Wh, b)[0]


_rnn_step.defvjp(_rnn_step_forward, lambda cache, dnext_h: rnn_step_backward(dnext_h, cache))


def rnn_step(x, prev_h, Wx, Wh, b):
    """Differentiable RNN step: `tanh(x Wx + prev_h Wh + b)`; `jax.grad` runs `rnn_step_backward`.

    Inputs: x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,).
    Returns: next_h (N, H).
    """
    return _rnn_step(*_validate_step(x, prev_h, Wx, Wh, b))


# ----------------------------------------------------------------------------- sequence


class RNNCache(NamedTuple):
    """What `rnn_backward` needs. Hidden states are stored time-major, as the scans use them."""

    x: jax.Array  # (N, T, D)
    h0: jax.Array  # (N, H)
    Wx: jax.Array  # (D, H)
    Wh: jax.Array  # (H, H)
    h_tm: jax.Array  # (T, N, H): h_1 .. h_T


def validate_sequence_args(x, h0, Wx, Wh, b, *, gates: int):
    """Check (x, h0, Wx, Wh, b) of a sequence layer (RNN: gates=1, LSTM: gates=4)."""
    return validate_recurrent_args(x, {"h0": h0}, Wx, Wh, b, gates=gates, sequence=True)


def time_major_rows(x):
    """x (N, T, D) as time-major rows (T*N, D): row t*N + n is x[n, t].

    One copy of x, after which every all-steps matmul is a plain row-major 2-D matmul on
    (T*N, .) arrays whose result is already time-major. (XLA:CPU compiles the equivalent
    einsum("ntd,dm->tnm") into a transposed dot plus copies of the (T, N, M) result, several
    times slower; within one jit, the forward's and the backward's calls are one copy.)
    """
    N, T, D = x.shape
    return jnp.swapaxes(x, 0, 1).reshape(T * N, D)


def input_projection_tm(x, Wx, b=None):
    """`x_t Wx (+ b)` for every step as one matmul, time-major. x (N, T, D) -> (T, N, M)."""
    N, T, _ = x.shape
    xw = time_major_rows(x) @ Wx
    return (xw if b is None else xw + b).reshape(T, N, Wx.shape[1])


def input_gradient(da_tm, Wx):
    """dx = da Wx^T for every step as one matmul. da_tm (T, N, M), Wx (D, M) -> (N, T, D)."""
    T, N, M = da_tm.shape
    return jnp.swapaxes((da_tm.reshape(T * N, M) @ Wx.T).reshape(T, N, Wx.shape[0]), 0, 1)


def weight_gradients(x, h_prev_tm, da_tm):
    """The gradients a sequence layer's weights get from the per-step pre-activation grads.

    Inputs: x (N, T, D), h_prev_tm (T, N, H) the hidden state entering each step,
      da_tm (T, N, M) the pre-activation gradients.
    Returns: (dWx (D, M), dWh (H, M), db (M,)), each one 2-D matmul or reduction over the
      T*N time-major rows.
    """
    T, N, M = da_tm.shape
    da = da_tm.reshape(T * N, M)
    dWx = time_major_rows(x).T @ da
    dWh = h_prev_tm.reshape(T * N, -1).T @ da
    db = da.sum(axis=0)
    return dWx, dWh, db


def previous_states_tm(h0, h_tm):
    """The state entering each step: (h0, h_1, ..., h_{T-1}), time-major (T, N, H)."""
    return jnp.concatenate([h0[None], h_tm[:-1]], axis=0)


def _rnn_forward(x, h0, Wx, Wh, b):
    xw_tm = input_projection_tm(x, Wx, b)

    def step(prev_h, xw_t):
        next_h = jnp.tanh(xw_t + prev_h @ Wh)
        return next_h, next_h

    _, h_tm = lax.scan(step, h0, xw_tm)
    return jnp.swapaxes(h_tm, 0, 1), RNNCache(x, h0, Wx, Wh, h_tm)


def rnn_forward(x, h0, Wx, Wh, b):
    """Tanh RNN over a whole sequence.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,).
    Returns: (h (N, T, H) all hidden states, cache: RNNCache).
    """
    return _rnn_forward(*validate_sequence_args(x, h0, Wx, Wh, b, gates=1))


def rnn_backward(dh, cache: RNNCache):
    """Backward of `rnn_forward`.

    Inputs: dh (N, T, H) upstream gradients of every hidden state, the cache.
    Returns: (dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,)).
    """
    WhT = cache.Wh.T

    def step(dnext_h, inputs):
        dh_t, h_t = inputs
        da_t = (dh_t + dnext_h) * (1.0 - h_t**2)
        return da_t @ WhT, da_t

    dh0, da_tm = lax.scan(step, jnp.zeros_like(cache.h0), (jnp.swapaxes(dh, 0, 1), cache.h_tm), reverse=True)
    dWx, dWh, db = weight_gradients(cache.x, previous_states_tm(cache.h0, cache.h_tm), da_tm)
    return input_gradient(da_tm, cache.Wx), dh0, dWx, dWh, db


@jax.custom_vjp
def _rnn(x, h0, Wx, Wh, b):
    return _rnn_forward(x, h0, Wx, Wh, b)[0]


_rnn.defvjp(_rnn_forward, lambda cache, dh: rnn_backward(dh, cache))


def rnn(x, h0, Wx, Wh, b):
    """Differentiable tanh RNN over a sequence; `jax.grad` runs the hand-written `rnn_backward`.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,).
    Returns: h (N, T, H).
    """
    return _rnn(*validate_sequence_args(x, h0, Wx, Wh, b, gates=1))
