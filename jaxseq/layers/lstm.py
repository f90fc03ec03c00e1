"""LSTM: one step and a whole sequence, with hand-derived backward passes (the course's math).

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

With projections (Sak et al. 2014; PyTorch's `proj_size` P < H), the state carried and
output is the cell's output projected, Wr (H, P) = PyTorch's weight_hr^T:

    m_t = o * tanh(c_t)                          (N, H)
    h_t = m_t Wr                                 (N, P); h_{t-1} (N, P) feeds Wh (P, 4H)

and the backward runs the cell's equations above with dm_t = dh_t Wr^T in place of dh_t,
plus dWr = sum_t m_t^T dh_t.

This module is that math, read once: `lstm_cell_forward` / `lstm_cell_backward` serve the step
and the sequence. The sequence takes `c0` (default zeros, as the course), `lengths`,
`reverse` and `return_state` (h_n, c_n); what they mean and the machinery around the cell is
`jaxseq.layers.sequence`. The differentiable `lstm` runs the same math regrouped for speed,
`jaxseq.layers.lstm_fast` (tested to give the same gradients); `lstm_forward` and
`lstm_backward` here are the readable pair.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxseq.layers import sequence as S
from jaxseq.layers._validation import validate_recurrent_args
from jaxseq.layers.activations import sigmoid
from jaxseq.layers.lstm_fast import (
    initial_cell_state, lstm_fast_backward, lstm_fast_forward_parts, project, projection_gradient, validate_lstm_args,
    with_absent_gradients,
)
from jaxseq.layers.varying import custom_vjp


def lstm_cell_forward(a, prev_c):
    """The cell from its pre-activations a (N, 4H) and prev_c (N, H).

    Returns: (next_h, next_c (N, H), gates (N, 4H) = [i, f, o, g]).
    """
    a_i, a_f, a_o, a_g = jnp.split(a, 4, axis=-1)
    i, f, o, g = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o), jnp.tanh(a_g)
    next_c = f * prev_c + i * g
    next_h = o * jnp.tanh(next_c)
    return next_h, next_c, jnp.concatenate([i, f, o, g], axis=-1)


def lstm_cell_backward(dnext_h, dnext_c, gates, prev_c, next_c):
    """The course's backward of one cell (module docstring).

    Inputs: dnext_h, dnext_c (N, H) total gradients reaching the step's outputs; gates
      (N, 4H) = [i, f, o, g]; prev_c, next_c (N, H).
    Returns: (da (N, 4H), dprev_c (N, H)).
    """
    i, f, o, g = jnp.split(gates, 4, axis=-1)
    tc = jnp.tanh(next_c)
    do = dnext_h * tc
    dc = dnext_c + dnext_h * o * (1.0 - tc**2)
    di, df, dg = dc * g, dc * prev_c, dc * i
    da = jnp.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), do * o * (1.0 - o), dg * (1.0 - g**2)], axis=-1)
    return da, dc * f


# ----------------------------------------------------------------------------- one step


class LSTMStepCache(NamedTuple):
    """What `lstm_step_backward` needs: the step's inputs and weights, its gates and next cell state."""

    x: jax.Array  # (N, D)
    prev_h: jax.Array  # (N, H)
    prev_c: jax.Array  # (N, H)
    Wx: jax.Array  # (D, 4H)
    Wh: jax.Array  # (H, 4H)
    gates: jax.Array  # (N, 4H) i, f, o, g
    next_c: jax.Array  # (N, H)


def _validate_step(x, prev_h, prev_c, Wx, Wh, b):
    states = {"prev_h": prev_h, "prev_c": prev_c}
    return validate_recurrent_args(x, states, Wx, Wh, {"b": b}, gates=4, sequence=False)


def _lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    next_h, next_c, gates = lstm_cell_forward(x @ Wx + prev_h @ Wh + b, prev_c)
    return next_h, next_c, LSTMStepCache(x, prev_h, prev_c, Wx, Wh, gates, next_c)


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
    da, dprev_c = lstm_cell_backward(dnext_h, dnext_c, cache.gates, cache.prev_c, cache.next_c)
    return da @ cache.Wx.T, da @ cache.Wh.T, dprev_c, cache.x.T @ da, cache.prev_h.T @ da, da.sum(axis=0)


