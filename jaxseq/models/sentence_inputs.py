"""What every sentence classifier in `jaxseq.models` shares: the check of its token inputs
and the padding convention (`[PAD]` = 0 after each sentence, `pad_mask` True at real tokens).

Shapes: N batch, T tokens.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def check_token_inputs(inputs: Array, pad_mask: Array | None, max_length: int) -> None:
    """ValueError/AssertionError unless `inputs` are (N, T) integer ids with T <= max_length
    and `pad_mask`, when given, is (N, T)."""
    chex.assert_rank(inputs, 2, custom_message="inputs must be (N, T) token ids")
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
        raise ValueError(f"inputs must be integer token ids, got dtype {inputs.dtype}")
    if inputs.shape[1] > max_length:
        raise ValueError(f"inputs have T={inputs.shape[1]} tokens but max_length is {max_length}")
    if pad_mask is not None:
        chex.assert_shape(pad_mask, inputs.shape, custom_message="pad_mask must match inputs (N, T)")


def lengths_from_padding(inputs: Array, pad_mask: Array | None, pad_id: int = 0) -> Array:
    """The count of real tokens per sentence, (N,) int32: of `pad_mask` (N, T) when given,
    else of `inputs != pad_id`. Padding must follow the sentence (as `Vocabulary.encode` writes it)."""
    valid = inputs != pad_id if pad_mask is None else pad_mask
    return jnp.sum(valid, axis=1, dtype=jnp.int32)
