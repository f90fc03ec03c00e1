"""Assertions shared by the layer tests."""

from __future__ import annotations

import numpy as np

from jaxseq.gradcheck import check_layer

AUTODIFF_TOL = 1e-9  # hand backward vs jax.grad of the plain forward, float64


def assert_layer_gradients(name, forward, backward, differentiable, inputs, wrt, *, numerical_tol, seed=0):
    """Hand backward == jax.grad (< 1e-9), == numerical (< numerical_tol), custom_vjp wired."""
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
