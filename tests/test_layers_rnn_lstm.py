"""Vanilla RNN and LSTM, step and sequence, as the course calls them: reference values, the
NumPy reference, gradients, PyTorch, properties, errors — one test per fact, parametrised over
the cell. (The full call — GRU, lengths, reverse, states — is tests/test_layers_recurrent.py.)"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq import layers as L
from jaxseq.gradcheck import AUTODIFF_TOL, FLOAT32_TOL, NUMERICAL_TOL
from tests.helpers import (
    FORWARD_TOL, NUMERICAL_STEP_TOL, PRINTED_VALUES_TOL, assert_layer_gradients, linspace_array, reference_sequence,
    relative_error, scaled_error,
)

CELLS = ("rnn", "lstm")
GATES = {"rnn": 1, "lstm": 4}


def random_inputs(cell, rng, N, T, D, H, dtype=np.float64):
    """The course call's inputs x, h0, Wx, Wh, b (weights scaled 0.5)."""
    G = GATES[cell] * H
    return dict(
        x=rng.standard_normal((N, T, D)).astype(dtype),
        h0=rng.standard_normal((N, H)).astype(dtype),
        Wx=(0.5 * rng.standard_normal((D, G))).astype(dtype),
        Wh=(0.5 * rng.standard_normal((H, G))).astype(dtype),
        b=rng.standard_normal(G).astype(dtype),
    )


def layer(cell):
    return {"rnn": L.rnn, "lstm": L.lstm}[cell]


def forward(cell):
    return {"rnn": L.rnn_forward, "lstm": L.lstm_forward}[cell]


def backward(cell):
    return {"rnn": L.rnn_backward, "lstm": L.lstm_backward}[cell]


# ------------------------------------------------------------------ course reference values

