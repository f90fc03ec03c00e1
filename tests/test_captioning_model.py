"""CaptioningRNN: parameter contract, the course's reference losses, gradients, dtypes, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxseq.gradcheck import AUTODIFF_TOL, FLOAT32_TOL, eval_numerical_gradient, rel_error
from jaxseq.models import CaptioningRNN

CELLS = ("rnn", "lstm")
V, W, H, D, N, T = 10, 6, 8, 5, 3, 4  # one set of small shapes, so compiled ops are shared


def _init(model, N=N, D=D, T=T, seed=0):
    features = jax.random.normal(jax.random.key(seed), (N, D), model.param_dtype)
    captions = jax.random.randint(jax.random.key(seed + 1), (N, T + 1), 0, model.vocab_size)
    return model.init(jax.random.key(seed + 2), features, captions[:, :-1]), features, captions


@pytest.mark.parametrize("cell, G", [("rnn", 1), ("lstm", 4)])
def test_parameter_names_shapes_and_dtypes(cell, G):
    variables, _, _ = _init(CaptioningRNN(V, W, H, cell))
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes == {"W_proj": (D, H), "b_proj": (H,), "W_embed": (V, W), "Wx": (W, G * H),
                      "Wh": (H, G * H), "b": (G * H,), "W_vocab": (H, V), "b_vocab": (V,)}
    assert set(variables) == {"params"}
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))


def test_initialization_matches_the_course():
    V_, W_, H_, D_ = 300, 200, 100, 400
    model = CaptioningRNN(V_, W_, H_, "lstm")
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, D_)), jnp.zeros((1, 1), jnp.int32))["params"]
    expected_std = {"W_embed": 0.01, "W_proj": D_ ** -0.5, "Wx": W_ ** -0.5, "Wh": H_ ** -0.5,
                    "W_vocab": H_ ** -0.5}
    for name, std in expected_std.items():
        values = np.asarray(params[name])
        assert abs(values.mean()) < 0.05 * std, name
        assert abs(values.std() / std - 1) < 0.05, name
    for name in ("b_proj", "b", "b_vocab"):
        assert not np.any(params[name]), name


def _course_setup(cell):
    """The course notebooks' loss check: linspace parameters and inputs, float64."""
    N_, D_, W_, H_, V_, T_ = 10, 20, 30, 40, 3, 13
    model = CaptioningRNN(V_, W_, H_, cell, dtype=jnp.float64, param_dtype=jnp.float64)
    low, high = (-1.5, 0.3) if cell == "rnn" else (-0.5, 1.7)
    features = np.linspace(low, high, num=N_ * D_).reshape(N_, D_)
    captions = (np.arange(N_ * T_) % V_).reshape(N_, T_)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), features, captions[:, :-1]))["params"]
    params = {name: jnp.asarray(np.linspace(-1.4, 1.3, num=s.size).reshape(s.shape)) for name, s in shapes.items()}
    return model, params, features, captions


@pytest.mark.parametrize("cell, expected", [("rnn", 9.83235591003), ("lstm", 9.82445935443)])
def test_course_reference_loss(x64, cell, expected):
    model, params, features, captions = _course_setup(cell)
    loss = model.apply({"params": params}, features, captions, method="loss")
    assert loss.dtype == jnp.float64
    assert abs(float(loss) - expected) < 1e-10


@pytest.mark.parametrize("cell", CELLS)
def test_hand_backward_matches_numerical_gradient(x64, cell):
    """The course's gradient check of the whole model (float64, the hand-written backward)."""
    model = CaptioningRNN(V, W, H, cell, dtype=jnp.float64, param_dtype=jnp.float64)
    variables, features, captions = _init(model)
    captions = captions.at[1, -1].set(0)  # one <NULL> target: masked out
    # O(1) weights (not the tiny initial ones), so every gradient entry is well above the
    # central difference's rounding error.
    leaves, tree = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.key(7), len(leaves))
    params = jax.tree.unflatten(tree, [0.5 * jax.random.normal(k, v.shape, v.dtype) for k, v in zip(keys, leaves)])
    loss = jax.jit(lambda p: model.apply({"params": p}, features, captions, method="loss"))
    grads = jax.grad(loss)(params)
    for name, value in params.items():
        x = np.array(value)

        def f(x_, name=name):
            return float(loss({**params, name: jnp.asarray(x_)}))

        numerical = eval_numerical_gradient(f, x, verbose=False)
        # The course's elementwise rel_error; central differences of a float64 loss of
        # size ~10 carry ~1e-10 absolute rounding error, so entries ~1e-4 limit it here.
        assert rel_error(grads[name], numerical) < 1e-5, name


def _torch_loss(cell, params, features, captions, null_idx=0):
    """An independent PyTorch implementation of the course's captioning loss."""
    p = {name: torch.tensor(np.array(value), requires_grad=True) for name, value in params.items()}
    features, captions = torch.tensor(np.array(features)), torch.tensor(np.array(captions), dtype=torch.long)
    captions_in, captions_out = captions[:, :-1], captions[:, 1:]
    h = features @ p["W_proj"] + p["b_proj"]
    c = torch.zeros_like(h)
    x = p["W_embed"][captions_in]
    hs = []
    for t in range(x.shape[1]):
        a = x[:, t] @ p["Wx"] + h @ p["Wh"] + p["b"]
        if cell == "rnn":
            h = torch.tanh(a)
        else:
            i, f, o, g = a.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
    scores = torch.stack(hs, 1) @ p["W_vocab"] + p["b_vocab"]
    picked = torch.log_softmax(scores, -1).gather(-1, captions_out[..., None])[..., 0]
    loss = -(picked * (captions_out != null_idx)).sum() / captions.shape[0]
    loss.backward()
    return loss.item(), {name: value.grad.numpy() for name, value in p.items()}


