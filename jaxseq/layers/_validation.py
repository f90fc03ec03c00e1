"""Input checks shared by the public layer entry points.

Every check raises `ValueError` naming the argument and what was expected, because a shape
mistake inside a `lax.scan` otherwise surfaces as an opaque XLA error (or, for gathers, as
silently clamped indices).

Integer values (ids, lengths) are range-checked, when they are known (outside `jit`), in
the dtype they come in, before the cast to JAX's integer type: without x64 that cast
wraps an int64 `2**32 + 1` into 1, a valid id.
"""

from __future__ import annotations

from typing import Sequence, cast

import chex
import jax
import jax.numpy as jnp
import numpy as np


def _describe(shape: Sequence[int | None]) -> str:
    dims = ["?" if dim is None else str(dim) for dim in shape]
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"


def _host_values(name: str, value, expected: str) -> tuple[np.ndarray | None, jax.Array | np.ndarray]:
    """(values, array): `value`'s values as a NumPy array in its own dtype (Python ints: int64,
    or object when larger) or None inside `jit` (a Tracer: not known there), and what to
    check the dtype and shape of and cast (a JAX array stays on its device). Something that
    is no array at all (a ragged list) is a ValueError naming `name` and `expected`."""
    if isinstance(value, jax.core.Tracer):
        return None, value
    try:
        values = np.asarray(value)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be {expected}, got {value!r}"[:300]) from None
    return values, value if isinstance(value, jax.Array) else values


def _check_range(name: str, values: np.ndarray | None, low: int, high: int, what: str, interval: str) -> None:
    """low <= values <= high, compared in the values' own dtype (None: inside jit, unknown);
    the message shows the offending value as it is."""
    if values is None or values.size == 0:
        return
    smallest, largest = values.min(), values.max()
    if smallest < low or largest > high:
        bad = smallest if smallest < low else largest
        raise ValueError(f"{name} holds {what}{' ' if what else ''}{int(bad)}, outside the valid range {interval}")


def _as_array(name: str, value, rank: int, kind, kind_name: str) -> jax.Array | np.ndarray:
    """`value` checked as an array of `kind` and `rank`: a JAX array, or for integers the NumPy
    or JAX array `_host_values` gives (not cast yet)."""
    if kind is jnp.integer:  # not cast yet: `as_int_array` range-checks the values first
        _, array = _host_values(name, value, f"{kind_name} array of rank {rank}")
    else:
        try:
            array = jnp.asarray(value)
        except TypeError:  # a string, a dict: no array of numbers
            raise ValueError(f"{name} must be {kind_name} array of rank {rank}, got {type(value).__name__}") from None
    if not jnp.issubdtype(array.dtype, kind):
        raise ValueError(f"{name} must be {kind_name} array, got dtype {array.dtype}")
    if array.ndim != rank:
        raise ValueError(f"{name} must have rank {rank}, got shape {tuple(array.shape)}")
    return array


def as_float_array(name: str, value, rank: int) -> jax.Array:
    """`value` as a JAX floating array of the given rank (integers are an error)."""
    return cast(jax.Array, _as_array(name, value, rank, jnp.floating, "a floating-point"))  # jnp.asarray made it


def as_int_array(name: str, value, rank: int, size: int | None = None, what: str = "value") -> jax.Array:
    """`value` as a JAX integer array of the given rank; with `size`, its values must lie in
    [0, size) — checked when they are known (outside jit), in `value`'s own dtype, before
    the cast (JAX clamps out-of-range gathers silently, and the cast wraps int64 ids)."""
    array = _as_array(name, value, rank, jnp.integer, "an integer")
    if size is not None:
        values = None if isinstance(array, jax.core.Tracer) else np.asarray(array)
        _check_range(name, values, 0, size - 1, what, f"[0, {size})")
    return jnp.asarray(array)


def expect_shape(name: str, array: jax.Array, shape: Sequence[int | None], meaning: str) -> None:
    """Check `array.shape` against `shape` (None = any size); `meaning` names the dims."""
    try:
        chex.assert_shape(array, tuple(shape))
    except AssertionError:
        raise ValueError(
            f"{name} must have shape {meaning} = {_describe(shape)}, got {tuple(array.shape)}"
        ) from None


