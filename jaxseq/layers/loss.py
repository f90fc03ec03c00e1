"""Temporal softmax loss: masked cross-entropy summed over batch and time, divided by N.

    p[n, t] = softmax(x[n, t])                       computed stably with log-sum-exp
    loss    = -(1/N) sum_{n,t} mask[n, t] * log p[n, t, y[n, t]]
    dx[n, t] = dloss * mask[n, t] * (p[n, t] - onehot(y[n, t])) / N

Dividing by N (not by the number of unmasked tokens) is the course's convention: longer
captions weigh more. An empty batch (N = 0) has loss 0 and an empty gradient: the sum over
no sequences, divided by max(N, 1) rather than by zero.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxseq.layers._validation import as_float_array, as_int_array, expect_shape
from jaxseq.layers.varying import custom_vjp


class TemporalSoftmaxLossCache(NamedTuple):
    """What `temporal_softmax_loss_backward` needs: the softmax, the targets and the mask."""

    probs: jax.Array  # (N, T, V) softmax of the scores
    y: jax.Array  # (N, T) int targets
    mask: jax.Array  # (N, T) in the scores' dtype


def validate_targets(y, mask, scores_shape: tuple):
    """Checked y (N, T) int ids in [0, V) and mask (N, T) bool for scores of `scores_shape`
    (N, T, V)."""
    N, T, V = scores_shape
    y = as_int_array("y", y, 2, size=V, what="target id")
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise ValueError(f"mask must be a boolean array, got dtype {mask.dtype}")
    expect_shape("y", y, (N, T), "(N, T)")
    expect_shape("mask", mask, (N, T), "(N, T)")
    return y, mask


def _validate(x, y, mask):
    x = as_float_array("x", x, 3)
    return (x, *validate_targets(y, mask, x.shape))


def _temporal_softmax_loss_forward(x, y, mask):
    N = x.shape[0]
    log_probs = jax.nn.log_softmax(x, axis=-1)
    picked = jnp.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
    weights = mask.astype(x.dtype)
    loss = -jnp.sum(weights * picked) / max(N, 1)
    return loss, TemporalSoftmaxLossCache(jnp.exp(log_probs), y, weights)


def temporal_softmax_loss_forward(x, y, mask):
    """Masked softmax cross-entropy over a sequence.

    Inputs: x (N, T, V) scores, y (N, T) int targets in [0, V), mask (N, T) bool.
    Returns: (loss scalar, cache: TemporalSoftmaxLossCache).
    """
    return _temporal_softmax_loss_forward(*_validate(x, y, mask))


def temporal_softmax_loss_backward(dloss, cache: TemporalSoftmaxLossCache):
    """Backward of the loss with respect to the scores.

    Inputs: dloss scalar upstream gradient (1.0 for the loss itself), the cache.
    Returns: dx (N, T, V).
    """
    N, _, V = cache.probs.shape
    onehot = jax.nn.one_hot(cache.y, V, dtype=cache.probs.dtype)
    return (dloss / max(N, 1)) * cache.mask[..., None] * (cache.probs - onehot)


@custom_vjp
def _temporal_softmax_loss(x, y, mask):
    return _temporal_softmax_loss_forward(x, y, mask)[0]


# Targets and mask are not differentiable: None gives them zero cotangents.
_temporal_softmax_loss.defvjp(
    _temporal_softmax_loss_forward,
    lambda cache, dloss: (temporal_softmax_loss_backward(dloss, cache), None, None),
)


def temporal_softmax_loss(x, y, mask):
    """Differentiable masked temporal softmax loss; `jax.grad` runs its hand-written backward.

    Inputs: x (N, T, V) scores, y (N, T) int targets, mask (N, T) bool.
    Returns: loss, a scalar of x's dtype.
    """
    return _temporal_softmax_loss(*_validate(x, y, mask))
