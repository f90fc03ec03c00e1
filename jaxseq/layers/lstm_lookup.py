"""An LSTM over token ids whose input side is a table lookup.

When an LSTM reads embedded tokens, x_t = E[tokens_t] with E (V, D), its input projection is
a function of the token alone:

    x_t Wx + b = (E Wx + b)[tokens_t] = table[tokens_t]        table (V, 4H)

so it can be looked up instead of computed per step and per stream. The table costs
V D 4H multiply-adds against N T D 4H for the projection, and its gradient is the scatter-add
of the pre-activation gradients into the rows that were read (no dx, no N T-row dWx):

    dtable[v] = sum over (n, t) with tokens[n, t] == v of da[n, t]       (V, 4H)

A language model whose vocabulary is smaller than a batch's token count (characters:
V = 65 against N T = 8,192) saves most of its first layer's input-side work that way
(`jaxseq.models.LanguageModel` does, when no dropout sits between the embedding and the
first layer). Differentiated, it runs the fast LSTM's loops, cache and backward
(`jaxseq.layers.lstm_fast`) on the gathered rows, b inside the table; otherwise the readable
loop of `jaxseq.layers.lstm`, each step's rows gathered inside it.

Shapes: N batch, T time, V vocabulary, H hidden, P = H, or the projection's width with Wr.
"""

from __future__ import annotations

import functools

import jax

from jaxseq.layers import sequence as S
from jaxseq.layers.lstm import readable_recurrence
from jaxseq.layers.lstm_fast import (
    LSTMFastCache, initial_cell_state, recurrence_backward, recurrence_forward, with_absent_gradients,
)


def validate_lstm_lookup_args(tokens, table, h0, c0, Wh, Wr, lengths) -> tuple[
        jax.Array, jax.Array, jax.Array | None, jax.Array, jax.Array, jax.Array | None, jax.Array | None]:
    """Checked (tokens, h0, c0, table, Wh, Wr, lengths): tokens (N, T) int in [0, V); table
    (V, 4H); h0 (N, P); c0 (N, H) or None; Wh (P, 4H); Wr (H, P) or None (then P = H);
    lengths (N,) in [0, T] or None. Floats in one dtype; one-line ValueErrors naming the
    argument otherwise (`jaxseq.layers.sequence.validate_sequence_args`)."""
    return S.validate_sequence_args(tokens, {"h0": h0, "c0": c0}, table, Wh, {}, gates=4, lengths=lengths, Wr=Wr,
                                    with_projection=True, lookup=True)


def lstm_lookup_forward_parts(tokens, h0, c0, table, Wh, Wr, lengths, reverse, *, compiled_loop: bool = False):
    """The forward on checked arguments, each step's rows gathered time-major into one (T, N, 4H)
    buffer that the in-place loop overwrites (`compiled_loop`: `recurrence_forward`'s).
    Returns (h (N, T, P), h_n (N, P), c_n (N, H), cache)."""
    return recurrence_forward(tokens, h0, c0, table, Wh, None, Wr, lengths, reverse, S.lookup(table, tokens.T),
                              compiled_loop=compiled_loop)


def lstm_lookup_forward(tokens, table, h0, Wh, *, c0=None, Wr=None, lengths=None, reverse=False,
                        return_state=False):
    """The LSTM over `tokens` with x_t Wx + b = table[tokens_t] (module docstring).

    Inputs: tokens (N, T) int ids in [0, V); table (V, 4H), gates i, f, o, g; h0 (N, P);
      Wh (P, 4H); c0 (N, H) or None (zeros); Wr (H, P) or None; lengths (N,) or None;
      reverse: as in `jaxseq.layers.lstm_forward`.
    Returns: (h (N, T, P), cache), or (h, h_n (N, P), c_n (N, H), cache) with return_state.
    """
    h, h_n, c_n, cache = lstm_lookup_forward_parts(*validate_lstm_lookup_args(tokens, table, h0, c0, Wh, Wr, lengths),
                                                   reverse)
    return S.forward_result(h, (h_n, c_n), cache, return_state)


def lstm_lookup_backward(dh, cache: LSTMFastCache, *, dh_n=None, dc_n=None):
    """Backward of `lstm_lookup_forward`.

    Inputs: dh (N, T, P), the cache; dh_n (N, P), dc_n (N, H) or None.
    Returns: (dtable (V, 4H), dh0 (N, P), dWh (P, 4H)), with dc0 (N, H) after dh0 when c0
      was given to the forward, and dWr (H, P) last when Wr was.
    """
    dh0, dc0, da_tm, h_prev_tm, dWr = recurrence_backward(dh, cache, dh_n, dc_n)
    dtable = S.lookup_gradient(cache.x, da_tm, cache.Wx.shape[0])
    dWh = S.hidden_weight_gradient(h_prev_tm, da_tm)
    grads = (dtable, dh0, dWh) if cache.c0 is None else (dtable, dh0, dc0, dWh)
    return grads if cache.Wr is None else (*grads, dWr)


def _rule_backward(dh, dstates, cache):
    """The gradients in argument order (tokens, h0, c0, table, Wh, Wr): None for the integer
    tokens and for a c0 or Wr that was not given."""
    dtable, dh0, dc0, dWh, dWr = with_absent_gradients(
        lstm_lookup_backward(dh, cache, dh_n=dstates[0], dc_n=dstates[1]), cache)
    return None, dh0, dc0, dtable, dWh, dWr


def _primal(tokens, h0, c0, table, Wh, Wr, lengths, reverse):
    """What runs when nothing is differentiated (evaluation, generation's prompt): the readable
    loop, each step's rows gathered inside it: no (T, N, 4H) buffer. The char model's
    evaluation forward (N=64 T=128 H=512, 2 threads): 200 ms, 239 on the fast forward, 211 with
    layer 0 projecting."""
    return readable_recurrence(lambda tokens_t: S.lookup(table, tokens_t), tokens.T, h0,
                               initial_cell_state(c0, h0, Wh), Wh, Wr, lengths, reverse)[:-1]


_lstm_lookup = S.custom_vjp_sequence_layer(
    primal=_primal,
    forward=functools.partial(lstm_lookup_forward_parts, compiled_loop=True),
    backward=_rule_backward,
    n_states=2,
)


def lstm_lookup(tokens, table, h0, Wh, *, c0=None, Wr=None, lengths=None, reverse=False, return_state=False):
    """Differentiable `lstm_lookup_forward`; `jax.grad` runs `lstm_lookup_backward`'s math
    (the gradients of table, h0, c0, Wh, Wr; none for the tokens).

    Inputs: as `lstm_lookup_forward`.
    Returns: h (N, T, P), or (h, h_n (N, P), c_n (N, H)) with return_state.

    >>> import numpy as np
    >>> N, T, V, H = 2, 5, 7, 4
    >>> tokens = np.zeros((N, T), np.int32)
    >>> h = lstm_lookup(tokens, np.zeros((V, 4 * H), np.float32), np.zeros((N, H), np.float32),
    ...                 np.zeros((H, 4 * H), np.float32))
    >>> h.shape
    (2, 5, 4)
    """
    args = validate_lstm_lookup_args(tokens, table, h0, c0, Wh, Wr, lengths)
    return _lstm_lookup((bool(reverse), bool(return_state)), *args)
