"""Temporal affine layer: the same affine map applied at every time step.

    out[n, t] = x[n, t] w + b            x (N, T, D), w (D, M), b (M,) -> out (N, T, M)

Time steps are flattened into the batch, so forward and backward are single 2-D matmuls.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from jaxseq.layers._validation import as_float_array, common_float_dtype, expect_shape
from jaxseq.layers.varying import custom_vjp


class TemporalAffineCache(NamedTuple):
    """What `temporal_affine_backward` needs: the input and the weight."""

    x: jax.Array  # (N, T, D)
    w: jax.Array  # (D, M)


def validate_affine_args(x, w, b):
    """Checked x (N, T, D), w (D, M), b (M,) in one float dtype."""
    x = as_float_array("x", x, 3)
    w = as_float_array("w", w, 2)
    b = as_float_array("b", b, 1)
    expect_shape("w", w, (x.shape[2], None), "(D, M)")
    expect_shape("b", b, (w.shape[1],), "(M,)")
    dtype = common_float_dtype(x, w, b)
    return x.astype(dtype), w.astype(dtype), b.astype(dtype)


def _temporal_affine_forward(x, w, b):
    N, T, D = x.shape
    out = (x.reshape(N * T, D) @ w + b).reshape(N, T, w.shape[1])
    return out, TemporalAffineCache(x, w)


def temporal_affine_forward(x, w, b):
    """Affine map at every time step.

    Inputs: x (N, T, D), w (D, M), b (M,).
    Returns: (out (N, T, M), cache: TemporalAffineCache).
    """
    return _temporal_affine_forward(*validate_affine_args(x, w, b))


def temporal_affine_backward(dout, cache: TemporalAffineCache):
    """Backward of the temporal affine layer.

    Inputs: dout (N, T, M), the cache.
    Returns: (dx (N, T, D), dw (D, M), db (M,)).
    """
    N, T, D = cache.x.shape
    dout_2d = dout.reshape(N * T, -1)
    dx = (dout_2d @ cache.w.T).reshape(N, T, D)
    dw = cache.x.reshape(N * T, D).T @ dout_2d
    db = dout_2d.sum(axis=0)
    return dx, dw, db


@custom_vjp
def _temporal_affine(x, w, b):
    return _temporal_affine_forward(x, w, b)[0]


_temporal_affine.defvjp(_temporal_affine_forward, lambda cache, dout: temporal_affine_backward(dout, cache))


def temporal_affine(x, w, b):
    """Differentiable temporal affine map; `jax.grad` runs `temporal_affine_backward`.

    Inputs: x (N, T, D), w (D, M), b (M,).
    Returns: out (N, T, M).
    """
    return _temporal_affine(*validate_affine_args(x, w, b))
