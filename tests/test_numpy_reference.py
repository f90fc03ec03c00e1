"""jaxseq.numpy_reference: its semantics stated plainly, its hand backward against jaxseq's
layers (float64), dtypes, and that it imports no JAX."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import layers as L
from jaxseq import numpy_reference as R
from jaxseq.gradcheck import AUTODIFF_TOL, random_sequence_inputs
from tests.helpers import FORWARD_TOL, reference_sequence, relative_error

CELLS = ("rnn", "lstm", "gru")


def reference(cell, inputs, **options):
    """(h, [h_n[, c_n]], cache) of the NumPy reference."""
    h, h_n, c_n, cache = reference_sequence(cell, inputs, **options)
    return h, [h_n] + ([] if c_n is None else [c_n]), cache


def jaxseq_layer(cell, inputs, **options):
    args = dict(inputs)
    keywords = {"c0": args.pop("c0")} if "c0" in args else {}
    return getattr(L, cell)(*args.values(), **keywords, return_state=True, **options)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("lengths", [None, (5, 0, 1, 3)])
@pytest.mark.parametrize("reverse", [False, True])
def test_backward_matches_the_layers_gradients(x64, cell, lengths, reverse):
    rng = np.random.default_rng(1)
    N, T, D, H = 4, 5, 3, 4
    inputs = random_sequence_inputs(cell, rng, N, T, D, H)
    lengths = None if lengths is None else np.array(lengths)
    h, states, cache = reference(cell, inputs, lengths=lengths, reverse=reverse)
    douts = [rng.standard_normal(np.shape(o)) for o in (h, *states)]
    state_grads = dict(zip(("dh_n", "dc_n"), douts[1:]))
    ours = R.LAYERS[cell][1](douts[0], cache, **state_grads)

    outs = jaxseq_layer(cell, inputs, lengths=lengths, reverse=reverse)
    for mine, theirs in zip((h, *states), outs):
        np.testing.assert_allclose(mine, theirs, rtol=FORWARD_TOL, atol=FORWARD_TOL)

    def loss(*values):
        out = jaxseq_layer(cell, dict(zip(inputs, values)), lengths=lengths, reverse=reverse)
        return sum(jnp.sum(o * d) for o, d in zip(out, douts))

    expected = jax.grad(loss, argnums=range(len(inputs)))(*inputs.values())
    assert set(ours) == {"d" + name for name in inputs}
    for name, grad in zip(inputs, expected):
        assert relative_error(ours["d" + name], grad) < AUTODIFF_TOL, name


@pytest.mark.parametrize("cell", CELLS)
def test_lengths_and_reverse_mean_what_the_docstring_says(cell):
    """Outputs past a length are 0, length 0 keeps the initial state, a sequence alone gives its
    row, and reverse is the forward layer on each sequence reversed within its length."""
    rng = np.random.default_rng(2)
    N, T, D, H = 3, 5, 2, 3
    inputs = random_sequence_inputs(cell, rng, N, T, D, H)
    lengths = np.array([0, 2, 5])
    h, states, _ = reference(cell, inputs, lengths=lengths)
    assert not np.any(h[0]) and not np.any(h[1, 2:])
    np.testing.assert_array_equal(states[0][0], inputs["h0"][0])
    for n, length in enumerate(lengths[1:], start=1):
        alone = {k: (v[n:n + 1, :length] if k == "x" else v[n:n + 1] if k in ("h0", "c0") else v)
                 for k, v in inputs.items()}
        h_alone, states_alone, _ = reference(cell, alone)
        np.testing.assert_allclose(h[n:n + 1, :length], h_alone, rtol=FORWARD_TOL, atol=FORWARD_TOL)
        for state, state_alone in zip(states, states_alone):
            np.testing.assert_allclose(state[n:n + 1], state_alone, rtol=FORWARD_TOL, atol=FORWARD_TOL)
    h_rev, states_rev, _ = reference(cell, inputs, lengths=lengths, reverse=True)
    flipped = {**inputs, "x": R.reverse_within_lengths(inputs["x"], lengths)}
    h_flip, states_flip, _ = reference(cell, flipped, lengths=lengths)
    np.testing.assert_allclose(h_rev, R.reverse_within_lengths(h_flip, lengths), rtol=FORWARD_TOL, atol=FORWARD_TOL)
    for a, b in zip(states_rev, states_flip):
        np.testing.assert_allclose(a, b, rtol=FORWARD_TOL, atol=FORWARD_TOL)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keeps_the_inputs_dtype(cell, dtype):
    inputs = random_sequence_inputs(cell, np.random.default_rng(3), 2, 3, 4, 5, dtype=dtype)
    h, states, cache = reference(cell, inputs, lengths=np.array([3, 1]))
    grads = R.LAYERS[cell][1](np.ones_like(h), cache)
    assert h.dtype == dtype and all(s.dtype == dtype for s in states)
    assert all(g.dtype == dtype for g in grads.values())


def test_imports_no_jax():
    code = "import sys, jaxseq.numpy_reference; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
