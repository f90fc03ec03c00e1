"""Temporal softmax loss: the course's sanity values, NumPy reference, stability, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import layers as L
from tests.helpers import assert_layer_gradients


def numpy_loss(x, y, mask):
    N = x.shape[0]
    shifted = x - x.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
    return -(picked * mask).sum() / N


@pytest.mark.parametrize("N,T,V,p", [(100, 1, 10, 1.0), (100, 10, 10, 1.0), (5000, 10, 10, 0.1)])
def test_course_sanity_values(N, T, V, p):
    """Near-uniform scores: loss ~ log(V) per unmasked token, summed over time, / N.

    The course's sanity checks: about 2.3, 23 and 2.3 for these three settings.
    """
    expected = p * T * np.log(V)
    rng = np.random.default_rng(0)
    x = 0.001 * rng.standard_normal((N, T, V))
    y = rng.integers(V, size=(N, T))
    mask = rng.random((N, T)) <= p
    loss = float(L.temporal_softmax_loss(x.astype(np.float32), y, mask))
    assert np.isclose(loss, expected, rtol=0.03), (loss, expected)


def test_matches_numpy_and_divides_by_batch_not_tokens(x64):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 6, 7)), rng.integers(7, size=(4, 6))
    mask = rng.random((4, 6)) > 0.5
    loss, _ = L.temporal_softmax_loss_forward(x, y, mask)
    np.testing.assert_allclose(loss, numpy_loss(x, y, mask), rtol=1e-12)
    none_masked = float(L.temporal_softmax_loss(x, y, np.zeros((4, 6), bool)))
    assert none_masked == 0.0


def test_numerically_stable_for_huge_scores(x64):
    x = np.array([[[1000.0, 0.0, -1000.0]]])
    loss = L.temporal_softmax_loss(x, np.array([[1]]), np.array([[True]]))
    grad = jax.grad(L.temporal_softmax_loss)(x, np.array([[1]]), np.array([[True]]))
    assert np.isclose(float(loss), 1000.0)
    assert np.isfinite(np.asarray(grad)).all()


def test_loss_gradients(x64):
    rng = np.random.default_rng(2)
    inputs = dict(x=rng.standard_normal((3, 4, 5)), y=rng.integers(5, size=(3, 4)), mask=rng.random((3, 4)) > 0.3)
    assert_layer_gradients(
        "temporal_softmax_loss", L.temporal_softmax_loss_forward, L.temporal_softmax_loss_backward,
        L.temporal_softmax_loss, inputs, ["x"], numerical_tol=1e-7,
    )


def test_backward_scales_with_upstream_gradient(x64):
    rng = np.random.default_rng(3)
    x, y, mask = rng.standard_normal((2, 3, 4)), rng.integers(4, size=(2, 3)), np.ones((2, 3), bool)
    _, cache = L.temporal_softmax_loss_forward(x, y, mask)
    np.testing.assert_allclose(
        L.temporal_softmax_loss_backward(2.5, cache), 2.5 * L.temporal_softmax_loss_backward(1.0, cache), rtol=1e-14
    )


def test_jit_and_float32():
    x = np.zeros((2, 3, 4), np.float32)
    y, mask = np.zeros((2, 3), np.int32), np.ones((2, 3), bool)
    assert jax.jit(L.temporal_softmax_loss)(x, y, mask).dtype == jnp.float32
    assert jax.jit(jax.grad(L.temporal_softmax_loss))(x, y, mask).dtype == jnp.float32


def test_rejects_bad_input():
    x = np.zeros((2, 3, 4), np.float32)
    y, mask = np.zeros((2, 3), np.int32), np.ones((2, 3), bool)
    with pytest.raises(ValueError, match=r"y holds target id 4, outside the valid range \[0, 4\)"):
        L.temporal_softmax_loss(x, np.full((2, 3), 4), mask)
    with pytest.raises(ValueError, match=r"mask must be a boolean array"):
        L.temporal_softmax_loss(x, y, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"y must have shape \(N, T\) = \(2, 3\), got \(3, 2\)"):
        L.temporal_softmax_loss(x, np.zeros((3, 2), np.int32), mask)


def test_empty_batch_has_loss_zero_and_an_empty_gradient():
    """N = 0: the sum over no sequences is 0 (it was 0/0 = NaN)."""
    x = np.zeros((0, 3, 5), np.float32)
    y = np.zeros((0, 3), np.int32)
    mask = np.zeros((0, 3), bool)
    loss, cache = L.temporal_softmax_loss_forward(x, y, mask)
    assert float(loss) == 0.0
    assert L.temporal_softmax_loss_backward(1.0, cache).shape == (0, 3, 5)
    grad = jax.grad(lambda x: L.temporal_softmax_loss(x, y, mask))(x)
    assert grad.shape == (0, 3, 5)
    assert float(L.temporal_softmax_loss(x, y, mask)) == 0.0
