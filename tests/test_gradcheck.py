"""jaxseq.gradcheck: course semantics of the numerical helpers, check_layer, `jaxseq check`."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq import gradcheck
from jaxseq.cli import main


def test_rel_error_course_definition():
    assert gradcheck.rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert np.isclose(gradcheck.rel_error(np.array([1.0]), np.array([3.0])), 0.5)
    assert gradcheck.rel_error(np.zeros(3), np.full(3, 1e-12)) == pytest.approx(1e-4)  # 1e-8 floor
    with pytest.raises(ValueError, match="shapes differ"):
        gradcheck.rel_error(np.zeros(2), np.zeros(3))


def test_eval_numerical_gradient_of_known_functions():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    grad = gradcheck.eval_numerical_gradient(lambda v: np.sum(v**3), x)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(x, [[1.0, -2.0], [0.5, 3.0]])  # restored after perturbing
    df = np.array([[1.0, 0.0], [2.0, -1.0]])
    grad_array = gradcheck.eval_numerical_gradient_array(lambda v: np.sin(v), x, df)
    np.testing.assert_allclose(grad_array, np.cos(x) * df, rtol=1e-8)


def test_numerical_gradient_needs_writable_numpy():
    with pytest.raises(ValueError, match="writable NumPy array"):
        gradcheck.eval_numerical_gradient(lambda v: v.sum(), jnp.ones(3))


def test_check_layer_catches_a_wrong_backward():
    """A deliberately wrong backward must show large errors — the check can fail."""

    def forward(x, w):
        out = jnp.tanh(x @ w)
        return out, (x, w, out)

    def right_backward(dout, cache):
        x, w, out = cache
        da = dout * (1 - out**2)
        return da @ w.T, x.T @ da

    def wrong_backward(dout, cache):  # forgets tanh's derivative
        x, w, _ = cache
        return dout @ w.T, x.T @ dout

    rng = np.random.default_rng(0)
    inputs = dict(x=rng.standard_normal((3, 4)), w=rng.standard_normal((4, 2)))
    good = gradcheck.check_layer("toy", forward, right_backward, inputs, ["x", "w"])
    bad = gradcheck.check_layer("toy", forward, wrong_backward, inputs, ["x", "w"])
    assert max(r.hand_vs_autodiff for r in good) < 1e-12
    assert max(r.hand_vs_numerical for r in good) < 1e-7
    assert min(r.hand_vs_autodiff for r in bad) > 1e-3
    assert min(r.hand_vs_numerical for r in bad) > 1e-3
    with pytest.raises(ValueError, match="not among the inputs"):
        gradcheck.check_layer("toy", forward, right_backward, inputs, ["y"])


def test_builtin_checks_cover_every_layer_within_tolerance_and_jaxseq_check_prints_them(capsys, monkeypatch):
    """One run of the checks (the slow part) serves both: `jaxseq check` at its default seed
    prints the table and passes, and the results it printed cover every layer within the
    tolerances."""
    runs = []

    def recorded(seed=0):
        runs.append((seed, real(seed=seed)))
        return runs[-1][1]

    real = gradcheck.builtin_layer_checks
    monkeypatch.setattr(gradcheck, "builtin_layer_checks", recorded)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "hand vs jax.grad" in out and "temporal_softmax_loss" in out
    assert "all layers pass" in out
    [(seed, results)] = runs
    assert seed == 0
    assert {r.layer for r in results} == {
        "rnn_step", "rnn", "lstm_step", "lstm", "gru_step", "gru", "word_embedding", "temporal_affine",
        "temporal_softmax_loss", "temporal_affine_softmax_loss", "rnn+len+rev", "lstm+len+rev", "lstm_fast+len+rev",
        "gru+len+rev", "rnn_relu+len+rev", "lstm_proj+len+rev", "lstm_fast_proj+len+rev", "lstm_lookup+len+rev",
        "lstm_lookup_proj+len+rev", "gru_lookup+len+rev", "lstm_fast+rev",
    }
    assert max(r.hand_vs_autodiff for r in results) < gradcheck.AUTODIFF_TOL
    assert max(r.custom_vjp_vs_hand for r in results) < gradcheck.AUTODIFF_TOL
    assert max(r.hand_vs_numerical for r in results) < gradcheck.NUMERICAL_TOL
    assert gradcheck.format_results(results) in out


def test_fourth_order_difference_is_exact_to_round_off_where_the_two_point_one_is_not():
    """f(x) = sum(exp(x) * c) with entries of c spanning 1e-6..1: the fourth-order difference
    gets the smallest entry to ~2e-7 relative, the course's two-point one to ~4e-5."""
    c = np.array([1.0, 1e-3, 1e-6])
    x0 = np.array([0.3, -0.2, 0.1])
    exact = np.exp(x0) * c
    f = lambda x: float(np.sum(np.exp(x) * c) + 50.0)  # noqa: E731  (|f| large: round-off shows)
    fourth = gradcheck.fourth_order_numerical_gradient(f, x0.copy())
    two_point = gradcheck.eval_numerical_gradient(f, x0.copy())
    assert gradcheck.rel_error(fourth, exact) < 5e-7
    assert gradcheck.rel_error(two_point, exact) > 5e-6
    x = x0.copy()
    gradcheck.fourth_order_numerical_gradient(f, x)
    np.testing.assert_array_equal(x, x0)  # nudged in place and restored
    with pytest.raises(ValueError, match="writable NumPy array"):
        gradcheck.fourth_order_numerical_gradient(f, [0.0])