def _lstm_step_fwd_rule(x, prev_h, prev_c, Wx, Wh, b):
    next_h, next_c, cache = _lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    return (next_h, next_c), cache


@custom_vjp
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


@S.sequence_cache
class LSTMCache:
    """What `lstm_backward` needs; per-step values are time-major, in input order."""

    x: jax.Array  # (N, T, D)
    h0: jax.Array  # (N, P)  (P = H without projection)
    c0: jax.Array | None  # (N, H), or None: not given (zeros, and no dc0 returned)
    Wx: jax.Array  # (D, 4H)
    Wh: jax.Array  # (P, 4H)
    h_tm: jax.Array  # (T, N, P) hidden states after each step (held past a length)
    c_tm: jax.Array  # (T, N, H) cell states after each step
    gates_tm: jax.Array  # (T, N, 4H) i, f, o, g
    Wr: jax.Array | None  # (H, P), or None: no projection
    lengths: jax.Array | None  # (N,) int32, or None
    reverse: bool = False


def readable_recurrence(input_side, inputs_tm, h0, c0, Wh, Wr, lengths, reverse):
    """The course's loop over time, each step's input pre-activation made inside the loop from
    its own inputs: `input_side(inputs_tm[t])` (N, 4H), x_t Wx + b here (measured faster than
    one matmul before the loop when nothing is differentiated: sequence.py), a table's rows in
    `jaxseq.layers.lstm_lookup`.

    Inputs: inputs_tm (T, N, ...); h0 (N, P), c0 (N, H) (not None); Wh (P, 4H); Wr, lengths,
      reverse as in `lstm_forward`.
    Returns: (h (N, T, P), h_n (N, P), c_n (N, H), (h_tm, c_tm, gates_tm)) (see `LSTMCache`).
    """
    valid_tm = S.valid_steps_tm(lengths, inputs_tm.shape[0])

    def step(carry, inputs):
        in_t, valid_t = inputs
        prev_h, prev_c = carry
        m, next_c, gates = lstm_cell_forward(input_side(in_t) + prev_h @ Wh, prev_c)
        next_h, next_c = S.keep_valid(valid_t, (project(m, Wr), next_c), carry)
        return (next_h, next_c), (next_h, next_c, gates)

    (h_n, c_n), stacks = S.scan(step, (h0, c0), (inputs_tm, valid_tm), reverse=reverse)
    return S.outputs_from_states(stacks[0], valid_tm), h_n, c_n, stacks


def _lstm_forward(x, h0, c0, Wx, Wh, b, Wr, lengths, reverse):
    """Returns (h (N, T, P), h_n (N, P), c_n (N, H), cache); P = H without Wr."""
    h, h_n, c_n, (h_tm, c_tm, gates_tm) = readable_recurrence(
        lambda x_t: x_t @ Wx + b, S.time_major(x), h0, initial_cell_state(c0, h0, Wx), Wh, Wr, lengths, reverse)
    return h, h_n, c_n, LSTMCache(x, h0, c0, Wx, Wh, h_tm, c_tm, gates_tm, Wr, lengths, reverse)


def lstm_forward(x, h0, Wx, Wh, b, *, c0=None, Wr=None, lengths=None, reverse=False, return_state=False):
    """LSTM over a whole sequence, starting from h0 and c0 (zeros when not given).

    Inputs: x (N, T, D), h0 (N, P), Wx (D, 4H), Wh (P, 4H), b (4H,); c0 (N, H) or None;
      Wr (H, P) the projection (PyTorch's proj_size), or None: none, P = H; lengths (N,) int
      in [0, T] or None (all T); reverse: read each sequence from its last valid step back.
    Returns: (h (N, T, P), cache), or (h, h_n, c_n, cache) with return_state: h is 0 after
      each length, h_n (N, P) and c_n (N, H) are the states after each sequence's last valid
      step.
    """
    h, h_n, c_n, cache = _lstm_forward(*validate_lstm_args(x, h0, c0, Wx, Wh, b, lengths, Wr), reverse)
    return S.forward_result(h, (h_n, c_n), cache, return_state)


