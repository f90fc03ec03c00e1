"""The course's image-captioning RNN as a Flax linen module, built on `jaxseq.layers`.

    h0     = features W_proj + b_proj                      (N, D) -> (N, H)
    x      = W_embed[captions_in]                          (N, T) -> (N, T, W)
    h      = rnn(x, h0, Wx, Wh, b)  or  lstm(...)          (N, T, H)
    scores = h W_vocab + b_vocab                           (N, T, V)
    loss   = temporal_softmax_loss(scores, captions_out, captions_out != null_idx)

Every function on that path is a `jax.custom_vjp` layer, so `jax.grad` of `loss` runs the
hand-written backward passes. Parameters sit at the top level of `params` under the
course's names (a public contract: weights are ported by them):

    W_proj (D, H), b_proj (H,), W_embed (V, W), Wx (W, G*H), Wh (H, G*H), b (G*H,),
    W_vocab (H, V), b_vocab (V,)          with G = 1 for "rnn" and 4 for "lstm" (i, f, o, g)

initialized as the course did: W_embed ~ N(0, 1)/100, W_proj ~ N(0, 1)/sqrt(D),
Wx ~ N(0, 1)/sqrt(W), Wh and W_vocab ~ N(0, 1)/sqrt(H), biases 0. D is inferred from the
features at `init`.

For decoding (`jaxseq.models.decoding`) the module also exposes one step at a time:
`decode_init(features) -> state` and `decode_step(words, state) -> (scores, state)`, where
`state` is `(h,)` for the RNN and `(h, c)` for the LSTM, each (N, H).
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from jaxseq import layers
from jaxseq.checks import check_positive_int

CELL_TYPES = {"rnn": 1, "lstm": 4}  # cell type -> number of H-wide blocks in Wx, Wh, b


def _normal(fan_in: int) -> nn.initializers.Initializer:
    return nn.initializers.normal(stddev=1.0 / fan_in**0.5)


def _expect_rank(name: str, array: jax.Array, meaning: str) -> None:
    """ValueError unless `array` has as many axes as `meaning` names, e.g. "(N, T)"."""
    rank = len([axis for axis in meaning.strip("()").split(",") if axis.strip()])
    try:
        chex.assert_rank(array, rank)
    except AssertionError:
        raise ValueError(f"{name} must have shape {meaning}, got {tuple(jnp.shape(array))}") from None


class CaptioningRNN(nn.Module):
    """Image features to word scores with a vanilla RNN or LSTM (the course's model).

    Fields: vocab_size V, wordvec_dim W, hidden_dim H, cell_type "rnn" or "lstm",
    null_idx (the padding id masked out of the loss), dtype (computation), param_dtype.
    """

    vocab_size: int
    wordvec_dim: int = 128
    hidden_dim: int = 128
    cell_type: str = "rnn"
    null_idx: int = 0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type must be one of {sorted(CELL_TYPES)}, got {self.cell_type!r}")
        for name in ("vocab_size", "wordvec_dim", "hidden_dim"):
            check_positive_int(name, getattr(self, name))
        if not 0 <= self.null_idx < self.vocab_size:
            raise ValueError(f"null_idx must be in [0, vocab_size={self.vocab_size}), got {self.null_idx}")
        super().__post_init__()

    def setup(self):
        V, W, H = self.vocab_size, self.wordvec_dim, self.hidden_dim
        G = CELL_TYPES[self.cell_type]
        zeros = nn.initializers.zeros
        self.W_embed = self.param("W_embed", nn.initializers.normal(stddev=0.01), (V, W), self.param_dtype)
        self.Wx = self.param("Wx", _normal(W), (W, G * H), self.param_dtype)
        self.Wh = self.param("Wh", _normal(H), (H, G * H), self.param_dtype)
        self.b = self.param("b", zeros, (G * H,), self.param_dtype)
        self.W_vocab = self.param("W_vocab", _normal(H), (H, V), self.param_dtype)
        self.b_vocab = self.param("b_vocab", zeros, (V,), self.param_dtype)

    @nn.compact
    def initial_hidden(self, features: jax.Array) -> jax.Array:
        """h0 = features W_proj + b_proj.  Inputs: features (N, D). Returns: h0 (N, H)."""
        _expect_rank("features", features, "(N, D)")
        D, H = features.shape[1], self.hidden_dim
        if D < 1:  # W_proj's initializer divides by sqrt(D)
            raise ValueError(f"features must have shape (N, D) with D >= 1, got {tuple(features.shape)}")
        W_proj = self.param("W_proj", _normal(D), (D, H), self.param_dtype)
        b_proj = self.param("b_proj", nn.initializers.zeros, (H,), self.param_dtype)
        features, W_proj, b_proj = promote_dtype(features, W_proj, b_proj, dtype=self.dtype)
        return features @ W_proj + b_proj

    def _weights(self):
        return promote_dtype(self.W_embed, self.Wx, self.Wh, self.b, self.W_vocab, self.b_vocab,
                             dtype=self.dtype)

    def __call__(self, features: jax.Array, captions_in: jax.Array) -> jax.Array:
        """Teacher-forced word scores.

        Inputs: features (N, D); captions_in (N, T) int word ids in [0, V).
        Returns: scores (N, T, V), the unnormalized log-probabilities of the next word.
        """
        _expect_rank("captions_in", captions_in, "(N, T)")
        _expect_rank("features", features, "(N, D)")
        if features.shape[0] != captions_in.shape[0]:
            raise ValueError(f"features has N={features.shape[0]} rows but captions_in has {captions_in.shape[0]}")
        h0 = self.initial_hidden(features)
        W_embed, Wx, Wh, b, W_vocab, b_vocab = self._weights()
        x = layers.word_embedding(captions_in, W_embed)
        recurrence = layers.rnn if self.cell_type == "rnn" else layers.lstm
        h = recurrence(x, h0, Wx, Wh, b)
        return layers.temporal_affine(h, W_vocab, b_vocab)

    def loss(self, features: jax.Array, captions: jax.Array) -> jax.Array:
        """The course's captioning loss.

        Inputs: features (N, D); captions (N, T+1) int, `<START>` first.
        Returns: scalar, the masked softmax cross-entropy of predicting captions[:, 1:]
          from captions[:, :-1], summed over time and averaged over N (padding excluded).
        """
        _expect_rank("captions", captions, "(N, T+1)")
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        scores = self(features, captions_in)
        return layers.temporal_softmax_loss(scores, captions_out, captions_out != self.null_idx)

    def decode_init(self, features: jax.Array) -> tuple[jax.Array, ...]:
        """Decoder state before the first word.

        Inputs: features (N, D). Returns: (h0,) for the RNN, (h0, c0 = 0) for the LSTM.
        """
        h0 = self.initial_hidden(features)
        return (h0,) if self.cell_type == "rnn" else (h0, jnp.zeros_like(h0))

    def decode_step(self, words: jax.Array, state: tuple[jax.Array, ...]) -> tuple[jax.Array, tuple]:
        """One recurrent step: feed `words`, get the scores of the next word.

        Inputs: words (N,) int ids; state from `decode_init` or the previous step.
        Returns: (scores (N, V), next state).
        """
        _expect_rank("words", words, "(N,)")
        W_embed, Wx, Wh, b, W_vocab, b_vocab = self._weights()
        x = jnp.take(W_embed, words, axis=0)
        if self.cell_type == "rnn":
            state = (layers.rnn_step(x, state[0], Wx, Wh, b),)
        else:
            state = layers.lstm_step(x, state[0], state[1], Wx, Wh, b)
        return state[0] @ W_vocab + b_vocab, state

    def config(self) -> dict[str, Any]:
        """The fields as JSON-able values (for checkpoint metadata); inverse of `from_config`."""
        return {"vocab_size": self.vocab_size, "wordvec_dim": self.wordvec_dim,
                "hidden_dim": self.hidden_dim, "cell_type": self.cell_type,
                "null_idx": self.null_idx, "dtype": jnp.dtype(self.dtype).name,
                "param_dtype": jnp.dtype(self.param_dtype).name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "CaptioningRNN":
        """Rebuild a model from `config()`; unknown keys are an error."""
        fields = {"vocab_size", "wordvec_dim", "hidden_dim", "cell_type", "null_idx", "dtype", "param_dtype"}
        unknown = set(config) - fields
        if unknown:
            raise ValueError(f"unknown CaptioningRNN config keys {sorted(unknown)}; expected {sorted(fields)}")
        values = dict(config)
        for name in ("dtype", "param_dtype"):
            if name in values:
                values[name] = jnp.dtype(values[name]).type
        return cls(**values)
