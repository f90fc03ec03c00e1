"""PyTorch twins of jaxseq's models, for the side-by-side benchmarks of issue 5 (cases 3 and 4).

Each twin computes what its jaxseq model computes, with the weights copied from the Flax
parameters (`captioning_from_jax`, `transformer_from_jax`), so the benchmarks can assert that both agree before timing.
They are written the way a PyTorch user would write them (nn.Linear, nn.Embedding,
nn.LSTM / nn.RNN, torch.optim.Adam), float32 on the CPU.

- `CaptioningRNN` (case 3): features -> h0 (Linear), word embedding (nn.Embedding),
  nn.LSTM or nn.RNN(tanh) (batch_first), Linear to the vocabulary, masked cross-entropy
  summed over time and divided by N (`jaxseq.models.CaptioningRNN.loss`).
- `ClassificationTransformer` (case 4): the course's full-sequence computation
  (`jaxseq.models.transformer`): embeddings, multi-head attention over every row with the
  pad mask on the keys, residual + LayerNorm, feed-forward + LayerNorm, then `final_dense` of
  the `[CLS]` row. Logits (N,); the loss is the mean sigmoid cross-entropy.
- `LanguageModel` (issue 22): PyTorch's `word_language_model` example's `RNNModel` (batch
  first), the twin of `jaxseq.models.LanguageModel` (`language_model_from_jax`), with the
  example's `repackage_hidden` as `detach_state`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# jaxseq's LSTM 4H axis is ordered i, f, o, g; PyTorch's i, f, g, o: blocks 0, 1, 3, 2.
_TORCH_BLOCKS = (0, 1, 3, 2)


def to_torch_gates(a: np.ndarray, H: int) -> np.ndarray:
    """Reorder the last axis (4H) between jaxseq's i, f, o, g and PyTorch's i, f, g, o
    (the permutation is its own inverse)."""
    return np.concatenate([a[..., k * H:(k + 1) * H] for k in _TORCH_BLOCKS], axis=-1)


def _t(a) -> torch.Tensor:
    """A float32 torch tensor owning a contiguous copy of `a`."""
    return torch.from_numpy(np.array(a, dtype=np.float32, copy=True, order="C"))


# ----------------------------------------------------------------------------- captioning


class CaptioningRNN(nn.Module):
    """The course's captioning model (jaxseq.models.CaptioningRNN) in PyTorch.

    The recurrent layer's second bias (`bias_hh_l0`, which jaxseq does not have) is frozen at
    zero: it takes no gradient and is not among `trainable_parameters()`.
    """

    def __init__(self, vocab_size: int, wordvec_dim: int, hidden_dim: int, input_dim: int,
                 cell_type: str = "rnn", null_idx: int = 0):
        super().__init__()
        if cell_type not in ("rnn", "lstm"):
            raise ValueError(f"cell_type must be 'rnn' or 'lstm', got {cell_type!r}")
        self.cell_type, self.null_idx, self.hidden_dim = cell_type, null_idx, hidden_dim
        self.proj = nn.Linear(input_dim, hidden_dim)
        self.embed = nn.Embedding(vocab_size, wordvec_dim)
        if cell_type == "lstm":
            self.rnn = nn.LSTM(wordvec_dim, hidden_dim, batch_first=True)
        else:
            self.rnn = nn.RNN(wordvec_dim, hidden_dim, nonlinearity="tanh", batch_first=True)
        self.vocab = nn.Linear(hidden_dim, vocab_size)
        with torch.no_grad():
            self.rnn.bias_hh_l0.zero_()
        self.rnn.bias_hh_l0.requires_grad_(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, features: torch.Tensor, captions_in: torch.Tensor) -> torch.Tensor:
        """features (N, D), captions_in (N, T) int64 -> scores (N, T, V)."""
        h0 = self.proj(features)[None]  # (1, N, H)
        x = self.embed(captions_in)
        state = (h0, torch.zeros_like(h0)) if self.cell_type == "lstm" else h0
        h, _ = self.rnn(x, state)
        return self.vocab(h)

    def loss(self, features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        """Masked softmax cross-entropy of captions[:, 1:] given captions[:, :-1], summed over
        time (padding excluded), divided by N."""
        scores = self(features, captions[:, :-1])
        targets = captions[:, 1:]
        total = F.cross_entropy(scores.reshape(-1, scores.shape[-1]), targets.reshape(-1),
                                ignore_index=self.null_idx, reduction="sum")
        return total / captions.shape[0]

    # names of jaxseq's parameters -> this module's, with the conversion from jaxseq's layout
    def _jax_layout(self) -> dict:
        H = self.hidden_dim
        gates = (lambda a: to_torch_gates(a, H)) if self.cell_type == "lstm" else (lambda a: a)
        return {
            "W_proj": (self.proj.weight, lambda a: a.T),
            "b_proj": (self.proj.bias, lambda a: a),
            "W_embed": (self.embed.weight, lambda a: a),
            "Wx": (self.rnn.weight_ih_l0, lambda a: gates(a).T),
            "Wh": (self.rnn.weight_hh_l0, lambda a: gates(a).T),
            "b": (self.rnn.bias_ih_l0, gates),
            "W_vocab": (self.vocab.weight, lambda a: a.T),
            "b_vocab": (self.vocab.bias, lambda a: a),
        }

    def load_jax_params(self, params: dict) -> "CaptioningRNN":
        """Copy jaxseq's parameters (W_proj, b_proj, W_embed, Wx, Wh, b, W_vocab, b_vocab)."""
        with torch.no_grad():
            for name, (tensor, convert) in self._jax_layout().items():
                tensor.copy_(_t(convert(np.asarray(params[name]))))
        return self

    def jax_params(self) -> dict[str, np.ndarray]:
        """This module's parameters in jaxseq's names and layout (the inverse of `load_jax_params`)."""
        return {name: np.ascontiguousarray(_from_torch(name, tensor.detach().numpy(), self))
                for name, (tensor, _) in self._jax_layout().items()}


