"""A bidirectional LSTM/GRU sentence classifier in Flax linen, a drop-in for
`ClassificationTransformer` in `jaxseq.train.classifier` (same `logits` / `__call__`).

Shapes: N batch, T tokens (`[CLS]` first, `[PAD]` after the sentence), E = `embed_dim`,
H = `hidden_size`, L = `num_layers`, F = features of the pooling (2H per part).

    inputs' = drop_words(inputs)            (N, T): each word (not `[CLS]`, not padding) -> `unk_id`
                                            with probability `word_dropout` (training only)
    x = dropout'(token_embeddings(inputs'))  (N, T, E), rate `embed_dropout`
    out, h_n = encoder(x, lengths)          jaxseq.nn.LSTM / GRU, bidirectional, L layers:
                                            out (N, T, 2H), h_n (2L, N, H)
    f = pool(out, h_n, lengths)             "max": max over the valid steps of out, (N, 2H);
                                            "final": h_n of both directions of the last
                                            layer, (N, 2H); "max+final": both, (N, 4H)
    logit = final_dense(dropout(f))         (N,)

`lengths` is the count of real tokens per sentence (`pad_mask` when given, else
`inputs != pad_id`), so padded positions never change the output: the encoder stops at each
sentence's length (the backward direction starts at its last real token) and the max
ignores the steps after it. Parameter names: `token_embeddings`, `encoder` (PyTorch's names
inside, see `jaxseq.nn`), `final_dense`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseq.checks import check_positive_int, check_rate
from jaxseq.models.sentence_inputs import check_token_inputs, lengths_from_padding
from jaxseq.models.word_dropout import drop_words
from jaxseq.nn import GRU, LSTM

Array = jax.Array

CELLS = {"lstm": LSTM, "gru": GRU}
POOLINGS = ("max", "final", "max+final")
CONFIG_FIELDS = ("vocab_size", "cell", "embed_dim", "hidden_size", "num_layers", "dropout", "embed_dropout",
                 "word_dropout", "pooling", "max_length", "pad_id", "unk_id")


class RecurrentClassifier(nn.Module):
    """Embedding, a bidirectional `jaxseq.nn` LSTM or GRU stack, pooling and a linear logit.

    Fields:
      vocab_size: V, number of token ids; embed_dim: E; hidden_size: H per direction;
      cell: "lstm" or "gru"; num_layers: L;
      dropout: rate between the stacked layers (L > 1) and on the pooled features before
        `final_dense`; embed_dropout: rate on the embedded tokens; word_dropout: probability
        of replacing each word (the tokens after the first, `[CLS]`, inside the sentence's
        length) by `unk_id` before the embedding. All three act only with
        `deterministic=False` and a `dropout` rng.
      pooling: "max", "final" or "max+final" (see the module docstring).
      max_length: longest input T accepted (what the vocabulary encodes sentences to).
      pad_id: the `[PAD]` id, used for the lengths when no `pad_mask` is given.
      unk_id: the `[UNK]` id that word dropout writes.
      param_dtype: the parameters' dtype.

    >>> import jax, jax.numpy as jnp
    >>> m = RecurrentClassifier(vocab_size=10, embed_dim=4, hidden_size=3)
    >>> ids = jnp.array([[1, 5, 2, 0], [1, 3, 0, 0]])
    >>> m.apply(m.init(jax.random.key(0), ids), ids, method="logits").shape
    (2,)
    """

    vocab_size: int
    cell: str = "lstm"
    embed_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    embed_dropout: float = 0.0
    word_dropout: float = 0.0
    pooling: str = "max"
    max_length: int = 43
    pad_id: int = 0
    unk_id: int = 1
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        for name in ("vocab_size", "embed_dim", "hidden_size", "num_layers", "max_length"):
            check_positive_int(name, getattr(self, name), owner="RecurrentClassifier")
        if self.cell not in CELLS:
            raise ValueError(f"RecurrentClassifier: cell must be one of {tuple(CELLS)}, got {self.cell!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"RecurrentClassifier: pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("dropout", "embed_dropout", "word_dropout"):
            check_rate(name, getattr(self, name), owner="RecurrentClassifier")
        for name in ("pad_id", "unk_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"RecurrentClassifier: {name} must be an id in [0, vocab_size), got {value!r}")
        super().__post_init__()

    def setup(self):
        self.token_embeddings = nn.Embed(self.vocab_size, self.embed_dim, param_dtype=self.param_dtype)
        between = self.dropout if self.num_layers > 1 else 0.0  # the stack warns about a rate it cannot use
        self.encoder = CELLS[self.cell](hidden_size=self.hidden_size, num_layers=self.num_layers,
                                        bidirectional=True, dropout=between, param_dtype=self.param_dtype)
        self.final_dense = nn.Dense(1, param_dtype=self.param_dtype)
        self.drop = nn.Dropout(self.dropout)
        self.embed_drop = nn.Dropout(self.embed_dropout)

    @property
    def num_features(self) -> int:
        """F, the width of the pooled features: 2H, or 4H for "max+final"."""
        return (4 if self.pooling == "max+final" else 2) * self.hidden_size

    def features(self, inputs: Array, pad_mask: Array | None = None, deterministic: bool = True) -> Array:
        """The pooled sentence features.

        Inputs: inputs: (N, T) int token ids, T <= max_length; pad_mask: (N, T) bool, True
          at real tokens, or None (then the tokens other than `pad_id`).
        Returns: (N, F).
        """
        check_token_inputs(inputs, pad_mask, self.max_length)
        lengths = lengths_from_padding(inputs, pad_mask, self.pad_id)
        if not (deterministic or self.word_dropout == 0.0 or not self.has_rng("dropout")):
            position = jnp.arange(inputs.shape[1])[None, :]
            words = (position > 0) & (position < lengths[:, None])  # not [CLS], not padding
            inputs = drop_words(self.make_rng("dropout"), inputs, words, self.word_dropout, self.unk_id)
        x = self.token_embeddings(inputs)
        if not (deterministic or self.embed_dropout == 0.0 or not self.has_rng("dropout")):
            x = self.embed_drop(x, deterministic=False)
        out, final = self.encoder(x, lengths, deterministic=deterministic)
        h_n = final[0] if self.cell == "lstm" else final  # (2L, N, H)
        parts = []
        if "max" in self.pooling.split("+"):
            valid = jnp.arange(inputs.shape[1])[None, :, None] < lengths[:, None, None]  # (N, T, 1)
            pooled = jnp.max(jnp.where(valid, out, -jnp.inf), axis=1)
            parts.append(jnp.where(lengths[:, None] > 0, pooled, 0.0))  # an empty sentence pools to 0
        if "final" in self.pooling.split("+"):
            parts.append(jnp.concatenate([h_n[-2], h_n[-1]], axis=-1))  # last layer, forward and backward
        return jnp.concatenate(parts, axis=-1)

    def logits(self, inputs: Array, pad_mask: Array | None = None, deterministic: bool = True) -> Array:
        """Pre-sigmoid scores of class 1.

        Inputs: as `features`. Returns: (N,).
        """
        features = self.features(inputs, pad_mask, deterministic)
        if not (deterministic or self.dropout == 0.0 or not self.has_rng("dropout")):
            features = self.drop(features, deterministic=False)
        return self.final_dense(features)[:, 0]

    def __call__(self, inputs: Array, pad_mask: Array | None = None, deterministic: bool = True) -> Array:
        """Probability that each sentence is acceptable (class 1).

        Inputs: as `features`. Returns: (N, 1) in (0, 1).
        """
        return nn.sigmoid(self.logits(inputs, pad_mask, deterministic))[:, None]


def model_config(model: RecurrentClassifier) -> dict[str, Any]:
    """The JSON-able constructor arguments of `model`, with "architecture" (the cell) first."""
    config = {"architecture": model.cell, **{name: getattr(model, name) for name in CONFIG_FIELDS}}
    config["param_dtype"] = jnp.dtype(model.param_dtype).name
    return config


def model_from_config(config: dict[str, Any]) -> RecurrentClassifier:
    """Rebuild a model from `model_config` output."""
    config = dict(config)
    architecture = config.pop("architecture")
    if config.setdefault("cell", architecture) != architecture:
        raise ValueError(f"architecture {architecture!r} and cell {config['cell']!r} differ")
    if config.get("param_dtype") is not None:
        config["param_dtype"] = jnp.dtype(config["param_dtype"])
    return RecurrentClassifier(**config)
