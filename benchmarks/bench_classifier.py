"""Transformer classifier (issue 4): the `[CLS]`-only path against the full staged computation.

A one-layer classifier reads only the `[CLS]` row after attention, so
`ClassificationTransformer.logits` computes the query, the attention output and the
feed-forward block for that row alone (keys and values still for every token). The
contender "full-staged" runs the course's staging for every row
(`final_dense(feedforward_layer(multi_head_attention(embed(x)))[:, 0])`); both compute the
same logits (asserted before timing; the tests check it to 1e-6).

Cases, seed architecture (H=128, 2 heads of 96, FFN 2048), vocabulary 1,500, T=43:
- "fwd": logits of a batch;
- "train step": forward, sigmoid cross-entropy, backward and the Adam update, one jitted call.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

SHAPES = {"a": (32, 43), "b": (256, 43)}
QUICK_SHAPES = {"q": (4, 8)}


def staged_logits(module, ids, pad_mask):
    x = module.feedforward_layer(module.multi_head_attention(module.embed(ids), pad_mask))
    return module.final_dense(x[:, 0, :])[:, 0]


def make_contenders(N: int, T: int, quick: bool):
    import jax
    import jax.numpy as jnp
    import optax

    from jaxseq.models.transformer import ClassificationTransformer

    sizes = dict(hidden_dim=16, dim_k=8, dim_q=8, dim_v=8, dim_feedforward=32) if quick else {}
    model = ClassificationTransformer(vocab_size=1500, max_length=T, **sizes)
    rng = np.random.default_rng(0)
    lengths = rng.integers(4, T + 1, N)
    mask = jnp.asarray(np.arange(T)[None] < lengths[:, None])
    ids = jnp.where(mask, jnp.asarray(rng.integers(3, 1500, (N, T)), jnp.int32), 0).at[:, 0].set(2)
    labels = jnp.asarray(rng.integers(0, 2, N), jnp.float32)
    params = model.init(jax.random.key(0), ids)["params"]
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def forward(method):
        return jax.jit(lambda p: model.apply({"params": p}, ids, mask, method=method))

    def train_step(method):
        def loss(p):
            logits = model.apply({"params": p}, ids, mask, method=method)
            return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

        @jax.jit
        def step(p, s):
            value, grads = jax.value_and_grad(loss)(p)
            updates, s = optimizer.update(grads, s, p)
            return optax.apply_updates(p, updates), s, value

        return step

    fast_fwd, full_fwd = forward("logits"), forward(staged_logits)
    np.testing.assert_allclose(fast_fwd(params), full_fwd(params), atol=1e-5)
    fast_step, full_step = train_step("logits"), train_step(staged_logits)
    np.testing.assert_allclose(fast_step(params, opt_state)[2], full_step(params, opt_state)[2], rtol=1e-5)
    fwd = [("jaxseq", lambda: jax.block_until_ready(fast_fwd(params))),
           ("full-staged", lambda: jax.block_until_ready(full_fwd(params)))]
    step = [("jaxseq", lambda: jax.block_until_ready(fast_step(params, opt_state))),
            ("full-staged", lambda: jax.block_until_ready(full_step(params, opt_state)))]
    return fwd, step


def run(quick: bool = False) -> list[dict]:
    """The [CLS]-only speed-up; `quick`: tiny shapes, few repetitions (a smoke test)."""
    harness.setup()
    shapes = QUICK_SHAPES if quick else SHAPES
    reps, warmup = (3, 1) if quick else (harness.DEFAULT_REPS, harness.DEFAULT_WARMUP)
    results = []
    for key, (N, T) in shapes.items():
        fwd, step = make_contenders(N, T, quick)
        label = f"({key}) N={N} T={T}"
        notes = "jaxseq = [CLS]-only path; ratio > 1: that much faster than computing every row"
        results += harness.bench("transformer classifier", fwd, variant="fwd", shape=label,
                                 reps=reps, warmup=warmup, notes=notes)
        results += harness.bench("transformer classifier", step, variant="train step (fwd+bwd+adam)",
                                 shape=label, reps=reps, warmup=warmup, notes=notes)
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(harness.format_table(run(quick=args.quick), title="transformer classifier",
                               meta=harness.machine_info()))
