"""A GRU over token ids whose input side is a table lookup: `jaxseq.layers.lstm_lookup`'s idea
for the GRU.

For embedded tokens, x_t = E[tokens_t] with E (V, D), the GRU's input side is a function of the
token alone:

    x_t Wx + b = (E Wx + b)[tokens_t] = table[tokens_t]        table (V, 3H), gates r, z, n

(bh stays on the hidden side, inside r * (h Wh_n + bh_n)). The loop is the GRU's own
(`jaxseq.layers.gru.gru_recurrence`), each step's rows gathered inside it where `gru` computes
x_t Wx + b; the backward loop is `gru_backward`'s, and the table's gradient the scatter-add of
the input-side gradients into the rows that were read (no dx, no N T-row dWx):

    dtable[v] = sum over (n, t) with tokens[n, t] == v of dxw[n, t]      (V, 3H)

Shapes: N batch, T time, V vocabulary, H hidden.
"""

from __future__ import annotations

import functools

import jax

from jaxseq.layers import sequence as S
from jaxseq.layers.gru import GRUCache, gru_recurrence, gru_recurrence_backward


def validate_gru_lookup_args(tokens, table, h0, Wh, bh, lengths) -> tuple[
        jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array | None]:
    """Checked (tokens, h0, table, Wh, bh, lengths): tokens (N, T) int in [0, V); table (V, 3H);
    h0 (N, H); Wh (H, 3H); bh (3H,); lengths (N,) in [0, T] or None. Floats in one dtype;
    one-line ValueErrors naming the argument otherwise (`jaxseq.layers.sequence.validate_sequence_args`)."""
    return S.validate_sequence_args(tokens, {"h0": h0}, table, Wh, {"bh": bh}, gates=3, lengths=lengths, lookup=True)


def _gru_lookup_forward(tokens, h0, table, Wh, bh, lengths, reverse, *, compiled_loop: bool = False):
    """The forward on checked arguments. Returns (h (N, T, H), h_n (N, H), cache);
    `compiled_loop`: the loop `jaxseq.kernels.gru` compiles where it applies, from every step's
    rows gathered before it."""
    input_sides = (lambda: S.lookup(table, tokens.T)) if compiled_loop else None
    h, h_n, (h_tm, gates_tm, hw_n_tm) = gru_recurrence(lambda tokens_t: S.lookup(table, tokens_t), tokens.T, h0, Wh,
                                                        bh, lengths, reverse, input_sides=input_sides)
    return h, h_n, GRUCache(tokens, h0, table, Wh, h_tm, gates_tm, hw_n_tm, lengths, reverse)


def gru_lookup_forward(tokens, table, h0, Wh, bh, *, lengths=None, reverse=False, return_state=False):
    """The GRU over `tokens` with x_t Wx + b = table[tokens_t] (module docstring).

    Inputs: tokens (N, T) int ids in [0, V); table (V, 3H), gates r, z, n; h0 (N, H); Wh (H, 3H);
      bh (3H,); lengths (N,) or None; reverse: as in `jaxseq.layers.gru_forward`.
    Returns: (h (N, T, H), cache), or (h, h_n (N, H), cache) with return_state.
    """
    h, h_n, cache = _gru_lookup_forward(*validate_gru_lookup_args(tokens, table, h0, Wh, bh, lengths), reverse)
    return S.forward_result(h, (h_n,), cache, return_state)


def gru_lookup_backward(dh, cache: GRUCache, *, dh_n=None):
    """Backward of `gru_lookup_forward`.

    Inputs: dh (N, T, H), the cache; dh_n (N, H) or None.
    Returns: (dtable (V, 3H), dh0 (N, H), dWh (H, 3H), dbh (3H,)).
    """
    dh0, dxw_tm, dhw_tm, h_prev_tm = gru_recurrence_backward(dh, cache, dh_n)
    dbh = dhw_tm.reshape(-1, dhw_tm.shape[-1]).sum(axis=0)
    return (S.lookup_gradient(cache.x, dxw_tm, cache.Wx.shape[0]), dh0, S.hidden_weight_gradient(h_prev_tm, dhw_tm),
            dbh)


def _rule_backward(dh, dstates, cache):
    """The gradients in argument order (tokens, h0, table, Wh, bh): none for the tokens."""
    dtable, dh0, dWh, dbh = gru_lookup_backward(dh, cache, dh_n=dstates[0])
    return None, dh0, dtable, dWh, dbh


_gru_lookup = S.custom_vjp_sequence_layer(
    primal=lambda *args: _gru_lookup_forward(*args)[:-1],
    forward=functools.partial(_gru_lookup_forward, compiled_loop=True),
    backward=_rule_backward,
    n_states=1,
)


def gru_lookup(tokens, table, h0, Wh, bh, *, lengths=None, reverse=False, return_state=False):
    """Differentiable `gru_lookup_forward`; `jax.grad` runs `gru_lookup_backward`'s math (the
    gradients of table, h0, Wh, bh; none for the tokens).

    Inputs: as `gru_lookup_forward`.
    Returns: h (N, T, H), or (h, h_n (N, H)) with return_state.

    >>> import numpy as np
    >>> N, T, V, H = 2, 5, 7, 4
    >>> h = gru_lookup(np.zeros((N, T), np.int32), np.zeros((V, 3 * H), np.float32), np.zeros((N, H), np.float32),
    ...                np.zeros((H, 3 * H), np.float32), np.zeros(3 * H, np.float32))
    >>> h.shape
    (2, 5, 4)
    """
    args = validate_gru_lookup_args(tokens, table, h0, Wh, bh, lengths)
    return _gru_lookup((bool(reverse), bool(return_state)), *args)
