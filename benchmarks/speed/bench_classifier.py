"""Transformer classifier (issue 5, case 4): jaxseq against the full-sequence computation.

A one-layer classifier reads only the `[CLS]` row after attention, so
`ClassificationTransformer.logits` computes the query, the attention output and the
feed-forward block for that row alone (keys and values still for every token). The other
contenders run the course's full-sequence computation, every row through the layer:

- jaxseq        `ClassificationTransformer.logits` (the `[CLS]`-only path), jitted
- full-staged   the course's staging in JAX, every row
                (`final_dense(feedforward_layer(multi_head_attention(embed(x)))[:, 0])`), jitted
- torch         `torch_models.ClassificationTransformer`: the same model in PyTorch, every row,
                the same weights (copied by their Flax names), 2 threads; attention written out
                (matmul, masked softmax, matmul) or by `F.scaled_dot_product_attention`,
                whichever `TORCH_SDPA` says (the faster here)

All three use the pad mask (padded keys get no attention). Before timing, the logits, the
loss and the gradients of every contender are asserted to match jaxseq's to 1e-4 of their
scale (`check_agreement`).

Cases, seed architecture (H=128, 2 heads of d_k = d_v = 96, FFN 2048), V=1542, T=43:
- "train step": forward, mean sigmoid cross-entropy, backward and the Adam update (lr 1e-3)
  at batch 64; one jitted call for JAX, `zero_grad(set_to_none=True)` + forward + backward +
  `torch.optim.Adam(fused=True).step()` for PyTorch;
- "fwd" (inference throughput): the logits of a batch of 1024 (PyTorch under
  `torch.inference_mode`); sentences/s = 1024 / median.
Ratios are to jaxseq: > 1 means jaxseq is that much faster.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from jaxseq.contenders import assert_agree  # noqa: E402
from jaxseq.gradcheck import FLOAT32_TOL  # noqa: E402

VOCAB, LENGTH = 1542, 43
TRAIN_BATCH, INFER_BATCH = 64, 1024
QUICK = dict(vocab=31, length=8, train_batch=4, infer_batch=6,
             sizes=dict(hidden_dim=16, num_heads=2, dim_k=8, dim_q=8, dim_v=8, dim_feedforward=32))
NUM_HEADS = 2  # the seed architecture's (ClassificationTransformer's defaults)
LEARNING_RATE = 1e-3
AGREEMENT_RTOL = FLOAT32_TOL  # the ladder's float32 tolerance (jaxseq.gradcheck)
TORCH_SDPA = False  # written-out attention: as fast as SDPA at T=43 here, and the course's code


def staged_logits(module, ids, pad_mask):
    x = module.feedforward_layer(module.multi_head_attention(module.embed(ids), pad_mask))
    return module.final_dense(x[:, 0, :])[:, 0]


def make_batch(N: int, T: int, V: int, seed: int = 0):
    """ids (N, T) int32 with [CLS] (id 2) first, real tokens then padding (id 0); the pad mask
    (N, T) bool; labels (N,) float32 in {0, 1}."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min(4, T), T + 1, N)
    mask = np.arange(T)[None] < lengths[:, None]
    ids = np.where(mask, rng.integers(3, V, (N, T)), 0).astype(np.int32)
    ids[:, 0] = 2
    labels = rng.integers(0, 2, N).astype(np.float32)
    return ids, mask, labels


def make_model(quick: bool):
    from jaxseq.models.transformer import ClassificationTransformer

    vocab, length = (QUICK["vocab"], QUICK["length"]) if quick else (VOCAB, LENGTH)
    sizes = QUICK["sizes"] if quick else {}
    return ClassificationTransformer(vocab_size=vocab, max_length=length, **sizes)


class Contender:
    """Timed callables of one contender and its outputs for the agreement check."""

    def __init__(self, fwd, step, logits, loss_and_grads):
        self.fwd, self.step = fwd, step  # () -> logits of the inference batch; () -> one train step
        self.logits = logits  # () -> logits (N,) of the inference batch, numpy
        self.loss_and_grads = loss_and_grads  # () -> {"loss", "grad/<path>"} at the train batch


