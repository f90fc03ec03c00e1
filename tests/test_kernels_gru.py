"""`jaxseq.kernels.gru`: the GRU's loops compiled for the CPU (`gru_cpu.cc`).

- The compiled forward and backward loops give the XLA loops' arrays (outputs, final state,
  the cache the backward reads, the gradients of both sides and of h0): float32 to 5e-6 and
  float64 to 1e-13 of each array's scale, both directions, with and without lengths (0 and T
  among them), over shapes that take every tail of the kernels (N not a multiple of a row
  tile, H not a multiple of the vector width, N = T = H = 1).
- Through the differentiable layers (`gru`, `gru_lookup`) the gradients on the compiled loops
  equal those on the XLA loops (float64, 1e-12), and the program really calls them. (Hand vs
  jax.grad vs numerical gradients through them: the built-in checks "gru+len+rev" and
  "gru_lookup+len+rev", test_gradcheck.py.)
- One thread or two: the same bits. vmap, shard_map and a GPU's program without a foreign call:
  test_kernels.py, for both cells.
- The plain `gru_forward` stays differentiable by autodiff (it keeps the XLA loop).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import kernels
from jaxseq import layers as L
from jaxseq.kernels import gru as K
from jaxseq.layers.gru import GRUCache, gru_recurrence, gru_recurrence_backward
from tests.helpers import scaled_error
from tests.kernel_checks import (assert_layer_gradients_match_the_xla_loops, assert_same_bits_on_one_and_two_threads,
                                 compiled_and_xla, layer_loss, some_lengths)


def gru_problem(N, T, H, dtype, seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape), dtype)

    return dict(xw=normal(T, N, 3 * H, scale=0.7), h0=normal(N, H, scale=0.5), Wh=normal(H, 3 * H, scale=1 / np.sqrt(H)),
                bh=normal(3 * H, scale=0.1), dh=normal(N, T, H), dh_n=normal(N, H))


def both_loops(p, reverse, lengths=None):
    """Every array the forward and backward loops produce, (compiled, XLA)."""

    def run(xw, h0, Wh, bh, dh, dh_n):
        T, N = xw.shape[:2]
        h, h_n, (h_tm, gates_tm, hw_n_tm) = gru_recurrence(lambda xw_t: xw_t, xw, h0, Wh, bh, lengths, reverse,
                                                             input_sides=lambda: xw)
        cache = GRUCache(jnp.zeros((N, T, 1), xw.dtype), h0, jnp.zeros((1, xw.shape[-1]), xw.dtype), Wh, h_tm,
                           gates_tm, hw_n_tm, lengths, reverse)
        dh0, dxw_tm, dhw_tm, _ = gru_recurrence_backward(dh, cache, dh_n)
        return dict(h=h, h_n=h_n, gates_tm=gates_tm, hw_n_tm=hw_n_tm, dh0=dh0, dxw_tm=dxw_tm, dhw_tm=dhw_tm)

    return compiled_and_xla(run, p)


SHAPES = [(1, 1, 1), (3, 2, 5), (11, 5, 17), (13, 9, 64), (20, 6, 200), (64, 4, 512)]


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("N,T,H", SHAPES)
def test_compiled_loops_equal_the_xla_loops_in_float32(N, T, H, reverse, with_lengths):
    lengths = some_lengths(N, T) if with_lengths else None
    compiled, xla = both_loops(gru_problem(N, T, H, jnp.float32), reverse, lengths)
    for name in xla:
        assert compiled[name].shape == xla[name].shape, name
        assert scaled_error(compiled[name], xla[name]) < 5e-6, name


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("N,T,H", SHAPES[:4])
def test_compiled_loops_equal_the_xla_loops_in_float64(x64, N, T, H, reverse, with_lengths):
    lengths = some_lengths(N, T, seed=1) if with_lengths else None
    compiled, xla = both_loops(gru_problem(N, T, H, jnp.float64), reverse, lengths)
    for name in xla:
        assert compiled[name].dtype == jnp.float64
        assert scaled_error(compiled[name], xla[name]) < 1e-13, name


def test_one_thread_or_two_give_the_same_bits(monkeypatch):
    p = gru_problem(13, 7, 130, jnp.float32)
    assert_same_bits_on_one_and_two_threads(monkeypatch, lambda: both_loops(p, False, some_lengths(13, 7))[0])


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_layer_gradients_on_the_compiled_loops_equal_the_xla_loops(x64, reverse, with_lengths):
    rng = np.random.default_rng(1)
    N, T, D, H, V = 5, 6, 4, 9, 11
    lengths = jnp.array([6, 0, 3, 1, 5]) if with_lengths else None
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh = 0.5 * rng.standard_normal((D, 3 * H)), 0.5 * rng.standard_normal((H, 3 * H))
    b, bh = rng.standard_normal(3 * H), rng.standard_normal(3 * H)
    tokens, table = rng.integers(0, V, (N, T)), rng.standard_normal((V, 3 * H))
    options = dict(lengths=lengths, reverse=reverse, return_state=True)
    cases = {
        "gru": (layer_loss(lambda x, h0, Wx, Wh, b, bh: L.gru(x, h0, Wx, Wh, b, bh, **options)), (x, h0, Wx, Wh, b, bh)),
        "gru_lookup": (layer_loss(lambda table, h0, Wh, bh: L.gru_lookup(tokens, table, h0, Wh, bh, **options)),
                       (table, h0, Wh, bh)),
    }
    assert_layer_gradients_match_the_xla_loops(cases, (K.FORWARD_TARGET, K.BACKWARD_TARGET))


def test_the_plain_forward_stays_differentiable_by_autodiff():
    """`gru_forward` (the ladder's autodiff rung) keeps the XLA loop: jax.grad of it works and
    its program has no foreign call."""
    x, h0 = jnp.ones((2, 3, 4)), jnp.zeros((2, 5))
    Wx, Wh, b, bh = jnp.full((4, 15), 0.1), jnp.full((5, 15), 0.1), jnp.zeros(15), jnp.zeros(15)
    grad = jax.jit(jax.grad(lambda Wh: jnp.sum(L.gru_forward(x, h0, Wx, Wh, b, bh)[0])))
    assert K.FORWARD_TARGET not in grad.lower(Wh).as_text()
    assert np.isfinite(np.asarray(grad(Wh))).all()


def test_where_the_compiled_loops_apply(monkeypatch):
    xw = jnp.zeros((3, 2, 9))
    assert K.applies(xw)
    assert not K.applies(xw.astype(jnp.bfloat16))
    assert not K.applies(jnp.zeros((0, 2, 9)))
    with kernels.xla_loops():
        assert not K.applies(xw)
    monkeypatch.setenv("JAXSEQ_KERNELS", "off")
    assert not K.applies(xw)

