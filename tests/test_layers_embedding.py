"""Word embedding: course values, scatter-add backward, repeated ids, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq import layers as L
from tests.helpers import PRINTED_VALUES_TOL, assert_layer_gradients, linspace_array, relative_error


def test_word_embedding_forward_course_values(x64):
    V, D = 5, 3
    x = np.asarray([[0, 3, 1, 2], [2, 1, 0, 3]])
    W = linspace_array(0, 1, (V, D))
    out, _ = L.word_embedding_forward(x, W)
    expected = np.asarray([
        [[0.0, 0.07142857, 0.14285714], [0.64285714, 0.71428571, 0.78571429],
         [0.21428571, 0.28571429, 0.35714286], [0.42857143, 0.5, 0.57142857]],
        [[0.42857143, 0.5, 0.57142857], [0.21428571, 0.28571429, 0.35714286],
         [0.0, 0.07142857, 0.14285714], [0.64285714, 0.71428571, 0.78571429]]])
    assert relative_error(out, expected) < PRINTED_VALUES_TOL


def test_word_embedding_backward_is_scatter_add_with_repeats(x64):
    x = np.array([[1, 1, 3], [1, 0, 3]])
    dout = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2)
    _, cache = L.word_embedding_forward(x, np.zeros((5, 2)))
    dW = np.asarray(L.word_embedding_backward(dout, cache))
    expected = np.zeros((5, 2))
    for n in range(2):
        for t in range(3):
            expected[x[n, t]] += dout[n, t]
    np.testing.assert_array_equal(dW, expected)
    assert not dW[2].any() and not dW[4].any()  # rows never read get no gradient


def test_word_embedding_gradients(x64):
    rng = np.random.default_rng(0)
    inputs = dict(x=rng.integers(0, 6, size=(4, 5)), W=rng.standard_normal((6, 3)))
    assert_layer_gradients(
        "word_embedding", L.word_embedding_forward, L.word_embedding_backward, L.word_embedding,
        inputs, ["W"], numerical_tol=1e-7,
    )


@settings(max_examples=10, deadline=None)
@given(N=st.integers(1, 8), T=st.integers(1, 8), V=st.integers(1, 9), D=st.integers(1, 8), seed=st.integers(0, 999))
def test_word_embedding_grad_matches_autodiff_over_shapes(N, T, V, D, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, V, size=(N, T))
    W = rng.standard_normal((V, D)).astype(np.float32)
    dout = rng.standard_normal((N, T, D)).astype(np.float32)
    # jitted: op by op, each example compiled every operation of both backward passes (~19 programs)
    hand = jax.jit(jax.grad(lambda W, x, dout: jnp.sum(L.word_embedding(x, W) * dout)))(W, x, dout)
    auto = jax.jit(jax.grad(lambda W, x, dout: jnp.sum(jnp.take(W, x, axis=0) * dout)))(W, x, dout)
    np.testing.assert_allclose(hand, auto, rtol=1e-6, atol=1e-6)


def test_word_embedding_under_jit_keeps_dtype():
    x = np.array([[0, 2]])
    W = np.ones((3, 4), np.float32)
    assert jax.jit(L.word_embedding)(x, W).dtype == jnp.float32


def test_word_embedding_rejects_bad_input():
    W = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"x holds word id 5, outside the valid range \[0, 5\)"):
        L.word_embedding(np.array([[0, 5]]), W)
    with pytest.raises(ValueError, match=r"x holds word id -1"):
        L.word_embedding_forward(np.array([[-1, 2]]), W)
    with pytest.raises(ValueError, match=r"x must be an integer array"):
        L.word_embedding(np.zeros((2, 3), np.float32), W)
    with pytest.raises(ValueError, match=r"W must have rank 2"):
        L.word_embedding(np.zeros((2, 3), np.int32), np.zeros(5, np.float32))


@pytest.mark.parametrize("x, shown", [
    (np.array([[0, 2**32 + 1]], np.int64), 2**32 + 1),  # row 1 after a cast to int32
    (np.array([[2**64 - 1]], np.uint64), 2**64 - 1),
    ([[0, 2**32 + 2]], 2**32 + 2),  # Python ints
    (np.array([[-(2**32) + 3]], np.int64), -(2**32) + 3),
])
def test_ids_above_int32_do_not_wrap(x, shown):
    W = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError) as info:
        L.word_embedding(x, W)
    assert str(info.value) == f"x holds word id {shown}, outside the valid range [0, 5)"
    scores = np.zeros((1, len(x[0]), 5), np.float32)
    with pytest.raises(ValueError, match=rf"^y holds target id {shown}, outside the valid range \[0, 5\)$"):
        L.temporal_softmax_loss(scores, x, np.ones((1, len(x[0])), bool))


@settings(max_examples=40, deadline=None)
@given(ids=st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1),  # and those an int32 cast wraps into [0, 5):
                              st.tuples(st.integers(-1, 6), st.integers(-(2**31) + 1, 2**31 - 1)).map(
                                  lambda pair: pair[0] + pair[1] * 2**32)), min_size=1, max_size=4))
def test_int64_ids_are_checked_in_their_own_dtype(ids):
    W = np.arange(15, dtype=np.float32).reshape(5, 3)
    x = np.array([ids], np.int64)
    if all(0 <= i < 5 for i in ids):
        np.testing.assert_array_equal(L.word_embedding(x, W), W[x])
    else:
        with pytest.raises(ValueError, match=r"^x holds word id -?\d+, outside the valid range \[0, 5\)$"):
            L.word_embedding(x, W)
