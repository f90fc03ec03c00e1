"""The machinery every recurrent sequence layer shares (RNN, LSTM, GRU): one place, no copies.

A sequence layer is a cell applied along time. Everything around the cell is the same for
every cell and lives here:

- **Input projection.** `x_t Wx + b` for all T steps as one matmul on time-major rows before
  the loop (`input_projection_tm`: the RNN, the LSTM's fast path), or inside the loop on
  the step's own x_t (`time_major(x)`: the GRU and the LSTM's readable forward, which
  is also what runs when nothing is differentiated). Which one is measured, per cell: on
  XLA:CPU the GRU's fwd+bwd at N=64 T=16 D=256 H=512 took 53.5 ms of CPU time with the
  projection before its loop and 41.9 ms inside it, and the LSTM forward at N=128 T=32
  D=512 H=512 121 vs 89 ms, while the RNN and the LSTM's in-place fast path gained nothing.
- **Lengths.** `lengths` (N,) follows PyTorch's packed sequences: sequence n is valid at steps
  t < lengths[n]. The state does not change at the other steps (`keep_valid`), outputs there
  are exactly 0 and so are the gradients of the inputs there (`zero_invalid`).
  The final state each sequence hands back is the loop's last carry.
- **Reverse direction.** `reverse=True` reads each sequence from its last valid step back to
  its first. The arrays stay in input order; only the loop turns round: the forward runs
  t = T-1 .. 0 and the backward t = 0 .. T-1 (`lax.scan(..., reverse=...)`). A sequence's
  padding (t >= lengths[n]) then comes first, and `keep_valid` holds the initial state through
  it, so its first valid step, t = lengths[n] - 1, starts from that state, as PyTorch's packed
  sequences do; the state entering step t is the one after step t + 1 (`previous_states_tm`).
  No array is reordered. (Reordering each sequence within its length, one gather per array,
  is what this replaced: on XLA:CPU it made no difference in time that the stacked
  benchmark could see, but it held 5 MB more temporary memory in the 2-layer bidirectional
  LSTM at N=64 T=32 H=256, 80 against 75 MB, and took four functions.)
- **Weight gradients after the loop.** The backward loop yields the per-step pre-activation
  gradients; dx, dWx, dWh, db (and the GRU's dbh) are then one matmul or reduction each
  (`sequence_gradients`).

Shapes: N batch, T time, D input, H hidden, G = gates * H (H for the RNN, 3H GRU, 4H LSTM).
Time-major arrays carry the suffix `_tm`: (T, N, .), always in input order.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, dataclass_transform

import jax
import jax.numpy as jnp
from jax import lax

from jaxseq.layers._validation import as_lengths, validate_recurrent_args
from jaxseq.layers.varying import custom_vjp, match_varying, varying_axes


STATIC_CACHE_FIELDS = ("reverse", "nonlinearity")
"""The cache fields that are Python values, not arrays: the direction and the RNN's activation."""

_Cache = TypeVar("_Cache")


# dataclass_transform: type checkers see the decorated class as the frozen dataclass it becomes
@dataclass_transform(frozen_default=True)
def sequence_cache(cls: type[_Cache]) -> type[_Cache]:
    """A frozen dataclass registered as a pytree: its arrays are leaves (None allowed: a part
    not given, such as `lengths`), and the fields named in `STATIC_CACHE_FIELDS` (`reverse`,
    `nonlinearity`) are static metadata, so a cache passes through `jit` and `custom_vjp` and
    the backward still knows the direction and the activation in Python."""
    frozen: Any = dataclasses.dataclass(frozen=True)(cls)  # Any: dataclasses.fields wants a dataclass type
    names = [field.name for field in dataclasses.fields(frozen)]
    data = [name for name in names if name not in STATIC_CACHE_FIELDS]
    meta = [name for name in names if name in STATIC_CACHE_FIELDS]
    return jax.tree_util.register_dataclass(frozen, data_fields=data, meta_fields=meta)


# ----------------------------------------------------------------------------- arguments


def validate_sequence_args(x, states: dict, Wx, Wh, biases: dict, *, gates: int, lengths, Wr=None,
                           with_projection: bool = False, lookup: bool = False):
    """Check a sequence layer's arguments; see `validate_recurrent_args`.

    Returns: (x, *states, Wx, Wh, *biases, lengths) with one float dtype and lengths int32
    (N,) or None; with `with_projection`, (x, *states, Wx, Wh, *biases, Wr, lengths).
    """
    arrays = validate_recurrent_args(x, states, Wx, Wh, biases, gates=gates, sequence=True, Wr=Wr,
                                     with_projection=with_projection, lookup=lookup)
    N, T = arrays[0].shape[:2]
    return (*arrays, as_lengths(lengths, N, T))


# ----------------------------------------------------------------------------- time layout


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


# The ids are range-checked where they are known (`validate_sequence_args(..., lookup=True)`); "clip"
# is XLA's own gather
# and scatter semantics, where the default "fill" / "drop" add a pass of masking over the
# gathered array (for the char LSTM's (T, N, 4H), 64 MB: 13.6 ms of its ~650 ms step).


