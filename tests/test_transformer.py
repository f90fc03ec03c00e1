"""ClassificationTransformer: staged methods, the [CLS]-only path, pad masking, attention
formula, dropout, argument checks, and equality with an independent PyTorch model."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq.models.transformer import ClassificationTransformer, model_config, model_from_config

SMALL = dict(vocab_size=30, hidden_dim=16, num_heads=2, dim_feedforward=24, dim_k=6, dim_q=6, dim_v=5, max_length=9)


def staged(module, inputs, pad_mask=None):
    """The course's full computation, every row: final_layer(ffn(mha(embed(x))))."""
    x = module.embed(inputs)
    chex.assert_shape(x, (*inputs.shape, module.hidden_dim))
    x = module.multi_head_attention(x, pad_mask)
    chex.assert_shape(x, (*inputs.shape, module.hidden_dim))
    x = module.feedforward_layer(x)
    chex.assert_shape(x, (*inputs.shape, module.hidden_dim))
    out = module.final_layer(x)
    chex.assert_shape(out, (inputs.shape[0], 1))
    return out


def random_variables(model, seed=0):
    """Variables of `model` drawn with NumPy (scale 0.3; LayerNorm scales around 1): no
    compilation of JAX's initializers, and non-trivial LayerNorm parameters."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    rng = np.random.default_rng(seed)
    draw = lambda path, s: np.asarray(
        (1.0 if jax.tree_util.keystr(path).endswith("['scale']") else 0.0) + 0.3 * rng.standard_normal(s.shape),
        s.dtype)
    return jax.tree_util.tree_map_with_path(draw, shapes)


def make(seed=0, n=4, t=7, **overrides):
    model = ClassificationTransformer(**{**SMALL, **overrides})
    inputs = jnp.asarray(np.random.default_rng(seed).integers(0, model.vocab_size, (n, t)), jnp.int32)
    return model, random_variables(model, seed), inputs


def padded_batch(model, n=4, t=8, seed=0):
    """Token ids with [CLS]=2 first, real lengths 1..t, pad positions holding junk ids."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, t + 1, size=n)
    lengths[0] = t  # one full row
    mask = np.arange(t)[None, :] < lengths[:, None]
    ids = rng.integers(3, model.vocab_size, size=(n, t))
    ids[:, 0] = 2
    return jnp.asarray(ids, jnp.int32), jnp.asarray(mask)


def test_staged_methods_compose_to_call_and_cls_path_matches():
    model, variables, inputs = make()
    probs = model.apply(variables, inputs)
    chex.assert_shape(probs, (4, 1))
    full = model.apply(variables, inputs, method=staged)
    np.testing.assert_allclose(probs, full, atol=1e-6, rtol=0)
    logits = model.apply(variables, inputs, method="logits")
    chex.assert_shape(logits, (4,))
    np.testing.assert_allclose(jax.nn.sigmoid(logits)[:, None], probs, atol=1e-7)


@functools.cache
def _fast_and_full_program(model):
    return jax.jit(lambda v, *a: (model.apply(v, *a), model.apply(v, *a, method=staged)))


def fast_and_full(model, variables, *args):
    """(__call__, staged) outputs, both in one jitted call: one compilation per model and
    shapes (not one per op), which calls with the same ones share."""
    return _fast_and_full_program(model)(variables, *args)


def test_cls_path_matches_full_computation_with_mask_seed_architecture():
    model = ClassificationTransformer(vocab_size=50)  # hidden 128, 2 heads, 96-d heads, FFN 2048
    ids, mask = padded_batch(model, n=3, t=model.max_length)
    fast, full = fast_and_full(model, random_variables(model), ids, mask)
    np.testing.assert_allclose(fast, full, atol=1e-6, rtol=0)


def test_cls_path_matches_full_computation_float64(x64):
    model, variables, inputs = make(param_dtype=jnp.float64, dtype=jnp.float64)
    fast, full = fast_and_full(model, variables, inputs)
    assert fast.dtype == jnp.float64
    np.testing.assert_allclose(fast, full, atol=1e-13, rtol=0)


# (n, t): one token, one row, and a batch at the longest length; the examples draw from this
# small set with their own seeds, so those of one shape share its compilation.
SHAPES = ((1, 1), (1, 5), (3, 9))


