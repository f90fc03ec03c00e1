"""GRU: one step and a whole sequence, with hand-derived backward passes (PyTorch's equations).

Gate order along the 3H axis is r, z, n, as in `torch.nn.GRU`, with both biases: bh sits
inside r * (h Wh_n + bh_n), so it cannot be folded into b.

    xw = x_t Wx + b,  hw = h_{t-1} Wh + bh                    (N, 3H) each, split r, z, n
    r = sigmoid(xw_r + hw_r)
    z = sigmoid(xw_z + hw_z)
    n = tanh(xw_n + r * hw_n)
    h_t = (1 - z) * n + z * h_{t-1}

Backward, given dh_t (the upstream gradient plus what flows back from step t+1):

    dn = dh_t (1 - z),  dz = dh_t (h_{t-1} - n)
    da_n = dn (1 - n**2)                       gradient of xw_n (and of b_n)
    da_r = da_n hw_n r (1 - r),  da_z = dz z (1 - z)
    dxw = [da_r, da_z, da_n]                   the input side:  dx_t = dxw Wx^T, dWx, db
    dhw = [da_r, da_z, da_n * r]               the hidden side: dWh = sum h_{t-1}^T dhw, dbh
    dh_{t-1} = dhw Wh^T + dh_t z

The sequence version takes `lengths`, `reverse` and `return_state` (final state h_n), with the
machinery of `jaxseq.layers.sequence` shared with the RNN and the LSTM.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxseq.kernels import gru as K
from jaxseq.layers import sequence as S
from jaxseq.layers._validation import validate_recurrent_args
from jaxseq.layers.activations import sigmoid
from jaxseq.layers.varying import custom_vjp, match_varying, varying_axes


def gru_cell_forward(xw, hw, prev_h):
    """The cell from its input side xw = x Wx + b and hidden side hw = prev_h Wh + bh (N, 3H).

    Returns: (next_h (N, H), gates (N, 3H) = [r, z, n]).
    """
    xw_r, xw_z, xw_n = jnp.split(xw, 3, axis=-1)
    hw_r, hw_z, hw_n = jnp.split(hw, 3, axis=-1)
    r = sigmoid(xw_r + hw_r)
    z = sigmoid(xw_z + hw_z)
    n = jnp.tanh(xw_n + r * hw_n)
    next_h = (1.0 - z) * n + z * prev_h
    return next_h, jnp.concatenate([r, z, n], axis=-1)


def gru_cell_backward(dnext_h, gates, hw_n, prev_h):
    """The backward of one cell (module docstring).

    Inputs: dnext_h (N, H) the total gradient of the step's output; gates (N, 3H) = [r, z, n];
      hw_n (N, H) = (prev_h Wh + bh)_n; prev_h (N, H).
    Returns: (dxw (N, 3H), dhw (N, 3H), dprev_h_direct (N, H)): the gradients of the two
      pre-activations and the part of dprev_h that does not pass through Wh (dh z).
    """
    r, z, n = jnp.split(gates, 3, axis=-1)
    dn = dnext_h * (1.0 - z)
    dz = dnext_h * (prev_h - n)
    da_n = dn * (1.0 - n**2)
    da_r = da_n * hw_n * r * (1.0 - r)
    da_z = dz * z * (1.0 - z)
    dxw = jnp.concatenate([da_r, da_z, da_n], axis=-1)
    dhw = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)
    return dxw, dhw, dnext_h * z


def _hidden_n(hw):
    """The n block (N, H) of hw (N, 3H)."""
    return jnp.split(hw, 3, axis=-1)[2]


# ----------------------------------------------------------------------------- one step


class GRUStepCache(NamedTuple):
    """What `gru_step_backward` needs: the step's inputs and weights, its gates and (prev_h Wh + bh)_n."""

    x: jax.Array  # (N, D)
    prev_h: jax.Array  # (N, H)
    Wx: jax.Array  # (D, 3H)
    Wh: jax.Array  # (H, 3H)
    gates: jax.Array  # (N, 3H) r, z, n
    hw_n: jax.Array  # (N, H) (prev_h Wh + bh)_n


