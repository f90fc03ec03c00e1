"""Gradient checking: numerical gradients, relative error, and a whole-layer check.

The first three functions keep the course's names and semantics, so course code ports
unchanged; `check_layer` compares a layer's hand-written backward with `jax.grad` of its
forward and with central-difference numerical gradients, all in float64, and is what
`jaxseq check` prints for every built-in layer. Use it on your own layers too: all it needs
is the forward/backward pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq import kernels

# The tolerances of the correctness ladder (DESIGN.md), defined once: the tests, `jaxseq check`,
# the notebooks' checks and the benchmarks' agreement checks import them from here.
AUTODIFF_TOL = 1e-9
"""Hand backward vs `jax.grad` of the plain forward (rung 2), float64, `rel_error`: two exact
computations of the same derivative, so only round-off separates them."""
NUMERICAL_TOL = 5e-7
"""Hand backward vs `check_layer`'s fourth-order central differences (rung 3), float64,
`rel_error`: the differences' truncation and round-off error on small sequence layers."""
FLOAT32_TOL = 1e-4
"""Outputs and gradients vs an independent implementation (PyTorch, Flax, NumPy) in float32
(rung 4), as max |a - b| / max |b| (an error on the array's own scale)."""


def rel_error(x, y) -> float:
    """max |x - y| / max(1e-8, |x| + |y|), elementwise, as the course defined it.

    >>> rel_error([1.0, 2.0], [1.0, 2.0])
    0.0
    >>> rel_error([1.0], [3.0])
    0.5
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error: shapes differ, {x.shape} vs {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def eval_numerical_gradient(f: Callable, x: np.ndarray, verbose: bool = False, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of a scalar function f at x.

    `x` must be a writable NumPy array: each entry is nudged by +h and -h in place (and
    restored), as in the course, so `f` may close over `x`.
    Returns: an array shaped like x.
    """
    _require_writable(x)
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        old = x[index]
        x[index] = old + h
        plus = float(f(x))
        x[index] = old - h
        minus = float(f(x))
        x[index] = old
        grad[index] = (plus - minus) / (2 * h)
        if verbose:
            print(index, grad[index])
    return grad


def eval_numerical_gradient_array(f: Callable, x: np.ndarray, df, h: float = 1e-5) -> np.ndarray:
    """Numerical gradient of sum(f(x) * df) with respect to x, for an array-valued f.

    `x` is nudged in place as in `eval_numerical_gradient`; df has f(x)'s shape.
    Returns: an array shaped like x.
    """
    _require_writable(x)
    df = np.asarray(df)
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        old = x[index]
        x[index] = old + h
        plus = np.array(f(x), dtype=np.float64, copy=True)
        x[index] = old - h
        minus = np.array(f(x), dtype=np.float64, copy=True)
        x[index] = old
        grad[index] = np.sum((plus - minus) * df) / (2 * h)
    return grad