def _from_torch(name: str, value: np.ndarray, model: CaptioningRNN) -> np.ndarray:
    """One PyTorch tensor's value in jaxseq's layout."""
    H = model.hidden_dim
    gates = (lambda a: to_torch_gates(a, H)) if model.cell_type == "lstm" else (lambda a: a)
    if name in ("W_proj", "W_vocab"):
        return value.T
    if name in ("Wx", "Wh"):
        return gates(value.T)
    if name == "b":
        return gates(value)
    return value


def captioning_from_jax(params: dict, cell_type: str, null_idx: int = 0) -> CaptioningRNN:
    """A `CaptioningRNN` with jaxseq's parameters (sizes read from them)."""
    D, H = np.shape(params["W_proj"])
    V, W = np.shape(params["W_embed"])
    model = CaptioningRNN(V, W, H, D, cell_type=cell_type, null_idx=null_idx)
    return model.load_jax_params(params)


# ----------------------------------------------------------------------------- transformer


class ClassificationTransformer(nn.Module):
    """The course's one-layer Transformer classifier, full-sequence (every row computed).

    Sizes as in jaxseq: hidden H, h heads of d_k (queries, keys) and d_v (values), FFN F.
    """

    def __init__(self, vocab_size: int, hidden_dim: int = 128, num_heads: int = 2,
                 dim_feedforward: int = 2048, dim_k: int = 96, dim_v: int = 96, max_length: int = 43,
                 sdpa: bool = False):
        super().__init__()
        self.num_heads, self.dim_k, self.dim_v, self.sdpa = num_heads, dim_k, dim_v, sdpa
        self.token_embeddings = nn.Embedding(vocab_size, hidden_dim)
        self.position_embeddings = nn.Embedding(max_length, hidden_dim)
        self.q_proj = nn.Linear(hidden_dim, num_heads * dim_k)
        self.k_proj = nn.Linear(hidden_dim, num_heads * dim_k)
        self.v_proj = nn.Linear(hidden_dim, num_heads * dim_v)
        self.attention_head_projection = nn.Linear(num_heads * dim_v, hidden_dim)
        self.norm_mh = nn.LayerNorm(hidden_dim, eps=1e-5)
        self.W1 = nn.Linear(hidden_dim, dim_feedforward)
        self.W2 = nn.Linear(dim_feedforward, hidden_dim)
        self.norm_ffn = nn.LayerNorm(hidden_dim, eps=1e-5)
        self.final_dense = nn.Linear(hidden_dim, 1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1])
        return self.token_embeddings(ids) + self.position_embeddings(positions)[None]

    def multi_head_attention(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        """LayerNorm(x + W_o [head_1 .. head_h]), head_j = softmax(Q_j K_j^T / sqrt(d_k)) V_j,
        padded keys (pad_mask False) excluded."""
        n, t, _ = x.shape
        h = self.num_heads
        q = self.q_proj(x).view(n, t, h, self.dim_k).transpose(1, 2)  # (N, h, T, d_k)
        k = self.k_proj(x).view(n, t, h, self.dim_k).transpose(1, 2)
        v = self.v_proj(x).view(n, t, h, self.dim_v).transpose(1, 2)
        keep = None if pad_mask is None else pad_mask[:, None, None, :]  # (N, 1, 1, T)
        if self.sdpa:
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.dim_k)  # (N, h, T, T)
            if keep is not None:
                scores = scores.masked_fill(~keep, float("-inf"))
            heads = torch.softmax(scores, dim=-1) @ v  # (N, h, T, d_v)
        heads = heads.transpose(1, 2).reshape(n, t, h * self.dim_v)
        return self.norm_mh(x + self.attention_head_projection(heads))

    def feedforward_layer(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_ffn(x + self.W2(F.relu(self.W1(x))))

    def forward(self, ids: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N,) of class 1: every row through the layer, then `final_dense` of [CLS]."""
        x = self.feedforward_layer(self.multi_head_attention(self.embed(ids), pad_mask))
        return self.final_dense(x[:, 0, :])[:, 0]

    def loss(self, ids, pad_mask, labels) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self(ids, pad_mask), labels)

    _DENSE = ("q_proj", "k_proj", "v_proj", "attention_head_projection", "W1", "W2", "final_dense")
    _NORMS = ("norm_mh", "norm_ffn")

    def load_jax_params(self, params: dict) -> "ClassificationTransformer":
        """Copy the Flax parameters by name (Dense kernel (in, out) -> Linear weight (out, in);
        Embed embedding; LayerNorm scale/bias -> weight/bias)."""
        with torch.no_grad():
            for name in ("token_embeddings", "position_embeddings"):
                getattr(self, name).weight.copy_(_t(params[name]["embedding"]))
            for name in self._DENSE:
                getattr(self, name).weight.copy_(_t(np.asarray(params[name]["kernel"]).T))
                getattr(self, name).bias.copy_(_t(params[name]["bias"]))
            for name in self._NORMS:
                getattr(self, name).weight.copy_(_t(params[name]["scale"]))
                getattr(self, name).bias.copy_(_t(params[name]["bias"]))
        return self

    def jax_params(self, grads: bool = False) -> dict:
        """This module's parameters (`grads`: their gradients) in Flax's names and layout
        (the inverse of `load_jax_params`)."""

        def f(p):
            t = p.grad if grads else p
            return np.zeros(tuple(p.shape), np.float32) if t is None else t.detach().numpy().copy()

        out = {name: {"embedding": f(getattr(self, name).weight)}
               for name in ("token_embeddings", "position_embeddings")}
        for name in self._DENSE:
            out[name] = {"kernel": f(getattr(self, name).weight).T.copy(), "bias": f(getattr(self, name).bias)}
        for name in self._NORMS:
            out[name] = {"scale": f(getattr(self, name).weight), "bias": f(getattr(self, name).bias)}
        return out


def transformer_from_jax(params: dict, num_heads: int, max_length: int, sdpa: bool = False
                         ) -> ClassificationTransformer:
    """A `ClassificationTransformer` with the Flax parameters (sizes read from them)."""
    V, H = np.shape(params["token_embeddings"]["embedding"])
    F_ = np.shape(params["W1"]["kernel"])[1]
    dim_k = np.shape(params["q_proj"]["kernel"])[1] // num_heads
    dim_v = np.shape(params["v_proj"]["kernel"])[1] // num_heads
    model = ClassificationTransformer(V, H, num_heads, F_, dim_k, dim_v, max_length, sdpa=sdpa)
    return model.load_jax_params(params)


# ----------------------------------------------------------------------------- language model


class LanguageModel(nn.Module):
    """PyTorch's `word_language_model` example's `RNNModel`, batch first: nn.Embedding
    (`encoder`), nn.LSTM / nn.GRU / nn.RNN(tanh) (`rnn`), nn.Linear (`decoder`, its weight
    the encoder's when tied), and the example's one dropout rate on the embedded tokens,
    between the layers and on the output (standard dropout). The twin of
    `jaxseq.models.LanguageModel` with input, hidden and output dropout all equal to
    `dropout`, standard (not locked), no embedding dropout and no weight drop.

    Shapes: tokens (N, T) int64 -> logits (N, T, V); state h (S, N, H), (h, c) for the LSTM.
    """

    CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

    def __init__(self, cell: str, vocab_size: int, embed_size: int, hidden_size: int, num_layers: int,
                 tie_weights: bool = False, dropout: float = 0.0):
        super().__init__()
        if cell not in self.CELLS:
            raise ValueError(f"cell must be one of {tuple(self.CELLS)}, got {cell!r}")
        if tie_weights and embed_size != hidden_size:
            raise ValueError(f"tie_weights needs embed_size == hidden_size, got {embed_size} and {hidden_size}")
        self.cell, self.num_layers, self.hidden_size = cell, num_layers, hidden_size
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, embed_size)
        between = dropout if num_layers > 1 else 0.0
        self.rnn = self.CELLS[cell](embed_size, hidden_size, num_layers, dropout=between, batch_first=True)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.encoder.weight

    def init_state(self, batch_size: int):
        """Zeros: h (S, N, H), or (h, c) for the LSTM."""
        h = torch.zeros(self.num_layers, batch_size, self.hidden_size)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h

    def forward(self, tokens: torch.Tensor, state):
        """tokens (N, T) int64, state -> (logits (N, T, V), state)."""
        x = self.drop(self.encoder(tokens))
        out, state = self.rnn(x, state)
        return self.decoder(self.drop(out)), state

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor, state):
        """(mean cross-entropy per token in nats, state) of one segment."""
        logits, state = self(tokens, state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)), state


def detach_state(state):
    """The example's `repackage_hidden`: the state without its graph (truncated BPTT)."""
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def check_twin_config(config: dict) -> float:
    """The twin's one dropout rate for jaxseq's LanguageModel `config` (its fields, as
    `language_model_config` or a recipe's model gives them); ValueError where the jaxseq model
    has a regulariser the example does not (locked dropout, embedding dropout, weight drop,
    different input / hidden / output rates)."""
    rates = {config.get(name, 0.0) for name in ("input_dropout", "hidden_dropout", "output_dropout")}
    if len(rates) > 1 or config.get("locked_dropout") or config.get("embedding_dropout") or config.get("weight_drop"):
        raise ValueError("the PyTorch twin has one standard dropout rate: equal input, hidden and output dropout, "
                         "no locked dropout, embedding dropout or weight drop")
    return rates.pop()


def language_model_from_jax(config: dict, state_dict: dict) -> LanguageModel:
    """The twin of jaxseq's `LanguageModel.from_config(config)` with its weights.

    config: `jaxseq.models.language_model_config(model)`; state_dict: PyTorch's names, as
    `jaxseq.models.lm_params_to_torch(model, variables)` returns them. ValueError where the
    twin cannot have the model's regularisers (`check_twin_config`).
    """
    dropout = check_twin_config(config)
    model = LanguageModel(config.get("cell", "lstm"), config["vocab_size"], config["embed_size"], config["hidden_size"],
                          config["num_layers"], config.get("tie_weights", False), dropout=dropout)
    model.load_state_dict({name: _t(value) for name, value in state_dict.items()})
    return model
