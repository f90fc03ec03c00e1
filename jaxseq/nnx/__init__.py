"""Flax NNX recurrent modules with PyTorch's constructor, semantics and weights.

`RNN`, `LSTM`, `GRU` take `torch.nn`'s constructor (input_size, hidden_size, num_layers, ...,
`rngs=`) and call (`out, h_n = m(x, lengths=None, initial_state=None)`), hold their
parameters as `nnx.Param`s under PyTorch's names, and run the `jaxseq.nn` Linen stack
underneath: one implementation, so `nnx.grad` runs the layers' hand-written backward passes.
Dropout between layers acts in training mode (`m.train()`, the default) and not after `m.eval()`.

Files: `stack.py` (the NNX front-end every module shares), `recurrent.py` (the three
modules), `conversion.py` (Linen variables and PyTorch state_dicts, each way).
"""

from jaxseq.nnx.conversion import from_linen, params_from_torch, params_to_torch, to_linen
from jaxseq.nnx.recurrent import GRU, LSTM, RNN
from jaxseq.nnx.stack import RecurrentStack

__all__ = ["RNN", "LSTM", "GRU", "RecurrentStack", "from_linen", "to_linen", "params_from_torch", "params_to_torch"]
