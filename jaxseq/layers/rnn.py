"""Vanilla RNN (tanh, or relu as PyTorch's `nonlinearity="relu"`): one step and a whole
sequence, with hand-derived backward passes.

Equations (batch-major; N batch, T time, D input, H hidden):

    a_t = x_t Wx + h_{t-1} Wh + b          (N, H)
    h_t = tanh(a_t)  or  relu(a_t)         (N, H)

Backward, given dL/dh_t (the upstream gradient plus what flows back from step t+1):

    da_t      = dh_t * (1 - h_t**2)        tanh' written with the output we already have
              = dh_t * [h_t > 0]           relu' alike (0 at a_t = 0, as PyTorch)
    dh_{t-1}  = da_t Wh^T                  flows to the previous step
    dx_t      = da_t Wx^T
    dWx = sum_t x_t^T da_t,  dWh = sum_t h_{t-1}^T da_t,  db = sum_{n,t} da_t

The sequence version takes `lengths`, `reverse` and `return_state` (final state h_n); what
they mean and everything around the cell (projection before the loop, masks, reordering,
weight gradients after it) is `jaxseq.layers.sequence`, shared with the LSTM and the GRU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxseq.layers import sequence as S
from jaxseq.layers._validation import validate_recurrent_args
from jaxseq.layers.activations import check_nonlinearity, hidden_activation, hidden_activation_derivative
from jaxseq.layers.varying import custom_vjp

# ----------------------------------------------------------------------------- one step


@S.sequence_cache
class RNNStepCache:
    """What `rnn_step_backward` needs: the step's inputs, its output and its activation."""

    x: jax.Array  # (N, D)
    prev_h: jax.Array  # (N, H)
    Wx: jax.Array  # (D, H)
    Wh: jax.Array  # (H, H)
    next_h: jax.Array  # (N, H)
    nonlinearity: str = "tanh"


def _validate_step(x, prev_h, Wx, Wh, b) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    return validate_recurrent_args(x, {"prev_h": prev_h}, Wx, Wh, {"b": b}, gates=1, sequence=False)


def _rnn_step_forward(x, prev_h, Wx, Wh, b, nonlinearity):
    next_h = hidden_activation(nonlinearity, x @ Wx + prev_h @ Wh + b)
    return next_h, RNNStepCache(x, prev_h, Wx, Wh, next_h, nonlinearity)


def rnn_step_forward(x, prev_h, Wx, Wh, b, *, nonlinearity="tanh"):
    """One RNN step, h = tanh(a) or relu(a) with a = x Wx + prev_h Wh + b.

    Inputs: x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,); nonlinearity "tanh"
      or "relu".
    Returns: (next_h (N, H), cache: RNNStepCache).
    """
    return _rnn_step_forward(*_validate_step(x, prev_h, Wx, Wh, b), check_nonlinearity(nonlinearity))


def rnn_step_backward(dnext_h, cache: RNNStepCache):
    """Backward of one RNN step.

    Inputs: dnext_h (N, H), the cache of `rnn_step_forward`.
    Returns: (dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,)).
    """
    da = dnext_h * hidden_activation_derivative(cache.nonlinearity, cache.next_h)
    dx = da @ cache.Wx.T
    dprev_h = da @ cache.Wh.T
    dWx = cache.x.T @ da
    dWh = cache.prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def _rnn_step_fwd_rule(nonlinearity, x, prev_h, Wx, Wh, b):
    return _rnn_step_forward(x, prev_h, Wx, Wh, b, nonlinearity)


def _rnn_step_primal(nonlinearity, x, prev_h, Wx, Wh, b):
    return _rnn_step_forward(x, prev_h, Wx, Wh, b, nonlinearity)[0]


_rnn_step = custom_vjp(_rnn_step_primal, nondiff_argnums=(0,))
_rnn_step.defvjp(_rnn_step_fwd_rule, lambda nonlinearity, cache, dnext_h: rnn_step_backward(dnext_h, cache))


def rnn_step(x, prev_h, Wx, Wh, b, *, nonlinearity="tanh"):
    """Differentiable RNN step: `tanh(x Wx + prev_h Wh + b)` (or relu); `jax.grad` runs
    `rnn_step_backward`.

    Inputs: x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,); nonlinearity "tanh" or "relu".
    Returns: next_h (N, H).
    """
    return _rnn_step(check_nonlinearity(nonlinearity), *_validate_step(x, prev_h, Wx, Wh, b))


# ----------------------------------------------------------------------------- sequence


