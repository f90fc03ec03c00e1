"""The parameters of a recurrent stack: PyTorch's names, shapes, order and initialization.

For layer k = 0 .. num_layers-1 and direction d (0 forward, suffix ""; 1 backward, suffix
"_reverse"), exactly as `torch.nn.RNN` / `LSTM` / `GRU` name them:

    weight_ih_l{k}{suffix}   (G*H, D_in)    D_in = D for k = 0, num_directions * R after
    weight_hh_l{k}{suffix}   (G*H, R)
    bias_ih_l{k}{suffix}     (G*H,)         only with bias=True
    bias_hh_l{k}{suffix}     (G*H,)         only with bias=True
    weight_hr_l{k}{suffix}   (P, H)         only with proj_size = P > 0 (the LSTM's projection)

R is the width of the hidden state a layer outputs and carries: H, or P with proj_size > 0.
G is the cell's number of H-wide gate blocks (1 RNN; 4 LSTM, PyTorch's order i, f, g, o;
3 GRU, r, z, n), the layout PyTorch's: rows are gate units, columns inputs. The order of
`parameter_specs` is the order of a PyTorch state_dict. Every parameter is drawn as PyTorch
draws it: uniform(-1/sqrt(H), 1/sqrt(H)).
"""

from __future__ import annotations

from typing import NamedTuple

import jax

KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


class ParameterSpec(NamedTuple):
    """One parameter: its PyTorch name, shape (None: not known yet, D before it is seen) and
    the shape's meaning, e.g. "(4H, D)"."""

    name: str
    shape: tuple
    meaning: str


def parameter_name(kind: str, layer: int, direction: int) -> str:
    """PyTorch's name, e.g. ("weight_ih", 1, 1) -> "weight_ih_l1_reverse"."""
    return f"{kind}_l{layer}{'_reverse' if direction else ''}"


def _times(count: int, label: str) -> str:
    return label if count == 1 else f"{count}{label}"


def direction_specs(gates: int, hidden_size: int, num_directions: int, layer: int, direction: int,
                    input_size: int | None, *, proj_size: int = 0, bias: bool = True) -> dict[str, ParameterSpec]:
    """The parameters of one layer and direction, by kind (`KINDS`, in that order; the biases
    only with `bias`, weight_hr only with proj_size > 0).

    input_size is D, the stack's input size (used by layer 0 only; None when not known).
    """
    H = hidden_size
    R, R_label = (proj_size, "P") if proj_size else (H, "H")
    rows, rows_label = gates * H, _times(gates, "H")
    if layer == 0:
        cols, cols_label = input_size, "D"
    else:
        cols, cols_label = num_directions * R, _times(num_directions, R_label)
    shapes: dict[str, tuple[tuple[int | None, ...], str]] = {
        "weight_ih": ((rows, cols), f"({rows_label}, {cols_label})"),
        "weight_hh": ((rows, R), f"({rows_label}, {R_label})"),
    }
    if bias:
        shapes["bias_ih"] = ((rows,), f"({rows_label},)")
        shapes["bias_hh"] = ((rows,), f"({rows_label},)")
    if proj_size:
        shapes["weight_hr"] = ((proj_size, H), "(P, H)")
    return {kind: ParameterSpec(parameter_name(kind, layer, direction), *shapes[kind]) for kind in shapes}


def parameter_specs(gates: int, hidden_size: int, num_layers: int, num_directions: int,
                    input_size: int | None, *, proj_size: int = 0, bias: bool = True) -> list[ParameterSpec]:
    """Every parameter of the stack, in a PyTorch state_dict's order (layer, direction, kind)."""
    return [
        spec
        for layer in range(num_layers)
        for direction in range(num_directions)
        for spec in direction_specs(gates, hidden_size, num_directions, layer, direction, input_size,
                                    proj_size=proj_size, bias=bias).values()
    ]


def torch_uniform(hidden_size: int):
    """PyTorch's initializer of every recurrent parameter: uniform(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / hidden_size**0.5

    def init(key, shape, dtype):
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init
