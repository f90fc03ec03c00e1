"""Vanilla RNN step and sequence: reference values, NumPy reference, gradients, PyTorch, properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq import layers as L
from tests.helpers import PRINTED_VALUES_TOL, assert_layer_gradients, linspace_array, relative_error, scaled_error
from tests.recurrent_reference import reference_sequence


def numpy_rnn(x, h0, Wx, Wh, b):
    """The independent NumPy loop (tests/recurrent_reference.py): h at every step."""
    return reference_sequence("rnn", x, h0, Wx, Wh, b)[0]


def random_rnn_inputs(rng, N, T, D, H, dtype=np.float64):
    return dict(
        x=rng.standard_normal((N, T, D)).astype(dtype),
        h0=rng.standard_normal((N, H)).astype(dtype),
        Wx=(0.5 * rng.standard_normal((D, H))).astype(dtype),
        Wh=(0.5 * rng.standard_normal((H, H))).astype(dtype),
        b=rng.standard_normal(H).astype(dtype),
    )


# ------------------------------------------------------------------ course reference values


def test_rnn_step_forward_course_values(x64):
    N, D, H = 3, 10, 4
    x = linspace_array(-0.4, 0.7, (N, D))
    prev_h = linspace_array(-0.2, 0.5, (N, H))
    Wx = linspace_array(-0.1, 0.9, (D, H))
    Wh = linspace_array(-0.3, 0.7, (H, H))
    b = np.linspace(-0.2, 0.4, num=H)
    next_h, _ = L.rnn_step_forward(x, prev_h, Wx, Wh, b)
    expected = np.asarray([
        [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
        [0.66854692, 0.79562378, 0.87755553, 0.92795967],
        [0.97934501, 0.99144213, 0.99646691, 0.99854353],
    ])
    assert next_h.dtype == jnp.float64
    assert relative_error(next_h, expected) < PRINTED_VALUES_TOL


def test_rnn_forward_course_values(x64):
    N, T, D, H = 2, 3, 4, 5
    x = linspace_array(-0.1, 0.3, (N, T, D))
    h0 = linspace_array(-0.3, 0.1, (N, H))
    Wx = linspace_array(-0.2, 0.4, (D, H))
    Wh = linspace_array(-0.4, 0.1, (H, H))
    b = np.linspace(-0.7, 0.1, num=H)
    h, _ = L.rnn_forward(x, h0, Wx, Wh, b)
    expected = np.asarray([
        [[-0.42070749, -0.27279261, -0.11074945, 0.05740409, 0.22236251],
         [-0.39525808, -0.22554661, -0.0409454, 0.14649412, 0.32397316],
         [-0.42305111, -0.24223728, -0.04287027, 0.15997045, 0.35014525]],
        [[-0.55857474, -0.39065825, -0.19198182, 0.02378408, 0.23735671],
         [-0.27150199, -0.07088804, 0.13562939, 0.33099728, 0.50158768],
         [-0.51014825, -0.30524429, -0.06755202, 0.17806392, 0.40333043]],
    ])
    assert relative_error(h, expected) < PRINTED_VALUES_TOL


# ------------------------------------------------------------------ NumPy reference, gradients


def test_rnn_forward_matches_numpy_loop(x64):
    inputs = random_rnn_inputs(np.random.default_rng(1), 4, 7, 3, 6)
    h, cache = L.rnn_forward(**inputs)
    np.testing.assert_allclose(h, numpy_rnn(**inputs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(L.rnn(**inputs), h, rtol=0, atol=0)
    assert isinstance(cache, L.RNNCache)


def test_rnn_step_forward_matches_numpy(x64):
    inputs = random_rnn_inputs(np.random.default_rng(2), 3, 1, 4, 5)
    x, h0 = inputs["x"][:, 0], inputs["h0"]
    next_h, _ = L.rnn_step_forward(x, h0, inputs["Wx"], inputs["Wh"], inputs["b"])
    np.testing.assert_allclose(next_h, numpy_rnn(**inputs)[:, 0], rtol=1e-12, atol=1e-12)


def test_rnn_step_gradients(x64):
    rng = np.random.default_rng(3)
    inputs = dict(
        x=rng.standard_normal((4, 5)), prev_h=rng.standard_normal((4, 6)),
        Wx=rng.standard_normal((5, 6)), Wh=rng.standard_normal((6, 6)), b=rng.standard_normal(6),
    )
    assert_layer_gradients(
        "rnn_step", L.rnn_step_forward, L.rnn_step_backward, L.rnn_step, inputs, list(inputs), numerical_tol=1e-7
    )


def test_rnn_gradients(x64):
    inputs = random_rnn_inputs(np.random.default_rng(4), 2, 10, 3, 5)
    assert_layer_gradients("rnn", L.rnn_forward, L.rnn_backward, L.rnn, inputs, list(inputs), numerical_tol=5e-7)


# ------------------------------------------------------------------ PyTorch, float32


def test_rnn_matches_torch_float32():
    rng = np.random.default_rng(5)
    N, T, D, H = 4, 9, 6, 8
    inputs = random_rnn_inputs(rng, N, T, D, H, dtype=np.float32)
    dout = rng.standard_normal((N, T, H)).astype(np.float32)

    module = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(inputs["Wx"].T))
        module.weight_hh_l0.copy_(torch.from_numpy(inputs["Wh"].T))
        module.bias_ih_l0.copy_(torch.from_numpy(inputs["b"]))
        module.bias_hh_l0.zero_()
    x_t = torch.from_numpy(inputs["x"]).requires_grad_()
    h0_t = torch.from_numpy(inputs["h0"])[None].clone().requires_grad_()
    h_t, _ = module(x_t, h0_t)
    (h_t * torch.from_numpy(dout)).sum().backward()

    h = L.rnn(**inputs)
    grads = jax.grad(lambda *a: jnp.sum(L.rnn(*a) * dout), argnums=range(5))(*inputs.values())
    assert h.dtype == jnp.float32
    assert scaled_error(h, h_t.detach().numpy()) < 1e-4
    expected = [x_t.grad, h0_t.grad[0], module.weight_ih_l0.grad.T, module.weight_hh_l0.grad.T, module.bias_ih_l0.grad]
    for name, ours, theirs in zip(inputs, grads, expected):
        assert scaled_error(ours, theirs.numpy()) < 1e-4, name


# ------------------------------------------------------------------ properties: shapes, dtypes, jit, vmap

dims = st.integers(min_value=1, max_value=8)


@settings(max_examples=12, deadline=None)
@given(N=dims, T=dims, D=dims, H=dims, seed=st.integers(0, 2**16))
def test_rnn_gradients_match_autodiff_over_shapes(N, T, D, H, seed):
    with jax.enable_x64(True):
        inputs = random_rnn_inputs(np.random.default_rng(seed), N, T, D, H)
        dh = np.random.default_rng(seed + 1).standard_normal((N, T, H))
        h, cache = jax.jit(L.rnn_forward)(**inputs)
        assert h.shape == (N, T, H)
        hand = jax.jit(L.rnn_backward)(dh, cache)
        auto = jax.jit(jax.grad(lambda *a: jnp.sum(L.rnn_forward(*a)[0] * dh), argnums=range(5)))(*inputs.values())
        for name, g_hand, g_auto, value in zip(inputs, hand, auto, inputs.values()):
            assert g_hand.shape == value.shape, name
            assert relative_error(g_hand, g_auto) < 1e-9, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rnn_keeps_dtype_under_jit(dtype):
    with jax.enable_x64(True):
        inputs = random_rnn_inputs(np.random.default_rng(6), 2, 3, 4, 5, dtype=dtype)
        loss = jax.jit(lambda *a: jnp.sum(L.rnn(*a) ** 2))
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(L.rnn(*a) ** 2), argnums=range(5)))(*inputs.values())
        assert loss(*inputs.values()).dtype == dtype
        assert all(g.dtype == dtype for g in grads)


def test_rnn_vmap_over_extra_batch_axis_equals_loop():
    rng = np.random.default_rng(7)
    B, N, T, D, H = 3, 2, 4, 3, 5
    xs = rng.standard_normal((B, N, T, D)).astype(np.float32)
    params = random_rnn_inputs(rng, N, T, D, H, dtype=np.float32)
    h0, Wx, Wh, b = params["h0"], params["Wx"], params["Wh"], params["b"]
    batched = jax.vmap(lambda x: L.rnn(x, h0, Wx, Wh, b))(xs)
    np.testing.assert_allclose(batched, np.stack([L.rnn(x, h0, Wx, Wh, b) for x in xs]), rtol=1e-6, atol=1e-6)
    g = jax.vmap(jax.grad(lambda x: jnp.sum(L.rnn(x, h0, Wx, Wh, b))))(xs)
    g_loop = np.stack([jax.grad(lambda x: jnp.sum(L.rnn(x, h0, Wx, Wh, b)))(x) for x in xs])
    np.testing.assert_allclose(g, g_loop, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ errors


def test_rnn_rejects_bad_shapes_and_dtypes():
    inputs = random_rnn_inputs(np.random.default_rng(8), 2, 3, 4, 5, dtype=np.float32)
    with pytest.raises(ValueError, match=r"Wh must have shape \(H, H\) = \(5, 5\), got \(5, 6\)"):
        L.rnn(**{**inputs, "Wh": np.zeros((5, 6), np.float32)})
    with pytest.raises(ValueError, match=r"Wx must have shape \(D, H\)"):
        L.rnn(**{**inputs, "Wx": np.zeros((3, 5), np.float32)})
    with pytest.raises(ValueError, match=r"x must have rank 3"):
        L.rnn(**{**inputs, "x": np.zeros((2, 4), np.float32)})
    with pytest.raises(ValueError, match=r"h0 must have shape \(N, H\)"):
        L.rnn(**{**inputs, "h0": np.zeros((3, 5), np.float32)})
    with pytest.raises(ValueError, match=r"x must be a floating-point array, got dtype int"):
        L.rnn(**{**inputs, "x": np.zeros((2, 3, 4), np.int32)})
    with pytest.raises(ValueError, match=r"b must have shape \(H,\)"):
        L.rnn_step(inputs["x"][:, 0], inputs["h0"], inputs["Wx"], inputs["Wh"], np.zeros(4, np.float32))
