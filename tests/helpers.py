"""Assertions shared by the layer tests."""

from __future__ import annotations

import numpy as np

from jaxseq import numpy_reference
from jaxseq.gradcheck import AUTODIFF_TOL, check_layer

FORWARD_TOL = 1e-12  # float64: a layer's forward vs the NumPy reference (rtol and atol)
NUMERICAL_STEP_TOL = 1e-7  # float64: a single step's hand backward vs numerical gradients


def reference_sequence(cell, inputs, **options):
    """The NumPy reference (`jaxseq.numpy_reference`) of a sequence layer on its inputs
    {name: array} in the layer's order (c0 passed as a keyword; "lstm_fast" is the LSTM).
    Returns (h (N, T, H), h_n (N, H), c_n (N, H) or None, cache)."""
    args = dict(inputs)
    keywords = {"c0": args.pop("c0")} if "c0" in args else {}
    h, h_n, *rest = numpy_reference.LAYERS[cell.removesuffix("_fast")][0](*args.values(), **keywords, **options)
    return h, h_n, (rest[0] if len(rest) == 2 else None), rest[-1]


def assert_layer_gradients(name, forward, backward, differentiable, inputs, wrt, *, numerical_tol, seed=0):
    """Hand backward == jax.grad (< AUTODIFF_TOL), == numerical (< numerical_tol), custom_vjp wired."""
    results = check_layer(name, forward, backward, inputs, wrt, differentiable=differentiable, seed=seed)
    assert [r.argument for r in results] == list(wrt)
    for r in results:
        assert r.hand_vs_autodiff < AUTODIFF_TOL, (name, r)
        assert r.hand_vs_numerical < numerical_tol, (name, r)
        assert r.custom_vjp_vs_hand is not None and r.custom_vjp_vs_hand < AUTODIFF_TOL, (name, r)
    return results


def linspace_array(low, high, shape):
    """The course's deterministic test inputs: np.linspace reshaped."""
    return np.linspace(low, high, num=int(np.prod(shape))).reshape(shape)


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


# The course printed its reference values with 8 decimals; entries as small as 0.04 then
# carry a relative rounding error up to ~1e-7, so printed values are compared at this level.
PRINTED_VALUES_TOL = 1e-6


def scaled_error(ours, theirs):
    """max |ours - theirs| / max |theirs|: relative error on the array's own scale.

    Used for float32 cross-checks, where an elementwise relative error is dominated by
    entries that cancel to near zero.
    """
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-12))


def trivial_contenders():
    """Two contenders "a" and "b" for timing tests, and the list their calls are recorded in."""
    calls = []

    def a():
        calls.append("a")
        return sum(range(100))

    def b():
        calls.append("b")
        return np.ones(10).sum()

    return [("a", a), ("b", b)], calls