def _validate_step(x, prev_h, Wx, Wh, b, bh):
    return validate_recurrent_args(x, {"prev_h": prev_h}, Wx, Wh, {"b": b, "bh": bh}, gates=3, sequence=False)


def _gru_step_forward(x, prev_h, Wx, Wh, b, bh):
    hw = prev_h @ Wh + bh
    next_h, gates = gru_cell_forward(x @ Wx + b, hw, prev_h)
    return next_h, GRUStepCache(x, prev_h, Wx, Wh, gates, _hidden_n(hw))


def gru_step_forward(x, prev_h, Wx, Wh, b, bh):
    """One GRU step.

    Inputs: x (N, D), prev_h (N, H), Wx (D, 3H), Wh (H, 3H), b (3H,), bh (3H,).
    Returns: (next_h (N, H), cache: GRUStepCache).
    """
    return _gru_step_forward(*_validate_step(x, prev_h, Wx, Wh, b, bh))


def gru_step_backward(dnext_h, cache: GRUStepCache):
    """Backward of one GRU step.

    Inputs: dnext_h (N, H), the cache of `gru_step_forward`.
    Returns: (dx (N, D), dprev_h (N, H), dWx (D, 3H), dWh (H, 3H), db (3H,), dbh (3H,)).
    """
    dxw, dhw, dprev_h = gru_cell_backward(dnext_h, cache.gates, cache.hw_n, cache.prev_h)
    dprev_h = dprev_h + dhw @ cache.Wh.T
    return dxw @ cache.Wx.T, dprev_h, cache.x.T @ dxw, cache.prev_h.T @ dhw, dxw.sum(axis=0), dhw.sum(axis=0)


@custom_vjp
def _gru_step(x, prev_h, Wx, Wh, b, bh):
    return _gru_step_forward(x, prev_h, Wx, Wh, b, bh)[0]


_gru_step.defvjp(_gru_step_forward, lambda cache, dnext_h: gru_step_backward(dnext_h, cache))


def gru_step(x, prev_h, Wx, Wh, b, bh):
    """Differentiable GRU step; `jax.grad` runs the hand-written `gru_step_backward`.

    Inputs: x (N, D), prev_h (N, H), Wx (D, 3H), Wh (H, 3H), b (3H,), bh (3H,).
    Returns: next_h (N, H).
    """
    return _gru_step(*_validate_step(x, prev_h, Wx, Wh, b, bh))


# ----------------------------------------------------------------------------- sequence


@S.sequence_cache
class GRUCache:
    """What `gru_backward` needs; per-step values are time-major, in input order."""

    x: jax.Array  # (N, T, D); for `gru_lookup`, the tokens (N, T) int
    h0: jax.Array  # (N, H)
    Wx: jax.Array  # (D, 3H); for `gru_lookup`, the table (V, 3H)
    Wh: jax.Array  # (H, 3H)
    h_tm: jax.Array  # (T, N, H) the state after each step (held past a length)
    gates_tm: jax.Array  # (T, N, 3H) r, z, n
    hw_n_tm: jax.Array  # (T, N, H) (h_{t-1} Wh + bh)_n
    lengths: jax.Array | None  # (N,) int32, or None
    reverse: bool = False


def _validate(x, h0, Wx, Wh, b, bh, lengths) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array,
                                                      jax.Array, jax.Array | None]:
    return S.validate_sequence_args(x, {"h0": h0}, Wx, Wh, {"b": b, "bh": bh}, gates=3, lengths=lengths)


