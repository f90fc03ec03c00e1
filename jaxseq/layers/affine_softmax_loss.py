"""The decoder and the softmax loss as one layer: `temporal_affine` followed by
`temporal_softmax_loss`, with one backward pass over the scores instead of several.

    s[n, t]  = x[n, t] w + b                          x (N, T, D), w (D, V), b (V,) -> s (N, T, V)
    lse      = log sum_v exp(s[n, t, v])              (N, T), computed stably
    loss     = (1/N) sum_{n,t} mask[n, t] (lse[n, t] - s[n, t, y[n, t]])
    ds       = dloss mask (exp(s - lse) - onehot(y)) / N        one pass over (N*T, V)
    dx = ds w^T,  dw = x^T ds,  db = sum_{n,t} ds

The same value and gradients as `temporal_softmax_loss(temporal_affine(x, w, b), y, mask)`
(tested to 1e-9 in float64); only the passes over the (N*T, V) scores differ. The pair of
layers stores the softmax (one more write of the scores in the forward) and its backward's
score gradient was emitted twice by XLA:CPU, once for db and once for the two matmuls. Here
the forward keeps the scores and their log-sum-exp, and the backward makes ds once, as
(N*T, V) rows, and reads it in three matmuls only: db is `ones (1, N*T) @ ds`. For a
language model's word-level vocabulary (V = 10,000) those passes are most of a training step
after the matmuls themselves (benchmarks/results/lm_speed.md).

On the CPU, where `jaxseq.kernels.decoder_loss.applies` (one device, float32 or float64, by
default a vocabulary of at least 512 entries and rows of at most 400 values), one compiled
kernel computes the loss and, in the forward of a differentiated call, the gradients too,
without the (N*T, V) scores ever in XLA's memory; the backward then only scales them by dloss
(`TemporalAffineSoftmaxLossGradients`). The same values (tests/test_kernels_decoder.py);
`jaxseq.kernels.xla_loops()` or `JAXSEQ_KERNELS=off` keep the XLA version.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxseq.kernels import decoder_loss as K
from jaxseq.layers import affine, loss
from jaxseq.layers.varying import custom_vjp, match_varying, varying_axes


class TemporalAffineSoftmaxLossCache(NamedTuple):
    """What `temporal_affine_softmax_loss_backward` needs."""

    x: jax.Array  # (N, T, D)
    w: jax.Array  # (D, V)
    scores: jax.Array  # (N*T, V) s, rows n*T + t
    lse: jax.Array  # (N*T,) log-sum-exp of each row
    y: jax.Array  # (N*T,) int targets
    mask: jax.Array  # (N*T,) in the scores' dtype


class TemporalAffineSoftmaxLossGradients(NamedTuple):
    """The forward's cache where the compiled kernel runs (`jaxseq.kernels.decoder_loss`): the
    gradients of the loss itself (dloss = 1), which the backward scales."""

    dx: jax.Array  # (N, T, D)
    dw: jax.Array  # (D, V)
    db: jax.Array  # (V,)


def _validate(x, w, b, y, mask):
    x, w, b = affine.validate_affine_args(x, w, b)
    N, T, _ = x.shape
    y, mask = loss.validate_targets(y, mask, (N, T, w.shape[1]))
    return x, w, b, y, mask


def _temporal_affine_softmax_loss_forward(x, w, b, y, mask):
    N, T, D = x.shape
    scores = x.reshape(N * T, D) @ w + b
    lse = jax.nn.logsumexp(scores, axis=-1)
    rows_y = y.reshape(N * T)
    picked = jnp.take_along_axis(scores, rows_y[:, None], axis=-1)[:, 0]
    weights = mask.reshape(N * T).astype(x.dtype)
    value = jnp.sum(weights * (lse - picked)) / max(N, 1)
    return value, TemporalAffineSoftmaxLossCache(x, w, scores, lse, rows_y, weights)


def temporal_affine_softmax_loss_forward(x, w, b, y, mask):
    """Scores of every step and their masked softmax cross-entropy, in one layer.

    Inputs: x (N, T, D), w (D, V), b (V,), y (N, T) int targets in [0, V), mask (N, T) bool.
    Returns: (loss scalar, cache: TemporalAffineSoftmaxLossCache); loss as
      `temporal_softmax_loss` (summed over the unmasked tokens, divided by N).
    """
    return _temporal_affine_softmax_loss_forward(*_validate(x, w, b, y, mask))


def temporal_affine_softmax_loss_backward(dloss, cache: TemporalAffineSoftmaxLossCache):
    """Backward of the decoder and the loss (module docstring).

    Inputs: dloss scalar upstream gradient, the cache.
    Returns: (dx (N, T, D), dw (D, V), db (V,)).
    """
    N, T, D = cache.x.shape
    M, V = cache.scores.shape
    onehot = jax.nn.one_hot(cache.y, V, dtype=cache.scores.dtype)
    scale = (dloss / max(N, 1)) * cache.mask[:, None]
    dscores = scale * (jnp.exp(cache.scores - cache.lse[:, None]) - onehot)  # (N*T, V), made once
    dx = (dscores @ cache.w.T).reshape(N, T, D)
    dw = cache.x.reshape(M, D).T @ dscores
    db = (jnp.ones((1, M), dscores.dtype) @ dscores)[0]  # a matmul, as the other two readers of dscores
    return dx, dw, db


def _compiled(x, w) -> bool:
    """Whether the compiled kernel computes the layer (`jaxseq.kernels.decoder_loss.applies`)."""
    return K.applies(x.reshape(-1, x.shape[-1]), w.T)


def _kernel_arguments(x, w, b, y, mask):
    """The kernel's (rows (N*T, D), weight (V, D), b, y (N*T,), row weights mask / N)."""
    N, T, D = x.shape
    return x.reshape(N * T, D), w.T, b, y.reshape(N * T), mask.reshape(N * T).astype(x.dtype) / max(N, 1)


