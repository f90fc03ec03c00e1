"""The course's theory questions, made executable.

Two questions from the RNN/LSTM lectures, answered with code that the tests check:

1. **Parity.** Can a vanilla (tanh) RNN, or an LSTM, compute the parity (XOR) of a bit
   string read one bit per step, exactly, for every string? Yes: `parity_rnn_params` and
   `parity_lstm_params` build the weights by hand, `rnn_parity` / `lstm_parity` run them
   through `jaxseq.layers.rnn` / `jaxseq.layers.lstm` and read the parity off the final
   state. The docstrings derive the constructions; the tests run every string up to length
   12 and 1,000 random strings up to length 200, in float32.

2. **Exploding and vanishing gradients.** `gradient_norms` returns ||dh_t/dh_0|| for
   t = 1..T for the linear recurrence h_t = W^T h_{t-1} and for the tanh RNN, next to the
   spectral radius of W; `fit_log_slope` fits log ||dh_t/dh_0|| against t. For the linear
   recurrence the norms grow or decay like rho^t (rho the spectral radius); tanh's
   derivative 1 - h^2 <= 1 can only shrink them.

Shapes follow the layers: N batch, T time, D input, H hidden. Everything here is small and
runs on CPU in milliseconds; none of it is a hot path.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxseq.layers import lstm, rnn

__all__ = [
    "ParityParams",
    "parity_rnn_params",
    "parity_lstm_params",
    "rnn_parity",
    "lstm_parity",
    "parity_hidden_states",
    "parity_readout",
    "GradientNorms",
    "GradientLogNorms",
    "LogSlope",
    "spectral_radius",
    "gradient_norms",
    "gradient_log_norms",
    "fit_log_slope",
]

# ============================================================================= parity

#: Default saturation scale. Every pre-activation of the constructions below is at least
#: scale/2 = 20 away from 0; tanh(20) and sigmoid(20) are exactly 1 in float32 and within
#: 5e-9 of 1 in float64, so the states are re-normalized at every step.
DEFAULT_SCALE = 40.0

_TANH1 = math.tanh(1.0)  # the LSTM's h for a cell value of 1: o * tanh(c) with o = c = 1


class ParityParams(NamedTuple):
    """Hand-built weights of a parity network.

    h0: (H,) the initial state of every sequence (broadcast to (N, H));
    Wx: (D, G*H), Wh: (H, G*H), b: (G*H,) the layer's weights, D = 1, G = 1 (RNN) or 4 (LSTM);
    w_out: (H,), b_out: () the read-out: score = h_T . w_out + b_out is 1 for odd parity and
    0 for even parity (up to float rounding); the parity bit is score > 1/2.
    """

    h0: jax.Array
    Wx: jax.Array
    Wh: jax.Array
    b: jax.Array
    w_out: jax.Array
    b_out: jax.Array


def _check_scale(scale) -> float:
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    return scale


def _as_params(h0, Wx, Wh, b, w_out, b_out, dtype) -> ParityParams:
    return ParityParams(*(jnp.asarray(np.asarray(a, dtype=np.float64), dtype=dtype) for a in (h0, Wx, Wh, b, w_out, b_out)))


def parity_rnn_params(scale: float = DEFAULT_SCALE, dtype=jnp.float32) -> ParityParams:
    """Weights for which the tanh RNN `h_t = tanh(x_t Wx + h_{t-1} Wh + b)` tracks parity.

    Shapes: D = 1, H = 2: h0 (2,), Wx (1, 2), Wh (2, 2), b (2,), w_out (2,), b_out ().

    Why one unit is not enough. Write p_{t-1} for the parity of the first t-1 bits and x_t
    for the new bit; we want p_t = p_{t-1} XOR x_t. A step computes every unit of h_t as
    tanh of a *linear* function of (h_{t-1}, x_t). If a unit held p_t itself (p_{t-1} being
    readable from h_{t-1}), that unit would be a linear threshold of (p_{t-1}, x_t), and XOR
    is not linearly separable. So the state cannot hold the parity in one unit.

    The construction. Split XOR into its two exclusive AND-terms and keep them as two units:

        u_t = p_{t-1} AND NOT x_t          (parity was odd, bit 0)
        v_t = x_t AND NOT p_{t-1}          (parity was even, bit 1)

    Each is linearly separable, so one tanh unit computes it; and since at most one of them
    is true, p_t = u_t OR v_t = u_t + v_t is a *linear* function of the state. The OR is
    never computed by a unit: the next step folds it into its own linear pre-activation.
    With the units in {-1, +1} (U = 2u - 1, V = 2v - 1) we have p_t = (U_t + V_t)/2 + 1, and
    with K = `scale`:

        U_t = tanh(K (p_{t-1} - x_t - 1/2)) = tanh(K (U/2 + V/2 - x_t + 1/2))
        V_t = tanh(K (x_t - p_{t-1} - 1/2)) = tanh(K (-U/2 - V/2 + x_t - 3/2))

    i.e. Wx = K [-1, 1], Wh = K [[1/2, -1/2], [1/2, -1/2]], b = K [1/2, -3/2]. For every
    (p, x) in {0, 1}^2 the bracket is +-1/2 or -3/2, so every pre-activation is at least
    K/2 = 20 from zero and tanh is +-1 to float rounding (exactly +-1 in float32).

    No drift. If the state carries an error e (|U|, |V| = 1 - e), the next pre-activations
    move by at most K e (each unit reads U and V with weight K/2), and around +-20 tanh has
    slope 1 - tanh(20)^2 ~ 2e-17: the error is squashed to rounding at every step, so it
    cannot accumulate over 200 (or any number of) steps.

    Start and read-out: h0 = (-1, -1) (u = v = 0: parity 0, so the empty string reads 0);
    score = h_T . (1/2, 1/2) + 1 = u_T + v_T = p_T.
    """
    K = _check_scale(scale)
    return _as_params(
        h0=[-1.0, -1.0],
        Wx=[[-K, K]],
        Wh=[[K / 2, -K / 2], [K / 2, -K / 2]],
        b=[K / 2, -3 * K / 2],
        w_out=[0.5, 0.5],
        b_out=1.0,
        dtype=dtype,
    )


def parity_lstm_params(scale: float = DEFAULT_SCALE, dtype=jnp.float32) -> ParityParams:
    """Weights for which the LSTM (c0 = 0, gates i, f, o, g) tracks parity with one unit.

    Shapes: D = 1, H = 1: h0 (1,), Wx (1, 4), Wh (1, 4), b (4,), w_out (1,), b_out ().

    Where the vanilla RNN needs two units (see `parity_rnn_params`), the LSTM's gates
    multiply, and a product of two linear thresholds is an AND:

        p_t = p_{t-1} XOR x_t = (p_{t-1} OR x_t) AND NOT (p_{t-1} AND x_t).

    The OR goes through the input gate into the cell, the NAND is the output gate, and
    h_t = o_t * tanh(c_t) multiplies them. The hidden state holds h_t = tanh(1) p_t, so
    p_{t-1} = h_{t-1} / tanh(1) is linear in h_{t-1}. With K = `scale`:

        f = sigmoid(-K)                           = 0   forget: the cell is scratch space
        g = tanh(+K)                              = 1   the value written
        i = sigmoid(K (p_{t-1} + x_t - 1/2))      = p_{t-1} OR x_t
        o = sigmoid(K (3/2 - p_{t-1} - x_t))      = NOT (p_{t-1} AND x_t)
        c_t = f c_{t-1} + i g                     = p_{t-1} OR x_t       in {0, 1}
        h_t = o tanh(c_t)                         = tanh(1) (p_{t-1} XOR x_t)

    i.e. along 4H = (i, f, o, g): Wx = K [1, 0, -1, 0], Wh = K/tanh(1) [1, 0, -1, 0],
    b = K [-1/2, -1, 3/2, 1]. Every gate pre-activation is at least K/2 = 20 from zero, so
    the gates are 0/1 to float rounding (sigmoid(20) is exactly 1 in float32; sigmoid(-20)
    ~ 2e-9).

    No drift. The forget gate is shut, so nothing is carried in the cell: c_t and h_t are
    recomputed every step from saturated gates, and an error in h_{t-1} moves the gate
    pre-activations by at most K/tanh(1) times that error, which the saturated sigmoids
    squash. The "even" states are within ~2e-9 of 0 and the "odd" states are tanh(1) to
    rounding, at every step, for any length. (The tempting alternative, f = 1 to keep the
    parity in the cell and f = 0, i = 1 to overwrite it, is *not* re-normalized on the keep
    steps: c_t = sigmoid(K/2) c_{t-1} + ... integrates the e^(-K/2) leak step after step.)

    Start and read-out: h0 = 0 (parity 0); score = h_T / tanh(1) = p_T.
    """
    K = _check_scale(scale)
    Kh = K / _TANH1
    return _as_params(
        h0=[0.0],
        Wx=[[K, 0.0, -K, 0.0]],
        Wh=[[Kh, 0.0, -Kh, 0.0]],
        b=[-K / 2, -K, 3 * K / 2, K],
        w_out=[1.0 / _TANH1],
        b_out=0.0,
        dtype=dtype,
    )


def _validate_bits(bits, lengths):
    arr = jnp.asarray(bits)
    if arr.ndim != 2:
        raise ValueError(f"bits must have shape (N, T) = (batch, time), got shape {tuple(arr.shape)}")
    if not (jnp.issubdtype(arr.dtype, jnp.integer) or jnp.issubdtype(arr.dtype, jnp.floating) or arr.dtype == jnp.bool_):
        raise ValueError(f"bits must be a 0/1 array of bool, integer or float dtype, got dtype {arr.dtype}")
    if not isinstance(arr, jax.core.Tracer) and arr.size:
        values = np.asarray(arr)
        bad = ~((values == 0) | (values == 1))
        if bad.any():
            n, t = np.argwhere(bad)[0]
            raise ValueError(f"bits must hold only 0 and 1, got {values[n, t]!r} at [{n}, {t}]")
    N, T = arr.shape
    if lengths is None:
        return arr, None
    lens = jnp.asarray(lengths)
    if not jnp.issubdtype(lens.dtype, jnp.integer):
        raise ValueError(f"lengths must be an integer array, got dtype {lens.dtype}")
    if lens.shape != (N,):
        raise ValueError(f"lengths must have shape (N,) = ({N},), got {tuple(lens.shape)}")
    if not isinstance(lens, jax.core.Tracer) and lens.size:
        values = np.asarray(lens)
        if values.min() < 0 or values.max() > T:
            bad = values.min() if values.min() < 0 else values.max()
            raise ValueError(f"lengths must be in [0, T] = [0, {T}], got {int(bad)}")
    return arr, lens


def _check_cell(cell: str):
    if cell not in ("rnn", "lstm"):
        raise ValueError(f"cell must be 'rnn' or 'lstm', got {cell!r}")


@partial(jax.jit, static_argnames=("cell",))
def _hidden_states(bits, params, cell):
    N = bits.shape[0]
    x = bits.astype(params.Wx.dtype)[..., None]
    h0 = jnp.broadcast_to(params.h0, (N, params.h0.shape[0]))
    layer = rnn if cell == "rnn" else lstm
    h = layer(x, h0, params.Wx, params.Wh, params.b)
    return jnp.concatenate([h0[:, None, :], h], axis=1)


def parity_hidden_states(bits, params: ParityParams, cell: str = "rnn"):
    """Run a parity network over bit strings and return every state, h0 included.

    Inputs: bits (N, T) of 0/1 (bool, int or float), params from `parity_rnn_params` or
      `parity_lstm_params`, cell "rnn" or "lstm" (must match the params).
    Returns: states (N, T + 1, H): states[:, 0] = h0, states[:, t] = h_t after t bits,
      computed by `jaxseq.layers.rnn` / `jaxseq.layers.lstm` on x = bits[..., None] (N, T, 1).
    """
    _check_cell(cell)
    arr, _ = _validate_bits(bits, None)
    return _hidden_states(arr, ParityParams(*params), cell)


def parity_readout(h, params: ParityParams):
    """The read-out of a parity network: score = h . w_out + b_out (about 0 or 1).

    Inputs: h (..., H) states. Returns: scores (...); the parity bit is score > 1/2.
    """
    return h @ params.w_out + params.b_out


@partial(jax.jit, static_argnames=("cell",))
def _parity_bits(bits, params, lengths, cell):
    states = _hidden_states(bits, params, cell)
    final = states[jnp.arange(bits.shape[0]), lengths]
    return (parity_readout(final, params) > 0.5).astype(jnp.int32)


def _parity(bits, params, lengths, cell):
    arr, lens = _validate_bits(bits, lengths)
    N, T = arr.shape
    if lens is None:
        lens = jnp.full((N,), T, jnp.int32)
    return _parity_bits(arr, ParityParams(*params), lens, cell)


def rnn_parity(bits, params: ParityParams | None = None, *, lengths=None):
    """Parity of each bit string, computed by the tanh RNN of `parity_rnn_params`.

    Inputs: bits (N, T) of 0/1; params (default `parity_rnn_params()`); lengths (N,) int,
      optional: read string n after its first lengths[n] bits (the rest is padding; the
      RNN is causal, so padding never affects the answer). T = 0 or lengths 0 read h0,
      the parity of the empty string (0).
    Returns: (N,) int32 in {0, 1}, from the read-out of the final state.
    """
    return _parity(bits, parity_rnn_params() if params is None else params, lengths, "rnn")


def lstm_parity(bits, params: ParityParams | None = None, *, lengths=None):
    """Parity of each bit string, computed by the LSTM of `parity_lstm_params`.

    Inputs and returns as `rnn_parity`: bits (N, T) of 0/1, optional lengths (N,) -> (N,) int32.
    """
    return _parity(bits, parity_lstm_params() if params is None else params, lengths, "lstm")


# ============================================================================= gradients


class GradientNorms(NamedTuple):
    """norms (T,): ||dh_t/dh_0|| for t = 1..T; spectral_radius: max |eigenvalue of W|."""

    norms: jax.Array
    spectral_radius: float


class GradientLogNorms(NamedTuple):
    """log_norms (T,): log ||dh_t/dh_0|| for t = 1..T; spectral_radius: max |eig W|."""

    log_norms: jax.Array
    spectral_radius: float


class LogSlope(NamedTuple):
    """Least-squares fit log ||dh_t/dh_0|| ~ intercept + slope * t."""

    slope: float
    intercept: float


def _float_matrix(name, value, shape=None, meaning=""):
    arr = jnp.asarray(value)
    if jnp.issubdtype(arr.dtype, jnp.integer) or arr.dtype == jnp.bool_:
        arr = arr.astype(jnp.result_type(float))
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise ValueError(f"{name} must be a real array, got dtype {arr.dtype}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {meaning} = {tuple(shape)}, got {tuple(arr.shape)}")
    return arr


def _square(W):
    W = _float_matrix("W", W)
    if W.ndim != 2 or W.shape[0] != W.shape[1] or W.shape[0] == 0:
        raise ValueError(f"W must be a non-empty square matrix (H, H), got shape {tuple(W.shape)}")
    return W


def spectral_radius(W) -> float:
    """max |eigenvalue| of a square W (H, H), computed with NumPy in float64 (W must be concrete)."""
    W = _square(W)
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(W, dtype=np.float64)))))


@partial(jax.jit, static_argnames=("T", "cell", "norm"))
def _log_norms(W, h0, u_tm, *, T, cell, norm):
    # Chain rule of per-step Jacobians (column convention, J[i, j] = dh_t[i] / dh_{t-1}[j]):
    #   linear: h_t = h_{t-1} W            -> J_t = W^T
    #   tanh:   h_t = tanh(h_{t-1} W + u_t) -> J_t = diag(1 - h_t^2) W^T
    # M_t = J_t M_{t-1}, M_0 = I. M is kept rescaled (max |entry| = 1) with the log of the
    # scale carried separately, so rho^t neither overflows nor underflows for long T.
    WT = W.T
    H = W.shape[0]

    def step(carry, u_t):
        h, M, log_scale = carry
        if cell == "linear":
            J = WT
        else:
            h = jnp.tanh(h @ W + u_t)
            J = (1.0 - h**2)[:, None] * WT
        M = J @ M
        s = jnp.max(jnp.abs(M))
        nonzero = s > 0
        M = M / jnp.where(nonzero, s, 1.0)
        log_scale = log_scale + jnp.where(nonzero, jnp.log(jnp.where(nonzero, s, 1.0)), -jnp.inf)
        return (h, M, log_scale), (M, log_scale)

    init = (h0, jnp.eye(H, dtype=W.dtype), jnp.zeros((), W.dtype))
    _, (M_tm, log_scale_tm) = lax.scan(step, init, u_tm, length=T)
    ord_ = 2 if norm == "spectral" else "fro"
    return log_scale_tm + jnp.log(jnp.linalg.norm(M_tm, ord=ord_, axis=(1, 2)))


def gradient_log_norms(W, T: int, cell: str = "linear", *, h0=None, x=None, Wx=None, b=None, norm: str = "spectral") -> GradientLogNorms:
    """log ||dh_t/dh_0|| for t = 1..T, overflow-safe. Arguments as `gradient_norms`."""
    W = _square(W)
    H = W.shape[0]
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)):
        raise ValueError(f"T must be an integer number of steps >= 1, got {T!r}")
    T = int(T)
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if cell not in ("linear", "tanh"):
        raise ValueError(f"cell must be 'linear' or 'tanh', got {cell!r}")
    if norm not in ("spectral", "frobenius"):
        raise ValueError(f"norm must be 'spectral' or 'frobenius', got {norm!r}")

    dtype = W.dtype
    h0 = jnp.zeros((H,), dtype) if h0 is None else _float_matrix("h0", h0, (H,), "(H,)").astype(dtype)
    if cell == "linear" and any(a is not None for a in (x, Wx, b)):
        raise ValueError("x, Wx and b belong to the tanh RNN; the linear recurrence h_t = W^T h_{t-1} has no input")
    if (x is None) != (Wx is None):
        raise ValueError("x (T, D) and Wx (D, H) must be given together")
    if x is not None:
        x = _float_matrix("x", x)
        if x.ndim != 2 or x.shape[0] != T:
            raise ValueError(f"x must have shape (T, D) = ({T}, D), got {tuple(x.shape)}")
        Wx = _float_matrix("Wx", Wx, (x.shape[1], H), "(D, H)")
        u_tm = (x @ Wx).astype(dtype)
    else:
        u_tm = jnp.zeros((T, H), dtype)
    if b is not None:
        u_tm = u_tm + _float_matrix("b", b, (H,), "(H,)").astype(dtype)

    log_norms = _log_norms(W, h0, u_tm, T=T, cell=cell, norm=norm)
    return GradientLogNorms(log_norms, spectral_radius(W))


def gradient_norms(W, T: int, cell: str = "linear", *, h0=None, x=None, Wx=None, b=None, norm: str = "spectral") -> GradientNorms:
    """How the gradient through a recurrence explodes or vanishes: ||dh_t/dh_0||, t = 1..T.

    Inputs:
      W: (H, H) the recurrent matrix (the RNN's Wh; row-vector convention, h_t = h_{t-1} W,
        which is h_t = W^T h_{t-1} for column vectors).
      T: number of steps, >= 1.
      cell: "linear": h_t = W^T h_{t-1}, so dh_t/dh_0 = (W^T)^t, independent of h0;
        "tanh": h_t = tanh(h_{t-1} W + x_t Wx + b), so dh_t/dh_0 = prod_s diag(1 - h_s^2) W^T.
      h0: (H,) initial state (default 0; only the tanh cell depends on it).
      x: (T, D) inputs and Wx: (D, H), b: (H,), tanh cell only (default: no input).
      norm: "spectral" (largest singular value, the default) or "frobenius".
    Returns: GradientNorms(norms (T,), spectral_radius), norms[t-1] = ||dh_t/dh_0||.

    The Jacobians are computed by the chain rule of the per-step Jacobians above, in a
    `lax.scan` (tests check them against `jax.jacrev` through `jaxseq.layers.rnn`, i.e.
    through its hand-written backward pass). The product is rescaled as it goes, so
    `gradient_log_norms` stays finite where rho^t over/underflows; these norms are its exp.

    What to expect: for the linear recurrence ||(W^T)^t|| ~ C rho^t (exactly rho^t when W is
    normal, e.g. rho times an orthogonal matrix), so gradients explode for rho > 1 and vanish
    for rho < 1. For tanh, 0 < 1 - h^2 <= 1 gives ||dh_t/dh_0|| <= ||W||_2^t, which is rho^t
    (the linear case) when W is normal; saturated units (|h| near 1) shrink it further.
    """
    log_norms, rho = gradient_log_norms(W, T, cell, h0=h0, x=x, Wx=Wx, b=b, norm=norm)
    return GradientNorms(jnp.exp(log_norms), rho)


def fit_log_slope(norms=None, *, log_norms=None, skip: int = 0) -> LogSlope:
    """Least-squares fit of log ||dh_t/dh_0|| = intercept + slope * t over t = skip+1 .. T.

    Inputs: norms (T,) positive finite (as from `gradient_norms`, norms[t-1] at step t), or
      log_norms (T,) instead (as from `gradient_log_norms`); skip: leading steps left out
      (a transient), at least 2 points must remain.
    Returns: LogSlope(slope, intercept); exp(slope) is the per-step growth factor, which is
    rho for the linear recurrence.
    """
    if (norms is None) == (log_norms is None):
        raise ValueError("give exactly one of norms or log_norms")
    if norms is not None:
        values = np.asarray(norms, dtype=np.float64)
        name = "norms"
        if values.ndim == 1 and not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise ValueError("norms must be positive and finite to take their log (use gradient_log_norms for long runs)")
        logs = np.log(values) if values.ndim == 1 else values
    else:
        logs = np.asarray(log_norms, dtype=np.float64)
        name = "log_norms"
        if logs.ndim == 1 and not np.all(np.isfinite(logs)):
            raise ValueError("log_norms must be finite")
    if logs.ndim != 1:
        raise ValueError(f"{name} must have shape (T,), got {logs.shape}")
    skip = int(skip)
    if skip < 0 or logs.shape[0] - skip < 2:
        raise ValueError(f"need skip >= 0 and at least 2 points after it: T = {logs.shape[0]}, skip = {skip}")
    t = np.arange(1, logs.shape[0] + 1, dtype=np.float64)[skip:]
    slope, intercept = np.polyfit(t, logs[skip:], 1)
    return LogSlope(float(slope), float(intercept))