def gru_recurrence(input_side, inputs_tm, h0, Wh, bh, lengths, reverse, *, input_sides=None):
    """The loop over time, each step's input side made inside the loop from its own inputs:
    `input_side(inputs_tm[t])` (N, 3H), x_t Wx + b here (measured faster than one matmul
    before the loop: sequence.py), a table's rows in `jaxseq.layers.gru_lookup`.

    With `input_sides` (a function giving every step's at once, (T, N, 3H)), the loop is the
    compiled one where it applies (`jaxseq.kernels.gru`: the CPU), with the same results. Only
    the differentiable layers' rules pass it: a foreign call has no derivative, and `jax.grad`
    of `gru_forward` (the correctness ladder's autodiff rung) must still work.

    Inputs: inputs_tm (T, N, ...); h0 (N, H); Wh (H, 3H); bh (3H,); lengths, reverse as in
      `gru_forward`.
    Returns: (h (N, T, H), h_n (N, H), (h_tm, gates_tm, hw_n_tm)) (see `GRUCache`).
    """
    valid_tm = S.valid_steps_tm(lengths, inputs_tm.shape[0])
    if input_sides is not None:
        xw_tm = input_sides()
        if K.applies(xw_tm):
            return _compiled_recurrence(xw_tm, h0, Wh, bh, lengths, reverse, valid_tm)

    def step(prev_h, inputs):
        in_t, valid_t = inputs
        hw = prev_h @ Wh + bh
        next_h, gates = gru_cell_forward(input_side(in_t), hw, prev_h)
        next_h = S.keep_valid(valid_t, next_h, prev_h)
        return next_h, (next_h, gates, _hidden_n(hw))

    h_n, stacks = S.scan(step, h0, (inputs_tm, valid_tm), reverse=reverse)
    return S.outputs_from_states(stacks[0], valid_tm), h_n, stacks


def _compiled_recurrence(xw_tm, h0, Wh, bh, lengths, reverse, valid_tm):
    """`gru_recurrence` on the CPU's compiled loop (`jaxseq.kernels.gru`), elsewhere on the XLA
    loop over the given input sides."""

    def kernel_loop(xw_tm, h0, Wh, bh):
        # a foreign call's results vary along no mesh axis: inside `shard_map` they take the inputs'
        return match_varying(K.forward_loop(xw_tm, h0, Wh, bh, lengths, reverse=reverse),
                             varying_axes(xw_tm, h0, Wh, bh))

    def xla_loop(xw_tm, h0, Wh, bh):
        return gru_recurrence(lambda xw_t: xw_t, xw_tm, h0, Wh, bh, lengths, reverse)[2]

    stacks = lax.platform_dependent(xw_tm, h0, Wh, bh, cpu=kernel_loop, default=xla_loop)
    h_tm = stacks[0]
    return S.outputs_from_states(h_tm, valid_tm), h_tm[0 if reverse else -1], tuple(stacks)


def _gru_forward(x, h0, Wx, Wh, b, bh, lengths, reverse, *, compiled_loop: bool = False):
    """Returns (h (N, T, H), h_n (N, H), cache); `compiled_loop`: the loop `jaxseq.kernels.gru`
    compiles where it applies, from x_t Wx + b made for every step by one product."""
    T, N = x.shape[1], x.shape[0]
    input_sides = (lambda: (S.time_major_rows(x) @ Wx + b).reshape(T, N, Wx.shape[-1])) if compiled_loop else None
    h, h_n, (h_tm, gates_tm, hw_n_tm) = gru_recurrence(lambda x_t: x_t @ Wx + b, S.time_major(x), h0, Wh, bh,
                                                        lengths, reverse, input_sides=input_sides)
    return h, h_n, GRUCache(x, h0, Wx, Wh, h_tm, gates_tm, hw_n_tm, lengths, reverse)


def gru_forward(x, h0, Wx, Wh, b, bh, *, lengths=None, reverse=False, return_state=False):
    """GRU over a whole sequence.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, 3H), Wh (H, 3H), b (3H,), bh (3H,); lengths (N,)
      int in [0, T] or None (all T); reverse: read each sequence from its last valid step back.
    Returns: (h (N, T, H), cache), or (h, h_n (N, H), cache) with return_state: h is 0 after
      each length, h_n the state after each sequence's last valid step.
    """
    h, h_n, cache = _gru_forward(*_validate(x, h0, Wx, Wh, b, bh, lengths), reverse)
    return S.forward_result(h, (h_n,), cache, return_state)


def gru_backward(dh, cache: GRUCache, *, dh_n=None):
    """Backward of `gru_forward`.

    Inputs: dh (N, T, H) upstream gradients of every hidden state, the cache; dh_n (N, H)
      the gradient of the final state (with return_state), or None.
    Returns: (dx (N, T, D), dh0 (N, H), dWx (D, 3H), dWh (H, 3H), db (3H,), dbh (3H,)).
    """
    dh0, dxw_tm, dhw_tm, h_prev_tm = gru_recurrence_backward(dh, cache, dh_n)
    dx, dWx, dWh, db, dbh = S.sequence_gradients(cache.x, cache.Wx, h_prev_tm, dxw_tm, da_h_tm=dhw_tm)
    return dx, dh0, dWx, dWh, db, dbh


