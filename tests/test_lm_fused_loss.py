"""jaxseq.layers.temporal_affine_softmax_loss (the decoder and the softmax loss as one layer)
and LanguageModel.fast_loss, which the trainer differentiates on it: the same value and
gradients as the two layers and as LanguageModel.loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import layers
from jaxseq.gradcheck import rel_error
from jaxseq.models import LanguageModel

jax.config.update("jax_enable_x64", True)

N, T, D, V = 3, 4, 5, 7


def _plain_loss(x, w, b, y, mask):
    """The loss from jnp primitives only (no custom_vjp): what jax.grad differentiates."""
    scores = jnp.einsum("ntd,dv->ntv", x, w) + b
    log_probs = jax.nn.log_softmax(scores, axis=-1)
    picked = jnp.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
    return -jnp.sum(mask * picked) / x.shape[0]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((N, T, D)), rng.standard_normal((D, V)), rng.standard_normal(V)
    y = rng.integers(0, V, (N, T)).astype(np.int32)
    mask = rng.random((N, T)) < 0.7
    mask[0, 0], mask[1, 1] = True, False
    return x, w, b, y, mask


def test_value_and_hand_backward_equal_jax_grad_of_the_plain_loss(problem):
    x, w, b, y, mask = problem
    expected, expected_grads = jax.jit(jax.value_and_grad(_plain_loss, argnums=(0, 1, 2)))(x, w, b, y, mask)
    value, grads = jax.jit(jax.value_and_grad(layers.temporal_affine_softmax_loss, argnums=(0, 1, 2)))(x, w, b, y, mask)
    assert rel_error(value, expected) < 1e-12
    loss_value, cache = jax.jit(layers.temporal_affine_softmax_loss_forward)(x, w, b, y, mask)
    hand = jax.jit(layers.temporal_affine_softmax_loss_backward)(2.0, cache)
    assert rel_error(loss_value, expected) < 1e-12
    for name, got, by_hand, want in zip(("dx", "dw", "db"), grads, hand, expected_grads):
        assert got.shape == want.shape, name
        assert rel_error(got, want) < 1e-9, name
        assert rel_error(by_hand, 2.0 * want) < 1e-9, name
    # the masked-out token's input gets no gradient
    assert np.all(np.asarray(grads[0])[1, 1] == 0)


def test_equals_the_two_layers_it_fuses(problem):
    x, w, b, y, mask = problem

    def pair(x, w, b):
        return layers.temporal_softmax_loss(layers.temporal_affine(x, w, b), y, mask)

    value, grads = jax.jit(jax.value_and_grad(layers.temporal_affine_softmax_loss, argnums=(0, 1, 2)))(x, w, b, y, mask)
    expected, expected_grads = jax.jit(jax.value_and_grad(pair, argnums=(0, 1, 2)))(x, w, b)
    assert rel_error(value, expected) < 1e-12
    for got, want in zip(grads, expected_grads):
        assert rel_error(got, want) < 1e-9


@pytest.mark.parametrize("tie_weights", [False, True])
def test_language_model_fast_loss_equals_its_loss(tie_weights):
    """LanguageModel.fast_loss (what the trainer differentiates) against its `loss`, lm_loss of
    __call__'s logits: value, state and every parameter's gradient, float64, with the dropouts on (the
    same key: the same masks) and a carried state. The cell does not matter to the decoder:
    a one-layer RNN keeps the test fast."""
    model = LanguageModel(vocab_size=V, cell="rnn", embed_size=6, hidden_size=6, num_layers=1,
                          tie_weights=tie_weights, input_dropout=0.2, output_dropout=0.2, weight_drop=0.2,
                          embedding_dropout=0.2, param_dtype=jnp.float64)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, V, (N, T)).astype(np.int32)
    targets = rng.integers(0, V, (N, T)).astype(np.int32)
    state = jnp.asarray(rng.standard_normal((1, N, 6)))
    params = jax.jit(model.init)(jax.random.key(0), tokens)["params"]
    rngs = {"dropout": jax.random.key(3)}

    def fused(params):
        return model.apply({"params": params}, tokens, targets, state, deterministic=False, rngs=rngs,
                           method="fast_loss")

    def pair(params):
        return model.apply({"params": params}, tokens, targets, state, deterministic=False, rngs=rngs,
                           method="loss")

    jaxpr = str(jax.make_jaxpr(fused)(params))
    assert "fwd=_temporal_affine_softmax_loss_forward" in jaxpr  # the hand-written layer, not autodiff
    assert "_temporal_softmax_loss_forward" not in jaxpr.replace("affine_softmax", "")
    (value, after), grads = jax.value_and_grad(fused, has_aux=True)(params)
    (expected, expected_after), expected_grads = jax.value_and_grad(pair, has_aux=True)(params)
    assert rel_error(value, expected) < 1e-12
    np.testing.assert_array_equal(after, expected_after)
    flat, want_flat = jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(expected_grads)
    assert len(flat) == len(want_flat)
    for (path, got), want in zip(flat, want_flat):
        assert rel_error(got, want) < 1e-9, jax.tree_util.keystr(path)


def test_bad_targets_are_one_line_errors(problem):
    x, w, b, y, mask = problem
    with pytest.raises(ValueError, match="target id"):
        layers.temporal_affine_softmax_loss(x, w, b, np.full((N, T), V, np.int32), mask)
    with pytest.raises(ValueError, match="mask must be a boolean"):
        layers.temporal_affine_softmax_loss(x, w, b, y, mask.astype(np.float64))
    with pytest.raises(ValueError, match="w"):
        layers.temporal_affine_softmax_loss(x, w[:-1], b, y, mask)
    model = LanguageModel(vocab_size=V, embed_size=4, hidden_size=4, num_layers=1)
    tokens = np.zeros((N, T), np.int32)
    variables = jax.jit(model.init)(jax.random.key(0), tokens)
    with pytest.raises(ValueError, match="targets must have the tokens' shape"):
        model.apply(variables, tokens, tokens[:, :-1], method="fast_loss")
