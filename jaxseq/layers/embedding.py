"""Word embedding: a lookup table of word vectors, with a scatter-add backward.

    out[n, t] = W[x[n, t]]                x (N, T) int, W (V, D) -> out (N, T, D)
    dW[v] = sum over (n, t) with x[n, t] == v of dout[n, t]
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxseq.layers._validation import as_float_array, as_int_array
from jaxseq.layers.varying import custom_vjp


class WordEmbeddingCache(NamedTuple):
    """What `word_embedding_backward` needs: the word ids and the table."""

    x: jax.Array  # (N, T) int word ids
    W: jax.Array  # (V, D) the table (kept for its shape and dtype; it is a live parameter anyway)


def _validate(x, W):
    W = as_float_array("W", W, 2)
    x = as_int_array("x", x, 2, size=W.shape[0], what="word id")
    return x, W


def _word_embedding_forward(x, W):
    return jnp.take(W, x, axis=0), WordEmbeddingCache(x, W)


def word_embedding_forward(x, W):
    """Look up word vectors.

    Inputs: x (N, T) integer ids in [0, V), W (V, D).
    Returns: (out (N, T, D), cache: WordEmbeddingCache).
    """
    return _word_embedding_forward(*_validate(x, W))


def word_embedding_backward(dout, cache: WordEmbeddingCache):
    """Backward of the embedding: a scatter-add of dout into the rows that were read.

    Inputs: dout (N, T, D), the cache.
    Returns: dW (V, D).
    """
    D = cache.W.shape[1]
    return jnp.zeros_like(cache.W).at[cache.x.reshape(-1)].add(dout.reshape(-1, D))


@custom_vjp
def _word_embedding(x, W):
    return _word_embedding_forward(x, W)[0]


# Integer word ids have no gradient: None is their (zero) cotangent.
_word_embedding.defvjp(_word_embedding_forward, lambda cache, dout: (None, word_embedding_backward(dout, cache)))


def word_embedding(x, W):
    """Differentiable lookup `W[x]`; `jax.grad` runs the scatter-add `word_embedding_backward`.

    Inputs: x (N, T) integer ids in [0, V) (checked when concrete), W (V, D).
    Returns: out (N, T, D).
    """
    return _word_embedding(*_validate(x, W))