def _flatten(tree, prefix="grad") -> dict:
    import jax

    return {prefix + "/" + "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def jax_contender(model, params, method, infer, train) -> Contender:
    import jax
    import jax.numpy as jnp
    import optax

    ids_i, mask_i = (jnp.asarray(a) for a in infer[:2])
    ids_t, mask_t, labels = (jnp.asarray(a) for a in train)
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(params)

    fwd = jax.jit(lambda p: model.apply({"params": p}, ids_i, mask_i, method=method))

    def loss(p):
        logits = model.apply({"params": p}, ids_t, mask_t, method=method)
        return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

    @jax.jit
    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    value_and_grad = jax.jit(jax.value_and_grad(loss))

    def loss_and_grads():
        value, grads = value_and_grad(params)
        return {"loss": np.asarray(value), **_flatten(jax.device_get(grads))}

    return Contender(lambda: jax.block_until_ready(fwd(params)),
                     lambda: jax.block_until_ready(step(params, opt_state)),
                     lambda: np.asarray(fwd(params)), loss_and_grads)


def torch_contender(params, max_length: int, infer, train) -> Contender:
    import torch
    import torch.nn.functional as F

    from torch_models import transformer_from_jax

    model = transformer_from_jax(params, NUM_HEADS, max_length, sdpa=TORCH_SDPA)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=True)
    ids_i, mask_i = torch.from_numpy(infer[0].astype(np.int64)), torch.from_numpy(infer[1])
    ids_t, mask_t = torch.from_numpy(train[0].astype(np.int64)), torch.from_numpy(train[1])
    labels = torch.from_numpy(train[2])

    def fwd():
        with torch.inference_mode():
            return model(ids_i, mask_i)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(ids_t, mask_t), labels)
        loss.backward()
        optimizer.step()
        return loss

    def loss_and_grads():
        fresh = transformer_from_jax(params, NUM_HEADS, max_length, sdpa=TORCH_SDPA)  # the timed model moves
        loss = F.binary_cross_entropy_with_logits(fresh(ids_t, mask_t), labels)
        loss.backward()
        return {"loss": np.asarray(loss.item(), np.float32), **_flatten(fresh.jax_params(grads=True))}

    return Contender(fwd, step, lambda: fwd().numpy(), loss_and_grads)


def make_contenders(quick: bool, seed: int = 0) -> dict[str, Contender]:
    import jax

    model = make_model(quick)
    q = QUICK if quick else dict(vocab=VOCAB, length=LENGTH, train_batch=TRAIN_BATCH, infer_batch=INFER_BATCH)
    infer = make_batch(q["infer_batch"], q["length"], q["vocab"], seed)
    train = make_batch(q["train_batch"], q["length"], q["vocab"], seed + 1)
    params = jax.device_get(model.init(jax.random.key(seed), infer[0][:1])["params"])
    return {
        "jaxseq": jax_contender(model, params, "logits", infer, train),
        "full-staged": jax_contender(model, params, staged_logits, infer, train),
        "torch": torch_contender(params, q["length"], infer, train),
    }


# The key bias adds the same amount to every score of a query, which softmax ignores: its true
# gradient is zero, so what each contender computes there is float32 noise, checked for size
# (against the largest gradient) instead of agreement.
ZERO_GRADIENTS = ("grad/k_proj/bias",)


def check_agreement(contenders: dict[str, Contender], rtol: float = AGREEMENT_RTOL,
                    reference: str = "jaxseq") -> dict:
    """Assert that every contender's logits (inference batch), loss and gradients (train batch)
    match the reference's to `rtol` of each array's scale (the zero gradients of
    `ZERO_GRADIENTS`: below `rtol` of the largest gradient); returns {contender: {array: error}}."""

    def outputs(c):
        out = {"logits": c.logits(), **c.loss_and_grads()}
        scale = max(float(np.max(np.abs(v))) for k, v in out.items() if k.startswith("grad/"))
        zeros = {k: float(np.max(np.abs(out.pop(k)))) / scale for k in ZERO_GRADIENTS}
        return out, zeros

    expected, ref_zeros = outputs(contenders[reference])
    errors = {}
    for name, c in contenders.items():
        if name == reference:
            continue
        actual, zeros = outputs(c)
        errs = assert_agree(name, actual, expected, rtol, reference)
        for key in ZERO_GRADIENTS:
            errs[key] = max(zeros[key], ref_zeros[key])
            if not errs[key] < rtol:
                raise AssertionError(f"{name}: {key} should be ~0, is {errs[key]:.2e} of the largest gradient")
        errors[name] = errs
    return errors


def run(quick: bool = False) -> list[dict]:
    """Train step at batch 64 and inference at batch 1024; `quick`: tiny sizes, few repetitions."""
    harness.setup()
    reps, warmup = harness.repetitions(quick)
    q = QUICK if quick else dict(vocab=VOCAB, length=LENGTH, train_batch=TRAIN_BATCH, infer_batch=INFER_BATCH)
    contenders = make_contenders(quick)
    errors = check_agreement(contenders)
    worst = max(max(e.values()) for e in errors.values())
    sizes = "H=16 heads=2x8 FFN=32" if quick else "H=128 heads=2x96 FFN=2048"
    notes = (f"jaxseq = [CLS]-only path, the others compute every row; all agree with jaxseq (logits, loss, "
             f"gradients; largest relative error {worst:.1e}); ratio > 1: jaxseq that much faster")
    results = harness.bench(
        "transformer classifier", [(name, c.step) for name, c in contenders.items()],
        variant="train step (fwd+bwd+adam)", shape=f"N={q['train_batch']} T={q['length']} V={q['vocab']} {sizes}",
        reps=reps, warmup=warmup, notes=notes)
    results += harness.bench(
        "transformer classifier", [(name, c.fwd) for name, c in contenders.items()],
        variant="fwd (inference)", shape=f"N={q['infer_batch']} T={q['length']} V={q['vocab']} {sizes}",
        reps=reps, warmup=warmup, notes=notes + f"; sentences/s = {q['infer_batch']} / median")
    return results


if __name__ == "__main__":
    harness.main(run, "transformer classifier", __doc__.splitlines()[0])
