"""One multi-layer, optionally bidirectional recurrent stack with PyTorch's semantics, shared
by `RNN`, `LSTM` and `GRU` (which differ only in their `Cell`).

Shapes (batch first): N batch, T time, D input, H hidden, S = num_layers * num_directions,
R the width of the hidden state: H, or P = proj_size for an LSTM with projections.

    out, final = stack.apply(variables, x, lengths=None, initial_state=None, deterministic=True)

    x (N, T, D) -> out (N, T, num_directions * R), zeros after each sequence's length;
    final: h_n (S, N, R), or (h_n, c_n) for the LSTM, c_n (S, N, H); initial_state alike
    (None: zeros). With batch_first=False, x (T, N, D) and out (T, N, num_directions * R),
    as PyTorch's; lengths and the states are the same either way.

Layer k, direction d runs from state row k * num_directions + d, as in PyTorch: direction 0
reads each sequence forward, direction 1 backward within its own length (PyTorch's packed
sequences); a layer's output is its directions' outputs concatenated along the last axis,
and the next layer reads it. Dropout (rate `dropout`) acts on the output of every layer but
the last, only when `deterministic=False`, with the 'dropout' rng.
"""

from __future__ import annotations

import warnings
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxseq.checks import check_positive_int, check_rate
from jaxseq.nn.arguments import check_proj_size, checked_input, checked_lengths, initial_states
from jaxseq.nn.cells import Cell, TorchWeights
from jaxseq.nn.parameters import direction_specs, parameter_name, torch_uniform

__all__ = ["RecurrentStack"]


class RecurrentStack(nn.Module):
    """A stack of recurrent layers (see the module docstring); subclasses set `cell`.

    Fields (PyTorch's names): hidden_size H, num_layers, bidirectional, dropout (between
    layers), param_dtype (of the parameters `init` draws), bias (False: no bias_ih, bias_hh),
    batch_first (False: x and out time-major, (T, N, .)), proj_size (P > 0: the LSTM's
    projection, 0 < P < H; only cells that project take it). D is inferred from x at `init`.
    """

    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    param_dtype: Any = jnp.float32
    bias: bool = True
    batch_first: bool = True
    proj_size: int = 0

    @property
    def cell(self) -> Cell:
        """The stack's cell: `LSTM` and `GRU` set it as a class attribute, `RNN` by its
        nonlinearity (a read-only property here, so both kinds of override type-check)."""
        raise NotImplementedError(f"{type(self).__name__} names no cell")

    def __post_init__(self):
        check_positive_int("hidden_size", self.hidden_size)
        check_positive_int("num_layers", self.num_layers)
        for name in ("bidirectional", "bias", "batch_first"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        check_rate("dropout", self.dropout, one_allowed=True)
        check_proj_size(self.proj_size, self.hidden_size, self.cell)
        super().__post_init__()

    @property
    def num_directions(self) -> int:
        """2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def _direction_weights(self, layer: int, direction: int, input_size: int) -> TorchWeights:
        """The parameters of one layer and direction (created at `init`), PyTorch's layout."""
        specs = direction_specs(self.cell.gates, self.hidden_size, self.num_directions, layer, direction, input_size,
                                proj_size=self.proj_size, bias=self.bias)
        init = torch_uniform(self.hidden_size)
        return TorchWeights(**{kind: self.param(spec.name, init, spec.shape, self.param_dtype)
                               for kind, spec in specs.items()})

    def _input_size(self) -> int | None:
        """D of the parameters already there (apply), or None (init: D comes from x)."""
        name = parameter_name("weight_ih", 0, 0)
        if self.has_variable("params", name):
            return jnp.shape(self.get_variable("params", name))[1]
        return None

    @nn.compact
    def __call__(self, x, lengths=None, initial_state=None, *, deterministic: bool = True):
        """Run the stack.

        Inputs: x (N, T, D), or (T, N, D) with batch_first=False; lengths (N,) int in [0, T]
          or None (every sequence T long); initial_state: h0 (S, N, R), for the LSTM
          (h0, c0) with c0 (S, N, H), or None (zeros); deterministic: False applies dropout
          between layers (needs a 'dropout' rng).
        Returns: (out (N, T, num_directions * R), h_n (S, N, R)), for the LSTM
          (out, (h_n, c_n)); out is (T, N, .) with batch_first=False, 0 after each length;
          h_n the state after each sequence's last valid step (the initial state for length
          0). S = num_layers * num_directions; R = proj_size or H.
        """
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                f"dropout={self.dropout} acts after every layer but the last (as in PyTorch), so with "
                "num_layers=1 it does nothing",
                UserWarning,
                stacklevel=2,
            )
        x = checked_input(x, self._input_size(), batch_first=self.batch_first)
        if not self.batch_first:
            x = jnp.swapaxes(x, 0, 1)  # the layers are batch-major
        N, T, D = x.shape
        lengths = checked_lengths(lengths, N, T)
        state_shape = (self.num_layers * self.num_directions, N, self.hidden_size)
        dtype = jnp.result_type(x.dtype, self.param_dtype)
        initial = initial_states(initial_state, self.cell.state_names, state_shape, dtype, proj_size=self.proj_size)

        layer_input, finals = x, []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                row = layer * self.num_directions + direction
                weights = self._direction_weights(layer, direction, layer_input.shape[-1])
                states = tuple(state[row] for state in initial)
                out, final = self.cell.run(layer_input, states, weights, lengths, bool(direction))
                outputs.append(out)
                finals.append(final)
            layer_input = jnp.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
            if layer < self.num_layers - 1 and self.dropout > 0:
                dropout = nn.Dropout(self.dropout, name=f"dropout_l{layer}")
                layer_input = dropout(layer_input, deterministic=deterministic)

        stacked = tuple(jnp.stack(rows) for rows in zip(*finals))  # one (S, N, R or H) per state
        out = layer_input if self.batch_first else jnp.swapaxes(layer_input, 0, 1)
        return out, stacked[0] if len(stacked) == 1 else stacked
