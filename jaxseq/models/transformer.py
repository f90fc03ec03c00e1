"""The course's single-layer Transformer sentence classifier, in Flax linen.

Shapes: N batch, T tokens (position 0 holds `[CLS]`), H = `hidden_dim`, h = `num_heads`,
d_q = d_k = `dim_k`, d_v = `dim_v`, F = `dim_feedforward`.

The forward pass is staged as the course staged it:

    x = embed(inputs)                    token + learned position embedding, (N, T, H)
    x = multi_head_attention(x)          LayerNorm(x + W_o [head_1 .. head_h]), (N, T, H)
                                         head_j = softmax(Q_j K_j^T / sqrt(d_k)) V_j
    x = feedforward_layer(x)             LayerNorm(x + W2 relu(W1 x)), (N, T, H)
    p = final_layer(x)                   sigmoid(final_dense(x[:, 0])), (N, 1)

A one-layer classifier reads only the `[CLS]` row after attention, so `logits` and
`__call__` compute queries, attention output and the feed-forward block for that row alone
(keys and values still for every token); the staged methods compute every row, and the two
agree (tests check it to 1e-6 in float32).

Parameter names are public (weights are ported by them): `token_embeddings`,
`position_embeddings`, `q_proj`, `k_proj`, `v_proj` (head j uses columns `j*d:(j+1)*d`),
`attention_head_projection`, `norm_mh`, `W1`, `W2`, `norm_ffn`, `final_dense`.
"""

from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxseq.checks import check_positive_int, check_rate
from jaxseq.models.sentence_inputs import check_token_inputs

Array = jax.Array


def _dense_2d(layer: nn.Dense, x: Array) -> Array:
    """Apply `layer` to the last axis of `x` as one 2-D matmul over all leading axes."""
    lead = x.shape[:-1]
    out = layer(x.reshape(-1, x.shape[-1]))
    return out.reshape(*lead, out.shape[-1])


