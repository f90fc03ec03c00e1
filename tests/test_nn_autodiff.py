"""`jax.grad` through the `jaxseq.nn` modules (the layers' hand-written backward passes)
equals autodiff of a plain-JAX stack written here: `lax.scan`, PyTorch's equations on
PyTorch-layout weights, no custom_vjp. float64, relative error < 1e-9, with lengths
(0, 1 and T among them), bidirectional layers and initial states; also the relu RNN, the
LSTM with projections (h = (o * tanh(c)) W_hr^T) and stacks without biases.

The reference reads the backward direction with a reversed scan over all T steps whose state
only changes at t < length: it reads x[length-1], ..., x[0], independently of
`jaxseq.layers.sequence`'s in-length reordering.
"""

from __future__ import annotations

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxseq import nn as jnn
from jaxseq.nn.parameters import KINDS
from tests.helpers import AUTODIFF_TOL, relative_error

N, T, D, H = 4, 5, 3, 2


def _split(a, parts):
    return jnp.split(a, parts, axis=-1)


def rnn_cell(x_t, state, w, nonlinearity="tanh"):
    (h,) = state
    a = x_t @ w["weight_ih"].T + w.get("bias_ih", 0.0) + h @ w["weight_hh"].T + w.get("bias_hh", 0.0)
    return (jnp.tanh(a) if nonlinearity == "tanh" else jax.nn.relu(a),)


def lstm_cell(x_t, state, w):
    h, c = state
    i, f, g, o = _split(x_t @ w["weight_ih"].T + w.get("bias_ih", 0.0) + h @ w["weight_hh"].T + w.get("bias_hh", 0.0), 4)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h if "weight_hr" not in w else h @ w["weight_hr"].T), c


def gru_cell(x_t, state, w):
    (h,) = state
    xr, xz, xn = _split(x_t @ w["weight_ih"].T + w.get("bias_ih", 0.0), 3)
    hr, hz, hn = _split(h @ w["weight_hh"].T + w.get("bias_hh", 0.0), 3)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


CELLS = {"rnn": (jnn.RNN, rnn_cell), "lstm": (jnn.LSTM, lstm_cell), "gru": (jnn.GRU, gru_cell)}


def reference_direction(cell, x, lengths, states, w, reverse):
    """One direction: (out (N, T, H), final states), plain lax.scan, plain autodiff."""
    valid = (jnp.arange(T)[:, None] < lengths[None, :])[..., None]  # (T, N, 1)

    def step(state, inputs):
        x_t, valid_t = inputs
        new = tuple(jnp.where(valid_t, n, s) for n, s in zip(cell(x_t, state, w), state))
        return new, jnp.where(valid_t, new[0], 0.0)

    final, out_tm = lax.scan(step, states, (jnp.swapaxes(x, 0, 1), valid), reverse=reverse)
    return jnp.swapaxes(out_tm, 0, 1), final


def reference_stack(cell, params, x, lengths, states, num_layers, num_directions):
    """The whole stack: (out (N, T, num_directions*H), final states (S, N, H) each)."""
    finals, layer_input = [], x
    for layer in range(num_layers):
        outs = []
        for d in range(num_directions):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            w = {kind: params[kind + suffix] for kind in KINDS if kind + suffix in params}
            row = layer * num_directions + d
            out, final = reference_direction(cell, layer_input, lengths, tuple(s[row] for s in states), w, bool(d))
            outs.append(out)
            finals.append(final)
        layer_input = jnp.concatenate(outs, axis=-1)
    return layer_input, tuple(jnp.stack(rows) for rows in zip(*finals))


STACKS = [(cell, num_layers, bidirectional, with_lengths, {})
          for cell in sorted(CELLS)
          for num_layers, bidirectional, with_lengths in [(2, True, True), (1, False, False)]]
STACKS += [  # PyTorch's options: relu, projections (P = 1 < H = 2) without biases
    ("rnn", 2, True, True, {"nonlinearity": "relu"}),
    ("lstm", 1, True, True, {"proj_size": 1, "bias": False}),
]


@pytest.mark.parametrize("cell,num_layers,bidirectional,with_lengths,options", STACKS)
def test_module_gradients_equal_autodiff_of_a_plain_scan_stack(x64, cell, num_layers, bidirectional, with_lengths,
                                                               options):
    module_class, reference_cell = CELLS[cell]
    if "nonlinearity" in options:
        reference_cell = functools.partial(reference_cell, nonlinearity=options["nonlinearity"])
    module = module_class(hidden_size=H, num_layers=num_layers, bidirectional=bidirectional, param_dtype=jnp.float64,
                          **options)
    num_directions = 2 if bidirectional else 1
    S, R = num_layers * num_directions, options.get("proj_size") or H
    widths = (R, H) if cell == "lstm" else (R,)
    n_states = len(widths)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, T, D))
    states = tuple(rng.standard_normal((S, N, width)) for width in widths)
    lengths = np.array([T, 0, 1, 3]) if with_lengths else None
    dout = rng.standard_normal((N, T, num_directions * R))
    dstates = tuple(rng.standard_normal((S, N, width)) for width in widths)
    variables = module.init(jax.random.key(0), x)

    def module_loss(params, x, states):
        initial = states if n_states > 1 else states[0]
        out, final = module.apply({"params": params}, x, lengths=lengths, initial_state=initial)
        final = final if n_states > 1 else (final,)
        return jnp.sum(out * dout) + sum(jnp.sum(f * d) for f, d in zip(final, dstates))

    def reference_loss(params, x, states):
        full = jnp.full((N,), T) if lengths is None else jnp.asarray(lengths)
        out, final = reference_stack(reference_cell, params, x, full, states, num_layers, num_directions)
        return jnp.sum(out * dout) + sum(jnp.sum(f * d) for f, d in zip(final, dstates))

    args = (variables["params"], x, states)
    loss, ours = jax.jit(jax.value_and_grad(module_loss, argnums=(0, 1, 2)))(*args)
    reference, theirs = jax.jit(jax.value_and_grad(reference_loss, argnums=(0, 1, 2)))(*args)
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(ours))
    assert np.isclose(loss, reference, rtol=1e-12)
    errors = jax.tree_util.tree_map(relative_error, ours, theirs)
    worst = max(jax.tree_util.tree_leaves(errors))
    print(f"largest relative error {worst:.2e}")
    assert worst < AUTODIFF_TOL, errors