# cell: the inputs as (name, low, high, shape) of np.linspace, and the expected values
# (steps: [next_h[, next_c]]; sequences: h)
STEP_COURSE_CASES = {
    "rnn": dict(
        inputs=[("x", -0.4, 0.7, (3, 10)), ("prev_h", -0.2, 0.5, (3, 4)), ("Wx", -0.1, 0.9, (10, 4)),
                ("Wh", -0.3, 0.7, (4, 4)), ("b", -0.2, 0.4, (4,))],
        expected=[[[-0.58172089, -0.50182032, -0.41232771, -0.31410098],
                   [0.66854692, 0.79562378, 0.87755553, 0.92795967],
                   [0.97934501, 0.99144213, 0.99646691, 0.99854353]]],
    ),
    "lstm": dict(
        inputs=[("x", -0.4, 1.2, (3, 4)), ("prev_h", -0.3, 0.7, (3, 5)), ("prev_c", -0.4, 0.9, (3, 5)),
                ("Wx", -2.1, 1.3, (4, 20)), ("Wh", -0.7, 2.2, (5, 20)), ("b", 0.3, 0.7, (20,))],
        expected=[[[0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
                   [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
                   [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299]],
                  [[0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
                   [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
                   [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676]]],
    ),
}
SEQUENCE_COURSE_CASES = {
    "rnn": dict(
        inputs=[("x", -0.1, 0.3, (2, 3, 4)), ("h0", -0.3, 0.1, (2, 5)), ("Wx", -0.2, 0.4, (4, 5)),
                ("Wh", -0.4, 0.1, (5, 5)), ("b", -0.7, 0.1, (5,))],
        expected=[[[-0.42070749, -0.27279261, -0.11074945, 0.05740409, 0.22236251],
                   [-0.39525808, -0.22554661, -0.0409454, 0.14649412, 0.32397316],
                   [-0.42305111, -0.24223728, -0.04287027, 0.15997045, 0.35014525]],
                  [[-0.55857474, -0.39065825, -0.19198182, 0.02378408, 0.23735671],
                   [-0.27150199, -0.07088804, 0.13562939, 0.33099728, 0.50158768],
                   [-0.51014825, -0.30524429, -0.06755202, 0.17806392, 0.40333043]]],
    ),
    "lstm": dict(
        inputs=[("x", -0.4, 0.6, (2, 3, 5)), ("h0", -0.4, 0.8, (2, 4)), ("Wx", -0.2, 0.9, (5, 16)),
                ("Wh", -0.3, 0.6, (4, 16)), ("b", 0.2, 0.7, (16,))],
        expected=[[[0.01764008, 0.01823233, 0.01882671, 0.0194232],
                   [0.11287491, 0.12146228, 0.13018446, 0.13902939],
                   [0.31358768, 0.33338627, 0.35304453, 0.37250975]],
                  [[0.45767879, 0.4761092, 0.4936887, 0.51041945],
                   [0.6704845, 0.69350089, 0.71486014, 0.7346449],
                   [0.81733511, 0.83677871, 0.85403753, 0.86935314]]],
    ),
}


def course_inputs(case):
    return [linspace_array(low, high, shape) for _, low, high, shape in case["inputs"]]


@pytest.mark.parametrize("cell", CELLS)
def test_step_forward_course_values(x64, cell):
    case = STEP_COURSE_CASES[cell]
    step_forward = {"rnn": L.rnn_step_forward, "lstm": L.lstm_step_forward}[cell]
    *states, _ = step_forward(*course_inputs(case))  # next_h[, next_c], cache
    assert len(states) == len(case["expected"])
    for state, expected in zip(states, case["expected"]):
        assert state.dtype == jnp.float64
        assert relative_error(state, np.asarray(expected)) < PRINTED_VALUES_TOL


@pytest.mark.parametrize("cell", CELLS)
def test_forward_course_values(x64, cell):
    case = SEQUENCE_COURSE_CASES[cell]
    h, _ = forward(cell)(*course_inputs(case))
    assert h.dtype == jnp.float64
    assert relative_error(h, np.asarray(case["expected"])) < PRINTED_VALUES_TOL


# ------------------------------------------------------------------ NumPy reference, gradients


@pytest.mark.parametrize("cell", CELLS)
def test_forward_matches_the_numpy_reference(x64, cell):
    inputs = random_inputs(cell, np.random.default_rng(1), *{"rnn": (4, 7, 3, 6), "lstm": (3, 8, 4, 5)}[cell])
    h, cache = forward(cell)(**inputs)
    h_ref, _, _, ref_cache = reference_sequence(cell, inputs)
    np.testing.assert_allclose(h, h_ref, rtol=FORWARD_TOL, atol=FORWARD_TOL)
    np.testing.assert_allclose(layer(cell)(**inputs), h, rtol=0, atol=0)
    assert isinstance(cache, {"rnn": L.RNNCache, "lstm": L.LSTMCache}[cell])
    if cell == "lstm":  # the cell state at every step, too
        np.testing.assert_allclose(cache.c_tm, ref_cache.c_tm, rtol=FORWARD_TOL, atol=FORWARD_TOL)


@pytest.mark.parametrize("cell", CELLS)
def test_step_matches_the_numpy_reference(x64, cell):
    inputs = random_inputs(cell, np.random.default_rng(2), 3, 1, 4, 5)
    x, h0, Wx, Wh, b = inputs.values()
    h_ref, h_n_ref, c_n_ref, _ = reference_sequence(cell, inputs)
    if cell == "rnn":
        next_h, _ = L.rnn_step_forward(x[:, 0], h0, Wx, Wh, b)
    else:
        next_h, next_c = L.lstm_step(x[:, 0], h0, np.zeros((3, 5)), Wx, Wh, b)
        np.testing.assert_allclose(next_c, c_n_ref, rtol=FORWARD_TOL, atol=FORWARD_TOL)
    np.testing.assert_allclose(next_h, h_ref[:, 0], rtol=FORWARD_TOL, atol=FORWARD_TOL)


def step_inputs(cell, rng, N, D, H):
    """x, prev_h[, prev_c], Wx, Wh, b of one step (the RNN's weights unscaled, the LSTM's 0.5)."""
    scale = 1.0 if cell == "rnn" else 0.5
    G = GATES[cell] * H
    inputs = dict(x=rng.standard_normal((N, D)), prev_h=rng.standard_normal((N, H)))
    if cell == "lstm":
        inputs["prev_c"] = rng.standard_normal((N, H))
    return {**inputs, "Wx": scale * rng.standard_normal((D, G)), "Wh": scale * rng.standard_normal((H, G)),
            "b": rng.standard_normal(G)}


@pytest.mark.parametrize("cell", CELLS)
def test_step_gradients(x64, cell):
    inputs = step_inputs(cell, np.random.default_rng(3), 4, 5, 6)
    pair = {"rnn": (L.rnn_step_forward, L.rnn_step_backward, L.rnn_step),
            "lstm": (L.lstm_step_forward, L.lstm_step_backward, L.lstm_step)}[cell]
    assert_layer_gradients(f"{cell}_step", *pair, inputs, list(inputs), numerical_tol=NUMERICAL_STEP_TOL)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients(x64, cell):
    inputs = random_inputs(cell, np.random.default_rng(4), *{"rnn": (2, 10, 3, 5), "lstm": (2, 10, 3, 4)}[cell])
    assert_layer_gradients(cell, forward(cell), backward(cell), layer(cell), inputs, list(inputs),
                           numerical_tol=NUMERICAL_TOL)


# ------------------------------------------------------------------ PyTorch, float32


def to_torch_gate_order(cell, W):
    """Columns in our gate order (LSTM: i, f, o, g) -> PyTorch's rows (i, f, g, o), transposed."""
    if cell == "lstm":
        i, f, o, g = np.split(W, 4, axis=-1)
        W = np.concatenate([i, f, g, o], axis=-1)
    return np.ascontiguousarray(W.T)


def from_torch_gate_order(cell, W_t):
    W = W_t.T
    if cell == "lstm":
        i, f, g, o = np.split(W, 4, axis=-1)
        W = np.concatenate([i, f, o, g], axis=-1)
    return W


@pytest.mark.parametrize("cell", CELLS)
def test_matches_torch_float32(cell):
    rng = np.random.default_rng(5)
    N, T, D, H = 4, 9, 6, 8
    inputs = random_inputs(cell, rng, N, T, D, H, dtype=np.float32)
    dout = rng.standard_normal((N, T, H)).astype(np.float32)

    module = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True) if cell == "rnn" else \
        torch.nn.LSTM(D, H, batch_first=True)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(to_torch_gate_order(cell, inputs["Wx"])))
        module.weight_hh_l0.copy_(torch.from_numpy(to_torch_gate_order(cell, inputs["Wh"])))
        module.bias_ih_l0.copy_(torch.from_numpy(to_torch_gate_order(cell, inputs["b"][None])[:, 0].copy()))
        module.bias_hh_l0.zero_()
    x_t = torch.from_numpy(inputs["x"]).requires_grad_()
    h0_t = torch.from_numpy(inputs["h0"])[None].clone().requires_grad_()
    h_t, _ = module(x_t, h0_t if cell == "rnn" else (h0_t, torch.zeros(1, N, H)))
    (h_t * torch.from_numpy(dout)).sum().backward()

    h = layer(cell)(**inputs)
    grads = jax.grad(lambda *a: jnp.sum(layer(cell)(*a) * dout), argnums=range(5))(*inputs.values())
    assert h.dtype == jnp.float32
    assert scaled_error(h, h_t.detach().numpy()) < FLOAT32_TOL
    expected = [
        x_t.grad.numpy(), h0_t.grad[0].numpy(),
        from_torch_gate_order(cell, module.weight_ih_l0.grad.numpy()),
        from_torch_gate_order(cell, module.weight_hh_l0.grad.numpy()),
        from_torch_gate_order(cell, module.bias_ih_l0.grad.numpy()[:, None])[0],
    ]
    for name, ours, theirs in zip(inputs, grads, expected):
        assert scaled_error(ours, theirs) < FLOAT32_TOL, name


# ------------------------------------------------------------------ properties: shapes, dtypes, jit, vmap

# (N, T, D, H): all ones, N = 1 and T = 1 beside sizes that differ from one another. The
# examples draw from this small set with their own seeds, so examples of one shape share its
# compiled programs (dh is an argument of the program, not a constant in it).
SHAPES = ((1, 1, 1, 1), (1, 5, 3, 2), (4, 1, 2, 3))


@functools.cache
def shape_property_programs(cell):
    """The jitted forward, hand backward and autodiff gradient of `cell` (one set per cell)."""
    autodiff = jax.grad(lambda dh, *a: jnp.sum(forward(cell)(*a)[0] * dh), argnums=range(1, 6))
    return jax.jit(forward(cell)), jax.jit(backward(cell)), jax.jit(autodiff)


@pytest.mark.parametrize("cell", CELLS)
@settings(max_examples=6, deadline=None)
@given(shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**16))
def test_gradients_match_autodiff_over_shapes(cell, shape, seed):
    N, T, D, H = shape
    forward_jit, backward_jit, autodiff_jit = shape_property_programs(cell)
    with jax.enable_x64(True):
        inputs = random_inputs(cell, np.random.default_rng(seed), N, T, D, H)
        dh = np.random.default_rng(seed + 1).standard_normal((N, T, H))
        h, cache = forward_jit(**inputs)
        assert h.shape == (N, T, H)
        np.testing.assert_allclose(h, reference_sequence(cell, inputs)[0], rtol=1e-10, atol=1e-12)
        hand = backward_jit(dh, cache)
        auto = autodiff_jit(dh, *inputs.values())
        for name, g_hand, g_auto, value in zip(inputs, hand, auto, inputs.values()):
            assert g_hand.shape == value.shape, name
            assert relative_error(g_hand, g_auto) < AUTODIFF_TOL, name


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keeps_dtype_under_jit(cell, dtype):
    with jax.enable_x64(True):
        inputs = random_inputs(cell, np.random.default_rng(6), 2, 3, 4, 5, dtype=dtype)
        loss = jax.jit(lambda *a: jnp.sum(layer(cell)(*a) ** 2))
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(layer(cell)(*a) ** 2), argnums=range(5)))(*inputs.values())
        assert jax.jit(layer(cell))(*inputs.values()).dtype == dtype
        assert loss(*inputs.values()).dtype == dtype
        assert all(g.dtype == dtype for g in grads)


