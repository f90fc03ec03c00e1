"""AWD-LSTM's regularisers (Merity, Keskar and Socher 2017, "Regularizing and Optimizing LSTM
Language Models") as pure functions of a PRNG key, for `jaxseq.models.LanguageModel`.

Shapes: N streams, T steps, D features, V vocabulary, E embedding size. Every function is the
identity at rate 0 (the key is not used) and scales what it keeps by 1 / (1 - rate), so the
expected value of its output equals its input, as with standard dropout.

    sequence_dropout(key, x, rate, locked)   x (N, T, D): locked ("variational") dropout draws
                                             one mask (N, 1, D) per sequence and shares it over
                                             time; otherwise a mask per element (N, T, D)
    embedding_dropout(key, W, rate)          W (V, E): whole words: each row of the embedding
                                             matrix is zeroed with probability `rate`, so every
                                             occurrence of a dropped word reads a zero vector
    weight_drop(key, w, rate)                DropConnect on a weight matrix (the recurrent
                                             weight_hh): each entry zeroed with probability `rate`

Gradients flow through the masks by plain autodiff (a multiplication), so the layers that
read the masked arrays still run their hand-written backward passes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxseq.checks import check_rate

Array = jax.Array

__all__ = ["embedding_dropout", "sequence_dropout", "weight_drop"]


def _scaled_mask(key: Array, rate: float, shape: tuple, dtype) -> Array:
    """Bernoulli(1 - rate) of `shape`, as 0 or 1 / (1 - rate) in `dtype`."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / jnp.asarray(1.0 - rate, dtype)


def sequence_dropout(key: Array, x: Array, rate: float, locked: bool = True) -> Array:
    """Dropout of a batch of sequences, locked over time or per element.

    Inputs: key: a PRNG key; x (N, T, D); rate in [0, 1); locked: True draws one mask
      (N, 1, D) per sequence and applies it at every step (variational dropout), False
      draws an independent mask per element (N, T, D) (standard dropout).
    Returns: (N, T, D), x times the mask, kept entries scaled by 1 / (1 - rate).
    """
    check_rate("rate", rate, owner="sequence_dropout")
    if rate == 0:
        return x
    N, T, D = jnp.shape(x)
    return x * _scaled_mask(key, rate, (N, 1, D) if locked else (N, T, D), x.dtype)


def embedding_dropout(key: Array, W: Array, rate: float) -> Array:
    """Embedding dropout: whole rows (words) of the embedding matrix dropped.

    Inputs: key: a PRNG key; W (V, E) the embedding matrix; rate in [0, 1).
    Returns: (V, E), each row either 0 (probability `rate`) or W's row / (1 - rate). One mask
      per call: a word dropped is dropped at every position of the batch that reads it.
    """
    check_rate("rate", rate, owner="embedding_dropout")
    if rate == 0:
        return W
    return W * _scaled_mask(key, rate, (jnp.shape(W)[0], 1), W.dtype)


def weight_drop(key: Array, w: Array, rate: float) -> Array:
    """DropConnect of a weight matrix (AWD-LSTM's WeightDrop on weight_hh).

    Inputs: key: a PRNG key; w (R, C), e.g. weight_hh (G*H, H); rate in [0, 1).
    Returns: (R, C), each entry either 0 (probability `rate`) or w's entry / (1 - rate).
    """
    check_rate("rate", rate, owner="weight_drop")
    if rate == 0:
        return w
    return w * _scaled_mask(key, rate, jnp.shape(w), w.dtype)
