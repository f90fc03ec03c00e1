"""`jaxseq.nn` module behaviour beyond parity: dropout between layers (as PyTorch's),
zero-length sequences, N = 1, T = 0, jit with traced lengths, and the ValueErrors of bad
call arguments and fields."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxseq import nn as jnn
from tests.nn_torch_twin import make_pair

N, T, D, H = 3, 5, 2, 4


def _x(n=N, t=T, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, t, D)), jnp.float32)


def _init(module, x):
    return jax.jit(module.init)(jax.random.key(0), x)


# ------------------------------------------------------------------ dropout


def _dropout_stack(num_layers=2, rate=0.5):
    module = jnn.LSTM(hidden_size=H, num_layers=num_layers, bidirectional=True, dropout=rate)
    return module, _init(module, _x())


def _run(module, variables, x, key=None, **kwargs):
    if key is None:
        return module.apply(variables, x, **kwargs)
    return module.apply(variables, x, deterministic=False, rngs={"dropout": key}, **kwargs)


def test_deterministic_dropout_equals_no_dropout():
    module, variables = _dropout_stack()
    x, lengths = _x(), jnp.array([5, 2, 3])
    plain = jnn.LSTM(hidden_size=H, num_layers=2, bidirectional=True).apply(variables, x, lengths=lengths)
    for result in (_run(module, variables, x, lengths=lengths),
                   _run(module, variables, x, lengths=lengths, deterministic=True)):
        jax.tree_util.tree_map(np.testing.assert_array_equal, result, plain)


def test_dropout_is_random_per_rng_and_reproducible():
    module, variables = _dropout_stack()
    x = _x()
    deterministic = _run(module, variables, x)[0]
    first, again, other = (_run(module, variables, x, jax.random.key(k))[0] for k in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, deterministic) and not np.allclose(first, other)


def _layer(module, variables, k):
    """Layer k of a stack as a one-layer module and its variables."""
    suffix = re.compile(rf"_l{k}(_reverse)?$")
    params = {suffix.sub(lambda m: "_l0" + (m.group(1) or ""), name): value
              for name, value in variables["params"].items() if suffix.search(name)}
    single = type(module)(hidden_size=module.hidden_size, bidirectional=module.bidirectional)
    return lambda x: single.apply({"params": params}, x)[0]


def test_dropout_acts_on_every_layer_output_but_the_last():
    """With 3 layers, the captured dropout outputs are layer k's output (run on the previous
    dropout's output) zeroed or scaled by 1/(1 - p); the last layer's output is not dropped."""
    rate = 0.5
    module, variables = _dropout_stack(num_layers=3, rate=rate)
    x = _x()
    (out, _), state = _run(module, variables, x, jax.random.key(3), capture_intermediates=True,
                           mutable=["intermediates"])
    inter = state["intermediates"]
    assert sorted(name for name in inter if name.startswith("dropout")) == ["dropout_l0", "dropout_l1"]
    layer_input = x
    for k in (0, 1):
        dropped = np.asarray(inter[f"dropout_l{k}"]["__call__"][0])
        full = np.asarray(_layer(module, variables, k)(layer_input))
        zero = dropped == 0
        np.testing.assert_allclose(dropped[~zero], full[~zero] / (1 - rate), rtol=1e-5, atol=1e-6)
        assert 0.2 < zero.mean() < 0.8, k
        layer_input = dropped
    np.testing.assert_allclose(out, _layer(module, variables, 2)(layer_input), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(out) != 0)


def test_dropout_one_gives_the_upper_layer_zeros():
    module, variables = _dropout_stack(num_layers=2, rate=1.0)
    x, h0, c0 = _x(), *np.random.default_rng(1).standard_normal((2, 4, N, H)).astype(np.float32)
    out, (h_n, c_n) = _run(module, variables, x, jax.random.key(0), initial_state=(h0, c0))
    _, (h_det, c_det) = _run(module, variables, x, initial_state=(h0, c0))
    upper = jnn.LSTM(hidden_size=H, bidirectional=True)
    upper_params = {name.replace("_l1", "_l0"): value for name, value in variables["params"].items() if "_l1" in name}
    out_upper, (h_upper, _) = upper.apply({"params": upper_params}, jnp.zeros((N, T, 2 * H)),
                                          initial_state=(h0[2:], c0[2:]))
    np.testing.assert_allclose(out, out_upper, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h_n[2:], h_upper, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(h_n[:2], h_det[:2])  # dropout acts on outputs, not on states
    np.testing.assert_array_equal(c_n[:2], c_det[:2])


def test_one_layer_with_dropout_warns_and_drops_nothing_as_torch():
    module = jnn.GRU(hidden_size=H, dropout=0.5)
    with pytest.warns(UserWarning, match="num_layers=1"):
        torch_module = torch.nn.GRU(D, H, dropout=0.5, batch_first=True)
    torch_module.train()
    variables = jnn.params_from_torch(module, torch_module.state_dict())
    x = _x()
    with pytest.warns(UserWarning, match="with num_layers=1 it does nothing"):
        out, h_n = _run(module, variables, x, jax.random.key(0))
        np.testing.assert_array_equal(out, _run(module, variables, x)[0])
    torch_out, torch_h = torch_module(torch.from_numpy(np.array(x)))
    np.testing.assert_allclose(out, torch_out.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_n, torch_h.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_gradients_flow_through_dropout_under_jit():
    module, variables = _dropout_stack()
    x = _x()
    loss = lambda v, key: jnp.sum(_run(module, v, x, key)[0] ** 2)  # noqa: E731
    grads = jax.jit(jax.grad(loss))(variables, jax.random.key(4))
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves) and all(np.any(g != 0) for g in leaves)


# ------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_zero_length_sequences_give_zeros_and_the_initial_state(cell):
    module, variables, _ = make_pair(cell, D, H, 2, True)
    rng = np.random.default_rng(2)
    n_states = 2 if cell == "lstm" else 1
    states = tuple(rng.standard_normal((4, N, H)).astype(np.float32) for _ in range(n_states))
    lengths = jnp.array([5, 0, 1])
    x = _x()

    def run(x, states):
        out, final = module.apply(variables, x, lengths=lengths, initial_state=states if n_states > 1 else states[0])
        return out, final if n_states > 1 else (final,)

    out, final = jax.jit(run)(x, states)
    assert np.all(out[1] == 0) and np.all(out[2, 1:] == 0) and np.all(out[0] != 0)
    for given, got in zip(states, final):
        np.testing.assert_array_equal(got[:, 1], given[:, 1])
    loss = lambda x, states: sum(jnp.sum(f) for f in run(x, states)[1]) + jnp.sum(run(x, states)[0])  # noqa: E731
    dx, dstates = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, states)
    assert np.all(np.isfinite(dx)) and np.all(dx[1] == 0) and np.all(dx[2, 1:] == 0)
    for d in dstates:  # a length-0 sequence hands its initial state straight to h_n
        np.testing.assert_array_equal(d[:, 1], np.ones((4, H)))


def test_a_batch_of_one_is_a_row_of_the_batch():
    module, variables, torch_module = make_pair("lstm", D, H, 2, True)
    x, lengths = _x(), jnp.array([4, 5, 2])
    out, (h_n, c_n) = module.apply(variables, x, lengths=lengths)
    out1, (h1, c1) = module.apply(variables, x[:1], lengths=lengths[:1])
    assert out1.shape == (1, T, 2 * H) and h1.shape == (4, 1, H)
    np.testing.assert_allclose(out1[0], out[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(h1[:, 0], h_n[:, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(c1[:, 0], c_n[:, 0], rtol=1e-6, atol=1e-7)
    torch_out, (torch_h, _) = torch_module(torch.from_numpy(np.array(x[1:2])))  # length T, N = 1
    out1, (h1, _) = module.apply(variables, x[1:2])
    np.testing.assert_allclose(out1, torch_out.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1, torch_h.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_no_time_steps_give_empty_outputs_and_the_initial_state():
    module = jnn.GRU(hidden_size=H, num_layers=2)
    variables = _init(module, _x())
    h0 = jnp.ones((2, N, H))
    out, h_n = module.apply(variables, jnp.zeros((N, 0, D)), initial_state=h0)
    assert out.shape == (N, 0, H)
    np.testing.assert_array_equal(h_n, h0)


def test_lengths_may_be_traced_under_jit():
    module, variables, _ = make_pair("rnn", D, H, 1, True)
    x, lengths = _x(), jnp.array([5, 2, 3])
    run = jax.jit(lambda x, lengths: module.apply(variables, x, lengths=lengths))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                           run(x, lengths), module.apply(variables, x, lengths=lengths))


# ------------------------------------------------------------------ errors


@pytest.fixture(scope="module")
def lstm_pair():
    module = jnn.LSTM(hidden_size=H, num_layers=2)
    return module, _init(module, _x())


@pytest.mark.parametrize("lengths,match", [
    (np.array([5, 2]), r"lengths must have shape \(N,\) = \(3,\), got \(2,\)"),
    (np.ones((3, 1), np.int32), r"lengths must have shape \(N,\) = \(3,\), got \(3, 1\)"),
    (np.array([5.0, 2.0, 1.0]), r"lengths must be an integer array"),
    (np.array([6, 2, 1]), r"lengths holds 6, outside the valid range \[0, T\] = \[0, 5\]"),
    (np.array([-1, 2, 1]), r"lengths holds -1"),
    (np.array([2**32 + 1, 1, 0], np.int64), r"lengths holds 4294967297, outside the valid range \[0, T\]"),
    ("abc", r"lengths must be an integer array of shape \(N,\) = \(3,\), got dtype <U3"),
    ([[1, 2], 3, 4], r"lengths must be an integer array of shape \(N,\) = \(3,\), got \[\[1, 2\], 3, 4\]"),
])
def test_bad_lengths_are_named(lstm_pair, lengths, match):
    module, variables = lstm_pair
    with pytest.raises(ValueError, match=match):
        module.apply(variables, _x(), lengths=lengths)


def test_bad_initial_states_are_named_with_the_expected_shape(lstm_pair):
    module, variables = lstm_pair
    good = np.zeros((2, N, H), np.float32)
    shape = r"\(num_layers \* num_directions, N, H\) = \(2, 3, 4\)"
    cases = [
        (good, r"initial_state must be a pair \(h0, c0\)"),
        ((good,), r"initial_state must be a pair \(h0, c0\)"),
        ((good, np.zeros((1, N, H), np.float32)), rf"initial_state c0 must have shape {shape}, got \(1, 3, 4\)"),
        ((np.zeros((2, N, H), np.int32), good), "initial_state h0 must be a floating-point array"),
    ]
    for initial_state, match in cases:
        with pytest.raises(ValueError, match=match):
            module.apply(variables, _x(), initial_state=initial_state)
    gru = jnn.GRU(hidden_size=H, bidirectional=True)
    gru_variables = _init(gru, _x())
    with pytest.raises(ValueError, match=r"initial_state must have shape .* = \(2, 3, 4\), got \(1, 3, 4\)"):
        gru.apply(gru_variables, _x(), initial_state=np.zeros((1, N, H), np.float32))
    with pytest.raises(ValueError, match="initial_state must be one array h0"):
        gru.apply(gru_variables, _x(), initial_state=(good,))


def test_bad_inputs_are_named(lstm_pair):
    module, variables = lstm_pair
    expected = r"x must have shape \(N, T, D\) = \(\?, \?, 2\) \(batch first\), got \(3, 5, 3\)"
    with pytest.raises(ValueError, match=expected):
        module.apply(variables, jnp.zeros((N, T, D + 1)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, T, D\) .*got \(5, 2\)"):
        module.apply(variables, jnp.zeros((T, D)))
    with pytest.raises(ValueError, match="x must be a floating-point array"):
        module.apply(variables, jnp.zeros((N, T, D), jnp.int32))


@pytest.mark.parametrize("make,match", [
    (lambda: jnn.RNN(hidden_size=H, nonlinearity="sigmoid"), r'nonlinearity must be "tanh" or "relu", got .sigmoid.'),
    (lambda: jnn.RNN(hidden_size=H, proj_size=2), "proj_size must be 0 for RNN, got 2: only the LSTM has projections"),
    (lambda: jnn.LSTM(hidden_size=H, proj_size=H), "proj_size must be smaller than hidden_size = 4, got 4"),
    (lambda: jnn.LSTM(hidden_size=H, proj_size=-1), "proj_size must be an int >= 0, got -1"),
    (lambda: jnn.GRU(hidden_size=H, bias=1), "bias must be a bool, got 1"),
    (lambda: jnn.GRU(hidden_size=H, batch_first=None), "batch_first must be a bool, got None"),
    (lambda: jnn.LSTM(hidden_size=0), "hidden_size must be a positive int, got 0"),
    (lambda: jnn.GRU(hidden_size=H, num_layers=0), "num_layers must be a positive int, got 0"),
    (lambda: jnn.GRU(hidden_size=H, num_layers=2, dropout=1.5), r"dropout must be a number in \[0, 1\], got 1.5"),
    (lambda: jnn.GRU(hidden_size=H, bidirectional=1), "bidirectional must be a bool"),
])
def test_bad_fields_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