@settings(max_examples=6, deadline=None)
@given(shape=st.sampled_from(SHAPES), seed=st.integers(0, 100))
def test_cls_path_matches_full_any_shape(shape, seed):
    n, t = shape
    model, variables, _ = make()
    inputs = jnp.asarray(np.random.default_rng(seed).integers(0, model.vocab_size, (n, t)), jnp.int32)
    fast, full = fast_and_full(model, variables, inputs)
    np.testing.assert_allclose(fast, full, atol=1e-6, rtol=0)


def test_pad_mask_makes_pad_ids_irrelevant():
    model, variables, _ = make()
    ids, mask = padded_batch(model)
    other = jnp.where(mask, ids, jnp.asarray(np.random.default_rng(1).integers(0, model.vocab_size, ids.shape)))
    assert not np.array_equal(ids, other)
    np.testing.assert_array_equal(model.apply(variables, ids, mask), model.apply(variables, other, mask))

    def attended(module, x, m):
        return module.multi_head_attention(module.embed(x), m)

    a = model.apply(variables, ids, mask, method=attended)
    b = model.apply(variables, other, mask, method=attended)
    np.testing.assert_allclose(np.where(mask[..., None], a, 0), np.where(mask[..., None], b, 0), atol=1e-6)
    # without the mask the pad ids do matter: the mask is what removes them
    assert not np.allclose(model.apply(variables, ids), model.apply(variables, other))


def test_all_true_mask_is_the_unmasked_model():
    model, variables, inputs = make()
    np.testing.assert_allclose(model.apply(variables, inputs, jnp.ones(inputs.shape, bool)),
                               model.apply(variables, inputs), atol=1e-7)