class ClassificationTransformer(nn.Module):
    """One Transformer encoder layer and a sigmoid read-out of the `[CLS]` token.

    Fields:
      vocab_size: V, number of token ids (ids must lie in [0, V)).
      hidden_dim: H, embedding and model width; must be divisible by `num_heads`.
      num_heads: h, attention heads.
      dim_feedforward: F, width of the feed-forward hidden layer.
      dim_k, dim_q: per-head query/key size (must be equal); dim_v: per-head value size.
      max_length: longest input T the position embedding covers.
      dropout: rate applied to the embeddings, to each sub-layer's output before its
        residual sum and to the `[CLS]` vector before `final_dense`; active only with
        `deterministic=False` and a `dropout` rng.
      dtype: computation dtype (None: from the inputs/params); param_dtype: parameters'.

    `pad_mask` (N, T) bool is True at real tokens: padded keys get no attention, so outputs
    at real positions ignore whatever the pad positions hold. Without it the model computes
    exactly what the course's unmasked model did.
    """

    vocab_size: int
    hidden_dim: int = 128
    num_heads: int = 2
    dim_feedforward: int = 2048
    dim_k: int = 96
    dim_v: int = 96
    dim_q: int = 96
    max_length: int = 43
    dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        for name in ("vocab_size", "hidden_dim", "num_heads", "dim_feedforward", "dim_k", "dim_v",
                     "dim_q", "max_length"):
            check_positive_int(name, getattr(self, name), owner="ClassificationTransformer")
        if self.hidden_dim % self.num_heads != 0:
            raise ValueError(
                f"ClassificationTransformer: hidden_dim ({self.hidden_dim}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if self.dim_q != self.dim_k:
            raise ValueError(
                f"ClassificationTransformer: dim_q ({self.dim_q}) must equal dim_k ({self.dim_k}): "
                "queries and keys meet in a dot product"
            )
        check_rate("dropout", self.dropout, owner="ClassificationTransformer")
        super().__post_init__()

    def setup(self):
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.token_embeddings = nn.Embed(self.vocab_size, self.hidden_dim, **dense)
        self.position_embeddings = nn.Embed(self.max_length, self.hidden_dim, **dense)
        self.q_proj = nn.Dense(self.num_heads * self.dim_q, **dense)
        self.k_proj = nn.Dense(self.num_heads * self.dim_k, **dense)
        self.v_proj = nn.Dense(self.num_heads * self.dim_v, **dense)
        self.attention_head_projection = nn.Dense(self.hidden_dim, **dense)
        self.norm_mh = nn.LayerNorm(epsilon=1e-5, **dense)
        self.W1 = nn.Dense(self.dim_feedforward, **dense)
        self.W2 = nn.Dense(self.hidden_dim, **dense)
        self.norm_ffn = nn.LayerNorm(epsilon=1e-5, **dense)
        self.final_dense = nn.Dense(1, **dense)
        self.drop = nn.Dropout(self.dropout)

    # -- helpers -----------------------------------------------------------------------------

    def _dropout(self, x: Array, deterministic: bool) -> Array:
        if deterministic or self.dropout == 0.0 or not self.has_rng("dropout"):
            return x
        return self.drop(x, deterministic=False)

    def _check_inputs(self, inputs: Array, pad_mask: Array | None) -> None:
        check_token_inputs(inputs, pad_mask, self.max_length)

    def _attend(self, q: Array, k: Array, v: Array, pad_mask: Array | None) -> Array:
        """Scaled dot-product attention of every head.

        Inputs: q: (N, Tq, h, d_k); k: (N, T, h, d_k); v: (N, T, h, d_v);
          pad_mask: (N, T) bool or None.
        Returns: (N, Tq, h * d_v), heads concatenated in order.
        """
        n, tq = q.shape[:2]
        mask = None if pad_mask is None else pad_mask[:, None, None, :]
        width = max(self.dim_k, self.dim_v)
        # jax.nn.dot_product_attention wants one head size for q, k and v; zero columns change
        # neither the scores q.k nor the used part of the output.
        pad = lambda t: jnp.pad(t, ((0, 0), (0, 0), (0, 0), (0, width - t.shape[-1])))
        out = jax.nn.dot_product_attention(
            pad(q), pad(k), pad(v), mask=mask, scale=1.0 / float(self.dim_k) ** 0.5
        )
        return out[..., : self.dim_v].reshape(n, tq, self.num_heads * self.dim_v)

    def _keys_values(self, x: Array) -> tuple[Array, Array]:
        n, t, _ = x.shape
        k = _dense_2d(self.k_proj, x).reshape(n, t, self.num_heads, self.dim_k)
        v = _dense_2d(self.v_proj, x).reshape(n, t, self.num_heads, self.dim_v)
        return k, v

    def _attention_block(self, x_q: Array, x: Array, pad_mask: Array | None, deterministic: bool) -> Array:
        """LayerNorm(x_q + W_o attention(x_q -> x)). x_q: (N, Tq, H), x: (N, T, H) -> (N, Tq, H)."""
        n, tq, _ = x_q.shape
        q = _dense_2d(self.q_proj, x_q).reshape(n, tq, self.num_heads, self.dim_q)
        k, v = self._keys_values(x)
        heads = self._attend(q, k, v, pad_mask)
        out = self._dropout(_dense_2d(self.attention_head_projection, heads), deterministic)
        return self.norm_mh(x_q + out)

    # -- the course's stages -------------------------------------------------------------------

    def embed(self, inputs: Array, deterministic: bool = True) -> Array:
        """Token plus learned position embedding.

        Inputs: inputs: (N, T) int token ids, T <= max_length.
        Returns: (N, T, H).
        """
        self._check_inputs(inputs, None)
        positions = jnp.arange(inputs.shape[1])
        x = self.token_embeddings(inputs) + self.position_embeddings(positions)[None]
        return self._dropout(x, deterministic)

    def multi_head_attention(self, x: Array, pad_mask: Array | None = None, deterministic: bool = True) -> Array:
        """Multi-head self-attention with residual and LayerNorm (`norm_mh`), every row.

        Inputs: x: (N, T, H); pad_mask: (N, T) bool, True at real tokens, or None.
        Returns: (N, T, H).
        """
        chex.assert_rank(x, 3, custom_message="x must be (N, T, H)")
        if pad_mask is not None:
            chex.assert_shape(pad_mask, x.shape[:2], custom_message="pad_mask must be (N, T)")
        return self._attention_block(x, x, pad_mask, deterministic)

    def feedforward_layer(self, x: Array, deterministic: bool = True) -> Array:
        """LayerNorm(x + W2 relu(W1 x)) (`norm_ffn`).

        Inputs: x: (..., H). Returns: (..., H).
        """
        hidden = nn.relu(_dense_2d(self.W1, x))
        out = self._dropout(_dense_2d(self.W2, hidden), deterministic)
        return self.norm_ffn(x + out)

    def final_layer(self, x: Array, deterministic: bool = True) -> Array:
        """Probability of class 1 from the `[CLS]` position 0 (dropout, `final_dense`, sigmoid).

        Inputs: x: (N, T, H). Returns: (N, 1) in (0, 1).
        """
        chex.assert_rank(x, 3, custom_message="x must be (N, T, H)")
        return nn.sigmoid(self.final_dense(self._dropout(x[:, 0, :], deterministic)))

    # -- the fast [CLS]-only path --------------------------------------------------------------

    def logits(self, inputs: Array, pad_mask: Array | None = None, deterministic: bool = True) -> Array:
        """Pre-sigmoid scores, computing attention output and feed-forward for `[CLS]` only.

        Inputs: inputs: (N, T) int token ids; pad_mask: (N, T) bool or None.
        Returns: (N,).
        """
        self._check_inputs(inputs, pad_mask)
        x = self.embed(inputs, deterministic)
        cls = self._attention_block(x[:, :1, :], x, pad_mask, deterministic)[:, 0, :]  # (N, H)
        cls = self.feedforward_layer(cls, deterministic)
        return self.final_dense(self._dropout(cls, deterministic))[:, 0]

    def __call__(self, inputs: Array, pad_mask: Array | None = None, deterministic: bool = True) -> Array:
        """Probability that each sentence is acceptable (class 1).

        Inputs: inputs: (N, T) int token ids; pad_mask: (N, T) bool, True at real tokens.
        Returns: (N, 1) in (0, 1).
        """
        return nn.sigmoid(self.logits(inputs, pad_mask, deterministic))[:, None]


def model_config(model: ClassificationTransformer) -> dict[str, Any]:
    """The JSON-able constructor arguments of `model` (dtypes by name), for checkpoints."""
    config = {
        name: getattr(model, name)
        for name in ("vocab_size", "hidden_dim", "num_heads", "dim_feedforward", "dim_k", "dim_v",
                     "dim_q", "max_length", "dropout")
    }
    config["dtype"] = None if model.dtype is None else jnp.dtype(model.dtype).name
    config["param_dtype"] = jnp.dtype(model.param_dtype).name
    return config


def model_from_config(config: dict[str, Any]) -> ClassificationTransformer:
    """Rebuild a model from `model_config` output."""
    config = dict(config)
    for key in ("dtype", "param_dtype"):
        if config.get(key) is not None:
            config[key] = jnp.dtype(config[key])
    return ClassificationTransformer(**config)