def _on_cpu_compiled(x, w, b, y, mask, kernel, xla):
    """kernel(...) on the CPU, xla(...) elsewhere, its outputs made varying as the inputs are
    (`jaxseq.layers.varying`)."""
    def compiled(*args):
        return match_varying(kernel(*args), varying_axes(*args[:3]))
    return lax.platform_dependent(x, w, b, y, mask, cpu=compiled, default=xla)


def _value(x, w, b, y, mask):
    if not _compiled(x, w):
        return _temporal_affine_softmax_loss_forward(x, w, b, y, mask)[0]
    return _on_cpu_compiled(x, w, b, y, mask, lambda *args: jnp.sum(K.losses(*_kernel_arguments(*args))),
                            lambda *args: _temporal_affine_softmax_loss_forward(*args)[0])


def _temporal_affine_softmax_loss_forward_rule(x, w, b, y, mask):
    if not _compiled(x, w):
        return _temporal_affine_softmax_loss_forward(x, w, b, y, mask)

    def kernel(x, w, b, y, mask):
        losses, dx, dw, db = K.losses_and_gradients(*_kernel_arguments(x, w, b, y, mask))
        return jnp.sum(losses), dx.reshape(x.shape), dw.T, db

    def xla(x, w, b, y, mask):
        value, cache = _temporal_affine_softmax_loss_forward(x, w, b, y, mask)
        return value, *temporal_affine_softmax_loss_backward(jnp.ones((), value.dtype), cache)

    value, dx, dw, db = _on_cpu_compiled(x, w, b, y, mask, kernel, xla)
    return value, TemporalAffineSoftmaxLossGradients(dx, dw, db)


def _temporal_affine_softmax_loss_backward_rule(cache, dloss):
    if isinstance(cache, TemporalAffineSoftmaxLossGradients):
        return dloss * cache.dx, dloss * cache.dw, dloss * cache.db, None, None
    return (*temporal_affine_softmax_loss_backward(dloss, cache), None, None)


@custom_vjp
def _temporal_affine_softmax_loss(x, w, b, y, mask):
    return _value(x, w, b, y, mask)


# Targets and mask are not differentiable: None gives them zero cotangents.
_temporal_affine_softmax_loss.defvjp(_temporal_affine_softmax_loss_forward_rule,
                                     _temporal_affine_softmax_loss_backward_rule)


def temporal_affine_softmax_loss(x, w, b, y, mask):
    """Differentiable `temporal_softmax_loss(temporal_affine(x, w, b), y, mask)`; `jax.grad`
    runs the hand-written `temporal_affine_softmax_loss_backward`.

    Inputs: x (N, T, D), w (D, V), b (V,), y (N, T) int targets, mask (N, T) bool.
    Returns: loss, a scalar of the common float dtype.
    """
    return _temporal_affine_softmax_loss(*_validate(x, w, b, y, mask))
