"""Every hand-written layer inside `jax.shard_map` (run with JAX_NUM_CPU_DEVICES=4): the batch
split over the devices, the weights replicated, JAX's default type checks on (check_vma).
For each layer, the value and every gradient of a mean loss computed per device and averaged
(`lax.pmean`) must equal those of the whole batch on one device. Prints one JSON line,
{case: largest relative difference}.

Before `jaxseq.layers.varying`, every case but the loss-only ones failed to trace: a rule's
weight gradient varies over the devices where its replicated weight does not."""

import json
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxseq import layers
from jaxseq.models import LanguageModel
from jaxseq.train.language_model import lm_training_loss, to_streams

N, T, D, H, V = 8, 5, 3, 4, 7
rng = np.random.default_rng(0)
f32 = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)  # noqa: E731
ints = lambda high, *shape: jnp.asarray(rng.integers(0, high, shape), jnp.int32)  # noqa: E731
lengths = jnp.asarray([5, 3, 1, 4, 5, 2, 5, 3], jnp.int32)
mask = jnp.asarray(rng.random((N, T)) < 0.8)


def weighted_mean(out, weights):
    """A scalar of a batch-first output: its mean over the batch of sum(out * weights)."""
    return jnp.mean(jnp.sum((out * weights).reshape(out.shape[0], -1), axis=1))


def output_loss(layer, out_shape):
    """A loss of a layer with a batch-first output: weighted by a fixed random array."""
    weights = f32(*out_shape)
    return (lambda batch, params: weighted_mean(layer(*batch[:-1], *params), batch[-1])), weights


def cases():
    """{name: (loss(batch, params) -> scalar, batch arrays (split), params (replicated))}."""
    lstm_w, gru_w, rnn_w = (f32(D, 4 * H), f32(H, 4 * H), f32(4 * H)), \
        (f32(D, 3 * H), f32(H, 3 * H), f32(3 * H), f32(3 * H)), (f32(D, H), f32(H, H), f32(H))
    x, h0, c0 = f32(N, T, D), f32(N, H), f32(N, H)
    out = {}

    def add(name, layer, batch, params, out_shape):
        loss, weights = output_loss(layer, out_shape)
        out[name] = (loss, (*batch, weights), params)

    add("lstm", lambda x, h0, *w: layers.lstm(x, h0, *w), (x, h0), lstm_w, (N, T, H))
    add("lstm lengths reverse state c0",
        lambda x, h0, c0, n, *w: jnp.concatenate(
            [o.reshape(o.shape[0], -1) for o in layers.lstm(x, h0, *w, c0=c0, lengths=n, reverse=True,
                                                             return_state=True)], axis=1),
        (x, h0, c0, lengths), lstm_w, (N, T * H + 2 * H))
    add("gru lengths state",
        lambda x, h0, n, *w: jnp.concatenate(
            [o.reshape(o.shape[0], -1) for o in layers.gru(x, h0, *w, lengths=n, return_state=True)], axis=1),
        (x, h0, lengths), gru_w, (N, T * H + H))
    add("rnn reverse", lambda x, h0, *w: layers.rnn(x, h0, *w, reverse=True), (x, h0), rnn_w, (N, T, H))
    add("lstm_step", lambda x, h, c, *w: jnp.concatenate(layers.lstm_step(x, h, c, *w), axis=1),
        (x[:, 0], h0, c0), lstm_w, (N, 2 * H))
    add("gru_step", lambda x, h, *w: layers.gru_step(x, h, *w), (x[:, 0], h0), gru_w, (N, H))
    add("rnn_step", lambda x, h, *w: layers.rnn_step(x, h, *w), (x[:, 0], h0), rnn_w, (N, H))
    add("temporal_affine", layers.temporal_affine, (x,), (f32(D, V), f32(V)), (N, T, V))
    add("word_embedding", layers.word_embedding, (ints(V, N, T),), (f32(V, D),), (N, T, D))
    y = ints(V, N, T)
    out["temporal_softmax_loss"] = (lambda b, p: layers.temporal_softmax_loss(b[0] @ p[0], b[1], b[2]),
                                    (x, y, mask), (f32(D, V),))
    out["temporal_affine_softmax_loss"] = (lambda b, p: layers.temporal_affine_softmax_loss(b[0], *p, b[1], b[2]),
                                           (x, y, mask), (f32(D, V), f32(V)))
    for cell in ("lstm", "gru", "rnn"):
        model = LanguageModel(vocab_size=V, embed_size=D, hidden_size=H, num_layers=2, cell=cell)
        params = model.init(jax.random.key(0), np.zeros((1, 2), np.int32))["params"]
        train_loss = lm_training_loss(model)
        out[f"LanguageModel {cell}"] = (
            lambda b, p, train_loss=train_loss: train_loss(p, (*b, jax.random.key(1)))[0],
            (ints(V, N, T), ints(V, N, T), to_streams(jax.tree.map(lambda a: f32(*a.shape), model.initial_state(N)))),
            params)
    return out


def relative(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-12))


def is_float(a) -> bool:
    return jnp.issubdtype(a.dtype, jnp.floating)


def float_part(batch):
    """The batch's float arrays (what is differentiated); None in place of the integer ones."""
    return jax.tree.map(lambda a: a if is_float(a) else None, batch)


def with_integers(float_batch, batch):
    """`float_batch` with `batch`'s integer arrays (ids, lengths, masks) put back."""
    return jax.tree.map(lambda f, a: a if f is None else f, float_batch, batch, is_leaf=lambda a: a is None)


def compare(loss, batch, params, mesh) -> float:
    """Largest relative difference of the value and every float gradient, mesh vs one device."""
    whole = lambda floats, params: loss(with_integers(floats, batch), params)  # noqa: E731
    value, grads = jax.jit(jax.value_and_grad(whole, argnums=(0, 1)))(float_part(batch), params)

    @jax.jit
    @partial(jax.shard_map, mesh=mesh, in_specs=(P("d"), P()), out_specs=(P(), (P("d"), P())))
    def sharded(batch, params):  # this device's rows of the batch
        local = lambda floats, params: lax.pmean(loss(with_integers(floats, batch), params), "d")  # noqa: E731
        return jax.value_and_grad(local, argnums=(0, 1))(float_part(batch), params)

    split, replicated = NamedSharding(mesh, P("d")), NamedSharding(mesh, P())
    value_m, grads_m = sharded(jax.device_put(batch, split), jax.device_put(params, replicated))
    assert len(jax.tree.leaves(grads_m)) == len(jax.tree.leaves(grads)) > 0
    pairs = [(value_m, value)] + list(zip(jax.tree.leaves(grads_m), jax.tree.leaves(grads)))
    return max(relative(a, b) for a, b in pairs)


if __name__ == "__main__":
    mesh = jax.make_mesh((jax.device_count(),), ("d",))
    report = {name: compare(*case, mesh) for name, case in cases().items()}
    print(json.dumps({"devices": jax.device_count(), "cases": report}))