def gru_recurrence_backward(dh, cache: GRUCache, dh_n=None):
    """The backward loop of `gru_recurrence`: the gradients of the step inputs, before any
    weight's.

    Inputs: dh (N, T, H), the cache; dh_n (N, H) or None.
    Returns: (dh0 (N, H), dxw_tm (T, N, 3H) the gradient of every step's input side, dhw_tm
      (T, N, 3H) of its hidden side (zero past a length), h_prev_tm (T, N, H) the state
      entering each step).
    """
    valid_tm = S.valid_steps_tm(cache.lengths, cache.x.shape[1])
    h_prev_tm = S.previous_states_tm(cache.h0, cache.h_tm, cache.reverse)

    H = cache.h0.shape[-1]

    def xla_loop(dh, gates_tm, hw_n_tm, h_tm, h0, Wh, dh_last):
        WhT = Wh.T

        def step(dnext_h, inputs):
            gates_t, dh_t, hw_n_t, prev_h_t, *mask_t = inputs
            valid_t = S.step_mask(mask_t)
            dxw, dhw, dprev_h = gru_cell_backward(dh_t + dnext_h, gates_t, hw_n_t, prev_h_t)
            dxw, dhw = S.zero_invalid(valid_t, dxw), S.zero_invalid(valid_t, dhw)
            return S.keep_valid(valid_t, dprev_h + dhw @ WhT, dnext_h), (dxw, dhw[:, 2 * H:])

        # the states entering each step, made outside (the caller returns them too)
        inputs = (S.time_major(dh), hw_n_tm, h_prev_tm, *S.mask_inputs(valid_tm))
        # dxw_t overwrites the gates of step t; dhw differs from dxw only in its n block (da_n r),
        # so the loop keeps that block alone, (T, N, H) instead of a second (T, N, 3H)
        dh0, (dxw_tm, dhw_n_tm) = S.scan_in_place(step, dh_last, gates_tm, inputs, reverse=not cache.reverse)
        return dxw_tm, dhw_n_tm, dh0

    def kernel_loop(dh, gates_tm, hw_n_tm, h_tm, h0, Wh, dh_last):
        args = (dh, gates_tm, hw_n_tm, h_tm, h0, Wh, dh_last)
        return match_varying(K.backward_loop(*args, lengths=cache.lengths, reverse=cache.reverse),
                             varying_axes(*args))

    dh_last = jnp.zeros_like(cache.h0) if dh_n is None else dh_n
    loop_inputs = (dh, cache.gates_tm, cache.hw_n_tm, cache.h_tm, cache.h0, cache.Wh, dh_last)
    if K.applies(cache.gates_tm):
        dxw_tm, dhw_n_tm, dh0 = lax.platform_dependent(*loop_inputs, cpu=kernel_loop, default=xla_loop)
    else:
        dxw_tm, dhw_n_tm, dh0 = xla_loop(*loop_inputs)
    dhw_tm = jnp.concatenate([dxw_tm[..., : 2 * H], dhw_n_tm], axis=-1)
    return dh0, dxw_tm, dhw_tm, h_prev_tm


_gru = S.custom_vjp_sequence_layer(
    primal=lambda *args: _gru_forward(*args)[:-1],
    forward=functools.partial(_gru_forward, compiled_loop=True),
    backward=lambda dh, dstates, cache: gru_backward(dh, cache, dh_n=dstates[0]),
    n_states=1,
)


def gru(x, h0, Wx, Wh, b, bh, *, lengths=None, reverse=False, return_state=False):
    """Differentiable GRU over a sequence; `jax.grad` runs the hand-written `gru_backward`.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, 3H), Wh (H, 3H), b (3H,), bh (3H,); gates r, z, n;
      lengths, reverse as in `gru_forward`.
    Returns: h (N, T, H), or (h, h_n (N, H)) with return_state.
    """
    return _gru((bool(reverse), bool(return_state)), *_validate(x, h0, Wx, Wh, b, bh, lengths))