def lstm_backward(dh, cache: LSTMCache, *, dh_n=None, dc_n=None):
    """Backward of `lstm_forward`, step by step with the course's equations.

    Inputs: dh (N, T, P) upstream gradients of every hidden state, the cache; dh_n (N, P),
      dc_n (N, H) the gradients of the final states (with return_state), or None.
    Returns: (dx (N, T, D), dh0 (N, P), dWx (D, 4H), dWh (P, 4H), db (4H,)); with c0 given
      to the forward, (dx, dh0, dc0, dWx, dWh, db), the order of `lstm_step_backward`; with
      Wr given, dWr (H, P) last.
    """
    WhT = cache.Wh.T
    valid_tm = S.valid_steps_tm(cache.lengths, cache.x.shape[1])
    c_start = initial_cell_state(cache.c0, cache.h0, cache.Wx)

    def step(carry, inputs):
        dnext_h, dnext_c = carry
        dh_t, gates_t, prev_c_t, c_t, valid_t = inputs
        dh_total = dh_t + dnext_h
        dm = dh_total if cache.Wr is None else dh_total @ cache.Wr.T  # the gradient of m_t = o tanh(c_t)
        da, dprev_c = lstm_cell_backward(dm, dnext_c, gates_t, prev_c_t, c_t)
        da = S.zero_invalid(valid_t, da)
        return S.keep_valid(valid_t, (da @ WhT, dprev_c), carry), (da, S.zero_invalid(valid_t, dh_total))

    last = (jnp.zeros_like(cache.h0) if dh_n is None else dh_n, jnp.zeros_like(c_start) if dc_n is None else dc_n)
    c_prev_tm = S.previous_states_tm(c_start, cache.c_tm, cache.reverse)
    inputs = (S.time_major(dh), cache.gates_tm, c_prev_tm, cache.c_tm, valid_tm)
    (dh0, dc0), (da_tm, dh_total_tm) = S.scan(step, last, inputs, reverse=not cache.reverse)
    h_prev_tm = S.previous_states_tm(cache.h0, cache.h_tm, cache.reverse)
    dx, dWx, dWh, db = S.sequence_gradients(cache.x, cache.Wx, h_prev_tm, da_tm)
    grads = (dx, dh0, dWx, dWh, db) if cache.c0 is None else (dx, dh0, dc0, dWx, dWh, db)
    if cache.Wr is None:
        return grads
    o_tm = jnp.split(cache.gates_tm, 4, axis=-1)[2]
    return (*grads, projection_gradient(o_tm * jnp.tanh(cache.c_tm), dh_total_tm))


def _lstm_rule_backward(dh, dstates, cache):
    """The fast backward's gradients in argument order (x, h0, c0, Wx, Wh, b, Wr), None for
    a c0 or Wr that was not given."""
    return with_absent_gradients(lstm_fast_backward(dh, cache, dh_n=dstates[0], dc_n=dstates[1]), cache)


# The differentiable `lstm`: its primal is the readable forward above (nothing stored), its
# rule the fast pair of `jaxseq.layers.lstm_fast`, on the compiled CPU loops where they apply.
_lstm = S.custom_vjp_sequence_layer(
    primal=lambda *args: _lstm_forward(*args)[:-1],
    forward=functools.partial(lstm_fast_forward_parts, compiled_loop=True),
    backward=_lstm_rule_backward,
    n_states=2,
)


def lstm(x, h0, Wx, Wh, b, *, c0=None, Wr=None, lengths=None, reverse=False, return_state=False):
    """Differentiable LSTM over a sequence; `jax.grad` runs the hand-written fast backward.

    Inputs: x (N, T, D), h0 (N, P), Wx (D, 4H), Wh (P, 4H), b (4H,); gates i, f, o, g;
      c0, Wr (the projection, H -> P; None: P = H), lengths, reverse as in `lstm_forward`.
    Returns: h (N, T, P), or (h, h_n (N, P), c_n (N, H)) with return_state.

    >>> import numpy as np
    >>> N, T, D, H = 2, 5, 3, 4
    >>> z = lambda *shape: np.zeros(shape, np.float32)
    >>> h = lstm(z(N, T, D), z(N, H), z(D, 4 * H), z(H, 4 * H), z(4 * H))
    >>> h.shape, h.dtype
    ((2, 5, 4), dtype('float32'))
    """
    args = validate_lstm_args(x, h0, c0, Wx, Wh, b, lengths, Wr)
    return _lstm((bool(reverse), bool(return_state)), *args)