def fourth_order_numerical_gradient(f: Callable, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Gradient of a scalar f at x by the fourth-order central difference

        f'(x) ~ [8 (f(x + h) - f(x - h)) - (f(x + 2h) - f(x - 2h))] / (12 h)

    Its truncation error is O(h^4) instead of O(h^2), so h can be 100 times larger than
    `eval_numerical_gradient`'s and the round-off eps |f| / h 100 times smaller: entries of
    a gradient that are 1e-6 of its largest still come out to ~1e-7 relative, where the
    course's two-point difference (h = 1e-5, round-off ~2e-11 absolute) gave ~1e-5. `x` is
    nudged in place and restored, as in `eval_numerical_gradient`.
    """
    _require_writable(x)
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        old = x[index]
        values = []
        for step in (h, -h, 2 * h, -2 * h):
            x[index] = old + step
            values.append(float(f(x)))
        x[index] = old
        plus, minus, plus2, minus2 = values
        grad[index] = (8.0 * (plus - minus) - (plus2 - minus2)) / (12.0 * h)
    return grad


def _require_writable(x) -> None:
    if not isinstance(x, np.ndarray) or not x.flags.writeable:
        raise ValueError("x must be a writable NumPy array (it is perturbed in place)")


@dataclass(frozen=True)
class GradCheckResult:
    """Relative errors of one argument's gradient (course `rel_error`)."""

    layer: str
    argument: str
    hand_vs_autodiff: float  # hand-written backward vs jax.grad of the plain forward
    hand_vs_numerical: float  # hand-written backward vs central differences
    custom_vjp_vs_hand: float | None  # jax.grad of the custom_vjp function vs the hand backward


def check_layer(
    name: str,
    forward: Callable,
    backward: Callable,
    inputs: Mapping[str, np.ndarray],
    wrt: Sequence[str],
    *,
    differentiable: Callable | None = None,
    seed: int = 0,
    h: float = 1e-3,
) -> list[GradCheckResult]:
    """Check a layer's hand-written backward against autodiff and numerical gradients.

    Conventions (those of every jaxseq layer):
      forward(*inputs.values()) -> (*outputs, cache)
      backward(*douts, cache) -> the gradients of the `wrt` inputs, in that order
        (a single array when there is one).
      differentiable(*inputs.values()) -> the outputs, as a custom_vjp function (optional).

    Everything runs in float64 (JAX's x64 mode inside this call). Upstream gradients `douts`
    are standard normal from `seed`. The numerical gradients are fourth-order central
    differences with step h (`fourth_order_numerical_gradient`). Returns one result per name
    in `wrt`.
    """
    with jax.enable_x64(True):
        names = list(inputs)
        values = [_as_float64(np.asarray(value)) for value in inputs.values()]
        missing = [argument for argument in wrt if argument not in names]
        if missing:
            raise ValueError(f"wrt names {missing} are not among the inputs {names}")
        positions = [names.index(argument) for argument in wrt]

        *outputs, cache = forward(*values)
        rng = np.random.default_rng(seed)
        douts = [rng.standard_normal(np.shape(out)) for out in outputs]

        hand = backward(*douts, cache)
        hand = [np.asarray(g) for g in (hand if isinstance(hand, tuple) else (hand,))]
        if len(hand) != len(wrt):
            raise ValueError(f"{name}: backward returned {len(hand)} gradients for {len(wrt)} wrt inputs")

        def projected(fn: Callable) -> Callable:
            """sum_i <output_i, dout_i> as a function of the wrt inputs."""

            def scalar(*wrt_values):
                args = list(values)
                for position, value in zip(positions, wrt_values):
                    args[position] = value
                result = fn(*args)
                outs = result if isinstance(result, tuple) else (result,)
                return sum(jnp.sum(out * dout) for out, dout in zip(outs, douts))

            return scalar

        wrt_values = [values[position] for position in positions]
        argnums = tuple(range(len(wrt)))
        plain = projected(lambda *args: tuple(forward(*args)[:-1]))
        # jitted: op by op, every primitive of a backward pass compiles on its own (the
        # built-in checks compiled ~500 programs so; `jaxseq check` took 32 s instead of 25)
        autodiff = jax.jit(jax.grad(plain, argnums=argnums))(*wrt_values)
        through_vjp = (
            jax.jit(jax.grad(projected(differentiable), argnums=argnums))(*wrt_values) if differentiable else None
        )
        plain_jit = jax.jit(plain)

        results = []
        for k, argument in enumerate(wrt):
            point = np.array(wrt_values[k], dtype=np.float64, copy=True)

            def along_k(v, k=k):
                moved = list(wrt_values)
                moved[k] = v
                return plain_jit(*moved)

            numerical = fourth_order_numerical_gradient(along_k, point, h=h)
            results.append(
                GradCheckResult(
                    layer=name,
                    argument=argument,
                    hand_vs_autodiff=rel_error(hand[k], autodiff[k]),
                    hand_vs_numerical=rel_error(hand[k], numerical),
                    custom_vjp_vs_hand=None if through_vjp is None else rel_error(through_vjp[k], hand[k]),
                )
            )
        return results


def _as_float64(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array


# Sequence layers as check_layer sees them: (forward, backward, differentiable, the inputs in
# order, the names of the final-state gradients the backward takes).
def _sequence_layers():
    from jaxseq import layers as L

    rnn = (L.rnn_forward, L.rnn_backward, L.rnn, ("x", "h0", "Wx", "Wh", "b"), ("dh_n",))
    lstm_names = ("x", "h0", "c0", "Wx", "Wh", "b")
    lstm = (L.lstm_forward, L.lstm_backward, L.lstm, lstm_names, ("dh_n", "dc_n"))
    lstm_fast = (L.lstm_fast_forward, L.lstm_fast_backward, L.lstm, lstm_names, ("dh_n", "dc_n"))
    with_projection = lambda case: (*case[:3], (*case[3], "Wr"), case[4])  # noqa: E731
    return {
        "rnn": rnn,
        "lstm": lstm,
        "lstm_fast": lstm_fast,
        "gru": (L.gru_forward, L.gru_backward, L.gru, ("x", "h0", "Wx", "Wh", "b", "bh"), ("dh_n",)),
        "rnn_relu": rnn,
        "lstm_proj": with_projection(lstm),
        "lstm_fast_proj": with_projection(lstm_fast),
    }


SEQUENCE_CELLS = ("rnn", "lstm", "lstm_fast", "gru")
SEQUENCE_VARIANTS = ("rnn_relu", "lstm_proj", "lstm_fast_proj")
"""PyTorch's other recurrent options on the same layers, checked as cells of their own: the RNN
with nonlinearity="relu", and the LSTM with projections (Wr (H, P), PyTorch's proj_size;
"lstm_fast_proj" checks the fast pair that `lstm`'s custom_vjp runs)."""
CELL_OPTIONS = {"rnn_relu": {"nonlinearity": "relu"}}
KEYWORD_INPUTS = ("c0", "Wr")
"""The inputs a sequence layer takes as keywords, after its positional ones."""


def base_cell(cell: str) -> str:
    """The cell a name of SEQUENCE_CELLS or SEQUENCE_VARIANTS runs: "rnn", "lstm" or "gru"."""
    return cell.split("_")[0]


def projection_size(H: int) -> int:
    """P of the "_proj" cases' random inputs: about H / 2, below H where H > 1 (as PyTorch asks)."""
    return max(1, H // 2)


def sequence_layer_case(cell: str, *, lengths=None, reverse: bool = False, with_c0: bool = True):
    """(forward, backward, differentiable, input names) of a sequence layer for `check_layer`.

    The layer is called with `lengths`, `reverse` and `return_state=True`, so the final states
    are outputs too and their gradients (dh_n, dc_n) flow into the backward: one check covers
    the outputs, the final states and every input's gradient. `cell` is one of
    SEQUENCE_CELLS ("lstm_fast" checks the fast pair that `lstm`'s custom_vjp runs) or
    SEQUENCE_VARIANTS; with `with_c0` the LSTM gets an initial cell state (and dc0 is checked).
    """
    forward, backward, differentiable, names, state_grads = _sequence_layers()[cell]
    if not with_c0:
        names = tuple(name for name in names if name != "c0")
    options = dict(lengths=lengths, reverse=reverse, return_state=True, **CELL_OPTIONS.get(cell, {}))

    def call(fn, *values):
        args = dict(zip(names, values))
        keywords = {name: args.pop(name) for name in KEYWORD_INPUTS if name in args}
        return fn(*args.values(), **keywords, **options)

    def hand_backward(dh, *rest):
        *dstates, cache = rest
        return backward(dh, cache, **dict(zip(state_grads, dstates)))

    return (lambda *v: call(forward, *v)), hand_backward, (lambda *v: call(differentiable, *v)), names


def random_sequence_inputs(cell: str, rng, N: int, T: int, D: int, H: int, *, with_c0=True, dtype=np.float64):
    """Random inputs {name: array} of a sequence layer, in its argument order, weights scaled 0.5.
    The "_proj" cases' hidden state is P = `projection_size(H)` wide: h0 (N, P), Wh (P, 4H),
    Wr (H, P)."""
    gates = {"rnn": 1, "gru": 3}.get(base_cell(cell), 4)
    R = projection_size(H) if cell.endswith("_proj") else H
    shapes = {"x": (N, T, D), "h0": (N, R), "c0": (N, H), "Wx": (D, gates * H), "Wh": (R, gates * H),
              "b": (gates * H,), "bh": (gates * H,), "Wr": (H, R)}
    names = sequence_layer_case(cell, with_c0=with_c0)[3]
    scale = {"Wx": 0.5, "Wh": 0.5, "Wr": 0.5}
    return {name: (scale.get(name, 1.0) * rng.standard_normal(shapes[name])).astype(dtype) for name in names}


LOOKUP_CASES = ("lstm_lookup", "lstm_lookup_proj", "gru_lookup")
"""The layers whose input side is a table lookup, checked as "<name>+len+rev"."""


def _lookup_case(name: str, rng, N: int, T: int, V: int, H: int, lengths):
    """`check_layer`'s arguments for `lstm_lookup` (with c0; "_proj": and Wr (H, P)) or
    `gru_lookup`, with lengths, reverse=True and the final states (the tokens are inputs without
    a gradient)."""
    from jaxseq import layers as L

    gru = name == "gru_lookup"
    P = projection_size(H) if name.endswith("_proj") else H
    inputs = {"tokens": rng.integers(0, V, size=(N, T)), "table": rng.standard_normal((V, (3 if gru else 4) * H)),
              "h0": rng.standard_normal((N, P))}
    inputs |= ({"Wh": 0.5 * rng.standard_normal((H, 3 * H)), "bh": rng.standard_normal(3 * H)} if gru else
               {"c0": rng.standard_normal((N, H)), "Wh": 0.5 * rng.standard_normal((P, 4 * H))})
    if P != H:
        inputs["Wr"] = 0.5 * rng.standard_normal((H, P))
    options = dict(lengths=lengths, reverse=True, return_state=True)

    def call(fn, tokens, table, h0, *rest):
        if gru:
            return fn(tokens, table, h0, *rest, **options)
        c0, Wh, *Wr = rest
        return fn(tokens, table, h0, Wh, c0=c0, Wr=Wr[0] if Wr else None, **options)

    def backward(dh, *rest):
        *dstates, cache = rest
        if gru:
            return L.gru_lookup_backward(dh, cache, dh_n=dstates[0])
        return L.lstm_lookup_backward(dh, cache, dh_n=dstates[0], dc_n=dstates[1])

    layer = L.gru_lookup if gru else L.lstm_lookup
    forward = L.gru_lookup_forward if gru else L.lstm_lookup_forward
    return (f"{name}+len+rev", lambda *v: call(forward, *v), backward, lambda *v: call(layer, *v), inputs,
            list(inputs)[1:])


def builtin_layer_checks(seed: int = 0) -> list[GradCheckResult]:
    """`check_layer` for every jaxseq layer on small random float64 inputs.

    Sequence layers are checked twice: as the course calls them, and with lengths (one
    sequence of length 0, one of 1, one full), reverse=True, initial states and their final
    states as outputs (names ending in "+len+rev"); SEQUENCE_VARIANTS, PyTorch's other options
    of them (the relu RNN, the LSTM with projections on both its paths), are checked that way too.
    The LSTM's and the GRU's hand backward passes and differentiable rules run the compiled CPU
    loops (`jaxseq.kernels`) where they apply, here at every size (`kernels.at_every_size()`):
    "lstm_fast+len+rev", "gru+len+rev" and the lookups' cases check them with lengths,
    "lstm_fast+rev" without (each row then runs every step). So does the decoder's compiled
    kernel (`jaxseq.kernels.decoder_loss`): "temporal_affine_softmax_loss"'s differentiable rule
    runs it, its gradients held to the hand backward's and the numerical ones.
    """
    from jaxseq import layers as L

    rng = np.random.default_rng(seed)
    N, T, D, H, V = 3, 4, 5, 6, 7

    def normal(*shape, scale=1.0):
        return scale * rng.standard_normal(shape)

    step_rnn = dict(x=normal(N, D), prev_h=normal(N, H), Wx=normal(D, H, scale=0.5), Wh=normal(H, H, scale=0.5), b=normal(H))
    seq_rnn = dict(x=normal(N, T, D), h0=normal(N, H), Wx=normal(D, H, scale=0.5), Wh=normal(H, H, scale=0.5), b=normal(H))
    step_lstm = dict(
        x=normal(N, D), prev_h=normal(N, H), prev_c=normal(N, H),
        Wx=normal(D, 4 * H, scale=0.5), Wh=normal(H, 4 * H, scale=0.5), b=normal(4 * H),
    )
    seq_lstm = dict(x=normal(N, T, D), h0=normal(N, H), Wx=normal(D, 4 * H, scale=0.5), Wh=normal(H, 4 * H, scale=0.5), b=normal(4 * H))
    step_gru = dict(
        x=normal(N, D), prev_h=normal(N, H), Wx=normal(D, 3 * H, scale=0.5), Wh=normal(H, 3 * H, scale=0.5),
        b=normal(3 * H), bh=normal(3 * H),
    )
    seq_gru = dict(
        x=normal(N, T, D), h0=normal(N, H), Wx=normal(D, 3 * H, scale=0.5), Wh=normal(H, 3 * H, scale=0.5),
        b=normal(3 * H), bh=normal(3 * H),
    )
    embedding = dict(x=rng.integers(0, V, size=(N, T)), W=normal(V, D))
    affine = dict(x=normal(N, T, D), w=normal(D, V), b=normal(V))
    loss = dict(x=normal(N, T, V), y=rng.integers(0, V, size=(N, T)), mask=rng.random((N, T)) > 0.3)
    affine_loss = dict(x=normal(N, T, D), w=normal(D, V), b=normal(V), y=rng.integers(0, V, size=(N, T)),
                       mask=rng.random((N, T)) > 0.3)

    cases: list[tuple[str, Callable, Callable, Callable, dict, list[str]]] = [
        ("rnn_step", L.rnn_step_forward, L.rnn_step_backward, L.rnn_step, step_rnn, list(step_rnn)),
        ("rnn", L.rnn_forward, L.rnn_backward, L.rnn, seq_rnn, list(seq_rnn)),
        ("lstm_step", L.lstm_step_forward, L.lstm_step_backward, L.lstm_step, step_lstm, list(step_lstm)),
        ("lstm", L.lstm_forward, L.lstm_backward, L.lstm, seq_lstm, list(seq_lstm)),
        ("gru_step", L.gru_step_forward, L.gru_step_backward, L.gru_step, step_gru, list(step_gru)),
        ("gru", L.gru_forward, L.gru_backward, L.gru, seq_gru, list(seq_gru)),
    ]
    lengths = np.array([0, 1, T])
    for cell in SEQUENCE_CELLS + SEQUENCE_VARIANTS:
        forward, backward, differentiable, names = sequence_layer_case(cell, lengths=lengths, reverse=True)
        inputs = random_sequence_inputs(cell, rng, N, T, D, H)
        cases.append((f"{cell}+len+rev", forward, backward, differentiable, inputs, list(names)))
    # the compiled CPU loops (jaxseq.kernels) without lengths as well
    forward, backward, differentiable, names = sequence_layer_case("lstm_fast", reverse=True)
    cases.append(("lstm_fast+rev", forward, backward, differentiable, random_sequence_inputs("lstm_fast", rng, N, T, D, H),
                  list(names)))
    cases += [_lookup_case(name, rng, N, T, V, H, lengths) for name in LOOKUP_CASES]
    cases += [
        ("word_embedding", L.word_embedding_forward, L.word_embedding_backward, L.word_embedding, embedding, ["W"]),
        ("temporal_affine", L.temporal_affine_forward, L.temporal_affine_backward, L.temporal_affine, affine, list(affine)),
        (
            "temporal_softmax_loss",
            L.temporal_softmax_loss_forward,
            L.temporal_softmax_loss_backward,
            L.temporal_softmax_loss,
            loss,
            ["x"],
        ),
        (
            "temporal_affine_softmax_loss",
            L.temporal_affine_softmax_loss_forward,
            L.temporal_affine_softmax_loss_backward,
            L.temporal_affine_softmax_loss,
            affine_loss,
            ["x", "w", "b"],
        ),
    ]
    results = []
    with kernels.at_every_size():  # these small layers check the compiled loops, which larger ones run
        for name, forward, backward, differentiable, inputs, wrt in cases:
            results.extend(
                check_layer(name, forward, backward, inputs, wrt, differentiable=differentiable, seed=seed)
            )
    return results


def format_results(results: Sequence[GradCheckResult]) -> str:
    """A plain-text table of gradient-check results."""
    header = f"{'layer':<22} {'grad':<7} {'hand vs jax.grad':>17} {'hand vs numerical':>18} {'custom_vjp vs hand':>19}"
    lines = [header, "-" * len(header)]
    for r in results:
        vjp = "-" if r.custom_vjp_vs_hand is None else f"{r.custom_vjp_vs_hand:.2e}"
        lines.append(
            f"{r.layer:<22} d{r.argument:<6} {r.hand_vs_autodiff:>17.2e} {r.hand_vs_numerical:>18.2e} {vjp:>19}"
        )
    return "\n".join(lines)
