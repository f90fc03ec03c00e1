"""One step of a `LanguageModel` for token-by-token generation: the readable step (the model's
own `apply` on one token) and a fast step on weights converted once, with the same contract.

Shapes: N streams, V vocabulary, E embedding size, H hidden size, S layers, G gate blocks
(1 RNN, 3 GRU, 4 LSTM).

    logits, state = model_step(model, variables, token, state)          token (N,) -> logits (N, V)
    weights = prepare_step(model, variables)                            once per generation
    logits, state = fast_step(model, weights, token, state)             the same numbers

`model_step` converts the weights from PyTorch's layout inside every call (transposes, the
LSTM's gate reordering) and runs each layer's sequence loop for one step; inside a sampling
loop XLA keeps those transposes in the loop body, so every token rewrote every weight matrix
(the char model, 2-layer LSTM H=512, one core: 4.2 ms of CPU time per token; the fast step
0.34 ms, the bytes-over-bandwidth floor; benchmarks/results/lm_speed-gen-1core.md).
`prepare_step` does that work once and folds the embedding into layer 0's input side:

    table   = encoder.weight Wx_0 + b_0                 (V, G*H): layer 0's xw for every token
    layers  = each layer's `CellWeights` (Wx_k (H, G*H), b_k for k >= 1; Wh_k (H, G*H), bh_k)
    decoder = W_out (H, V) (the encoder's transpose when tied), b_out (V,)

and a `fast_step` is then, for each layer k (the cell's `update`, the math the layers loop over):

    xw_0 = table[token],  xw_k = h'_{k-1} Wx_k + b_k  (k >= 1),  hw_k = h_k Wh_k (+ bh_k)
    state_k' = cell.update(xw_k, hw_k, state_k, w_k)
    logits = h'_{S-1} W_out + b_out

The additions come in the layers' order, so the two steps agree to float rounding (the table's
rows are the same dot products computed once); the generated text is the same for the same key
(tested). Both steps are deterministic: generation applies no dropout.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxseq.models.language_model import STACK_CELLS
from jaxseq.nn.cells import Cell, TorchWeights, input_table
from jaxseq.nn.parameters import parameter_name

Array = jax.Array

__all__ = ["StepWeights", "fast_step", "model_step", "prepare_step"]


class StepWeights(NamedTuple):
    """What `fast_step` reads (module docstring).

    table (V, G*H); layers: one `CellWeights` per layer (layer 0's Wx and b are None: they are
    in the table); decoder_weight (H, V); decoder_bias (V,).
    """

    table: Array
    layers: tuple
    decoder_weight: Array
    decoder_bias: Array


def _cell(model) -> Cell:
    return STACK_CELLS[model.cell]


def model_step(model, variables, token: Array, state):
    """The readable step: `model.apply` on one token per stream.

    Inputs: model: a `LanguageModel`; variables: {"params": ...}; token (N,) int ids; state:
      (S, N, H), or (h, c) for the LSTM.
    Returns: (logits (N, V), state after the token).
    """
    logits, state = model.apply(variables, token[:, None], state)
    return logits[:, 0], state


def _torch_weights(rnn: dict, layer: int) -> TorchWeights:
    """Layer `layer`'s weights (one direction, with biases, no projection: the language
    model's stack) from the variables' PyTorch names."""
    names = {kind: parameter_name(kind, layer, 0) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    missing = [name for name in names.values() if name not in rnn]
    if missing:
        raise ValueError(f"variables['params']['rnn'] is missing {missing[0]!r}: expected the model's "
                         f"parameters ({', '.join(names.values())} for layer {layer})")
    return TorchWeights(**{kind: rnn[name] for kind, name in names.items()})


def prepare_step(model, variables) -> StepWeights:
    """The weights `fast_step` reads, converted from the model's variables once.

    Inputs: model: a `LanguageModel`; variables: its {"params": ...} (PyTorch's names).
    Returns: StepWeights (module docstring), in the parameters' dtype.
    """
    params = variables.get("params") if hasattr(variables, "get") else None
    if params is None or not all(name in params for name in ("encoder", "rnn", "decoder")):
        raise ValueError("variables must be the model's {'params': {'encoder', 'rnn', 'decoder'}}, "
                         f"got {type(variables).__name__}")
    cell = _cell(model)
    layers = [cell.layout(_torch_weights(params["rnn"], layer)) for layer in range(model.num_layers)]
    encoder = params["encoder"]["weight"]
    table = input_table(encoder, layers[0])  # every token's layer-0 input side, (V, G*H)
    layers[0] = layers[0]._replace(Wx=None, b=None)
    decoder = encoder if model.tie_weights else params["decoder"]["weight"]
    return StepWeights(table, tuple(layers), decoder.T, params["decoder"]["bias"])


def _layer_states(model, state) -> tuple:
    """The state as a tuple of (S, N, H) arrays: (h,) or (h, c)."""
    return tuple(state) if model.cell == "lstm" else (state,)


def fast_step(model, weights: StepWeights, token: Array, state):
    """`model_step` on prepared weights (module docstring): same inputs and outputs, the
    variables replaced by `prepare_step(model, variables)`."""
    states = _layer_states(model, state)
    cell = _cell(model)
    below: Array = weights.table[token]  # layer 0's input side; then each layer's output
    finals = []
    for layer, w in enumerate(weights.layers):
        xw = below if layer == 0 else below @ w.Wx + w.b
        hw = states[0][layer] @ w.Wh
        if w.bh is not None:
            hw = hw + w.bh
        final = cell.update(xw, hw, tuple(s[layer] for s in states), w)
        finals.append(final)
        below = final[0]
    logits = below @ weights.decoder_weight + weights.decoder_bias
    stacked = tuple(jnp.stack(rows) for rows in zip(*finals))
    return logits, stacked if model.cell == "lstm" else stacked[0]
