"""Flax linen recurrent modules with PyTorch's semantics and weights.

`RNN`, `LSTM`, `GRU` take PyTorch's fields (hidden_size, num_layers, bidirectional, dropout,
bias, batch_first (True by default here), the RNN's nonlinearity "tanh" or "relu", the
LSTM's proj_size), name their parameters as PyTorch does, and run `jaxseq.layers`
loops, so `jax.grad` uses the hand-written backward passes. `params_from_torch` /
`params_to_torch` move a state_dict (or a gradient tree) between the two.

Files: `recurrent.py` (the three modules), `stack.py` (the one stack they share),
`cells.py` (what differs per cell), `parameters.py` (names, shapes, initialization),
`torch_weights.py` (state_dict mapping), `arguments.py` (call checks).
"""

from jaxseq.nn.recurrent import GRU, LSTM, RNN
from jaxseq.nn.stack import RecurrentStack
from jaxseq.nn.torch_weights import params_from_torch, params_to_torch

__all__ = ["RNN", "LSTM", "GRU", "RecurrentStack", "params_from_torch", "params_to_torch"]
