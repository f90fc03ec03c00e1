"""`RNN`, `LSTM` and `GRU`: Flax NNX modules with the constructor, call, parameter names and
semantics of `torch.nn.RNN` / `LSTM` / `GRU` (batch first by default), each run by its
`jaxseq.nn` Linen twin (`jaxseq.nnx.stack`).

Shapes: N batch, T time, D input, H hidden, S = num_layers * num_directions.

    m = LSTM(D, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    out, (h_n, c_n) = m(x, lengths=lengths, initial_state=(h0, c0))
    out, h_n = GRU(D, H, rngs=nnx.Rngs(0))(x)                         # RNN alike
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxseq import nn as linen
from jaxseq.nnx.stack import RecurrentStack

__all__ = ["RNN", "LSTM", "GRU"]


class RNN(RecurrentStack):
    """Elman RNN stack, h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu), as
    `torch.nn.RNN`.

    Arguments (PyTorch's): input_size D, hidden_size H, num_layers, nonlinearity ("tanh" or
    "relu"), bias (False: no bias_ih, bias_hh),
    batch_first (default True), dropout (between layers, in training mode), bidirectional;
    param_dtype; rngs (nnx.Rngs: 'params' draws the parameters, 'dropout' the masks).
    Call: m(x (N, T, D) ((T, N, D) with batch_first=False), lengths=None,
      initial_state=h0 (S, N, H) or None) -> (out (N, T, num_directions * H), h_n (S, N, H)).

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> m = RNN(2, 4, num_layers=2, rngs=nnx.Rngs(0))
    >>> out, h_n = m(jnp.ones((3, 5, 2)))
    >>> out.shape, h_n.shape, m.weight_ih_l1.shape
    ((3, 5, 4), (2, 3, 4), (4, 4))
    """

    linen_class = linen.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                 *, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        options = dict(num_layers=num_layers, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first,
                       dropout=dropout, bidirectional=bidirectional)
        self._build(input_size, hidden_size, options, param_dtype, rngs)


class LSTM(RecurrentStack):
    """LSTM stack as `torch.nn.LSTM` (gates i, f, g, o in its weights).

    Arguments (PyTorch's): input_size D, hidden_size H, num_layers, bias, batch_first
    (default True), dropout (between layers, in training mode), bidirectional, proj_size P
    (0: none; else 0 < P < H, h_t = (o_t * tanh(c_t)) W_hr^T with weight_hr_l{k} (P, H));
    param_dtype; rngs (nnx.Rngs: 'params' draws the parameters, 'dropout' the masks).
    Call: m(x (N, T, D), lengths=None, initial_state=(h0 (S, N, R), c0 (S, N, H)) or None)
      -> (out (N, T, num_directions * R), (h_n (S, N, R), c_n (S, N, H))), R = P or H.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> m = LSTM(2, 4, bidirectional=True, rngs=nnx.Rngs(0))
    >>> out, (h_n, c_n) = m(jnp.ones((3, 5, 2)), lengths=jnp.array([5, 2, 0]))
    >>> out.shape, h_n.shape, c_n.shape
    ((3, 5, 8), (2, 3, 4), (2, 3, 4))
    """

    linen_class = linen.LSTM

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 *, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        options = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                       bidirectional=bidirectional, proj_size=proj_size)
        self._build(input_size, hidden_size, options, param_dtype, rngs)


class GRU(RecurrentStack):
    """GRU stack as `torch.nn.GRU` (gates r, z, n; bias_hh inside r * (h W_hn^T + b_hn)).

    Arguments (PyTorch's): input_size D, hidden_size H, num_layers, bias, batch_first
    (default True), dropout (between layers, in training mode), bidirectional; param_dtype;
    rngs (nnx.Rngs: 'params' draws the parameters, 'dropout' the masks).
    Call: m(x (N, T, D), lengths=None, initial_state=h0 (S, N, H) or None)
      -> (out (N, T, num_directions * H), h_n (S, N, H)).
    """

    linen_class = linen.GRU

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                 *, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        options = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                       bidirectional=bidirectional)
        self._build(input_size, hidden_size, options, param_dtype, rngs)