@S.sequence_cache
class RNNCache:
    """What `rnn_backward` needs. States are time-major, in input order."""

    x: jax.Array  # (N, T, D)
    h0: jax.Array  # (N, H)
    Wx: jax.Array  # (D, H)
    Wh: jax.Array  # (H, H)
    h_tm: jax.Array  # (T, N, H) the state after each step (held past a sequence's length)
    lengths: jax.Array | None  # (N,) int32, or None: every sequence is T long
    reverse: bool = False
    nonlinearity: str = "tanh"


def _validate(x, h0, Wx, Wh, b, lengths) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array,
                                                  jax.Array | None]:
    return S.validate_sequence_args(x, {"h0": h0}, Wx, Wh, {"b": b}, gates=1, lengths=lengths)


def _rnn_forward(x, h0, Wx, Wh, b, lengths, reverse, nonlinearity):
    """Returns (h (N, T, H), h_n (N, H), cache)."""
    valid_tm = S.valid_steps_tm(lengths, x.shape[1])
    xw_tm = S.input_projection_tm(x, Wx, b)

    def step(prev_h, inputs):
        xw_t, valid_t = inputs
        next_h = S.keep_valid(valid_t, hidden_activation(nonlinearity, xw_t + prev_h @ Wh), prev_h)
        return next_h, next_h

    h_n, h_tm = S.scan(step, h0, (xw_tm, valid_tm), reverse=reverse)
    h = S.outputs_from_states(h_tm, valid_tm)
    return h, h_n, RNNCache(x, h0, Wx, Wh, h_tm, lengths, reverse, nonlinearity)


def rnn_forward(x, h0, Wx, Wh, b, *, lengths=None, reverse=False, return_state=False, nonlinearity="tanh"):
    """Tanh (or relu) RNN over a whole sequence.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,); lengths (N,) int in [0, T]
      or None (all T); reverse: read each sequence from its last valid step back;
      nonlinearity "tanh" or "relu".
    Returns: (h (N, T, H), cache), or (h, h_n (N, H), cache) with return_state. h is 0 after
      each length; h_n is the state after each sequence's last valid step (h0 if length 0).
    """
    h, h_n, cache = _rnn_forward(*_validate(x, h0, Wx, Wh, b, lengths), reverse, check_nonlinearity(nonlinearity))
    return S.forward_result(h, (h_n,), cache, return_state)


def rnn_backward(dh, cache: RNNCache, *, dh_n=None):
    """Backward of `rnn_forward`.

    Inputs: dh (N, T, H) upstream gradients of every hidden state, the cache; dh_n (N, H)
      the gradient of the final state (with return_state), or None.
    Returns: (dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,)).
    """
    WhT = cache.Wh.T
    T = cache.x.shape[1]
    valid_tm = S.valid_steps_tm(cache.lengths, T)

    def step(dnext_h, inputs):
        dh_t, h_t, valid_t = inputs
        da_t = S.zero_invalid(valid_t, (dh_t + dnext_h) * hidden_activation_derivative(cache.nonlinearity, h_t))
        return S.keep_valid(valid_t, da_t @ WhT, dnext_h), da_t

    dh_last = jnp.zeros_like(cache.h0) if dh_n is None else dh_n
    inputs = (S.time_major(dh), cache.h_tm, valid_tm)
    dh0, da_tm = S.scan(step, dh_last, inputs, reverse=not cache.reverse)
    h_prev_tm = S.previous_states_tm(cache.h0, cache.h_tm, cache.reverse)
    dx, dWx, dWh, db = S.sequence_gradients(cache.x, cache.Wx, h_prev_tm, da_tm)
    return dx, dh0, dWx, dWh, db


_rnn = S.custom_vjp_sequence_layer(
    primal=lambda *args: _rnn_forward(*args)[:-1],
    forward=_rnn_forward,
    backward=lambda dh, dstates, cache: rnn_backward(dh, cache, dh_n=dstates[0]),
    n_states=1,
)


def rnn(x, h0, Wx, Wh, b, *, lengths=None, reverse=False, return_state=False, nonlinearity="tanh"):
    """Differentiable tanh (or relu) RNN over a sequence; `jax.grad` runs the hand-written
    `rnn_backward`.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,); lengths, reverse,
      nonlinearity as in `rnn_forward`.
    Returns: h (N, T, H), or (h, h_n (N, H)) with return_state.
    """
    options = (bool(reverse), check_nonlinearity(nonlinearity), bool(return_state))
    return _rnn(options, *_validate(x, h0, Wx, Wh, b, lengths))
