"""Tests for jaxseq.theory: exact parity networks and exploding/vanishing gradient norms."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import theory
from jaxseq.layers import rnn

CELLS = {
    "rnn": (theory.parity_rnn_params, theory.rnn_parity),
    "lstm": (theory.parity_lstm_params, theory.lstm_parity),
}


def all_strings(T: int) -> np.ndarray:
    """Every bit string of length T, (2**T, T) int32."""
    return np.array(list(itertools.product([0, 1], repeat=T)), dtype=np.int32)


# ============================================================================= parity


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_parity_exhaustive_up_to_length_12(cell):
    """All 2**T strings for every T = 1..12 (8,190 strings), in one batch.

    Each string is padded to length 12 with random bits and read at its own length, so the
    batch is one compiled call; the padding must not matter (the networks are causal).
    """
    _, parity = CELLS[cell]
    rng = np.random.default_rng(12)
    rows, lengths, want = [], [], []
    for T in range(1, 13):
        bits = all_strings(T)
        pad = rng.integers(0, 2, size=(len(bits), 12 - T), dtype=np.int32)
        rows.append(np.concatenate([bits, pad], axis=1))
        lengths.append(np.full(len(bits), T))
        want.append(bits.sum(axis=1) % 2)
    got = np.asarray(parity(np.concatenate(rows), lengths=np.concatenate(lengths)))
    assert got.dtype == np.int32 and got.shape == (2**13 - 2,)
    np.testing.assert_array_equal(got, np.concatenate(want))
    # And unpadded, every string's final state, for a few lengths run at their own shape.
    for T in (2, 7, 12):
        bits = all_strings(T)
        np.testing.assert_array_equal(np.asarray(parity(bits)), bits.sum(axis=1) % 2, err_msg=f"{cell}, T={T}")


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_parity_1000_random_strings_up_to_length_200(cell):
    _, parity = CELLS[cell]
    rng = np.random.default_rng(20240611)
    lengths = rng.integers(1, 201, size=1000)
    lengths[:2] = [1, 200]
    bits = rng.integers(0, 2, size=(1000, 200)).astype(np.int32)
    # Ragged batch: bits past each length are padding that must not change the answer.
    got = np.asarray(parity(bits, lengths=lengths))
    want = np.array([bits[n, : lengths[n]].sum() % 2 for n in range(1000)])
    np.testing.assert_array_equal(got, want)
    # The same strings, each run alone at its own length (a few lengths, to bound compiles).
    for L in sorted(set(lengths[:5].tolist())):
        rows = np.flatnonzero(lengths == L)
        np.testing.assert_array_equal(np.asarray(parity(bits[rows, :L])), want[rows])


@pytest.mark.xla_defaults  # "to the last bit": XLA's own tanh rounding
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_parity_states_do_not_drift_over_200_steps(cell):
    """Every prefix of 1,000 strings: the state is re-normalized at every step (float32)."""
    make, _ = CELLS[cell]
    params = make()
    bits = np.random.default_rng(7).integers(0, 2, size=(1000, 200))
    states = np.asarray(theory.parity_hidden_states(bits, params, cell))  # (N, T+1, H)
    prefix = np.concatenate([np.zeros((1000, 1)), np.cumsum(bits, axis=1) % 2], axis=1)
    scores = np.asarray(theory.parity_readout(states, params))
    if cell == "rnn":
        # Saturated exactly: both units are +-1 to the last bit, and the read-out is exact.
        assert set(np.unique(states).tolist()) == {-1.0, 1.0}
        np.testing.assert_array_equal(scores, prefix)
    else:
        # One unit holding p * tanh(1): within 1e-8 of the ideal value at every step.
        np.testing.assert_allclose(states[..., 0], prefix * np.tanh(np.float32(1.0)), rtol=0, atol=1e-8)
        np.testing.assert_allclose(scores, prefix, rtol=0, atol=1e-7)
    # The error does not grow with t: the last 50 steps are no worse than the first 50.
    err = np.abs(scores - prefix)
    assert err[:, -50:].max() <= max(err[:, :50].max(), 1e-8)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_parity_float64_no_drift(cell, x64):
    """In float64 tanh/sigmoid(20) are not rounded to 1: exactness comes from re-normalization."""
    make, parity = CELLS[cell]
    params = make(dtype=jnp.float64)
    assert params.Wx.dtype == jnp.float64
    bits = np.random.default_rng(3).integers(0, 2, size=(64, 200))
    states = theory.parity_hidden_states(bits, params, cell)
    assert states.dtype == jnp.float64
    prefix = np.concatenate([np.zeros((64, 1)), np.cumsum(bits, axis=1) % 2], axis=1)
    np.testing.assert_allclose(np.asarray(theory.parity_readout(states, params)), prefix, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(parity(bits, params)), prefix[:, -1])


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_parity_length_one_and_empty(cell):
    _, parity = CELLS[cell]
    np.testing.assert_array_equal(np.asarray(parity(np.array([[0], [1]]))), [0, 1])
    np.testing.assert_array_equal(np.asarray(parity(np.array([[1]]))), [1])  # N = 1, T = 1
    # The empty string (T = 0, or length 0 in a ragged batch) reads h0: parity 0.
    np.testing.assert_array_equal(np.asarray(parity(np.zeros((2, 0), np.int32))), [0, 0])
    np.testing.assert_array_equal(np.asarray(parity(np.array([[1, 1], [1, 0]]), lengths=np.array([0, 1]))), [0, 1])


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_parity_accepts_bool_float_and_runs_under_jit(cell):
    _, parity = CELLS[cell]
    bits = all_strings(5)
    want = bits.sum(axis=1) % 2
    np.testing.assert_array_equal(np.asarray(parity(bits.astype(bool))), want)
    np.testing.assert_array_equal(np.asarray(parity(bits.astype(np.float32))), want)
    np.testing.assert_array_equal(np.asarray(jax.jit(parity)(bits)), want)


def test_parity_param_shapes():
    p = theory.parity_rnn_params()
    assert [a.shape for a in p] == [(2,), (1, 2), (2, 2), (2,), (2,), ()]
    q = theory.parity_lstm_params()
    assert [a.shape for a in q] == [(1,), (1, 4), (1, 4), (4,), (1,), ()]
    assert all(a.dtype == jnp.float32 for a in (*p, *q))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_parity_needs_saturation(cell):
    """With scale 1 the units are far from saturated and the constructions fail."""
    make, parity = CELLS[cell]
    bits = all_strings(10)
    wrong = np.mean(np.asarray(parity(bits, make(scale=1.0))) != bits.sum(axis=1) % 2)
    assert wrong > 0.2


def test_parity_bad_arguments():
    with pytest.raises(ValueError, match="only 0 and 1"):
        theory.rnn_parity(np.array([[0, 2, 1]]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        theory.lstm_parity(np.array([[0.5]]))
    with pytest.raises(ValueError, match=r"bits must have shape \(N, T\)"):
        theory.rnn_parity(np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="lengths must be in"):
        theory.rnn_parity(np.zeros((2, 3), np.int32), lengths=np.array([1, 4]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(N,\)"):
        theory.rnn_parity(np.zeros((2, 3), np.int32), lengths=np.array([1]))
    with pytest.raises(ValueError, match="lengths must be an integer"):
        theory.rnn_parity(np.zeros((2, 3), np.int32), lengths=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="scale"):
        theory.parity_rnn_params(scale=0)
    with pytest.raises(ValueError, match="scale"):
        theory.parity_lstm_params(scale=float("inf"))
    with pytest.raises(ValueError, match="cell"):
        theory.parity_hidden_states(np.zeros((1, 2)), theory.parity_rnn_params(), cell="gru")
    with pytest.raises(ValueError, match=r"Wx must have shape \(D, H\)"):
        # LSTM weights in the RNN: the layer names the mismatch.
        theory.rnn_parity(np.zeros((1, 2), np.int32), theory.parity_lstm_params())


# ============================================================================= gradients


def orthogonal(H: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(H, H)))
    return q * np.sign(np.diag(r))


def symmetric_with_radius(H: int, rho: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    eig = rng.uniform(-rho, rho, size=H)
    eig[0] = -rho  # the largest |eigenvalue| is rho, with a negative sign for good measure
    q = orthogonal(H, seed + 1)
    return (q * eig) @ q.T


RHOS = [0.5, 0.9, 1.1, 1.5]


@pytest.mark.parametrize("kind", ["orthogonal", "symmetric"])
@pytest.mark.parametrize("rho", RHOS)
def test_linear_norms_follow_rho_to_the_t(kind, rho):
    W = rho * orthogonal(8, 0) if kind == "orthogonal" else symmetric_with_radius(8, rho, 0)
    norms, radius = theory.gradient_norms(W.astype(np.float32), 100)
    assert norms.shape == (100,)
    assert radius == pytest.approx(rho, rel=1e-6)
    t = np.arange(1, 101)
    # W is normal, so ||(W^T)^t||_2 = rho^t exactly.
    np.testing.assert_allclose(np.asarray(norms), rho**t, rtol=1e-4)
    fit = theory.fit_log_slope(norms)
    assert fit.slope == pytest.approx(math.log(rho), rel=0.05)
    assert fit.slope == pytest.approx(math.log(rho), rel=1e-4)
    assert (fit.slope > 0) == (rho > 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rho", [0.8, 1.2])
def test_linear_nonnormal_slope_within_5_percent(rho, seed):
    """A generic (non-normal) W: ||W^t|| ~ C rho^t; the log-slope still gives log(rho)."""
    A = np.random.default_rng(seed).normal(size=(8, 8)) / np.sqrt(8)
    W = A * (rho / theory.spectral_radius(A))
    log_norms, radius = theory.gradient_log_norms(W.astype(np.float32), 200)
    assert radius == pytest.approx(rho, rel=1e-5)
    fit = theory.fit_log_slope(log_norms=log_norms, skip=20)
    assert fit.slope == pytest.approx(math.log(rho), rel=0.05)


def test_linear_matches_matrix_powers():
    W = np.random.default_rng(5).normal(size=(5, 5)) * 0.6
    norms = np.asarray(theory.gradient_norms(W.astype(np.float32), 8).norms)
    fro = np.asarray(theory.gradient_norms(W.astype(np.float32), 8, norm="frobenius").norms)
    for t in range(1, 9):
        P = np.linalg.matrix_power(W.T, t)
        assert norms[t - 1] == pytest.approx(np.linalg.norm(P, 2), rel=1e-4)
        assert fro[t - 1] == pytest.approx(np.linalg.norm(P, "fro"), rel=1e-4)


def test_long_runs_do_not_overflow():
    """rho^t overflows float32 at t ~ 128 for rho = 2; the log-norms stay exact."""
    W = (2.0 * orthogonal(4, 3)).astype(np.float32)
    log_norms, _ = theory.gradient_log_norms(W, 300)
    np.testing.assert_allclose(np.asarray(log_norms), np.arange(1, 301) * math.log(2.0), rtol=1e-5)
    assert theory.fit_log_slope(log_norms=log_norms).slope == pytest.approx(math.log(2.0), rel=1e-5)
    norms, _ = theory.gradient_norms((0.5 * orthogonal(4, 3)).astype(np.float32), 300)
    assert np.all(np.asarray(norms)[:100] > 0)


@pytest.mark.parametrize("norm", ["spectral", "frobenius"])
def test_tanh_jacobians_match_jacrev_through_the_rnn_layer(norm):
    """The chain rule agrees with jax.jacrev of jaxseq.layers.rnn (its hand-written backward)."""
    rng = np.random.default_rng(11)
    T, D, H = 6, 3, 4
    W = rng.normal(size=(H, H)).astype(np.float32) * 0.8
    Wx = rng.normal(size=(D, H)).astype(np.float32)
    b = rng.normal(size=(H,)).astype(np.float32) * 0.1
    x = rng.normal(size=(T, D)).astype(np.float32)
    h0 = rng.normal(size=(H,)).astype(np.float32) * 0.5
    norms = np.asarray(theory.gradient_norms(W, T, "tanh", h0=h0, x=x, Wx=Wx, b=b, norm=norm).norms)

    def states(h0_):
        return rnn(x[None], h0_[None], Wx, W, b)[0]  # (T, H)

    jac = np.asarray(jax.jit(jax.jacrev(states))(jnp.asarray(h0)))  # (T, H, H): d h_t[i] / d h0[j]
    want = [np.linalg.norm(jac[t], 2 if norm == "spectral" else "fro") for t in range(T)]
    np.testing.assert_allclose(norms, want, rtol=1e-4)


@pytest.mark.parametrize("rho", [0.5, 1.5])
def test_tanh_at_the_origin_is_the_linear_recurrence(rho):
    """h0 = 0 and no input: h stays 0, tanh'(0) = 1, so the norms equal the linear ones."""
    W = (rho * orthogonal(8, 4)).astype(np.float32)
    lin = np.asarray(theory.gradient_log_norms(W, 100).log_norms)
    tanh = np.asarray(theory.gradient_log_norms(W, 100, "tanh").log_norms)
    np.testing.assert_allclose(tanh, lin, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_tanh_vanishes_when_spectral_radius_below_one(rho):
    rng = np.random.default_rng(8)
    W = (rho * orthogonal(8, 6)).astype(np.float32)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    Wx = rng.normal(size=(3, 8)).astype(np.float32)
    log_norms, radius = theory.gradient_log_norms(W, 100, "tanh", h0=rng.normal(size=8), x=x, Wx=Wx)
    assert radius < 1
    log_norms = np.asarray(log_norms)
    assert np.all(log_norms <= np.arange(1, 101) * math.log(rho) + 1e-5)  # <= rho^t
    assert np.all(np.diff(log_norms) < 0)  # strictly decaying
    assert theory.fit_log_slope(log_norms=log_norms).slope <= math.log(rho)


@pytest.mark.parametrize("rho", [1.5, 3.0])
def test_tanh_saturation_bounds_growth(rho):
    """rho > 1: the linear recurrence explodes like rho^t; tanh never exceeds it, and
    saturation holds it far below (with a strong input it even vanishes)."""
    rng = np.random.default_rng(9)
    W = (rho * orthogonal(8, 7)).astype(np.float32)  # normal: ||W||_2 = rho
    lin = np.asarray(theory.gradient_log_norms(W, 100).log_norms)
    free = np.asarray(theory.gradient_log_norms(W, 100, "tanh", h0=rng.normal(size=8)).log_norms)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    Wx = (3.0 * rng.normal(size=(3, 8))).astype(np.float32)
    driven = np.asarray(theory.gradient_log_norms(W, 100, "tanh", h0=rng.normal(size=8), x=x, Wx=Wx).log_norms)
    for tanh in (free, driven):
        assert np.all(tanh <= lin + 1e-5)  # at most the linear case, at every t
    lin_slope = theory.fit_log_slope(log_norms=lin).slope
    assert lin_slope == pytest.approx(math.log(rho), rel=1e-4)
    assert theory.fit_log_slope(log_norms=free).slope < 0.5 * lin_slope
    assert theory.fit_log_slope(log_norms=driven).slope < 0  # saturated: gradients vanish


def test_zero_matrix_gives_zero_norms():
    norms, radius = theory.gradient_norms(np.zeros((3, 3), np.float32), 4)
    assert radius == 0.0
    np.testing.assert_array_equal(np.asarray(norms), np.zeros(4))
    with pytest.raises(ValueError, match="positive and finite"):
        theory.fit_log_slope(norms)


def test_gradient_bad_arguments():
    W = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="square"):
        theory.gradient_norms(np.ones((3, 2), np.float32), 5)
    with pytest.raises(ValueError, match="square"):
        theory.spectral_radius(np.ones(3))
    with pytest.raises(ValueError, match="T must be >= 1"):
        theory.gradient_norms(W, 0)
    with pytest.raises(ValueError, match="T must be an integer"):
        theory.gradient_norms(W, 2.5)
    with pytest.raises(ValueError, match="cell"):
        theory.gradient_norms(W, 3, cell="relu")
    with pytest.raises(ValueError, match="norm"):
        theory.gradient_norms(W, 3, norm="nuclear")
    with pytest.raises(ValueError, match=r"h0 must have shape \(H,\)"):
        theory.gradient_norms(W, 3, "tanh", h0=np.zeros(4))
    with pytest.raises(ValueError, match=r"x must have shape \(T, D\)"):
        theory.gradient_norms(W, 3, "tanh", x=np.zeros((4, 2)), Wx=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"Wx must have shape \(D, H\)"):
        theory.gradient_norms(W, 3, "tanh", x=np.zeros((3, 2)), Wx=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="together"):
        theory.gradient_norms(W, 3, "tanh", x=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="no input"):
        theory.gradient_norms(W, 3, "linear", x=np.zeros((3, 2)), Wx=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="exactly one"):
        theory.fit_log_slope()
    with pytest.raises(ValueError, match="at least 2 points"):
        theory.fit_log_slope(np.ones(3), skip=2)
