"""Checks of a recurrent stack's call arguments: x, lengths and initial_state.

Each raises a one-line `ValueError` naming the argument and the expected shape, before the
arguments reach a loop (where a wrong shape would surface as an opaque XLA error).
Shapes: N batch, T time, D input, H hidden, S = num_layers * num_directions state rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxseq.layers._validation import as_lengths

__all__ = ["checked_input", "checked_lengths", "initial_states"]


def _shape(array) -> tuple:
    return tuple(jnp.shape(array))


def checked_input(x, input_size: int | None) -> jax.Array:
    """x as a floating array (N, T, D); D must equal input_size when that is known."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a floating-point array of shape (N, T, D), got dtype {x.dtype}")
    expected = "(N, T, D)" if input_size is None else f"(N, T, D) = (?, ?, {input_size})"
    if x.ndim != 3 or (input_size is not None and x.shape[-1] != input_size):
        raise ValueError(f"x must have shape {expected} (batch first), got {_shape(x)}")
    return x


def checked_lengths(lengths, N: int, T: int) -> jax.Array | None:
    """lengths (N,) int32 with values in [0, T] (checked outside jit), or None: all T."""
    return as_lengths(lengths, N, T)


def initial_states(initial_state, state_names: tuple[str, ...], shape: tuple[int, int, int], dtype) -> tuple:
    """The initial states as a tuple of arrays, one per state name, each of `shape` (S, N, H).

    initial_state: None (zeros); for a cell with one state (RNN, GRU) the array h0 (S, N, H);
      for the LSTM the pair (h0, c0), each (S, N, H).
    """
    S, N, H = shape
    meaning = f"(num_layers * num_directions, N, H) = ({S}, {N}, {H})"
    if initial_state is None:
        return tuple(jnp.zeros(shape, dtype) for _ in state_names)
    if len(state_names) == 1:
        if isinstance(initial_state, (tuple, list)):
            kind = type(initial_state).__name__
            raise ValueError(f"initial_state must be one array h0 of shape {meaning}, got a {kind}")
        given = (initial_state,)
        labels: tuple[str, ...] = ("initial_state",)
    else:
        pair = " and ".join(f"{name}0" for name in state_names)
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != len(state_names):
            raise ValueError(
                f"initial_state must be a pair ({', '.join(f'{n}0' for n in state_names)}), {pair} each of shape "
                f"{meaning}, got {type(initial_state).__name__}"
            )
        given = tuple(initial_state)
        labels = tuple(f"initial_state {name}0" for name in state_names)
    states = []
    for label, state in zip(labels, given):
        state = jnp.asarray(state)
        if not jnp.issubdtype(state.dtype, jnp.floating):
            raise ValueError(f"{label} must be a floating-point array of shape {meaning}, got dtype {state.dtype}")
        if state.shape != shape:
            raise ValueError(f"{label} must have shape {meaning}, got {_shape(state)}")
        states.append(state)
    return tuple(states)
