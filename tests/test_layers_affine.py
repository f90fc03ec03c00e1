"""Temporal affine layer: reference, gradients, shapes, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq import layers as L
from tests.helpers import assert_layer_gradients


def test_temporal_affine_matches_per_step_numpy(x64):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    out, _ = L.temporal_affine_forward(x, w, b)
    for t in range(3):
        np.testing.assert_allclose(out[:, t], x[:, t] @ w + b, rtol=1e-12)


def test_temporal_affine_gradients(x64):
    rng = np.random.default_rng(1)
    inputs = dict(x=rng.standard_normal((2, 3, 4)), w=rng.standard_normal((4, 5)), b=rng.standard_normal(5))
    assert_layer_gradients(
        "temporal_affine", L.temporal_affine_forward, L.temporal_affine_backward, L.temporal_affine,
        inputs, list(inputs), numerical_tol=1e-7,
    )


@settings(max_examples=10, deadline=None)
@given(N=st.integers(1, 8), T=st.integers(1, 8), D=st.integers(1, 8), M=st.integers(1, 8), seed=st.integers(0, 999))
def test_temporal_affine_grads_match_autodiff_over_shapes(N, T, D, M, seed):
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        args = (rng.standard_normal((N, T, D)), rng.standard_normal((D, M)), rng.standard_normal(M))
        dout = rng.standard_normal((N, T, M))
        # jitted: op by op, each example compiled every operation of both backward passes (~23 programs)
        hand = jax.jit(jax.grad(lambda *a: jnp.sum(L.temporal_affine(*a) * dout), argnums=(0, 1, 2)))(*args)
        auto = jax.jit(jax.grad(lambda x, w, b: jnp.sum((x @ w + b) * dout), argnums=(0, 1, 2)))(*args)
        for g_hand, g_auto in zip(hand, auto):
            np.testing.assert_allclose(g_hand, g_auto, rtol=1e-10, atol=1e-12)


def test_temporal_affine_rejects_bad_shapes():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"w must have shape \(D, M\) = \(4, \?\), got \(5, 6\)"):
        L.temporal_affine(x, np.zeros((5, 6), np.float32), np.zeros(6, np.float32))
    with pytest.raises(ValueError, match=r"b must have shape \(M,\) = \(6,\), got \(5,\)"):
        L.temporal_affine(x, np.zeros((4, 6), np.float32), np.zeros(5, np.float32))