def _compare_with_pytorch(cell, dtype):
    model = CaptioningRNN(V, W, H, cell, dtype=dtype, param_dtype=dtype)
    variables, features, captions = _init(model, seed=3)
    captions = captions.at[:2, -2:].set(0)
    loss, grads = jax.value_and_grad(lambda p: model.apply({"params": p}, features, captions, method="loss"))(
        variables["params"])
    torch_loss, torch_grads = _torch_loss(cell, variables["params"], features, captions)
    return float(loss), grads, torch_loss, torch_grads


@pytest.mark.parametrize("cell", CELLS)
def test_loss_and_gradients_match_pytorch_float32(cell):
    loss, grads, torch_loss, torch_grads = _compare_with_pytorch(cell, jnp.float32)
    assert abs(loss - torch_loss) < 1e-5 * abs(torch_loss)
    for name, grad in grads.items():
        scale = np.max(np.abs(torch_grads[name])) + 1e-12
        assert np.max(np.abs(np.asarray(grad) - torch_grads[name])) / scale < FLOAT32_TOL, name


@pytest.mark.parametrize("cell", CELLS)
def test_hand_backward_matches_pytorch_autograd_float64(x64, cell):
    loss, grads, torch_loss, torch_grads = _compare_with_pytorch(cell, jnp.float64)
    assert abs(loss - torch_loss) < 1e-12 * abs(torch_loss)
    for name, grad in grads.items():
        assert rel_error(grad, torch_grads[name]) < AUTODIFF_TOL, name


@pytest.mark.parametrize("cell", CELLS)
def test_loss_is_masked_teacher_forced_cross_entropy(cell):
    model = CaptioningRNN(V, W, H, cell, null_idx=0)
    variables, features, _ = _init(model)
    captions = jnp.array([[1, 4, 5, 2, 0], [1, 6, 7, 8, 2], [1, 9, 2, 0, 0]])
    scores = model.apply(variables, features, captions[:, :-1])
    assert scores.shape == (N, T, V)
    log_probs = jax.nn.log_softmax(scores, -1)
    targets = captions[:, 1:]
    picked = jnp.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    expected = -jnp.sum(jnp.where(targets != 0, picked, 0.0)) / N
    loss = model.apply(variables, features, captions, method="loss")
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_float64_matches_float32(x64, cell):
    model32 = CaptioningRNN(V, W, H, cell)
    model64 = CaptioningRNN(V, W, H, cell, dtype=jnp.float64, param_dtype=jnp.float64)
    variables, features, captions = _init(model32)
    params64 = jax.tree.map(lambda a: a.astype(jnp.float64), variables["params"])
    loss32 = model32.apply(variables, features, captions, method="loss")
    loss64 = model64.apply({"params": params64}, features.astype(jnp.float64), captions, method="loss")
    assert loss32.dtype == jnp.float32 and loss64.dtype == jnp.float64
    np.testing.assert_allclose(loss64, loss32, rtol=1e-5)
    init64 = model64.init(jax.random.key(0), features.astype(jnp.float64), captions[:, :-1])
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(init64))


@pytest.mark.parametrize("cell", CELLS)
def test_decode_step_matches_teacher_forcing(cell):
    model = CaptioningRNN(V, W, H, cell)
    variables, features, captions = _init(model)
    scores = model.apply(variables, features, captions[:, :-1])
    state = model.apply(variables, features, method="decode_init")
    assert len(state) == (1 if cell == "rnn" else 2)
    step = jax.jit(lambda words, state: model.apply(variables, words, state, method="decode_step"))
    for t in range(T):
        step_scores, state = step(captions[:, t], state)
        np.testing.assert_allclose(step_scores, scores[:, t], rtol=1e-5, atol=1e-6)


def test_config_round_trip():
    model = CaptioningRNN(V, W, H, "lstm", null_idx=0)
    rebuilt = CaptioningRNN.from_config(model.config())
    assert rebuilt.config() == model.config()
    with pytest.raises(ValueError, match="unknown CaptioningRNN config keys"):
        CaptioningRNN.from_config({**model.config(), "depth": 2})


def test_bad_fields_and_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="cell_type must be one of .*'gru'"):
        CaptioningRNN(10, cell_type="gru")
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        CaptioningRNN(0)
    with pytest.raises(ValueError, match="null_idx"):
        CaptioningRNN(5, null_idx=5)
    model = CaptioningRNN(V, W, H)
    variables, features, captions = _init(model)
    with pytest.raises(ValueError, match="features must have shape"):
        model.apply(variables, features[0], captions, method="loss")
    with pytest.raises(ValueError, match="captions must have shape"):
        model.apply(variables, features, captions[0], method="loss")
    with pytest.raises(ValueError, match=f"N={N} rows"):
        model.apply(variables, features, captions[:1, :-1])
    with pytest.raises(ValueError, match=f"word id {V}"):  # checked outside jit by the layers
        model.apply(variables, features, captions.at[0, 1].set(V), method="loss")
    with pytest.raises(Exception, match="W_proj"):  # D is fixed at init
        model.apply(variables, jnp.ones((N, D + 1)), captions, method="loss")