def explicit_attention(params, model, x, mask):
    """softmax(Q K^T / sqrt(d_k)) V per head, concat, project, residual, LayerNorm — in NumPy."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(x, np.float64)
    q = x @ p["q_proj"]["kernel"] + p["q_proj"]["bias"]
    k = x @ p["k_proj"]["kernel"] + p["k_proj"]["bias"]
    v = x @ p["v_proj"]["kernel"] + p["v_proj"]["bias"]
    heads = []
    for h in range(model.num_heads):
        qh, kh = q[..., h * model.dim_q:(h + 1) * model.dim_q], k[..., h * model.dim_k:(h + 1) * model.dim_k]
        vh = v[..., h * model.dim_v:(h + 1) * model.dim_v]
        scores = qh @ kh.transpose(0, 2, 1) / np.sqrt(model.dim_k)
        if mask is not None:
            scores = np.where(np.asarray(mask)[:, None, :], scores, -np.inf)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        heads.append((weights / weights.sum(-1, keepdims=True)) @ vh)
    out = np.concatenate(heads, -1) @ p["attention_head_projection"]["kernel"] + p["attention_head_projection"]["bias"]
    y = x + out
    y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-5)
    return y * p["norm_mh"]["scale"] + p["norm_mh"]["bias"]


@pytest.mark.parametrize("masked", [False, True])
def test_dot_product_attention_equals_explicit_softmax(masked):
    model, variables, _ = make()
    ids, mask = padded_batch(model)
    mask = mask if masked else None
    x = model.apply(variables, ids, method="embed")
    got = model.apply(variables, x, mask, method="multi_head_attention")
    np.testing.assert_allclose(got, explicit_attention(variables["params"], model, x, mask), atol=2e-5)


def test_dropout_only_with_flag_and_rng():
    model, variables, inputs = make(dropout=0.5)
    plain = model.apply(variables, inputs)
    np.testing.assert_array_equal(model.apply(variables, inputs, deterministic=False), plain)
    np.testing.assert_array_equal(
        model.apply(variables, inputs, deterministic=True, rngs={"dropout": jax.random.key(0)}), plain)
    one = model.apply(variables, inputs, deterministic=False, rngs={"dropout": jax.random.key(0)})
    two = model.apply(variables, inputs, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(one, plain) and not np.allclose(one, two)
    np.testing.assert_array_equal(
        one, model.apply(variables, inputs, deterministic=False, rngs={"dropout": jax.random.key(0)}))


def test_parameter_names_and_shapes():
    model, variables, _ = make()
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes["q_proj"]["kernel"] == (16, 12) and shapes["v_proj"]["kernel"] == (16, 10)
    assert shapes["attention_head_projection"]["kernel"] == (10, 16)
    assert shapes["W1"]["kernel"] == (16, 24) and shapes["W2"]["kernel"] == (24, 16)
    assert shapes["token_embeddings"]["embedding"] == (30, 16)
    assert shapes["position_embeddings"]["embedding"] == (9, 16)
    assert set(shapes) == {"token_embeddings", "position_embeddings", "q_proj", "k_proj", "v_proj",
                           "attention_head_projection", "norm_mh", "W1", "W2", "norm_ffn", "final_dense"}


def test_config_round_trip():
    model = ClassificationTransformer(**SMALL, dropout=0.2)
    assert model_from_config(model_config(model)) == model


@pytest.mark.parametrize("overrides, message", [
    (dict(hidden_dim=15, num_heads=2), "divisible by num_heads"),
    (dict(dim_q=8, dim_k=6), "dim_q .* must equal dim_k"),
    (dict(dropout=1.0), "dropout"),
    (dict(vocab_size=0), "vocab_size"),
])
def test_bad_fields_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        ClassificationTransformer(**{**SMALL, **overrides})


def test_bad_inputs_are_rejected():
    model, variables, _ = make()
    with pytest.raises(ValueError, match="max_length"):
        model.apply(variables, jnp.zeros((2, 10), jnp.int32))
    with pytest.raises(ValueError, match="integer"):
        model.apply(variables, jnp.zeros((2, 3), jnp.float32))
    with pytest.raises(AssertionError, match="pad_mask"):
        model.apply(variables, jnp.zeros((2, 3), jnp.int32), jnp.ones((2, 4), bool))


# -- independent PyTorch implementation (the course's per-head layout) -------------------------

def torch_model_and_loss(params, model):
    import torch  # a development requirement (`make test` installs it): missing, the test fails
    nn = torch.nn

    class TorchClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            H = model.hidden_dim
            self.embeddingL = nn.Embedding(model.vocab_size, H)
            self.posembeddingL = nn.Embedding(model.max_length, H)
            self.q = nn.ModuleList(nn.Linear(H, model.dim_q) for _ in range(model.num_heads))
            self.k = nn.ModuleList(nn.Linear(H, model.dim_k) for _ in range(model.num_heads))
            self.v = nn.ModuleList(nn.Linear(H, model.dim_v) for _ in range(model.num_heads))
            self.attention_head_projection = nn.Linear(model.dim_v * model.num_heads, H)
            self.norm_mh = nn.LayerNorm(H)
            self.W1 = nn.Linear(H, model.dim_feedforward)
            self.W2 = nn.Linear(model.dim_feedforward, H)
            self.norm_ffn = nn.LayerNorm(H)
            self.final = nn.Linear(H, 1)

        def forward(self, inputs, mask=None):
            x = self.embeddingL(inputs) + self.posembeddingL(torch.arange(inputs.shape[1]))[None]
            heads = []
            for q, k, v in zip(self.q, self.k, self.v):
                scores = q(x) @ k(x).transpose(1, 2) / model.dim_k ** 0.5
                if mask is not None:
                    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
                heads.append(torch.softmax(scores, dim=2) @ v(x))
            x = self.norm_mh(x + self.attention_head_projection(torch.cat(heads, dim=2)))
            x = self.norm_ffn(x + self.W2(torch.relu(self.W1(x))))
            return torch.sigmoid(self.final(x[:, 0, :]))

    net = TorchClassifier()
    p = jax.tree.map(lambda a: torch.tensor(np.asarray(a)), params)
    dense = lambda layer, cols=slice(None): (layer["kernel"][:, cols].T.contiguous(), layer["bias"][cols])
    copies = [
        (net.embeddingL.weight, p["token_embeddings"]["embedding"]),
        (net.posembeddingL.weight, p["position_embeddings"]["embedding"]),
        (net.norm_mh.weight, p["norm_mh"]["scale"]), (net.norm_mh.bias, p["norm_mh"]["bias"]),
        (net.norm_ffn.weight, p["norm_ffn"]["scale"]), (net.norm_ffn.bias, p["norm_ffn"]["bias"]),
    ]
    for torch_layer, name in [(net.attention_head_projection, "attention_head_projection"), (net.W1, "W1"),
                              (net.W2, "W2"), (net.final, "final_dense")]:
        copies += list(zip((torch_layer.weight, torch_layer.bias), dense(p[name])))
    for h in range(model.num_heads):
        for layers, name, d in [(net.q, "q_proj", model.dim_q), (net.k, "k_proj", model.dim_k),
                                (net.v, "v_proj", model.dim_v)]:
            copies += list(zip((layers[h].weight, layers[h].bias), dense(p[name], slice(h * d, (h + 1) * d))))
    with torch.no_grad():
        for target, value in copies:
            target.copy_(value)
    return net


def torch_grads(net, model) -> dict:
    """The PyTorch model's `.grad`s in jaxseq's parameter layout (kernels (in, out), the heads'
    q/k/v weights side by side): a tree of the same structure as the params."""
    g = lambda tensor: tensor.grad.detach().numpy()  # noqa: E731
    dense = lambda layer: {"kernel": g(layer.weight).T, "bias": g(layer.bias)}  # noqa: E731
    heads = lambda layers: {"kernel": np.concatenate([g(h.weight).T for h in layers], axis=1),  # noqa: E731
                            "bias": np.concatenate([g(h.bias) for h in layers])}
    return {
        "token_embeddings": {"embedding": g(net.embeddingL.weight)},
        "position_embeddings": {"embedding": g(net.posembeddingL.weight)},
        "q_proj": heads(net.q), "k_proj": heads(net.k), "v_proj": heads(net.v),
        "attention_head_projection": dense(net.attention_head_projection),
        "norm_mh": {"scale": g(net.norm_mh.weight), "bias": g(net.norm_mh.bias)},
        "W1": dense(net.W1), "W2": dense(net.W2),
        "norm_ffn": {"scale": g(net.norm_ffn.weight), "bias": g(net.norm_ffn.bias)},
        "final_dense": dense(net.final),
    }


# the default sizes (`ClassificationTransformer()`'s and the command line's), a CoLA-sized vocabulary
DEFAULT_SIZE = dict(vocab_size=3000, hidden_dim=128, num_heads=2, dim_feedforward=2048, dim_k=96, dim_q=96,
                    dim_v=96, max_length=43)


@pytest.mark.parametrize("masked, sizes", [(False, {}), (True, {}), (True, DEFAULT_SIZE)],
                         ids=["small", "small-masked", "default-size-masked"])
def test_equals_independent_pytorch_model(masked, sizes):
    """Probabilities and the gradient of every parameter (all 20 arrays of the 11 groups)
    against PyTorch, float32, to a relative error of 1e-4 of each array's norm (the key bias's,
    exactly 0 in theory, both round-off), at small sizes and at the default ones."""
    import torch

    model, variables, _ = make(**sizes)
    if sizes:
        assert {k: getattr(ClassificationTransformer(vocab_size=3000), k) for k in sizes} == sizes
    ids, mask = padded_batch(model, n=5, t=model.max_length if sizes else 8)
    labels = np.array([1, 0, 1, 1, 0], np.float32)
    mask = mask if masked else None
    net = torch_model_and_loss(variables["params"], model)

    t_ids = torch.tensor(np.asarray(ids), dtype=torch.long)
    t_mask = None if mask is None else torch.tensor(np.asarray(mask))
    t_probs = net(t_ids, t_mask)
    np.testing.assert_allclose(model.apply(variables, ids, mask), t_probs.detach().numpy(), rtol=1e-4)

    # gradients of the binary cross-entropy agree too, for every parameter
    torch.nn.functional.binary_cross_entropy(t_probs[:, 0], torch.tensor(labels)).backward()

    def loss(params):
        probs = model.apply({"params": params}, ids, mask)[:, 0]
        return -jnp.mean(labels * jnp.log(probs) + (1 - labels) * jnp.log1p(-probs))

    grads = jax.jit(jax.grad(loss))(variables["params"])
    expected = torch_grads(net, model)
    assert jax.tree.structure(grads) == jax.tree.structure(expected) and len(jax.tree.leaves(grads)) == 20
    for path, got in jax.tree_util.tree_leaves_with_path(grads):
        want = expected
        for key in path:
            want = want[key.key]
        name = jax.tree_util.keystr(path)
        assert got.shape == want.shape, name
        if name == "['k_proj']['bias']":  # exactly 0: it adds q . b_k to every score of a query, which
            assert np.abs(got).max() < 1e-6 and np.abs(want).max() < 1e-6  # softmax ignores: both round-off
            continue
        assert np.linalg.norm(want) > 0, f"{name}: a zero gradient compares nothing"
        error = np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)
        assert error < 1e-4, f"{name}: relative error {error:.2e}"
