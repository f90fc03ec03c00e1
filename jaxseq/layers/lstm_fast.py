"""The LSTM's fast path: `jaxseq.layers.lstm`'s math regrouped, with the same contract.

`lstm_fast_forward` / `lstm_fast_backward` take and return what `lstm_forward` /
`lstm_backward` do and give the same gradients (tested to 1e-9 in float64); the
differentiable `jaxseq.layers.lstm` runs this pair as its rule. Read `lstm.py` for the
course's equations; this module changes only how they are computed:

- One tanh for all four gates: sigmoid(a) = 0.5 tanh(a / 2) + 0.5, so with s = 0.5 for
  i, f, o and 1 for g (and t = 0.5, 0.5, 0.5, 0) the gates are s tanh(s a) + t and their
  derivatives s^2 (1 - tanh(s a)^2), one elementwise pass over (N, 4H).
- The forward stores, per step, the local derivatives the backward multiplies by:

      P_t = [g, c_{t-1}, tanh c_t, i] * [i(1-i), f(1-f), o(1-o), 1-g**2]     (N, 4H)
      q_t = o (1 - tanh(c_t)**2),  f_t                                        (N, H)

  so a backward step is  dc = dc_t + dh_t q_t,  da = [dc, dc, dh_t, dc] * P_t,
  dc_{t-1} = dc f_t,  dh_{t-1} = da Wh^T  — the course's equations, regrouped.
- In-place loops (`sequence.scan_in_place`): P_t overwrites (x Wx)_t in the forward and
  da_t overwrites P_t in the backward, so no zero-filled (T, N, 4H) buffer is made; b is
  added inside the step, in its elementwise pass.

On the CPU, without projections, the differentiable layers' rules run these two
loops compiled (`jaxseq.kernels.lstm`: the same arrays, in the same layout; see
`recurrence_forward`).

With projections (`Wr` (H, P), PyTorch's `proj_size`, `lstm.py`'s docstring) the cell's
output m_t = o tanh(c_t) (N, H) is stored too, the step's hidden gradient is
dm_t = dh_t Wr^T, and dWr = sum_t m_t^T dh_t is one matmul after the loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxseq.kernels import lstm as K
from jaxseq.layers import sequence as S
from jaxseq.layers.varying import match_varying, varying_axes


def validate_lstm_args(x, h0, c0, Wx, Wh, b, lengths, Wr=None) -> tuple[
        jax.Array, jax.Array, jax.Array | None, jax.Array, jax.Array, jax.Array, jax.Array | None, jax.Array | None]:
    """Checked (x, h0, c0, Wx, Wh, b, Wr, lengths) of an LSTM sequence call (c0, Wr may be None;
    with Wr (H, P), h0 is (N, P) and Wh (P, 4H))."""
    return S.validate_sequence_args(x, {"h0": h0, "c0": c0}, Wx, Wh, {"b": b}, gates=4, lengths=lengths, Wr=Wr,
                                    with_projection=True)


def project(m, Wr):
    """The hidden state from the cell's output m (N, H): m Wr (N, P), or m without projection."""
    return m if Wr is None else m @ Wr


def projection_gradient(m_tm, dh_tm):
    """dWr = sum_t m_t^T dh_t (H, P) as one matmul: m_tm (T, N, H), dh_tm (T, N, P) the total
    gradients of the projected states (zero at steps past a length)."""
    T, N, H = m_tm.shape
    return S.weight_gradient(m_tm.reshape(T * N, H), dh_tm.reshape(T * N, dh_tm.shape[-1]))


