"""What RNN, LSTM and GRU stacks differ in: the gate count, the states, and how one layer and
direction runs its `jaxseq.layers` function from PyTorch-layout weights.

A direction's weights arrive as PyTorch holds them (`TorchWeights`: weight_ih (G*H, D_in),
weight_hh (G*H, R), bias_ih, bias_hh (G*H,) or None (bias=False), weight_hr (P, H) or None;
R = P with a projection, else H) and are converted inside the call to jaxseq's layout:
Wx = weight_ih^T (D_in, G*H), Wh = weight_hh^T (R, G*H), and

- RNN:  b = bias_ih + bias_hh (both biases get the same gradient, as they should); the
        activation tanh or relu (`rnn_cell(nonlinearity)`);
- LSTM: the gate blocks reordered from PyTorch's i, f, g, o to jaxseq's i, f, o, g,
        b = bias_ih + bias_hh, and Wr = weight_hr^T (H, P) with a projection;
- GRU:  b = bias_ih, bh = bias_hh (bh sits inside r * (h Wh_n + bh_n); gate order r, z, n
        is PyTorch's already).

Without biases (bias=False) b (and the GRU's bh) are zeros, constants of the call.

The conversions are plain JAX ops, so `jax.grad` takes the gradients of the layer's
hand-written backward pass back to PyTorch's layout. `Cell.layout` is that conversion alone
(`CellWeights`) and `Cell.update` one step of the cell from its two matmuls' results, for a
loop that converts the weights once and runs steps itself (text generation).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxseq import layers
from jaxseq.layers.activations import NONLINEARITIES, check_nonlinearity, hidden_activation
from jaxseq.layers.gru import gru_cell_forward
from jaxseq.layers.lstm_fast import lstm_cell, project


class TorchWeights(NamedTuple):
    """One layer and direction's parameters in PyTorch's layout."""

    weight_ih: jax.Array  # (G*H, D_in)
    weight_hh: jax.Array  # (G*H, R)
    bias_ih: jax.Array | None = None  # (G*H,), None with bias=False
    bias_hh: jax.Array | None = None  # (G*H,), None with bias=False
    weight_hr: jax.Array | None = None  # (P, H), the LSTM's projection, or None

    def biases(self) -> tuple[jax.Array, jax.Array]:
        """(bias_ih, bias_hh), zeros (G*H,) for the ones not there."""
        zeros = jnp.zeros(self.weight_ih.shape[:1], self.weight_ih.dtype)
        return (zeros if self.bias_ih is None else self.bias_ih, zeros if self.bias_hh is None else self.bias_hh)


class CellWeights(NamedTuple):
    """One layer and direction's parameters in jaxseq's layout: the `jaxseq.layers` arguments."""

    Wx: jax.Array  # (D_in, G*H)
    Wh: jax.Array  # (R, G*H)
    b: jax.Array  # (G*H,) the input side's bias (RNN, LSTM: bias_ih + bias_hh; zeros with bias=False)
    bh: jax.Array | None = None  # (G*H,) the hidden side's bias (GRU), None where it is folded into b
    Wr: jax.Array | None = None  # (H, P) the LSTM's projection, or None


class Cell(NamedTuple):
    """A recurrent cell as a stack sees it.

    name: the PyTorch class name; gates: G, the number of H-wide blocks in the weights;
    state_names: the states one direction carries (("h",) or ("h", "c"));
    run(x, states, weights, lengths, reverse) -> (out (N, T, R), final states): one layer
      and direction over x (N, T, D_in) from initial states, h (N, R), c (N, H);
    layout(weights: TorchWeights) -> CellWeights: what `run` converts them to;
    update(xw, hw, states, weights: CellWeights) -> states: one step from xw = x_t Wx + b and
      hw = h_{t-1} Wh (+ bh), each (N, G*H), and the states before it; the math `run` loops
      over (with the LSTM's projection of h when weights.Wr is given);
    projects: whether the cell takes a projection (weight_hr, PyTorch's proj_size);
    run_lookup(tokens, embedding, states, weights) -> what `run` returns on x = embedding[tokens]
      ((N, T) ids into (V, D)), with x_t Wx + b looked up in `input_table` instead of computed
      per token (`jaxseq.layers.lstm_lookup`, `gru_lookup`); None where the cell has no such
      loop (the RNN);
    lookup_in_evaluation: whether a language model also looks up in its deterministic calls
      (evaluation), not only in training, where the lookup pays for both cells. Measured
      on the char model (N=64 T=128 E=128 H=512, 2 threads): the LSTM's evaluation forward
      195-200 ms looked up against 206-211 projecting, the GRU's 173-191 against 166-168 (its
      in-loop product x_t Wx is cheap; the gather, fused into the cell's elementwise kernel, is
      not); the training steps 1.04x (LSTM) and 1.08x (GRU).
    """

    name: str
    gates: int
    state_names: tuple[str, ...]
    run: Callable
    layout: Callable
    update: Callable
    projects: bool = False
    run_lookup: Callable | None = None
    lookup_in_evaluation: bool = True


def torch_lstm_gates_to_jaxseq(a, axis: int = 0):
    """PyTorch's LSTM gate blocks i, f, g, o along `axis` (4H) as jaxseq's i, f, o, g."""
    i, f, g, o = jnp.split(a, 4, axis=axis)
    return jnp.concatenate([i, f, o, g], axis=axis)


def _rnn_layout(w: TorchWeights) -> CellWeights:
    bias_ih, bias_hh = w.biases()
    return CellWeights(w.weight_ih.T, w.weight_hh.T, bias_ih + bias_hh)


def _lstm_layout(w: TorchWeights) -> CellWeights:
    Wx, Wh = torch_lstm_gates_to_jaxseq(w.weight_ih).T, torch_lstm_gates_to_jaxseq(w.weight_hh).T
    Wr = None if w.weight_hr is None else w.weight_hr.T
    bias_ih, bias_hh = w.biases()
    return CellWeights(Wx, Wh, torch_lstm_gates_to_jaxseq(bias_ih + bias_hh), Wr=Wr)


def _gru_layout(w: TorchWeights) -> CellWeights:
    b, bh = w.biases()
    return CellWeights(w.weight_ih.T, w.weight_hh.T, b, bh)


def _rnn_runner(nonlinearity: str):
    def run(x, states, w: TorchWeights, lengths, reverse):
        (h0,) = states
        c = _rnn_layout(w)
        h, h_n = layers.rnn(x, h0, c.Wx, c.Wh, c.b, lengths=lengths, reverse=reverse, return_state=True,
                            nonlinearity=nonlinearity)
        return h, (h_n,)

    return run


def _run_lstm(x, states, w: TorchWeights, lengths, reverse):
    h0, c0 = states
    c = _lstm_layout(w)
    h, h_n, c_n = layers.lstm(x, h0, c.Wx, c.Wh, c.b, c0=c0, Wr=c.Wr, lengths=lengths, reverse=reverse,
                              return_state=True)
    return h, (h_n, c_n)


def input_table(embedding, w: CellWeights):
    """Every token's x_t Wx + b: the (V, G*H) table of a layer reading rows of `embedding`
    (V, D); the hand-written affine layer, so gradients flow to the embedding, Wx and b."""
    return layers.temporal_affine(embedding[None], w.Wx, w.b)[0]


def _run_lstm_lookup(tokens, embedding, states, w: TorchWeights):
    h0, c0 = states
    c = _lstm_layout(w)
    h, h_n, c_n = layers.lstm_lookup(tokens, input_table(embedding, c), h0, c.Wh, c0=c0, Wr=c.Wr, return_state=True)
    return h, (h_n, c_n)


def _run_gru_lookup(tokens, embedding, states, w: TorchWeights):
    (h0,) = states
    c = _gru_layout(w)
    h, h_n = layers.gru_lookup(tokens, input_table(embedding, c), h0, c.Wh, c.bh, return_state=True)
    return h, (h_n,)


def _run_gru(x, states, w: TorchWeights, lengths, reverse):
    (h0,) = states
    c = _gru_layout(w)
    h, h_n = layers.gru(x, h0, c.Wx, c.Wh, c.b, c.bh, lengths=lengths, reverse=reverse, return_state=True)
    return h, (h_n,)


def _rnn_updater(nonlinearity: str):
    def update(xw, hw, states, w: CellWeights):
        return (hidden_activation(nonlinearity, xw + hw),)  # jaxseq.layers.rnn's step

    return update


def _update_lstm(xw, hw, states, w: CellWeights):
    next_m, next_c, *_ = lstm_cell(xw + hw, states[1])  # the cell `layers.lstm` runs
    return project(next_m, w.Wr), next_c


def _update_gru(xw, hw, states, w: CellWeights):
    return (gru_cell_forward(xw, hw, states[0])[0],)


def _compiled(run):
    """`run` compiled once per shape and direction: called outside `jit` (a plain `apply`,
    `init`), each call would otherwise trace and compile its loops again; inside `jit` the
    call is inlined into the caller's computation."""
    return jax.jit(run, static_argnums=4)


RNN_CELLS = {nonlinearity: Cell("RNN", 1, ("h",), _compiled(_rnn_runner(nonlinearity)), _rnn_layout,
                                _rnn_updater(nonlinearity))
             for nonlinearity in NONLINEARITIES}
RNN_CELL = RNN_CELLS["tanh"]
LSTM_CELL = Cell("LSTM", 4, ("h", "c"), _compiled(_run_lstm), _lstm_layout, _update_lstm, projects=True,
                 run_lookup=jax.jit(_run_lstm_lookup))
GRU_CELL = Cell("GRU", 3, ("h",), _compiled(_run_gru), _gru_layout, _update_gru,
                run_lookup=jax.jit(_run_gru_lookup), lookup_in_evaluation=False)


def rnn_cell(nonlinearity: str) -> Cell:
    """The RNN cell with PyTorch's `nonlinearity` ("tanh" or "relu"; anything else is a
    one-line ValueError naming it)."""
    return RNN_CELLS[check_nonlinearity(nonlinearity)]
