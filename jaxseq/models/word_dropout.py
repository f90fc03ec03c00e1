"""Word dropout: during training, replace input tokens by the unknown-token id with
probability `rate`, so a classifier learns not to lean on any one (often rare) word and sees
`[UNK]` the way it meets the words missing from its vocabulary at test time.

Shapes: N batch, T tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxseq.checks import check_rate

Array = jax.Array


def drop_words(key: Array, inputs: Array, replaceable: Array, rate: float, unk_id: int) -> Array:
    """`inputs` with each `replaceable` token set to `unk_id` with probability `rate`.

    Inputs: key: a PRNG key; inputs: (N, T) int ids; replaceable: (N, T) bool, True where a
      token may be replaced (the caller keeps `[PAD]` and `[CLS]` out); rate in [0, 1).
    Returns: (N, T), the dtype of `inputs`.
    """
    check_rate("rate", rate, owner="drop_words")
    if rate == 0.0:
        return inputs
    drop = jax.random.bernoulli(key, rate, inputs.shape) & replaceable
    return jnp.where(drop, jnp.asarray(unk_id, inputs.dtype), inputs)