def lookup(table, tokens):
    """table[tokens] along the rows: (V, G) and int (...) -> (..., G)."""
    return jnp.take(table, tokens, axis=0, mode="clip")


def lookup_gradient(tokens, d_tm, V: int):
    """The gradient of the table rows every step read: the scatter-add of d_tm (T, N, G) into
    the rows tokens (N, T) name. Returns (V, G)."""
    G = d_tm.shape[-1]
    return jnp.zeros((V, G), d_tm.dtype).at[tokens.T.reshape(-1)].add(d_tm.reshape(-1, G), mode="clip")


def time_major(a):
    """a (N, T, ...) as (T, N, ...): what a loop over time reads step by step."""
    return jnp.swapaxes(a, 0, 1)


def input_gradient(da_tm, Wx):
    """dx = da Wx^T for every step as one matmul. da_tm (T, N, M), Wx (D, M) -> (N, T, D)."""
    T, N, M = da_tm.shape
    return jnp.swapaxes((da_tm.reshape(T * N, M) @ Wx.T).reshape(T, N, Wx.shape[0]), 0, 1)


def previous_states_tm(s0, s_tm, reverse: bool):
    """The state entering each step, time-major (T, N, H); T may be 0.

    Forward: (s0, s_0, ..., s_{T-2}), s_t the state after step t. Reverse (the loop runs
    t = T-1 .. 0): (s_1, ..., s_{T-1}, s0). Past a length the held state is s0 in the
    reverse direction, so a sequence's first valid step, T-1 or lengths[n]-1, starts from s0.
    """
    ordered = (s_tm[1:], s0[None]) if reverse else (s0[None], s_tm)
    return jnp.concatenate(ordered, axis=0)[: s_tm.shape[0]]


# ----------------------------------------------------------------------------- lengths


def valid_steps_tm(lengths, T: int):
    """Which steps are inside each sequence: (T, N, 1) bool, t < lengths[n]; None without lengths.

    The same for both directions: the reverse one visits the same steps, from the last back.
    """
    if lengths is None:
        return None
    return (jnp.arange(T)[:, None] < lengths[None, :])[..., None]


def mask_inputs(valid_tm):
    """The valid-step mask as extra inputs of a `scan_in_place` loop: (valid_tm,), or () without
    lengths (its inputs are arrays only, where `lax.scan` also takes a None)."""
    return () if valid_tm is None else (valid_tm,)


def step_mask(mask_t):
    """Inside the step, its mask from the inputs `mask_inputs` added (unpacked as `*mask_t`,
    so a list of one array or none): valid_t (N, 1), or None without lengths."""
    return mask_t[0] if mask_t else None


def keep_valid(valid_t, new, old):
    """The state after a step: `new` where the step is valid, else `old` (pytrees alike)."""
    if valid_t is None:
        return new
    return jax.tree_util.tree_map(lambda n, o: jnp.where(valid_t, n, o), new, old)


def zero_invalid(valid_t, a):
    """`a` with exact zeros at invalid steps (any shape that broadcasts against valid)."""
    return a if valid_t is None else jnp.where(valid_t, a, jnp.zeros((), a.dtype))


def outputs_from_states(s_tm, valid_tm):
    """The layer's output (N, T, H) from the states of the loop (T, N, H): zeros after each
    length, batch-major."""
    return jnp.swapaxes(zero_invalid(valid_tm, s_tm), 0, 1)


def sequence_gradients(x, Wx, h_prev_tm, da_tm, *, da_h_tm=None):
    """dx and the weight gradients from the backward loop's per-step gradients.

    Inputs: x (N, T, D), Wx (D, G); h_prev_tm (T, N, H) the state entering each step and
      da_tm (T, N, G) the gradient of the input-side pre-activation `x_t Wx + b`; da_h_tm
      (T, N, G) the gradient of the hidden-side pre-activation `h Wh (+ bh)` when it differs
      from da_tm (the GRU's n gate), else None.
    Returns: (dx (N, T, D), dWx (D, G), dWh (H, G), db (G,)), plus dbh (G,) when da_h_tm is
      given.
    """
    T, N, G = da_tm.shape
    da = da_tm.reshape(T * N, G)
    dx = input_gradient(da_tm, Wx)
    if da_h_tm is None:
        # dWx and dWh as one product, [x_t, h_{t-1}]^T da_t: XLA:CPU runs the (D + H)-row product
        # faster than the two (8192 rows, D = H = 512, 4H = 2048: 85 against 99 ms on two cores;
        # the char language model's training step 1.02x, the word model's 1.01x)
        D = x.shape[-1]
        inputs = jnp.concatenate([time_major_rows(x), h_prev_tm.reshape(T * N, h_prev_tm.shape[-1])], axis=1)
        dW = weight_gradient(inputs, da)
        return dx, dW[:D], dW[D:], da.sum(axis=0)
    dWx = weight_gradient(time_major_rows(x), da)
    return dx, dWx, hidden_weight_gradient(h_prev_tm, da_h_tm), da.sum(axis=0), da_h_tm.reshape(T * N, G).sum(axis=0)


