"""Checking a state read from a checkpoint against the template it must match.

The template is what the model's `init` (and the optimizer's) would produce: a pytree of
arrays or `jax.ShapeDtypeStruct`s. A loaded state is accepted only if it has exactly the
template's entries, every entry is an array of the template's shape and dtype, and every
floating-point entry is finite. Parameters of the right shapes but int8, bool or complex
values, or NaNs, would otherwise load and predict nonsense without a word. One function
serves both trainers' checkpoints, their parameters and their optimizer state alike.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _entries(tree: Any) -> list[tuple[str, Any]]:
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def state_nbytes(template: Any) -> int:
    """Bytes the arrays of `template` take."""
    return sum(int(np.prod(np.shape(leaf))) * np.dtype(leaf.dtype).itemsize for _, leaf in _entries(template))


def check_state(state: Any, template: Any, source: str) -> None:
    """ValueError `"<source>: <entry> ..."` (one line, the entry's path in the tree, e.g.
    `.params['W_embed']`) unless `state` matches `template`: the same entries, each an
    array of the template's shape and dtype, floating-point ones finite."""
    expected, found = _entries(template), _entries(state)
    expected_names, found_names = [name for name, _ in expected], [name for name, _ in found]
    if expected_names != found_names:
        known, present = set(expected_names), set(found_names)
        missing = [name for name in expected_names if name not in present]
        extra = [name for name in found_names if name not in known]
        problem = f"{missing[0]} is missing" if missing else f"unexpected entry {extra[0] if extra else found_names[0]}"
        if missing and extra:
            problem += f" (found {extra[0]})"
        raise ValueError(f"{source}: does not match the expected structure: {problem}")
    for (name, want), (_, got) in zip(expected, found):
        if not isinstance(got, (np.ndarray, np.generic, jax.Array)):
            raise ValueError(f"{source}: {name} is a {type(got).__name__}, expected an array")
        want_shape, got_shape = tuple(np.shape(want)), tuple(np.shape(got))
        if want_shape != got_shape:
            raise ValueError(f"{source}: {name} has shape {got_shape}, expected {want_shape}")
        want_dtype, got_dtype = np.dtype(want.dtype), np.dtype(got.dtype)
        if want_dtype != got_dtype:
            raise ValueError(f"{source}: {name} has dtype {got_dtype}, expected {want_dtype}")
        if jnp.issubdtype(want_dtype, jnp.inexact) and not np.isfinite(got).all():
            bad = int(np.size(got) - np.isfinite(got).sum())
            raise ValueError(f"{source}: {name} holds {bad} NaN or infinite values; "
                             "a checkpoint's arrays must be finite")
