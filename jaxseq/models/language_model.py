"""A recurrent language model (Flax linen): PyTorch's `word_language_model` example's model
with AWD-LSTM's regularisers, on jaxseq's hand-written layers.

Shapes: N streams, T steps, V vocabulary, E embedding size, H hidden size, S = num_layers.

    W_in   = embedding_dropout(encoder.weight)     (V, E), whole words dropped (training only)
    x      = dropout_i(W_in[tokens])               (N, T, E)   jaxseq.layers.word_embedding
    h_k    = layer_k(h_{k-1}), weight_hh_l{k} DropConnect'ed (weight_drop), dropout_h between
             layers; layer_k is the cell's jaxseq.layers loop (rnn / lstm / gru)
    out    = dropout_o(h_{S-1})                    (N, T, H)
    logits = out decoder.weight^T + decoder.bias   (N, T, V)   jaxseq.layers.temporal_affine
    lm_loss(logits, targets)                       mean cross-entropy per token (nats),
                                                   jaxseq.layers.temporal_softmax_loss

Where no input dropout acts and V <= N T (character models), the first LSTM layer (a GRU's in
training only) looks its input side up instead, x_t Wx + b = (W_in Wx + b)[tokens_t]
(`jaxseq.layers.lstm_lookup`, `gru_lookup`; the table by `temporal_affine`): the same values
and gradients, fewer operations.

With `tie_weights` the decoder's weight is the encoder's (V, E) matrix (E must equal H).
Every function on that path is a `jax.custom_vjp` layer, so `jax.grad` of the loss runs
hand-written backward passes end to end; the regularisers are multiplications by masks.

The state goes in and comes out: `logits, state = model.apply(variables, tokens, state)`,
state h_n (S, N, H) for RNN and GRU, (h_n, c_n) for the LSTM (the `jaxseq.nn` stacks' layout,
`model.initial_state(N)` gives zeros). Truncated backpropagation through time carries the
returned state into the next segment as an input: a jitted training step that takes the
state as an argument never differentiates through the segment that produced it.

Dropout (every rate 0 by default, all of them off when `deterministic=True`) draws from the
'dropout' rng: `model.apply(variables, tokens, state, deterministic=False,
rngs={"dropout": key})`, a new key per step gives new masks (weight drop included).
`locked_dropout=True` makes input, hidden and output dropout variational (one mask per
sequence, shared over the T steps: AWD-LSTM); False is standard dropout (PyTorch's example).

Parameters carry the PyTorch example's `RNNModel` names, so a state_dict ports by name
(`lm_params_from_torch`, `lm_params_to_torch`):

    encoder: {weight (V, E)}
    rnn:     {weight_ih_l{k} (G*H, E or H), weight_hh_l{k} (G*H, H), bias_ih_l{k}, bias_hh_l{k} (G*H,)}
    decoder: {weight (V, H), bias (V,)}          (tied: {bias (V,)} only)

initialized as that example does: encoder and decoder weights uniform(-0.1, 0.1), decoder
bias 0, the recurrent weights as PyTorch draws them.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxseq import layers
from jaxseq.checks import check_positive_int, check_rate
from jaxseq.layers._validation import as_int_array
from jaxseq.models.regularisers import embedding_dropout, sequence_dropout, weight_drop
from jaxseq.nn import GRU, LSTM, RNN, params_from_torch, params_to_torch
from jaxseq.nn.arguments import checked_input, initial_states
from jaxseq.nn.cells import GRU_CELL, LSTM_CELL, RNN_CELL, Cell
from jaxseq.nn.stack import RecurrentStack

Array = jax.Array

__all__ = ["CELLS", "LanguageModel", "language_model_config", "lm_loss", "lm_params_from_torch",
           "lm_params_to_torch", "token_losses"]

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
STACK_CELLS: dict[str, Cell] = {"lstm": LSTM_CELL, "gru": GRU_CELL, "rnn": RNN_CELL}
"""The cell each `cell` name runs (the RNN is tanh's, PyTorch's example's RNN_TANH)."""
CONFIG_FIELDS = ("vocab_size", "cell", "embed_size", "hidden_size", "num_layers", "tie_weights", "input_dropout",
                 "hidden_dropout", "output_dropout", "locked_dropout", "embedding_dropout", "weight_drop",
                 "param_dtype")
INIT_RANGE = 0.1  # PyTorch's example: encoder and decoder weights uniform(-0.1, 0.1)


class TokenInputs(NamedTuple):
    """A stack's input given as the tokens and the embedding they index, for a first layer
    that looks its input side up (`Cell.run_lookup`): tokens (N, T) int, embedding (V, E)."""

    tokens: Array
    embedding: Array


class _LayerByLayer(RecurrentStack):
    """A unidirectional `jaxseq.nn` stack (its parameters, names and cell) run one layer at a
    time, so that AWD-LSTM's regularisers can act between the layers and on weight_hh.

    Fields beyond the stack's: hidden_dropout (between layers), locked_dropout, weight_drop.
    Call: (x (N, T, D), lengths None, initial_state, deterministic) -> (out (N, T, H), final
    state), the stack's layout; with every rate 0 it computes what the plain stack computes.
    x may be `TokenInputs` instead, for a cell with `run_lookup`: layer 0 then reads
    embedding[tokens] through its lookup loop (the same values).
    """

    hidden_dropout: float = 0.0
    locked_dropout: bool = False
    weight_drop: float = 0.0

    @nn.compact
    def __call__(self, x, lengths=None, initial_state=None, *, deterministic: bool = True):
        if lengths is not None:  # the stack's signature, so a stack's caller passes the same arguments
            raise ValueError("lengths: a language model's segments are all full length; pass None")
        lookup = x if isinstance(x, TokenInputs) else None
        run_lookup = self.cell.run_lookup
        if lookup is not None:
            if run_lookup is None:
                raise ValueError(f"the {self.cell.name} cell has no lookup loop: pass the stack its input x (N, T, D)")
            N, D, dtype = lookup.tokens.shape[0], lookup.embedding.shape[1], lookup.embedding.dtype
        else:
            x = checked_input(x, self._input_size())
            N, D, dtype = x.shape[0], x.shape[-1], x.dtype
        dtype = jnp.result_type(dtype, self.param_dtype)
        initial = initial_states(initial_state, self.cell.state_names, (self.num_layers, N, self.hidden_size), dtype)
        layer_input, finals = x, []
        for layer in range(self.num_layers):
            weights = self._direction_weights(layer, 0, D if layer == 0 else layer_input.shape[-1])
            if self.weight_drop and not deterministic:
                dropped = weight_drop(self.make_rng("dropout"), weights.weight_hh, self.weight_drop)
                weights = weights._replace(weight_hh=dropped)
            states = tuple(state[layer] for state in initial)
            if layer == 0 and lookup is not None and run_lookup is not None:
                out, final = run_lookup(lookup.tokens, lookup.embedding, states, weights)
            else:
                out, final = self.cell.run(layer_input, states, weights, None, False)
            finals.append(final)
            if layer < self.num_layers - 1 and self.hidden_dropout and not deterministic:
                out = sequence_dropout(self.make_rng("dropout"), out, self.hidden_dropout, self.locked_dropout)
            layer_input = out
        stacked = tuple(jnp.stack(rows) for rows in zip(*finals))  # one (S, N, H) per state
        return layer_input, stacked[0] if len(stacked) == 1 else stacked


class _LSTMLayers(_LayerByLayer):
    cell = STACK_CELLS["lstm"]


class _GRULayers(_LayerByLayer):
    cell = STACK_CELLS["gru"]


class _RNNLayers(_LayerByLayer):
    cell = STACK_CELLS["rnn"]


_STACKS = {"lstm": _LSTMLayers, "gru": _GRULayers, "rnn": _RNNLayers}


def _uniform(shape: tuple, dtype):
    return lambda key: jax.random.uniform(key, shape, dtype, -INIT_RANGE, INIT_RANGE)


class LanguageModel(nn.Module):
    """Embedding, an RNN/LSTM/GRU stack and a decoder to next-token logits (module docstring).

    Fields:
      vocab_size: V; cell: "lstm", "gru" or "rnn"; embed_size: E; hidden_size: H;
      num_layers: S; tie_weights: the decoder reuses the encoder's (V, E) matrix (E == H);
      input_dropout: on the embedded tokens; hidden_dropout: between the layers (S > 1);
      output_dropout: on the last layer's output; locked_dropout: those three variational
        (one mask per sequence over time) instead of per element;
      embedding_dropout: whole words (rows of the encoder matrix) for the input lookup;
      weight_drop: DropConnect on every weight_hh_l{k};
      param_dtype: the parameters' dtype (float64 for the gradient checks).
    Rates are in [0, 1), 0 = off; all act only with `deterministic=False` and a 'dropout' rng.

    >>> import jax, jax.numpy as jnp
    >>> m = LanguageModel(vocab_size=10, embed_size=4, hidden_size=4, num_layers=2, tie_weights=True)
    >>> tokens = jnp.zeros((3, 5), jnp.int32)
    >>> variables = m.init(jax.random.key(0), tokens)
    >>> logits, (h_n, c_n) = m.apply(variables, tokens, m.initial_state(3))
    >>> logits.shape, h_n.shape, c_n.shape
    ((3, 5, 10), (2, 3, 4), (2, 3, 4))
    """

    vocab_size: int
    cell: str = "lstm"
    embed_size: int = 200
    hidden_size: int = 200
    num_layers: int = 2
    tie_weights: bool = False
    input_dropout: float = 0.0
    hidden_dropout: float = 0.0
    output_dropout: float = 0.0
    locked_dropout: bool = False
    embedding_dropout: float = 0.0
    weight_drop: float = 0.0
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        owner = "LanguageModel"
        for name in ("vocab_size", "embed_size", "hidden_size", "num_layers"):
            check_positive_int(name, getattr(self, name), owner=owner)
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {tuple(CELLS)}, got {self.cell!r}")
        for name in ("tie_weights", "locked_dropout"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{owner}: {name} must be a bool, got {getattr(self, name)!r}")
        for name in ("input_dropout", "hidden_dropout", "output_dropout", "embedding_dropout", "weight_drop"):
            check_rate(name, getattr(self, name), owner=owner)
        try:
            floating = jnp.issubdtype(jnp.dtype(self.param_dtype), jnp.floating)
        except TypeError:
            floating = False
        if not floating:
            raise ValueError(f"{owner}: param_dtype must be a floating dtype (e.g. float32), got {self.param_dtype!r}")
        if self.tie_weights and self.embed_size != self.hidden_size:
            raise ValueError(f"{owner}: tie_weights needs embed_size == hidden_size, got embed_size="
                             f"{self.embed_size} and hidden_size={self.hidden_size}")
        super().__post_init__()

    def setup(self):
        V, E, H = self.vocab_size, self.embed_size, self.hidden_size
        dtype = self.param_dtype
        self.encoder = self.param("encoder", lambda key: {"weight": _uniform((V, E), dtype)(key)})
        self.rnn = _recurrent_stack(self)
        if self.tie_weights:
            self.decoder = self.param("decoder", lambda key: {"bias": jnp.zeros((V,), dtype)})
        else:
            self.decoder = self.param("decoder", lambda key: {"weight": _uniform((V, H), dtype)(key),
                                                              "bias": jnp.zeros((V,), dtype)})

    def initial_state(self, batch_size: int):
        """The zero state for N = `batch_size` streams (needs no variables).

        Returns: h0 (S, N, H) for RNN and GRU, (h0, c0) each (S, N, H) for the LSTM, in
          `param_dtype`.
        """
        check_positive_int("batch_size", batch_size, owner="LanguageModel.initial_state")
        zeros = jnp.zeros((self.num_layers, batch_size, self.hidden_size), self.param_dtype)
        return (zeros, zeros) if self.cell == "lstm" else zeros

    def _dropout(self, x: Array, rate: float, deterministic: bool) -> Array:
        if deterministic or rate == 0:
            return x
        return sequence_dropout(self.make_rng("dropout"), x, rate, self.locked_dropout)

    def _check_rngs(self, deterministic: bool) -> None:
        rates = (self.input_dropout, self.hidden_dropout, self.output_dropout, self.embedding_dropout, self.weight_drop)
        if not deterministic and any(rates) and not self.has_rng("dropout"):
            raise ValueError("LanguageModel: deterministic=False needs a 'dropout' rng: "
                             "apply(variables, tokens, state, deterministic=False, rngs={'dropout': key})")

    def __call__(self, tokens: Array, state=None, *, deterministic: bool = True):
        """Next-token logits of every position, and the state after the last one.

        Inputs: tokens (N, T) int ids in [0, V) (checked when concrete); state: h0 (S, N, H),
          for the LSTM (h0, c0), or None (zeros); deterministic: False applies the model's
          dropouts (needs a 'dropout' rng).
        Returns: (logits (N, T, V), state after step T in the layout of `state`).
        """
        tokens = as_int_array("tokens", tokens, 2, size=self.vocab_size, what="token id")
        self._check_rngs(deterministic)
        out, state = self._features(tokens, state, deterministic)
        W_out, b_out = self._decoder_weights()
        return layers.temporal_affine(out, W_out, b_out), state

    def _features(self, tokens: Array, state, deterministic: bool):
        """What the decoder reads: (out (N, T, H) after the output dropout, state after step T)."""
        W = self.encoder["weight"]
        W_in = W
        if not deterministic and self.embedding_dropout:
            W_in = embedding_dropout(self.make_rng("dropout"), W, self.embedding_dropout)
        x: Array | TokenInputs
        if self._looks_up_first_layer(tokens, deterministic):
            x = TokenInputs(tokens, W_in)
        else:
            x = self._dropout(layers.word_embedding(tokens, W_in), self.input_dropout, deterministic)
        out, state = self.rnn(x, initial_state=state, deterministic=deterministic)
        return self._dropout(out, self.output_dropout, deterministic), state

    def _looks_up_first_layer(self, tokens: Array, deterministic: bool) -> bool:
        """Whether layer 0 looks its input side x_t Wx + b up in a (V, G H) table of the
        embedding (`jaxseq.layers.lstm_lookup`, `gru_lookup`) instead of projecting every
        embedded token: the same values, and fewer operations when V <= N T (V E G H
        multiply-adds for the table against N T E G H, and no (N T, E) input gradient). Only
        for a cell with that loop (the LSTM and the GRU; the GRU only in training, where it
        pays: `Cell.lookup_in_evaluation`), and not while input dropout acts between the
        embedding and layer 0."""
        N, T = tokens.shape
        cell = STACK_CELLS[self.cell]
        if cell.run_lookup is None or self.vocab_size > N * T:
            return False
        return cell.lookup_in_evaluation if deterministic else not self.input_dropout

    def _decoder_weights(self) -> tuple[Array, Array]:
        """The decoder as the layers take it: (w (H, V), b (V,)); tied: w is the encoder's, transposed."""
        W_out = self.encoder["weight"] if self.tie_weights else self.decoder["weight"]
        return W_out.T, self.decoder["bias"]

    def loss(self, tokens: Array, targets: Array, state=None, *, deterministic: bool = True):
        """The mean cross-entropy per token of one segment, and the state after it.

        Inputs: tokens (N, T) and targets (N, T) int ids (targets: the tokens shifted by one);
          state and deterministic as in `__call__`.
        Returns: (loss scalar in nats, state).
        """
        logits, state = self(tokens, state, deterministic=deterministic)
        return lm_loss(logits, targets), state

    def fast_loss(self, tokens: Array, targets: Array, state=None, *, deterministic: bool = True):
        """`loss` with the decoder and the loss as one layer, what a training step
        differentiates (`jaxseq.train.language_model.lm_training_loss`): the same value, state
        and gradients (tested), fewer passes over the (N*T, V) scores
        (`jaxseq.layers.temporal_affine_softmax_loss`; the word model's step 1.2-1.3x faster).

        Inputs and returns: as `loss`.
        """
        tokens = as_int_array("tokens", tokens, 2, size=self.vocab_size, what="token id")
        targets = _check_targets(targets, tokens.shape, self.vocab_size, "the tokens'")
        self._check_rngs(deterministic)
        out, state = self._features(tokens, state, deterministic)
        W_out, b_out = self._decoder_weights()
        total = layers.temporal_affine_softmax_loss(out, W_out, b_out, targets, jnp.ones(targets.shape, bool))
        return _per_token(total, targets.shape), state

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "LanguageModel":
        """Rebuild a model from `language_model_config` output; unknown or missing keys and bad
        values are one-line ValueErrors naming the field."""
        if not isinstance(config, Mapping):
            raise ValueError(f"LanguageModel config must be a mapping, got {type(config).__name__}")
        unknown = sorted(set(config) - set(CONFIG_FIELDS))
        if unknown:
            raise ValueError(f"LanguageModel config has unknown keys {unknown}; expected {list(CONFIG_FIELDS)}")
        if "vocab_size" not in config:
            raise ValueError("LanguageModel config is missing 'vocab_size'")
        values = dict(config)
        if "param_dtype" in values:
            name = values["param_dtype"]
            try:
                values["param_dtype"] = jnp.dtype(name).type
            except TypeError:
                raise ValueError(f"LanguageModel: param_dtype must be a floating dtype name, got {name!r}") from None
        return cls(**values)


def _recurrent_stack(model: LanguageModel) -> _LayerByLayer:
    """The model's recurrent stack (unbound): a `jaxseq.nn` stack of `model.cell`."""
    return _STACKS[model.cell](hidden_size=model.hidden_size, num_layers=model.num_layers,
                               hidden_dropout=model.hidden_dropout, locked_dropout=model.locked_dropout,
                               weight_drop=model.weight_drop, param_dtype=model.param_dtype, name="rnn")


def language_model_config(model: LanguageModel) -> dict[str, Any]:
    """The model's constructor arguments as JSON-able values (for checkpoint metadata);
    `LanguageModel.from_config` inverts it."""
    config = {name: getattr(model, name) for name in CONFIG_FIELDS}
    config["param_dtype"] = jnp.dtype(model.param_dtype).name
    return config


def _check_targets(targets: Array, shape: tuple, vocab_size: int, whose: str) -> Array:
    """targets as (N, T) int ids in [0, vocab_size) of `shape` (N, T), `whose` naming where
    that shape comes from in the error."""
    targets = as_int_array("targets", targets, 2, size=vocab_size, what="token id")
    if targets.shape != tuple(shape):
        raise ValueError(f"targets must have {whose} shape (N, T) = {tuple(shape)}, got {tuple(targets.shape)}")
    return targets


def _check_logits_and_targets(logits: Array, targets: Array) -> tuple[Array, Array]:
    logits = jnp.asarray(logits)
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape (N, T, V), got {tuple(logits.shape)}")
    return logits, _check_targets(targets, logits.shape[:2], logits.shape[2], "the logits'")


def _per_token(total: Array, shape: tuple) -> Array:
    """A loss summed over T steps and averaged over N streams (the layers' convention) as the
    mean per token of an (N, T) segment."""
    return total / max(shape[1], 1)


def lm_loss(logits: Array, targets: Array, mask: Array | None = None) -> Array:
    """Mean cross-entropy per token, in nats (log-perplexity): what a training step minimises.

    `jaxseq.layers.temporal_softmax_loss` (hand-written backward) divided by the number of
    tokens counted.
    Inputs: logits (N, T, V); targets (N, T) int ids in [0, V); mask (N, T) bool or None
      (every token counts).
    Returns: scalar, -sum(mask * log softmax(logits)[targets]) / max(sum(mask), 1).
    """
    logits, targets = _check_logits_and_targets(logits, targets)
    if mask is None:
        return _per_token(layers.temporal_softmax_loss(logits, targets, jnp.ones(targets.shape, bool)), targets.shape)
    mask = jnp.asarray(mask)
    count = jnp.maximum(jnp.sum(mask), 1).astype(logits.dtype)
    return layers.temporal_softmax_loss(logits, targets, mask) * targets.shape[0] / count


def token_losses(logits: Array, targets: Array) -> Array:
    """The cross-entropy of every token, in nats: for evaluation sums (loss, perplexity, bits
    per character over a whole split) and per-step comparisons.

    Inputs: logits (N, T, V); targets (N, T) int ids in [0, V).
    Returns: (N, T), -log softmax(logits)[n, t, targets[n, t]].
    """
    logits, targets = _check_logits_and_targets(logits, targets)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


# ----------------------------------------------------------------------------- PyTorch weights

def _split_state_dict(state_dict: Mapping) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        module, _, name = str(key).partition(".")
        if module not in ("encoder", "rnn", "decoder") or not name:
            raise ValueError(f"state_dict has an unexpected key {key!r}: expected encoder.*, rnn.* or decoder.*")
        groups.setdefault(module, {})[name] = value
    return groups


def _as_numpy(name: str, value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor: jaxseq never imports torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _expect(name: str, array: np.ndarray | None, shape: tuple) -> np.ndarray:
    if array is None:
        raise ValueError(f"state_dict is missing {name!r}, expected shape {shape}")
    if array.shape != shape:
        raise ValueError(f"state_dict {name!r} must have shape {shape}, got {tuple(array.shape)}")
    return array


def lm_params_from_torch(model: LanguageModel, state_dict: Mapping) -> dict:
    """The model's variables from the state_dict of PyTorch's `word_language_model`
    `RNNModel` (or its twin): encoder.weight (V, E), rnn.* (PyTorch's names),
    decoder.weight (V, H), decoder.bias (V,). A tied state_dict's decoder.weight must equal
    its encoder.weight.

    Returns: {"params": {"encoder": {...}, "rnn": {...}, "decoder": {...}}}.
    """
    groups = _split_state_dict(state_dict)
    V, E, H = model.vocab_size, model.embed_size, model.hidden_size
    encoder = _expect("encoder.weight", _as_numpy("encoder.weight", groups.get("encoder", {}).get("weight")), (V, E))
    decoder = {name: _as_numpy(f"decoder.{name}", value) for name, value in groups.get("decoder", {}).items()}
    weight = _expect("decoder.weight", decoder.pop("weight", None), (V, H))
    bias = _expect("decoder.bias", decoder.pop("bias", None), (V,))
    if decoder or len(groups.get("encoder", {})) != 1:
        extra = sorted(f"decoder.{k}" for k in decoder) + sorted(
            f"encoder.{k}" for k in groups.get("encoder", {}) if k != "weight")
        raise ValueError(f"state_dict has unexpected keys {extra}")
    try:
        rnn = params_from_torch(_recurrent_stack(model), groups.get("rnn", {}))["params"]
    except ValueError as error:  # the stack names its keys without the "rnn." of the state_dict
        raise ValueError(re.sub(r"'(\w+)'", r"'rnn.\1'", str(error), count=1)) from None
    params = {"encoder": {"weight": jnp.asarray(encoder)}, "rnn": rnn, "decoder": {"bias": jnp.asarray(bias)}}
    if model.tie_weights:
        if not np.array_equal(weight, encoder):
            raise ValueError("state_dict decoder.weight differs from encoder.weight, but tie_weights=True")
    else:
        params["decoder"]["weight"] = jnp.asarray(weight)
    return {"params": params}


def lm_params_to_torch(model: LanguageModel, variables: Mapping) -> dict[str, np.ndarray]:
    """A PyTorch `RNNModel` state_dict {name: np.ndarray} from the model's variables (or a
    gradient tree of them); tied models give decoder.weight = encoder.weight, as PyTorch's
    tied state_dict holds both."""
    params = variables["params"] if "params" in variables else variables
    encoder = np.array(params["encoder"]["weight"], copy=True)
    out = {"encoder.weight": encoder}
    rnn = params_to_torch(_recurrent_stack(model), params["rnn"])
    out.update({f"rnn.{name}": value for name, value in rnn.items()})
    decoder_weight = encoder if model.tie_weights else params["decoder"]["weight"]
    out["decoder.weight"] = np.array(decoder_weight, copy=True)
    out["decoder.bias"] = np.array(params["decoder"]["bias"], copy=True)
    return out