def hidden_weight_gradient(h_prev_tm, da_tm):
    """dWh = sum_t h_{t-1}^T da_t as one matmul: h_prev_tm (T, N, H), da_tm (T, N, G) -> (H, G)."""
    T, N, G = da_tm.shape
    return weight_gradient(h_prev_tm.reshape(T * N, h_prev_tm.shape[-1]), da_tm.reshape(T * N, G))


def weight_gradient(a, b):
    """a^T b (K, M) for a (R, K), b (R, M): a weight's gradient, summed over R rows.

    The product passes an optimization barrier, so that XLA cannot fold a caller's transpose
    into it (`jaxseq.nn` keeps PyTorch's (4H, H) weights, and its gradient is this one
    transposed): XLA:CPU's dot for the folded orientation, dot(b, a) -> (M, K), is slower
    (R=8192 K=512 M=2048: 133 against 84 ms on one core, 58 against 54 on two; the char
    language model's training step 1.02x on two).
    """
    return lax.optimization_barrier(a.T @ b)


# ----------------------------------------------------------------------------- loops


def scan(step, carry, xs, *, reverse=False):
    """`lax.scan(step, carry, xs, reverse=reverse)` whose initial carry (zeros, often) is made
    varying along the mesh axes of its inputs inside `shard_map` (`jaxseq.layers.varying`)."""
    return lax.scan(step, match_varying(carry, varying_axes(carry, xs)), xs, reverse=reverse)


def scan_in_place(step, carry, buffer, xs=(), *, reverse=False):
    """`lax.scan(step, carry, (buffer, *xs), reverse=reverse)` for a step whose first output
    has the shape of `buffer[t]`: that output is written over `buffer[t]`, so XLA updates the
    buffer in place instead of filling a new stacked output with zeros first.

    `buffer[t]` is read one iteration ahead (after the write of the step before): when a step
    read its slice and then wrote the same buffer, XLA:CPU copied the whole buffer every
    iteration whenever the carry depended on the slice, which made the loop O(T^2).
    Returns (carry, (buffer, *stacked other outputs)).
    """
    T = buffer.shape[0]
    at = lambda a, t: lax.dynamic_index_in_dim(a, t, 0, keepdims=False)  # noqa: E731
    put = lambda a, v, t: lax.dynamic_update_index_in_dim(a, v, t, 0)  # noqa: E731
    slices = tuple(jax.ShapeDtypeStruct(a.shape[1:], a.dtype) for a in (buffer, *xs))
    out_shapes = jax.eval_shape(lambda c, x: step(c, x)[1][1:], carry, slices)
    outs = tuple(jnp.zeros((T, *o.shape), o.dtype) for o in out_shapes)
    carry, buffer, outs = match_varying((carry, buffer, outs), varying_axes(carry, buffer, xs))
    if T == 0:
        return carry, (buffer, *outs)
    first = T - 1 if reverse else 0

    def body(k, state):
        carry, current, buffer, outs = state
        t = T - 1 - k if reverse else k
        carry, (new, *new_outs) = step(carry, (current, *(at(a, t) for a in xs)))
        buffer = put(buffer, new, t)
        upcoming = jnp.clip(t - 1 if reverse else t + 1, 0, T - 1)
        return carry, at(buffer, upcoming), buffer, tuple(put(o, v, t) for o, v in zip(outs, new_outs))

    carry, _, buffer, outs = lax.fori_loop(0, T, body, (carry, at(buffer, first), buffer, outs))
    return carry, (buffer, *outs)


# ----------------------------------------------------------------------------- return values


def forward_result(h, final_states: tuple, cache, return_state: bool):
    """What a `<cell>_forward` returns: (h, cache), or (h, *final states, cache)."""
    return (h, *final_states, cache) if return_state else (h, cache)


def custom_vjp_sequence_layer(primal, forward, backward, n_states: int):
    """The differentiable form of a sequence layer: a `jax.custom_vjp` function
    `f((*static, return_state), *args)`, args = (x, states..., weights..., lengths), that
    returns h, or (h, *final states) with return_state, and whose rule is the hand pair.
    `static` are the layer's Python options after the arrays: (reverse,), or for the RNN
    (reverse, nonlinearity).

    primal(*args, *static) -> (h, *final states): what runs when nothing is differentiated;
    forward(*args, *static) -> (h, *final states, cache): the rule's forward;
    backward(dh, final-state grads (each None when not an output), cache) -> the gradients of
      every argument but lengths, which gets none.
    """

    def outputs(values, return_state):
        return tuple(values[: 1 + n_states]) if return_state else values[0]

    def fwd_rule(options, *args):
        *values, cache = forward(*args, *options[:-1])
        return outputs(values, options[-1]), cache

    def bwd_rule(options, cache, dout):
        dh, *dstates = tuple(dout) if options[-1] else (dout, *([None] * n_states))
        return (*backward(dh, dstates, cache), None)

    layer = custom_vjp(lambda options, *args: outputs(primal(*args, *options[:-1]), options[-1]),
                       nondiff_argnums=(0,))
    layer.defvjp(fwd_rule, bwd_rule)
    return layer