def test_rnn_vmap_over_extra_batch_axis_equals_loop():
    rng = np.random.default_rng(7)
    B, N, T, D, H = 3, 2, 4, 3, 5
    xs = rng.standard_normal((B, N, T, D)).astype(np.float32)
    params = random_inputs("rnn", rng, N, T, D, H, dtype=np.float32)
    h0, Wx, Wh, b = params["h0"], params["Wx"], params["Wh"], params["b"]
    batched = jax.vmap(lambda x: L.rnn(x, h0, Wx, Wh, b))(xs)
    np.testing.assert_allclose(batched, np.stack([L.rnn(x, h0, Wx, Wh, b) for x in xs]), rtol=1e-6, atol=1e-6)
    grad_of_sum = jax.grad(lambda x: jnp.sum(L.rnn(x, h0, Wx, Wh, b)))
    g = jax.vmap(grad_of_sum)(xs)
    one_grad = jax.jit(grad_of_sum)  # one program for the loop
    g_loop = np.stack([one_grad(x) for x in xs])
    np.testing.assert_allclose(g, g_loop, rtol=1e-5, atol=1e-6)


def test_lstm_step_under_vmap_and_jit():
    rng = np.random.default_rng(7)
    B, N, D, H = 3, 2, 4, 5
    xs = rng.standard_normal((B, N, D)).astype(np.float32)
    p = random_inputs("lstm", rng, N, 1, D, H, dtype=np.float32)
    c = np.zeros((N, H), np.float32)
    step = jax.jit(jax.vmap(lambda x: L.lstm_step(x, p["h0"], c, p["Wx"], p["Wh"], p["b"])))
    h_b, c_b = step(xs)
    for k in range(B):
        h_k, c_k = L.lstm_step(xs[k], p["h0"], c, p["Wx"], p["Wh"], p["b"])
        np.testing.assert_allclose(h_b[k], h_k, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(c_b[k], c_k, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ errors

# cell: [(the call with one bad argument, the message)]; N=2 T=3 D=4 H=5
BAD_CALLS = {
    "rnn": [
        (lambda i: L.rnn(**{**i, "Wh": np.zeros((5, 6), np.float32)}), r"Wh must have shape \(H, H\) = \(5, 5\), got \(5, 6\)"),
        (lambda i: L.rnn(**{**i, "Wx": np.zeros((3, 5), np.float32)}), r"Wx must have shape \(D, H\)"),
        (lambda i: L.rnn(**{**i, "x": np.zeros((2, 4), np.float32)}), r"x must have rank 3"),
        (lambda i: L.rnn(**{**i, "h0": np.zeros((3, 5), np.float32)}), r"h0 must have shape \(N, H\)"),
        (lambda i: L.rnn(**{**i, "x": np.zeros((2, 3, 4), np.int32)}), r"x must be a floating-point array, got dtype int"),
        (lambda i: L.rnn_step(i["x"][:, 0], i["h0"], i["Wx"], i["Wh"], np.zeros(4, np.float32)), r"b must have shape \(H,\)"),
    ],
    "lstm": [
        (lambda i: L.lstm(**{**i, "Wx": np.zeros((4, 15), np.float32)}), r"Wx must have shape \(D, 4H\) = \(4, 20\), got \(4, 15\)"),
        (lambda i: L.lstm(**{**i, "Wh": np.zeros((5, 5), np.float32)}), r"Wh must have shape \(H, 4H\)"),
        (lambda i: L.lstm(**{**i, "b": np.zeros(5, np.float32)}), r"b must have shape \(4H,\)"),
        (lambda i: L.lstm_step(i["x"][:, 0], i["h0"], np.zeros((2, 4), np.float32), i["Wx"], i["Wh"], i["b"]),
         r"prev_c must have shape \(N, H\)"),
    ],
}


@pytest.mark.parametrize("cell", CELLS)
def test_rejects_bad_shapes_and_dtypes(cell):
    inputs = random_inputs(cell, np.random.default_rng(8), 2, 3, 4, 5, dtype=np.float32)
    for call, message in BAD_CALLS[cell]:
        with pytest.raises(ValueError, match=message):
            call(inputs)
