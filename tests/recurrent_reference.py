"""An independent NumPy reference of the recurrent sequence layers: a Python loop over each
sequence on its own, with the semantics written out plainly (PyTorch's packed sequences).

Sequence n reads x[n, t] for t in 0 .. lengths[n]-1 (reverse: from lengths[n]-1 down to 0);
the output at each step read is the new state, every other output is 0, and the final state
is the state after the last step read (the initial state when lengths[n] = 0).
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def rnn_cell(x_t, state, Wx, Wh, b, bh=None):
    (h,) = state
    return (np.tanh(x_t @ Wx + h @ Wh + b),)


def lstm_cell(x_t, state, Wx, Wh, b, bh=None):
    """Gates i, f, o, g along 4H."""
    h, c = state
    H = h.shape[-1]
    a = x_t @ Wx + h @ Wh + b
    i, f, o, g = sigmoid(a[:H]), sigmoid(a[H:2 * H]), sigmoid(a[2 * H:3 * H]), np.tanh(a[3 * H:])
    c = f * c + i * g
    return o * np.tanh(c), c


def gru_cell(x_t, state, Wx, Wh, b, bh):
    """PyTorch's GRU: gates r, z, n along 3H, bh inside r * (h Wh_n + bh_n)."""
    (h,) = state
    H = h.shape[-1]
    xw, hw = x_t @ Wx + b, h @ Wh + bh
    r = sigmoid(xw[:H] + hw[:H])
    z = sigmoid(xw[H:2 * H] + hw[H:2 * H])
    n = np.tanh(xw[2 * H:] + r * hw[2 * H:])
    return ((1.0 - z) * n + z * h,)


CELLS = {"rnn": rnn_cell, "lstm": lstm_cell, "lstm_fast": lstm_cell, "gru": gru_cell}


def reference_sequence(cell: str, x, h0, Wx, Wh, b, bh=None, *, c0=None, lengths=None, reverse=False):
    """Returns (h (N, T, H), c (N, T, H) or None, h_n (N, H), c_n (N, H) or None)."""
    step = CELLS[cell]
    N, T, _ = x.shape
    H = h0.shape[-1]
    is_lstm = cell.startswith("lstm")
    lengths = np.full(N, T) if lengths is None else np.asarray(lengths)
    h, c = np.zeros((N, T, H)), np.zeros((N, T, H))
    h_n, c_n = np.zeros((N, H)), np.zeros((N, H))
    for n in range(N):
        state = (h0[n], np.zeros(H) if c0 is None else c0[n]) if is_lstm else (h0[n],)
        steps = range(lengths[n] - 1, -1, -1) if reverse else range(lengths[n])
        for t in steps:
            state = step(x[n, t], state, Wx, Wh, b, bh)
            h[n, t] = state[0]
            if is_lstm:
                c[n, t] = state[1]
        h_n[n] = state[0]
        if is_lstm:
            c_n[n] = state[1]
    return h, (c if is_lstm else None), h_n, (c_n if is_lstm else None)


def reverse_within_lengths(x, lengths):
    """x (N, T, ...) with each sequence's first lengths[n] steps in reverse order."""
    out = np.array(x, copy=True)
    for n, length in enumerate(lengths):
        out[n, :length] = x[n, :length][::-1]
    return out