def common_float_dtype(*arrays: jax.Array):
    """The floating dtype all float arguments are promoted to."""
    return jnp.result_type(*arrays)


def as_lengths(lengths, N: int, T: int) -> jax.Array | None:
    """`lengths` (N,) as int32, or None; the values must lie in [0, T] (checked when concrete,
    in their own dtype: an int64 2**32 + 1 is out of range, not 1).

    Values cannot be checked inside `jit` (they are not known there); outside it a bad value
    is an error rather than a silently wrong mask.
    """
    if lengths is None:
        return None
    expected = f"an integer array of shape (N,) = ({N},)"
    values, array = _host_values("lengths", lengths, expected)
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise ValueError(f"lengths must be {expected}, got dtype {array.dtype}")
    if array.shape != (N,):
        raise ValueError(f"lengths must have shape (N,) = ({N},), got {tuple(array.shape)}")
    _check_range("lengths", values, 0, T, "", f"[0, T] = [0, {T}]")
    return jnp.asarray(array).astype(jnp.int32)


def validate_recurrent_args(x, states: dict, Wx, Wh, biases: dict, *, gates: int, sequence: bool, Wr=None,
                            with_projection: bool = False, lookup: bool = False):
    """Check the arguments of a recurrent layer with `gates` blocks of H columns.

    Shared by the RNN (gates=1), the GRU (gates=3) and the LSTM (gates=4), step and sequence.
    Inputs: x (N, T, D) if `sequence` else (N, D); states {name: (N, H) or None} (h0 first;
      None = not given, kept as None); Wx (D, gates*H), Wh (H, gates*H); biases
      {name: (gates*H,)} (b, and the GRU's bh). With `with_projection` (the LSTM with
      projections), Wr (H, P) or None: given, the hidden state h is P wide, so the first
      state is (N, P) and Wh (P, gates*H); H is then read from Wr. With `lookup` (the layers
      whose input side is looked up, `lstm_lookup` and `gru_lookup`; sequences only), x is the
      tokens (N, T), int ids in [0, V), and Wx the table (V, gates*H) of every token's
      x_t Wx + b, named so in the errors.
    Returns: (x, *states, Wx, Wh, *biases) as arrays of one floating dtype (None kept; the
      tokens stay integers), and Wr (None kept) after them with `with_projection`.
    """
    if lookup:
        Wx = as_float_array("table", Wx, 2)
        x = as_int_array("tokens", x, 2, size=Wx.shape[0], what="token id")
    else:
        x = as_float_array("x", x, 3 if sequence else 2)
        Wx = as_float_array("Wx", Wx, 2)
    states = {name: None if value is None else as_float_array(name, value, 2) for name, value in states.items()}
    Wh = as_float_array("Wh", Wh, 2)
    Wr = None if Wr is None else as_float_array("Wr", Wr, 2)
    biases = {name: as_float_array(name, value, 1) for name, value in biases.items()}
    N = x.shape[0]
    first = next(iter(states))
    H = states[first].shape[-1] if Wr is None else Wr.shape[0]
    P, P_label = (H, "H") if Wr is None else (Wr.shape[1], "P")
    cols, label = gates * H, "H" if gates == 1 else f"{gates}H"
    for name, state in states.items():
        if state is not None:
            expect_shape(name, state, (N, P) if name == first else (N, H), f"(N, {P_label if name == first else 'H'})")
    if lookup:
        expect_shape("table", Wx, (Wx.shape[0], cols), f"(V, {label})")
    else:
        expect_shape("Wx", Wx, (x.shape[-1], cols), f"(D, {label})")
    expect_shape("Wh", Wh, (P, cols), f"({P_label}, {label})")
    for name, bias in biases.items():
        expect_shape(name, bias, (cols,), f"({label},)")
    given = [a for a in (*states.values(), Wx, Wh, *biases.values(), Wr) if a is not None]
    dtype = common_float_dtype(*given) if lookup else common_float_dtype(x, *given)
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    checked = (x if lookup else cast(x), *map(cast, states.values()), cast(Wx), cast(Wh),
               *map(cast, biases.values()))
    return (*checked, cast(Wr)) if with_projection else checked
