"""Checks of a recurrent stack's call arguments (x, lengths and initial_state) and of its
proj_size field.

Each raises a one-line `ValueError` naming the argument and the expected shape, before the
arguments reach a loop (where a wrong shape would surface as an opaque XLA error).
Shapes: N batch, T time, D input, H hidden, S = num_layers * num_directions state rows,
P = proj_size (the LSTM's projected hidden state h, when proj_size > 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxseq.layers._validation import as_lengths

__all__ = ["check_proj_size", "checked_input", "checked_lengths", "initial_states"]


def _shape(array) -> tuple:
    return tuple(jnp.shape(array))


def check_proj_size(proj_size, hidden_size: int, cell) -> None:
    """proj_size must be an int, 0 (no projection) or in [1, hidden_size) as PyTorch's, and
    only a cell that projects (the LSTM) takes one other than 0."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, int) or proj_size < 0:
        raise ValueError(f"proj_size must be an int >= 0, got {proj_size!r}")
    if proj_size and not cell.projects:
        raise ValueError(f"proj_size must be 0 for {cell.name}, got {proj_size}: only the LSTM has projections")
    if proj_size >= hidden_size:
        raise ValueError(f"proj_size must be smaller than hidden_size = {hidden_size}, got {proj_size}")


def checked_input(x, input_size: int | None, *, batch_first: bool = True) -> jax.Array:
    """x as a floating array (N, T, D), or (T, N, D) when not batch_first; D must equal
    input_size when that is known."""
    x = jnp.asarray(x)
    dims, layout = ("(N, T, D)", "batch first") if batch_first else ("(T, N, D)", "batch_first=False")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a floating-point array of shape {dims}, got dtype {x.dtype}")
    expected = dims if input_size is None else f"{dims} = (?, ?, {input_size})"
    if x.ndim != 3 or (input_size is not None and x.shape[-1] != input_size):
        raise ValueError(f"x must have shape {expected} ({layout}), got {_shape(x)}")
    return x


def checked_lengths(lengths, N: int, T: int) -> jax.Array | None:
    """lengths (N,) int32 with values in [0, T] (checked outside jit), or None: all T."""
    return as_lengths(lengths, N, T)


def initial_states(initial_state, state_names: tuple[str, ...], shape: tuple[int, int, int], dtype, *,
                   proj_size: int = 0) -> tuple:
    """The initial states as a tuple of arrays, one per state name, each of `shape` (S, N, H)
    but h, which is (S, N, P) with proj_size = P > 0.

    initial_state: None (zeros); for a cell with one state (RNN, GRU) the array h0 (S, N, H);
      for the LSTM the pair (h0, c0), each (S, N, H) (h0 (S, N, P) with a projection).
    """
    S, N, H = shape
    shapes = [(S, N, proj_size) if name == "h" and proj_size else shape for name in state_names]
    meanings = [f"(num_layers * num_directions, N, {'P' if s[2] != H else 'H'}) = {s}" for s in shapes]
    if initial_state is None:
        return tuple(jnp.zeros(s, dtype) for s in shapes)
    if len(state_names) == 1:
        if isinstance(initial_state, (tuple, list)):
            kind = type(initial_state).__name__
            raise ValueError(f"initial_state must be one array h0 of shape {meanings[0]}, got a {kind}")
        given = (initial_state,)
        labels: tuple[str, ...] = ("initial_state",)
    else:
        pair = " and ".join(f"{name}0 {meaning}" for name, meaning in zip(state_names, meanings))
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != len(state_names):
            raise ValueError(
                f"initial_state must be a pair ({', '.join(f'{n}0' for n in state_names)}) of shapes {pair}, "
                f"got {type(initial_state).__name__}"
            )
        given = tuple(initial_state)
        labels = tuple(f"initial_state {name}0" for name in state_names)
    states = []
    for label, state, shape, meaning in zip(labels, given, shapes, meanings):
        state = jnp.asarray(state)
        if not jnp.issubdtype(state.dtype, jnp.floating):
            raise ValueError(f"{label} must be a floating-point array of shape {meaning}, got dtype {state.dtype}")
        if state.shape != shape:
            raise ValueError(f"{label} must have shape {meaning}, got {_shape(state)}")
        states.append(state)
    return tuple(states)