def initial_cell_state(c0, h0, W):
    """c0, or zeros (N, H) when it is not given (H from W (., 4H), Wx or Wh: h0 is P wide with
    projections)."""
    return jnp.zeros((h0.shape[0], W.shape[1] // 4), h0.dtype) if c0 is None else c0


def _gate_scale(H, dtype):
    """(s, t) along the 4H axis: 0.5 for i, f, o and 1 for g; 0.5 for i, f, o and 0 for g."""
    s = jnp.concatenate([jnp.full((3 * H,), 0.5, dtype), jnp.ones((H,), dtype)])
    t = jnp.concatenate([jnp.full((3 * H,), 0.5, dtype), jnp.zeros((H,), dtype)])
    return s, t


def lstm_cell(a, prev_c):
    """The cell update from pre-activations a (N, 4H) and prev_c (N, H).

    Returns: (next_h, next_c, P, q, f): the new state (N, H) each, and the local
    derivatives the backward multiplies by (module docstring): P (N, 4H), q and f (N, H).
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


@S.sequence_cache
class LSTMFastCache:
    """What `lstm_fast_backward` needs; per-step values time-major, in input order."""

    x: jax.Array  # (N, T, D); for `lstm_lookup`, the tokens (N, T) int
    h0: jax.Array  # (N, P)  (P = H without projection)
    c0: jax.Array | None  # (N, H), or None: not given (zeros, and no dc0 returned)
    Wx: jax.Array  # (D, 4H); for `lstm_lookup`, the table (V, 4H)
    Wh: jax.Array  # (P, 4H)
    h_tm: jax.Array  # (T, N, P) hidden states after each step
    P_tm: jax.Array  # (T, N, 4H)
    q_tm: jax.Array  # (T, N, H)
    f_tm: jax.Array  # (T, N, H)
    Wr: jax.Array | None  # (H, P), or None: no projection
    m_tm: jax.Array | None  # (T, N, H) the cell's outputs before the projection, or None
    lengths: jax.Array | None  # (N,) int32, or None
    reverse: bool = False


def recurrence_forward(x, h0, c0, Wx, Wh, b, Wr, lengths, reverse, xw_tm, *, compiled_loop: bool = False):
    """The loop from the input side of every step, xw_tm (T, N, 4H): x_t Wx, to which the step
    adds b (None: it is in xw_tm already, as in a `jaxseq.layers.lstm_lookup` table's rows).
    x and Wx are kept in the cache for the backward (for the lookup: the tokens and the table).

    With `compiled_loop`, the loop is the compiled one where it applies (`jaxseq.kernels.lstm`:
    the CPU, no projection), with the same results. Only the differentiable layers'
    rules ask for it: a foreign call has no derivative, and `jax.grad` of this function (the
    correctness ladder's autodiff rung) must still work.

    Returns: (h (N, T, P), h_n (N, P), c_n (N, H), cache).
    """
    valid_tm = S.valid_steps_tm(lengths, xw_tm.shape[0])
    start = (h0, initial_cell_state(c0, h0, Wh))

    def xla_loop(xw_tm, h0, c0, Wh):
        def step(carry, inputs):
            xw_t, *mask_t = inputs
            a = xw_t + carry[0] @ Wh if b is None else xw_t + b + carry[0] @ Wh
            m, next_c, P, q, f = lstm_cell(a, carry[1])
            next_h, next_c = S.keep_valid(S.step_mask(mask_t), (project(m, Wr), next_c), carry)
            return (next_h, next_c), (P, next_h, q, f, *(() if Wr is None else (m,)))

        (h_n, c_n), (P_tm, h_tm, q_tm, f_tm, *m_tm) = S.scan_in_place(step, (h0, c0), xw_tm,
                                                                      S.mask_inputs(valid_tm), reverse=reverse)
        return h_tm, P_tm, q_tm, f_tm, h_n, c_n, (m_tm[0] if m_tm else None)

    if compiled_loop and K.applies(xw_tm, Wr):
        def kernel_loop(xw_tm, h0, c0, Wh):
            bias = jnp.zeros(xw_tm.shape[-1], xw_tm.dtype) if b is None else b
            # a foreign call's results vary along no mesh axis: inside `shard_map` they take the
            # inputs' (jaxseq.layers.varying), as the XLA loop's do
            loops = K.forward_loop(xw_tm, h0, c0, Wh, bias, lengths, reverse=reverse)
            h_tm, P_tm, q_tm, f_tm, c_n = match_varying(loops, varying_axes(xw_tm, h0, c0, Wh, bias))
            return h_tm, P_tm, q_tm, f_tm, h_tm[0 if reverse else -1], c_n, None

        h_tm, P_tm, q_tm, f_tm, h_n, c_n, m_tm = lax.platform_dependent(xw_tm, *start, Wh, cpu=kernel_loop,
                                                                         default=xla_loop)
    else:
        h_tm, P_tm, q_tm, f_tm, h_n, c_n, m_tm = xla_loop(xw_tm, *start, Wh)
    h = S.outputs_from_states(h_tm, valid_tm)
    return h, h_n, c_n, LSTMFastCache(x, h0, c0, Wx, Wh, h_tm, P_tm, q_tm, f_tm, Wr, m_tm, lengths, reverse)


def lstm_fast_forward_parts(x, h0, c0, Wx, Wh, b, Wr, lengths, reverse, *, compiled_loop: bool = False):
    """The forward on checked arguments (`compiled_loop`: `recurrence_forward`'s).
    Returns (h (N, T, P), h_n (N, P), c_n (N, H), cache)."""
    return recurrence_forward(x, h0, c0, Wx, Wh, b, Wr, lengths, reverse, S.input_projection_tm(x, Wx),
                              compiled_loop=compiled_loop)


def lstm_fast_forward(x, h0, Wx, Wh, b, *, c0=None, Wr=None, lengths=None, reverse=False, return_state=False):
    """`jaxseq.layers.lstm_forward`, computed the fast way.

    Inputs: x (N, T, D), h0 (N, P), Wx (D, 4H), Wh (P, 4H), b (4H,); c0 (N, H) or None;
      Wr (H, P) or None (no projection: P = H); lengths (N,) int in [0, T] or None; reverse.
    Returns: (h (N, T, P), cache), or (h, h_n (N, P), c_n (N, H), cache) with return_state.
    """
    h, h_n, c_n, cache = lstm_fast_forward_parts(*validate_lstm_args(x, h0, c0, Wx, Wh, b, lengths, Wr), reverse)
    return S.forward_result(h, (h_n, c_n), cache, return_state)


def recurrence_backward(dh, cache: LSTMFastCache, dh_n=None, dc_n=None):
    """The backward loop of `recurrence_forward`: the gradients of the step inputs, before any
    weight's.

    Inputs: dh (N, T, P), the cache; dh_n (N, P), dc_n (N, H) or None.
    Returns: (dh0 (N, P), dc0 (N, H), da_tm (T, N, 4H) the gradient of every step's
      pre-activation (zero at steps past a length), h_prev_tm (T, N, P) the state entering
      each step, dWr (H, P) or None without a projection).
    """
    WrT = None if cache.Wr is None else cache.Wr.T
    valid_tm = S.valid_steps_tm(cache.lengths, dh.shape[1])

    c_start = initial_cell_state(cache.c0, cache.h0, cache.Wh)
    last = (jnp.zeros_like(cache.h0) if dh_n is None else dh_n, jnp.zeros_like(c_start) if dc_n is None else dc_n)

    def xla_loop(dh, P_tm, q_tm, f_tm, Wh, dh_last, dc_last):
        WhT = Wh.T

        def step(carry, inputs):
            P, dh_t, q, f, *mask_t = inputs
            valid_t = S.step_mask(mask_t)
            dh_total = dh_t + carry[0]
            dm = dh_total if WrT is None else dh_total @ WrT
            da, dprev_c = lstm_cell_backward(dm, carry[1], P, q, f)
            da = S.zero_invalid(valid_t, da)
            projected = () if WrT is None else (S.zero_invalid(valid_t, dh_total),)
            return S.keep_valid(valid_t, (da @ WhT, dprev_c), carry), (da, *projected)

        inputs = (S.time_major(dh), q_tm, f_tm, *S.mask_inputs(valid_tm))
        # da_t overwrites P_t, walking back over the forward's steps
        (dh0, dc0), (da_tm, *dh_total_tm) = S.scan_in_place(step, (dh_last, dc_last), P_tm, inputs,
                                                            reverse=not cache.reverse)
        return da_tm, dh0, dc0, (dh_total_tm[0] if dh_total_tm else None)

    loop_inputs = (dh, cache.P_tm, cache.q_tm, cache.f_tm, cache.Wh, *last)
    if K.applies(cache.P_tm, cache.Wr):
        def kernel_loop(dh, P_tm, q_tm, f_tm, Wh, dh_last, dc_last):
            args = (dh, P_tm, q_tm, f_tm, Wh, dh_last, dc_last)
            return (*match_varying(K.backward_loop(*args, lengths=cache.lengths, reverse=cache.reverse),
                                   varying_axes(*args)), None)

        da_tm, dh0, dc0, dh_total_tm = lax.platform_dependent(*loop_inputs, cpu=kernel_loop, default=xla_loop)
    else:
        da_tm, dh0, dc0, dh_total_tm = xla_loop(*loop_inputs)
    h_prev_tm = S.previous_states_tm(cache.h0, cache.h_tm, cache.reverse)
    dWr = None if cache.Wr is None else projection_gradient(cache.m_tm, dh_total_tm)
    return dh0, dc0, da_tm, h_prev_tm, dWr


def with_absent_gradients(grads: tuple, cache: LSTMFastCache) -> tuple:
    """A backward's gradients (`lstm_fast_backward`, `lstm_lookup_backward`: c0's third when
    given, Wr's last when given) with None in those places where they were not: one per
    argument of the differentiable layer's rule."""
    placed = list(grads)
    if cache.c0 is None:
        placed.insert(2, None)
    if cache.Wr is None:
        placed.append(None)
    return tuple(placed)


def lstm_fast_backward(dh, cache: LSTMFastCache, *, dh_n=None, dc_n=None):
    """`jaxseq.layers.lstm_backward` from the fast cache.

    Inputs: dh (N, T, P), the cache of `lstm_fast_forward`; dh_n (N, P), dc_n (N, H) or None.
    Returns: (dx (N, T, D), dh0 (N, P), dWx (D, 4H), dWh (P, 4H), db (4H,)), with dc0 (N, H)
      after dh0 when c0 was given to the forward, and dWr (H, P) last when Wr was.
    """
    dh0, dc0, da_tm, h_prev_tm, dWr = recurrence_backward(dh, cache, dh_n, dc_n)
    dx, dWx, dWh, db = S.sequence_gradients(cache.x, cache.Wx, h_prev_tm, da_tm)
    grads = (dx, dh0, dWx, dWh, db) if cache.c0 is None else (dx, dh0, dc0, dWx, dWh, db)
    return grads if cache.Wr is None else (*grads, dWr)
