"""`RNN`, `LSTM` and `GRU`: Flax linen modules with the semantics and the parameters of
`torch.nn.RNN` / `LSTM` / `GRU`, each one `RecurrentStack` with its cell. Batch first by
default (batch_first=False reads and returns time-major arrays, as PyTorch's default).

Shapes: N batch, T time, D input, H hidden, S = num_layers * num_directions, P proj_size.

    out, h_n = GRU(hidden_size=H).apply(variables, x)                 # RNN alike
    out, (h_n, c_n) = LSTM(hidden_size=H).apply(variables, x, lengths=lengths, initial_state=(h0, c0))

x (N, T, D), out (N, T, num_directions * H), h_n, c_n (S, N, H) (an LSTM with proj_size P:
out (N, T, num_directions * P), h_n (S, N, P)). Parameters are PyTorch's
(`jaxseq.nn.parameters`); the loops are `jaxseq.layers.rnn` / `lstm` / `gru`, so `jax.grad`
runs their hand-written backward passes.
"""

from __future__ import annotations

from jaxseq.nn.cells import GRU_CELL, LSTM_CELL, Cell, rnn_cell
from jaxseq.nn.stack import RecurrentStack

__all__ = ["RNN", "LSTM", "GRU"]


class RNN(RecurrentStack):
    """Elman RNN stack, h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu), as
    `torch.nn.RNN`.

    Fields: hidden_size H, num_layers, bidirectional, dropout, param_dtype, bias,
    batch_first, and nonlinearity: "tanh" or "relu", as PyTorch's.
    Returns of a call: (out (N, T, num_directions * H), h_n (S, N, H)).

    >>> import jax, jax.numpy as jnp
    >>> m = RNN(hidden_size=4, num_layers=2)
    >>> x = jnp.ones((3, 5, 2))
    >>> out, h_n = m.apply(m.init(jax.random.key(0), x), x)
    >>> out.shape, h_n.shape
    ((3, 5, 4), (2, 3, 4))
    """

    nonlinearity: str = "tanh"

    @property
    def cell(self) -> Cell:
        """The RNN cell with this module's nonlinearity."""
        return rnn_cell(self.nonlinearity)


class LSTM(RecurrentStack):
    """LSTM stack as `torch.nn.LSTM` (gates i, f, g, o in its weights).

    Fields: hidden_size H, num_layers, bidirectional, dropout, param_dtype, bias,
    batch_first, proj_size P (0: none; else 0 < P < H: h_t = (o_t * tanh(c_t)) W_hr^T, the
    recurrence on the projected state, PyTorch's weight_hr_l{k}[_reverse] (P, H)).
    Call: initial_state is (h0, c0), h0 (S, N, P or H), c0 (S, N, H), or None (zeros).
    Returns of a call: (out (N, T, num_directions * R), (h_n (S, N, R), c_n (S, N, H))),
    R = P with a projection, else H.

    >>> import jax, jax.numpy as jnp
    >>> m = LSTM(hidden_size=4, bidirectional=True)
    >>> x = jnp.ones((3, 5, 2))
    >>> out, (h_n, c_n) = m.apply(m.init(jax.random.key(0), x), x, lengths=jnp.array([5, 2, 0]))
    >>> out.shape, h_n.shape, c_n.shape
    ((3, 5, 8), (2, 3, 4), (2, 3, 4))
    """

    cell = LSTM_CELL


class GRU(RecurrentStack):
    """GRU stack as `torch.nn.GRU` (gates r, z, n; bias_hh inside r * (h W_hn^T + b_hn)).

    Fields: hidden_size H, num_layers, bidirectional, dropout, param_dtype, bias, batch_first.
    Returns of a call: (out (N, T, num_directions * H), h_n (S, N, H)).
    """

    cell = GRU_CELL
