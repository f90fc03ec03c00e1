"""`custom_vjp` for layers that also run inside `jax.shard_map`.

Inside `shard_map` every value has a type that says along which mesh axes it varies (its
`vma`): the batch split over the devices varies, the replicated weights do not. JAX's own
operations reconcile the two on their own, making the weights varying where they meet the
data (`pcast`), and that cast's transpose sums their gradients over the devices. A
`jax.custom_vjp` rule gets no such help: its backward computes the weight gradient from the
varying batch, so it is varying where the weight it belongs to is not, and JAX refuses it;
a loop whose carry starts as a plain zero array and becomes varying is refused the same way.

So a layer's arguments are made varying along the same axes before its rule sees them
(`custom_vjp`), and loops start from zeros of their inputs' kind (`match_varying`). JAX
then sums the weight gradients over the devices as it does for its own operations. Outside
`shard_map` nothing varies and both are no-ops.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
from jax import lax


_TYPEOF = getattr(jax, "typeof", None)  # JAX releases before `typeof` had no such types


def _varying(leaf: Any) -> frozenset:
    """The mesh axes along which one array varies: its type's `manual_axis_type.varying`
    (JAX 0.10; earlier releases called it `vma`); nothing for what is not a JAX array."""
    if _TYPEOF is None or not isinstance(leaf, jax.Array):
        return frozenset()
    aval = _TYPEOF(leaf)
    manual = getattr(aval, "manual_axis_type", None)
    return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))


def varying_axes(*trees: Any) -> tuple[str, ...]:
    """The mesh axes along which any array in `trees` varies (none outside `shard_map`)."""
    return tuple(sorted(frozenset().union(*(_varying(leaf) for leaf in jax.tree.leaves(trees)))))


def match_varying(tree: Any, axes: tuple[str, ...]) -> Any:
    """Every array of `tree` made varying along `axes` (those it does not vary along yet)."""
    if not axes:
        return tree

    def cast(leaf):
        missing = tuple(a for a in axes if a not in _varying(leaf))
        return lax.pcast(leaf, missing, to="varying") if missing and isinstance(leaf, jax.Array) else leaf

    return jax.tree.map(cast, tree)


class custom_vjp:  # noqa: N801  (named as the jax.custom_vjp it stands for)
    """`jax.custom_vjp(fun, nondiff_argnums)` whose differentiable arguments are made varying
    along the same mesh axes before each call (see the module docstring); `defvjp` as JAX's."""

    def __init__(self, fun: Callable, nondiff_argnums: tuple[int, ...] = ()):
        self._function = jax.custom_vjp(fun, nondiff_argnums=nondiff_argnums)
        self._static = frozenset(nondiff_argnums)
        functools.update_wrapper(self, fun)

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        self._function.defvjp(fwd, bwd)

    def __call__(self, *args: Any) -> Any:
        axes = varying_axes(*(a for i, a in enumerate(args) if i not in self._static))
        if axes:
            args = tuple(a if i in self._static else match_varying(a, axes) for i, a in enumerate(args))
        return self._function(*args)
