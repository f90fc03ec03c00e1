"""LSTM step and sequence: reference values, NumPy reference, gradients, PyTorch, properties."""

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


def numpy_lstm(x, h0, Wx, Wh, b):
    """The independent NumPy loop (tests/recurrent_reference.py): (h, c) at every step."""
    h, c, _, _ = reference_sequence("lstm", x, h0, Wx, Wh, b)
    return h, c


def random_lstm_inputs(rng, N, T, D, H, dtype=np.float64):
    return dict(
        x=rng.standard_normal((N, T, D)).astype(dtype),
        h0=rng.standard_normal((N, H)).astype(dtype),
        Wx=(0.5 * rng.standard_normal((D, 4 * H))).astype(dtype),
        Wh=(0.5 * rng.standard_normal((H, 4 * H))).astype(dtype),
        b=rng.standard_normal(4 * H).astype(dtype),
    )


# ------------------------------------------------------------------ course reference values


def test_lstm_step_forward_course_values(x64):
    N, D, H = 3, 4, 5
    x = linspace_array(-0.4, 1.2, (N, D))
    prev_h = linspace_array(-0.3, 0.7, (N, H))
    prev_c = linspace_array(-0.4, 0.9, (N, H))
    Wx = linspace_array(-2.1, 1.3, (D, 4 * H))
    Wh = linspace_array(-0.7, 2.2, (H, 4 * H))
    b = np.linspace(0.3, 0.7, num=4 * H)
    next_h, next_c, _ = L.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    expected_h = np.asarray([
        [0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
        [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
        [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299]])
    expected_c = np.asarray([
        [0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
        [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
        [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676]])
    assert relative_error(next_h, expected_h) < PRINTED_VALUES_TOL
    assert relative_error(next_c, expected_c) < PRINTED_VALUES_TOL


def test_lstm_forward_course_values(x64):
    N, D, H, T = 2, 5, 4, 3
    x = linspace_array(-0.4, 0.6, (N, T, D))
    h0 = linspace_array(-0.4, 0.8, (N, H))
    Wx = linspace_array(-0.2, 0.9, (D, 4 * H))
    Wh = linspace_array(-0.3, 0.6, (H, 4 * H))
    b = np.linspace(0.2, 0.7, num=4 * H)
    h, _ = L.lstm_forward(x, h0, Wx, Wh, b)
    expected = np.asarray([
        [[0.01764008, 0.01823233, 0.01882671, 0.0194232],
         [0.11287491, 0.12146228, 0.13018446, 0.13902939],
         [0.31358768, 0.33338627, 0.35304453, 0.37250975]],
        [[0.45767879, 0.4761092, 0.4936887, 0.51041945],
         [0.6704845, 0.69350089, 0.71486014, 0.7346449],
         [0.81733511, 0.83677871, 0.85403753, 0.86935314]]])
    assert h.dtype == jnp.float64
    assert relative_error(h, expected) < PRINTED_VALUES_TOL


# ------------------------------------------------------------------ NumPy reference, gradients


def test_lstm_forward_matches_numpy_loop(x64):
    inputs = random_lstm_inputs(np.random.default_rng(1), 3, 8, 4, 5)
    h, cache = L.lstm_forward(**inputs)
    h_ref, c_ref = numpy_lstm(**inputs)
    np.testing.assert_allclose(h, h_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jnp.swapaxes(cache.c_tm, 0, 1), c_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(L.lstm(**inputs), h, rtol=0, atol=0)


def test_lstm_step_matches_numpy(x64):
    inputs = random_lstm_inputs(np.random.default_rng(2), 3, 1, 4, 5)
    h_ref, c_ref = numpy_lstm(**inputs)
    next_h, next_c = L.lstm_step(inputs["x"][:, 0], inputs["h0"], np.zeros((3, 5)), inputs["Wx"], inputs["Wh"], inputs["b"])
    np.testing.assert_allclose(next_h, h_ref[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(next_c, c_ref[:, 0], rtol=1e-12, atol=1e-12)


def test_lstm_step_gradients(x64):
    rng = np.random.default_rng(3)
    N, D, H = 4, 5, 6
    inputs = dict(
        x=rng.standard_normal((N, D)), prev_h=rng.standard_normal((N, H)), prev_c=rng.standard_normal((N, H)),
        Wx=0.5 * rng.standard_normal((D, 4 * H)), Wh=0.5 * rng.standard_normal((H, 4 * H)), b=rng.standard_normal(4 * H),
    )
    assert_layer_gradients(
        "lstm_step", L.lstm_step_forward, L.lstm_step_backward, L.lstm_step, inputs, list(inputs), numerical_tol=1e-7
    )


def test_lstm_gradients(x64):
    inputs = random_lstm_inputs(np.random.default_rng(4), 2, 10, 3, 4)
    assert_layer_gradients("lstm", L.lstm_forward, L.lstm_backward, L.lstm, inputs, list(inputs), numerical_tol=5e-7)


# ------------------------------------------------------------------ PyTorch, float32


def to_torch_gate_order(W):
    """Columns i, f, o, g (ours) -> rows i, f, g, o (torch), transposed."""
    i, f, o, g = np.split(W, 4, axis=-1)
    return np.concatenate([i, f, g, o], axis=-1).T


def from_torch_gate_order(W_t):
    i, f, g, o = np.split(W_t.T, 4, axis=-1)
    return np.concatenate([i, f, o, g], axis=-1)


def test_lstm_matches_torch_float32():
    rng = np.random.default_rng(5)
    N, T, D, H = 4, 9, 6, 8
    inputs = random_lstm_inputs(rng, N, T, D, H, dtype=np.float32)
    dout = rng.standard_normal((N, T, H)).astype(np.float32)

    module = torch.nn.LSTM(D, H, batch_first=True)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(to_torch_gate_order(inputs["Wx"]))))
        module.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(to_torch_gate_order(inputs["Wh"]))))
        module.bias_ih_l0.copy_(torch.from_numpy(to_torch_gate_order(inputs["b"][None])[:, 0].copy()))
        module.bias_hh_l0.zero_()
    x_t = torch.from_numpy(inputs["x"]).requires_grad_()
    h0_t = torch.from_numpy(inputs["h0"])[None].clone().requires_grad_()
    c0_t = torch.zeros(1, N, H)
    h_t, _ = module(x_t, (h0_t, c0_t))
    (h_t * torch.from_numpy(dout)).sum().backward()

    h = L.lstm(**inputs)
    grads = jax.grad(lambda *a: jnp.sum(L.lstm(*a) * dout), argnums=range(5))(*inputs.values())
    assert h.dtype == jnp.float32
    assert scaled_error(h, h_t.detach().numpy()) < 1e-4
    expected = [
        x_t.grad.numpy(), h0_t.grad[0].numpy(),
        from_torch_gate_order(module.weight_ih_l0.grad.numpy()),
        from_torch_gate_order(module.weight_hh_l0.grad.numpy()),
        from_torch_gate_order(module.bias_ih_l0.grad.numpy()[:, None])[0],
    ]
    for name, ours, theirs in zip(inputs, grads, expected):
        assert scaled_error(ours, theirs) < 1e-4, name


# ------------------------------------------------------------------ properties

dims = st.integers(min_value=1, max_value=8)


@settings(max_examples=12, deadline=None)
@given(N=dims, T=dims, D=dims, H=dims, seed=st.integers(0, 2**16))
def test_lstm_gradients_match_autodiff_over_shapes(N, T, D, H, seed):
    with jax.enable_x64(True):
        inputs = random_lstm_inputs(np.random.default_rng(seed), N, T, D, H)
        dh = np.random.default_rng(seed + 1).standard_normal((N, T, H))
        h, cache = jax.jit(L.lstm_forward)(**inputs)
        assert h.shape == (N, T, H)
        np.testing.assert_allclose(h, numpy_lstm(**inputs)[0], rtol=1e-10, atol=1e-12)
        hand = jax.jit(L.lstm_backward)(dh, cache)
        auto = jax.jit(jax.grad(lambda *a: jnp.sum(L.lstm_forward(*a)[0] * dh), argnums=range(5)))(*inputs.values())
        for name, g_hand, g_auto, value in zip(inputs, hand, auto, inputs.values()):
            assert g_hand.shape == value.shape, name
            assert relative_error(g_hand, g_auto) < 1e-9, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_keeps_dtype_under_jit(dtype):
    with jax.enable_x64(True):
        inputs = random_lstm_inputs(np.random.default_rng(6), 2, 3, 4, 5, dtype=dtype)
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(L.lstm(*a) ** 2), argnums=range(5)))(*inputs.values())
        assert jax.jit(L.lstm)(*inputs.values()).dtype == dtype
        assert all(g.dtype == dtype for g in grads)


def test_lstm_step_under_vmap_and_jit():
    rng = np.random.default_rng(7)
    B, N, D, H = 3, 2, 4, 5
    xs = rng.standard_normal((B, N, D)).astype(np.float32)
    p = random_lstm_inputs(rng, N, 1, D, H, dtype=np.float32)
    c = np.zeros((N, H), np.float32)
    step = jax.jit(jax.vmap(lambda x: L.lstm_step(x, p["h0"], c, p["Wx"], p["Wh"], p["b"])))
    h_b, c_b = step(xs)
    for k in range(B):
        h_k, c_k = L.lstm_step(xs[k], p["h0"], c, p["Wx"], p["Wh"], p["b"])
        np.testing.assert_allclose(h_b[k], h_k, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(c_b[k], c_k, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ errors


def test_lstm_rejects_bad_shapes():
    inputs = random_lstm_inputs(np.random.default_rng(8), 2, 3, 4, 5, dtype=np.float32)
    with pytest.raises(ValueError, match=r"Wx must have shape \(D, 4H\) = \(4, 20\), got \(4, 15\)"):
        L.lstm(**{**inputs, "Wx": np.zeros((4, 15), np.float32)})
    with pytest.raises(ValueError, match=r"Wh must have shape \(H, 4H\)"):
        L.lstm(**{**inputs, "Wh": np.zeros((5, 5), np.float32)})
    with pytest.raises(ValueError, match=r"b must have shape \(4H,\)"):
        L.lstm(**{**inputs, "b": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match=r"prev_c must have shape \(N, H\)"):
        L.lstm_step(inputs["x"][:, 0], inputs["h0"], np.zeros((2, 4), np.float32), inputs["Wx"], inputs["Wh"], inputs["b"])
