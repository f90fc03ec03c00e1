"""The sequence layers' full call — GRU, lengths, reverse, initial and final states — on every
cell (rnn, lstm, the LSTM's fast path, gru) and on PyTorch's other options of them
(`SEQUENCE_VARIANTS`: the relu RNN, the LSTM with projections on both its paths), up the
correctness ladder:

1. hand backward == jax.grad of the plain forward (float64, < AUTODIFF_TOL), with and without
   lengths, with reverse, with initial states, final states as outputs;
2. numerical gradients;
3. PyTorch in float32 (packed sequences, bidirectional layers for reverse, GRUCell/GRU);
4. hypothesis properties over shapes and lengths (0, 1, T), dtypes, jit, vmap;
5. the differentiable functions run their custom_vjp rule; *_backward never calls autodiff;
6. bad lengths are ValueErrors naming `lengths`.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
from jax import grad, hessian, jacfwd, jacrev, jvp, linear_transpose, vjp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq import layers as L
from jaxseq.gradcheck import (
    AUTODIFF_TOL, CELL_OPTIONS, FLOAT32_TOL, KEYWORD_INPUTS, SEQUENCE_CELLS, SEQUENCE_VARIANTS, base_cell,
    random_sequence_inputs, sequence_layer_case,
)
from jaxseq.gradcheck import NUMERICAL_TOL as NUMERICAL_SEQUENCE_TOL
from jaxseq.numpy_reference import reverse_within_lengths
from tests.helpers import (
    FORWARD_TOL, NUMERICAL_STEP_TOL, assert_layer_gradients, reference_sequence, relative_error, scaled_error,
)

TORCH_TOL = FLOAT32_TOL
ALL_CELLS = SEQUENCE_CELLS + SEQUENCE_VARIANTS
# lstm_fast_proj's differentiable function is lstm_proj's (`lstm`, whose rule is the fast
# pair): the tests of the differentiable function alone run it once
DIFFERENTIABLE_CELLS = SEQUENCE_CELLS + tuple(cell for cell in SEQUENCE_VARIANTS if cell != "lstm_fast_proj")


def call(cell, fn, inputs, **options):
    """fn(**inputs) in the cell's argument order, c0 and Wr as keywords, with the cell's
    options (the relu RNN's nonlinearity)."""
    args = dict(inputs)
    keywords = {name: args.pop(name) for name in KEYWORD_INPUTS if name in args}
    return fn(*args.values(), **keywords, **CELL_OPTIONS.get(cell, {}), **options)


def layer(cell):
    """The differentiable function (the LSTM's fast path is what `lstm`'s rule runs)."""
    return {"rnn": L.rnn, "lstm": L.lstm, "gru": L.gru}[base_cell(cell)]


def forward_pair(cell):
    fast = "_fast" in cell
    return {"rnn": L.rnn_forward, "lstm": L.lstm_fast_forward if fast else L.lstm_forward,
            "gru": L.gru_forward}[base_cell(cell)]


# ------------------------------------------------------------------ forward semantics


@pytest.mark.parametrize("cell", SEQUENCE_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_forward_matches_the_numpy_reference(x64, cell, reverse, with_lengths):
    rng = np.random.default_rng(1)
    N, T, D, H = 5, 6, 3, 4
    inputs = random_sequence_inputs(cell, rng, N, T, D, H)
    lengths = np.array([6, 0, 1, 3, 6]) if with_lengths else None
    outs = call(cell, forward_pair(cell), inputs, lengths=lengths, reverse=reverse, return_state=True)
    h, states = outs[0], outs[1:-1]
    h_ref, h_n_ref, c_n_ref, _ = reference_sequence(cell, inputs, lengths=lengths, reverse=reverse)
    np.testing.assert_allclose(h, h_ref, rtol=FORWARD_TOL, atol=FORWARD_TOL)
    np.testing.assert_allclose(states[0], h_n_ref, rtol=FORWARD_TOL, atol=FORWARD_TOL)
    if c_n_ref is not None:
        np.testing.assert_allclose(states[1], c_n_ref, rtol=FORWARD_TOL, atol=FORWARD_TOL)
    differentiable = call(cell, layer(cell), inputs, lengths=lengths, reverse=reverse, return_state=True)
    for ours, theirs in zip(differentiable, (h, *states)):
        np.testing.assert_allclose(ours, theirs, rtol=FORWARD_TOL, atol=FORWARD_TOL)


@pytest.mark.parametrize("cell", DIFFERENTIABLE_CELLS)
def test_padding_is_exactly_zero_and_length_zero_returns_the_initial_state(cell):
    rng = np.random.default_rng(2)
    N, T, D, H = 3, 5, 2, 3
    inputs = random_sequence_inputs(cell, rng, N, T, D, H, dtype=np.float32)
    lengths = np.array([0, 2, 5])
    for reverse in (False, True):
        h, *states = call(cell, layer(cell), inputs, lengths=lengths, reverse=reverse, return_state=True)
        assert np.all(np.asarray(h)[0] == 0) and np.all(np.asarray(h)[1, 2:] == 0)
        np.testing.assert_array_equal(states[0][0], inputs["h0"][0])
        if len(states) == 2:
            np.testing.assert_array_equal(states[1][0], inputs["c0"][0])

        def loss(x):
            out = call(cell, layer(cell), {**inputs, "x": x}, lengths=lengths, reverse=reverse, return_state=True)
            return sum(jnp.sum(jnp.sin(o)) for o in out)

        dx = np.asarray(jax.grad(loss)(inputs["x"]))
        assert np.all(dx[0] == 0) and np.all(dx[1, 2:] == 0), "padded inputs get exactly zero gradient"
        assert np.any(dx[1, :2] != 0) and np.any(dx[2] != 0)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_zero_steps_forward_grad_and_backward(cell):
    rng = np.random.default_rng(3)
    inputs = random_sequence_inputs(cell, rng, 2, 0, 3, 4, dtype=np.float32)
    forward, backward, differentiable, names = sequence_layer_case(cell, with_c0=True)
    outs = forward(*inputs.values())
    assert outs[0].shape == (2, 0, inputs["h0"].shape[1])
    np.testing.assert_array_equal(outs[1], inputs["h0"])
    douts = [np.ones(np.shape(o), np.float32) for o in outs[:-1]]
    grads = backward(*douts, outs[-1])
    for name, grad in zip(names, grads):
        assert grad.shape == inputs[name].shape, name
        if name.startswith("W") or name.startswith("b"):
            assert not np.any(np.asarray(grad)), name
    # through jax.grad of the course call (no state outputs) too
    course = {k: v for k, v in inputs.items() if k != "c0"}
    assert all(name in course for name in names if name.startswith("W"))
    weight_grads = jax.grad(lambda *a: jnp.sum(call(cell, layer(cell), dict(zip(course, a)))), argnums=range(len(course)))(
        *course.values()
    )
    for name, grad in zip(course, weight_grads):
        assert grad.shape == course[name].shape and not np.any(np.asarray(grad)), name


# ------------------------------------------------------------------ ladder 1 and 2: gradients


GRADIENT_CASES = [
    pytest.param(cell, lengths, reverse, id=f"{name}-{cell}")
    for lengths, reverse, name in [(None, False, "plain"), (None, True, "reverse"), ((4, 0, 1), False, "lengths"),
                                   ((4, 0, 1), True, "lengths+reverse")]
    for cell in ALL_CELLS
    # the variants' cell math is the same in either direction and with or without lengths:
    # the two ends of the range are enough for them, and for the fast pair with projections
    # (whose loops are the fast pair's without) the harder end (the test budget)
    if cell in SEQUENCE_CELLS or name == "lengths+reverse" or (name == "plain" and cell != "lstm_fast_proj")
]


@pytest.mark.parametrize("cell, lengths, reverse", GRADIENT_CASES)
def test_hand_backward_matches_autodiff_and_numerical(x64, cell, lengths, reverse):
    rng = np.random.default_rng(4)
    inputs = random_sequence_inputs(cell, rng, 3, 4, 3, 4)
    forward, backward, differentiable, names = sequence_layer_case(
        cell, lengths=None if lengths is None else np.array(lengths), reverse=reverse
    )
    assert_layer_gradients(
        f"{cell} {lengths} {reverse}", forward, backward, differentiable, inputs, list(names),
        numerical_tol=NUMERICAL_SEQUENCE_TOL,
    )


def test_lstm_without_c0_returns_the_course_gradients(x64):
    """Without c0 the LSTM's backward returns the course's five gradients, also with lengths."""
    inputs = random_sequence_inputs("lstm", np.random.default_rng(5), 3, 4, 3, 4, with_c0=False)
    for cell in ("lstm", "lstm_fast"):
        forward, backward, differentiable, names = sequence_layer_case(
            cell, lengths=np.array([4, 2, 0]), reverse=True, with_c0=False
        )
        assert names == ("x", "h0", "Wx", "Wh", "b")
        assert_layer_gradients(cell, forward, backward, differentiable, inputs, list(names),
                               numerical_tol=NUMERICAL_SEQUENCE_TOL)


def test_lstm_fast_path_gives_the_plain_gradients(x64):
    """The fast pair and the course's pair, with and without projections: same outputs,
    states and gradients (AUTODIFF_TOL)."""
    rng = np.random.default_rng(6)
    cases = [(("lstm", "lstm_fast"), lengths, reverse)
             for lengths, reverse in itertools.product((None, np.array([7, 3, 1, 0])), (False, True))]
    cases.append((("lstm_proj", "lstm_fast_proj"), np.array([7, 3, 1, 0]), True))
    for (readable, faster), lengths, reverse in cases:
        inputs = random_sequence_inputs(readable, rng, 4, 7, 3, 5)
        plain = sequence_layer_case(readable, lengths=lengths, reverse=reverse)
        fast = sequence_layer_case(faster, lengths=lengths, reverse=reverse)
        # jitted: op by op, the 5 cases compiled ~75 programs
        out_plain, out_fast = jax.jit(plain[0])(*inputs.values()), jax.jit(fast[0])(*inputs.values())
        douts = [rng.standard_normal(np.shape(o)) for o in out_plain[:-1]]
        for a, b in zip(out_plain[:-1], out_fast[:-1]):
            assert relative_error(a, b) < FORWARD_TOL
        grads_plain, grads_fast = jax.jit(plain[1])(*douts, out_plain[-1]), jax.jit(fast[1])(*douts, out_fast[-1])
        assert len(grads_plain) == len(grads_fast) == len(inputs)
        for a, b in zip(grads_plain, grads_fast):
            assert relative_error(a, b) < AUTODIFF_TOL


def test_gru_step_gradients(x64):
    rng = np.random.default_rng(7)
    N, D, H = 4, 5, 3
    inputs = dict(
        x=rng.standard_normal((N, D)), prev_h=rng.standard_normal((N, H)),
        Wx=0.5 * rng.standard_normal((D, 3 * H)), Wh=0.5 * rng.standard_normal((H, 3 * H)),
        b=rng.standard_normal(3 * H), bh=rng.standard_normal(3 * H),
    )
    assert_layer_gradients("gru_step", L.gru_step_forward, L.gru_step_backward, L.gru_step, inputs, list(inputs),
                           numerical_tol=NUMERICAL_STEP_TOL)


def test_gru_course_style_gradients(x64):
    inputs = random_sequence_inputs("gru", np.random.default_rng(8), 2, 10, 3, 4)
    assert_layer_gradients("gru", L.gru_forward, L.gru_backward, L.gru, inputs, list(inputs),
                           numerical_tol=NUMERICAL_SEQUENCE_TOL)


# ------------------------------------------------------------------ ladder 3: PyTorch, float32


def torch_module(cell, D, H, bidirectional=False, proj_size=0):
    """The torch module of a cell: relu for "rnn_relu", proj_size for the "_proj" cells."""
    nonlinearity = CELL_OPTIONS.get(cell, {}).get("nonlinearity", "tanh")
    kinds = {"rnn": lambda: torch.nn.RNN(D, H, nonlinearity=nonlinearity, batch_first=True, bidirectional=bidirectional),
             "lstm": lambda: torch.nn.LSTM(D, H, batch_first=True, bidirectional=bidirectional, proj_size=proj_size),
             "gru": lambda: torch.nn.GRU(D, H, batch_first=True, bidirectional=bidirectional)}
    return kinds[base_cell(cell)]()


def torch_gate_order(cell, a, H):
    """Columns in jaxseq's gate order -> PyTorch's (an involution): only the LSTM differs,
    i, f, o, g (ours) vs i, f, g, o (PyTorch)."""
    if not cell.startswith("lstm"):
        return a
    i, f, o, g = np.split(a, 4, axis=-1)
    return np.concatenate([i, f, g, o], axis=-1)


def load_torch_direction(module, cell, suffix, weights, bh):
    """Copy jaxseq weights into one direction (suffix "" or "_reverse") of a torch module.
    PyTorch's two biases: b -> bias_ih, bh -> bias_hh (zeros for RNN/LSTM's bh: one bias)."""
    H = weights["Wh"].shape[0]
    with torch.no_grad():
        getattr(module, f"weight_ih_l0{suffix}").copy_(torch.from_numpy(torch_gate_order(cell, weights["Wx"], H).T.copy()))
        getattr(module, f"weight_hh_l0{suffix}").copy_(torch.from_numpy(torch_gate_order(cell, weights["Wh"], H).T.copy()))
        getattr(module, f"bias_ih_l0{suffix}").copy_(torch.from_numpy(torch_gate_order(cell, weights["b"], H).copy()))
        getattr(module, f"bias_hh_l0{suffix}").copy_(torch.from_numpy(torch_gate_order(cell, bh, H).copy()))
        if "Wr" in weights:
            getattr(module, f"weight_hr_l0{suffix}").copy_(torch.from_numpy(weights["Wr"].T.copy()))


def torch_direction_grads(module, cell, suffix, H):
    """{dWx, dWh, db, dbh} of one direction in jaxseq's layout (and dWr with a projection)."""
    grad = lambda name: getattr(module, f"{name}_l0{suffix}").grad.numpy()  # noqa: E731
    grads = {
        "Wx": torch_gate_order(cell, grad("weight_ih").T, H),
        "Wh": torch_gate_order(cell, grad("weight_hh").T, H),
        "b": torch_gate_order(cell, grad("bias_ih"), H),
        "bh": torch_gate_order(cell, grad("bias_hh"), H),
    }
    if cell.endswith("_proj"):
        grads["Wr"] = grad("weight_hr").T
    return grads


@pytest.mark.parametrize("cell", DIFFERENTIABLE_CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_packed_sequences_match_torch_float32(cell, reverse):
    """lengths vs torch on pack_padded_sequence(enforce_sorted=False); reverse=True vs the
    backward direction of a bidirectional torch layer. Outputs, final states, and the
    gradients of x, h0 (c0) and every weight (torch's bias_hh gradient equals db, or dbh).
    The relu RNN against nonlinearity="relu", the projections against proj_size=P."""
    rng = np.random.default_rng(9)
    N, T, D, H = 5, 7, 4, 6
    inputs = random_sequence_inputs(cell, rng, N, T, D, H, dtype=np.float32)
    lengths = np.array([7, 1, 4, 7, 2])  # torch packs lengths >= 1 only; 0 is tested above
    bh = inputs.get("bh", np.zeros_like(inputs["b"]))
    is_lstm = cell.startswith("lstm")
    R = inputs["h0"].shape[1]  # P with a projection, else H
    dh = rng.standard_normal((N, T, R)).astype(np.float32)
    dstates = [rng.standard_normal((N, width)).astype(np.float32) for width in ((R, H) if is_lstm else (R,))]

    module = torch_module(cell, D, H, bidirectional=reverse, proj_size=R if R != H else 0)
    suffix = "_reverse" if reverse else ""
    load_torch_direction(module, cell, suffix, inputs, bh)
    x_t = torch.from_numpy(inputs["x"]).requires_grad_()
    directions = 2 if reverse else 1
    initial = [torch.from_numpy(np.repeat(inputs[k][None], directions, 0)).requires_grad_()
               for k in (("h0", "c0") if is_lstm else ("h0",))]
    packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, torch.from_numpy(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out_packed, final = module(packed, tuple(initial) if is_lstm else initial[0])
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_packed, batch_first=True, total_length=T)
    final = final if is_lstm else (final,)
    d = directions - 1  # the direction under test
    out_t = out_t[..., d * R:(d + 1) * R]
    loss = (out_t * torch.from_numpy(dh)).sum() + sum((f[d] * torch.from_numpy(g)).sum() for f, g in zip(final, dstates))
    loss.backward()

    def ours(*values):
        args = dict(zip(inputs, values))
        out = call(cell, layer(cell), args, lengths=lengths, reverse=reverse, return_state=True)
        return out, jnp.sum(out[0] * dh) + sum(jnp.sum(s * g) for s, g in zip(out[1:], dstates))

    outs, _ = ours(*inputs.values())
    grads = jax.grad(lambda *v: ours(*v)[1], argnums=range(len(inputs)))(*inputs.values())
    assert outs[0].dtype == jnp.float32
    assert scaled_error(outs[0], out_t.detach().numpy()) < TORCH_TOL
    for ours_state, theirs in zip(outs[1:], final):
        assert scaled_error(ours_state, theirs[d].detach().numpy()) < TORCH_TOL
    expected = {"x": x_t.grad.numpy(), "h0": initial[0].grad[d].numpy(),
                **torch_direction_grads(module, cell, suffix, H)}
    if is_lstm:
        expected["c0"] = initial[1].grad[d].numpy()
    for name, grad in zip(inputs, grads):
        assert scaled_error(grad, expected[name]) < TORCH_TOL, name
    if "bh" not in inputs:  # one bias: PyTorch's two get the same gradient, ours
        assert scaled_error(grads[list(inputs).index("b")], expected["bh"]) < TORCH_TOL
    assert np.all(np.asarray(grads[0])[1, 1:] == 0)


def test_reverse_equals_torch_on_each_sequence_reversed_within_its_length():
    """The issue's other statement of reverse: torch forward on x reversed within each length,
    outputs reversed back, equals jaxseq's reverse=True."""
    rng = np.random.default_rng(10)
    N, T, D, H = 4, 6, 3, 5
    inputs = random_sequence_inputs("gru", rng, N, T, D, H, dtype=np.float32)
    lengths = np.array([6, 2, 5, 1])
    module = torch_module("gru", D, H)
    load_torch_direction(module, "gru", "", inputs, inputs["bh"])
    x_rev = torch.from_numpy(reverse_within_lengths(inputs["x"], lengths))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x_rev, torch.from_numpy(lengths), batch_first=True,
                                                     enforce_sorted=False)
    with torch.no_grad():
        out, h_n = module(packed, torch.from_numpy(inputs["h0"])[None])
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    expected = reverse_within_lengths(out.numpy(), lengths)
    h, ours_h_n = L.gru(*inputs.values(), lengths=lengths, reverse=True, return_state=True)
    assert scaled_error(h, expected) < TORCH_TOL
    assert scaled_error(ours_h_n, h_n[0].numpy()) < TORCH_TOL


def test_gru_step_and_sequence_match_torch_float32():
    rng = np.random.default_rng(11)
    N, T, D, H = 3, 5, 4, 6
    inputs = random_sequence_inputs("gru", rng, N, T, D, H, dtype=np.float32)
    cell = torch.nn.GRUCell(D, H)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.from_numpy(inputs["Wx"].T.copy()))
        cell.weight_hh.copy_(torch.from_numpy(inputs["Wh"].T.copy()))
        cell.bias_ih.copy_(torch.from_numpy(inputs["b"]))
        cell.bias_hh.copy_(torch.from_numpy(inputs["bh"]))
    x0 = torch.from_numpy(inputs["x"][:, 0]).requires_grad_()
    h0 = torch.from_numpy(inputs["h0"]).requires_grad_()
    dnext = rng.standard_normal((N, H)).astype(np.float32)
    next_t = cell(x0, h0)
    (next_t * torch.from_numpy(dnext)).sum().backward()
    step_args = (inputs["x"][:, 0], inputs["h0"], inputs["Wx"], inputs["Wh"], inputs["b"], inputs["bh"])
    assert scaled_error(L.gru_step(*step_args), next_t.detach().numpy()) < TORCH_TOL
    grads = jax.grad(lambda *a: jnp.sum(L.gru_step(*a) * dnext), argnums=range(6))(*step_args)
    expected = [x0.grad, h0.grad, cell.weight_ih.grad.T, cell.weight_hh.grad.T, cell.bias_ih.grad, cell.bias_hh.grad]
    for k, (ours, theirs) in enumerate(zip(grads, expected)):
        assert scaled_error(ours, theirs.numpy()) < TORCH_TOL, k

    module = torch_module("gru", D, H)
    load_torch_direction(module, "gru", "", inputs, inputs["bh"])
    x_t = torch.from_numpy(inputs["x"]).requires_grad_()
    h0_t = torch.from_numpy(inputs["h0"])[None].clone().requires_grad_()
    dh = rng.standard_normal((N, T, H)).astype(np.float32)
    out_t, h_n_t = module(x_t, h0_t)
    (out_t * torch.from_numpy(dh)).sum().backward()
    h, h_n = L.gru(*inputs.values(), return_state=True)
    assert scaled_error(h, out_t.detach().numpy()) < TORCH_TOL
    assert scaled_error(h_n, h_n_t[0].detach().numpy()) < TORCH_TOL
    grads = jax.grad(lambda *a: jnp.sum(L.gru(*a) * dh), argnums=range(6))(*inputs.values())
    expected = {"x": x_t.grad.numpy(), "h0": h0_t.grad[0].numpy(), **torch_direction_grads(module, "gru", "", H)}
    for name, grad in zip(inputs, grads):
        assert scaled_error(grad, expected[name]) < TORCH_TOL, name


# ------------------------------------------------------------------ ladder 4: properties

# (N, T, D, H): all ones, N = 1 and T = 1 beside sizes that differ from one another. The
# examples draw from this small set, with their own lengths, reverse and seed: the lengths and
# the output gradients are arguments of the jitted programs, not constants in them, so the
# examples of one shape and direction share their compilations.
SHAPES = ((1, 1, 1, 1), (1, 5, 3, 2), (4, 1, 2, 3), (3, 4, 2, 5))


@st.composite
def problems(draw):
    N, T, D, H = draw(st.sampled_from(SHAPES))
    special = st.sampled_from([0, 1, T])
    lengths = draw(st.lists(st.one_of(special, st.integers(0, T)), min_size=N, max_size=N))
    return N, T, D, H, np.array(lengths, np.int32), draw(st.booleans()), draw(st.integers(0, 2**16))


@functools.cache
def property_programs(cell, reverse):
    """The jitted programs of `check_hand_backward_under_jit` for one cell and direction, each
    taking the lengths as its first argument: forward, hand backward, autodiff of the forward
    and the gradient through the custom_vjp function (the last two also take the output
    gradients)."""
    def case(lengths):
        return sequence_layer_case(cell, lengths=lengths, reverse=reverse)

    names = case(None)[3]
    inputs = range(2, 2 + len(names))

    def projected(outputs):  # outputs(lengths, *values): the outputs that have gradients
        return lambda lengths, douts, *values: sum(jnp.sum(o * d) for o, d in zip(outputs(lengths, *values), douts))

    def forward(lengths, *values):
        return case(lengths)[0](*values)  # the outputs, then the cache

    def differentiable(lengths, *values):
        return case(lengths)[2](*values)

    return (jax.jit(forward), jax.jit(case(None)[1]),
            jax.jit(jax.grad(projected(lambda *a: forward(*a)[:-1]), argnums=inputs)),
            jax.jit(jax.grad(projected(differentiable), argnums=inputs)), names)


def check_hand_backward_under_jit(cell, problem):
    """Shapes, and hand backward == autodiff == the custom_vjp's gradients, all jitted, on one
    drawn problem; the forward against the NumPy reference for the cells it has."""
    N, T, D, H, lengths, reverse, seed = problem
    forward, backward, autodiff, through_vjp, names = property_programs(cell, reverse)
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        inputs = random_sequence_inputs(cell, rng, N, T, D, H)
        R = inputs["h0"].shape[1]
        outs = forward(lengths, *inputs.values())
        assert outs[0].shape == (N, T, R) and outs[1].shape == (N, R) and all(s.shape == (N, H) for s in outs[2:-1])
        if cell in SEQUENCE_CELLS:
            h_ref, h_n_ref, _, _ = reference_sequence(cell, inputs, lengths=lengths, reverse=reverse)
            np.testing.assert_allclose(outs[0], h_ref, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(outs[1], h_n_ref, rtol=1e-10, atol=1e-12)
        douts = [rng.standard_normal(np.shape(o)) for o in outs[:-1]]
        hand = backward(*douts, outs[-1])
        auto = autodiff(lengths, douts, *inputs.values())
        vjp_grads = through_vjp(lengths, douts, *inputs.values())
        assert len(hand) == len(names)
        for name, g_hand, g_auto, g_vjp in zip(names, hand, auto, vjp_grads):
            assert g_hand.shape == inputs[name].shape, name
            assert relative_error(g_hand, g_auto) < AUTODIFF_TOL, name
            assert relative_error(g_vjp, g_auto) < AUTODIFF_TOL, name
        return outs


@settings(max_examples=6, deadline=None)
@given(cell=st.sampled_from(SEQUENCE_CELLS), problem=problems())
def test_properties_hand_backward_equals_autodiff_under_jit(cell, problem):
    check_hand_backward_under_jit(cell, problem)


@settings(max_examples=4, deadline=None)
@given(cell=st.sampled_from(SEQUENCE_VARIANTS), problem=problems())
def test_properties_of_relu_and_projections(cell, problem):
    """The variants: the same jitted gradient identities, and the relu RNN's states are
    never negative."""
    outs = check_hand_backward_under_jit(cell, problem)
    if cell == "rnn_relu":
        assert np.all(np.asarray(outs[0]) >= 0)


@pytest.mark.parametrize("cell", SEQUENCE_CELLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_under_jit_with_lengths(cell, dtype):
    with jax.enable_x64(True):
        inputs = random_sequence_inputs(cell, np.random.default_rng(12), 3, 4, 2, 3, dtype=dtype)
        lengths = np.array([4, 0, 2])
        fn = lambda *v: call(cell, layer(cell), dict(zip(inputs, v)), lengths=lengths, reverse=True, return_state=True)  # noqa: E731
        outs = jax.jit(fn)(*inputs.values())
        grads = jax.jit(jax.grad(lambda *v: sum(jnp.sum(o**2) for o in fn(*v)), argnums=range(len(inputs))))(
            *inputs.values()
        )
        assert all(o.dtype == dtype for o in outs) and all(g.dtype == dtype for g in grads)


@pytest.mark.parametrize("cell", SEQUENCE_CELLS)
def test_vmap_over_batches_with_their_own_lengths(cell):
    rng = np.random.default_rng(13)
    B, N, T, D, H = 3, 2, 5, 3, 4
    inputs = random_sequence_inputs(cell, rng, N, T, D, H, dtype=np.float32)
    xs = rng.standard_normal((B, N, T, D)).astype(np.float32)
    lengths = rng.integers(0, T + 1, size=(B, N)).astype(np.int32)

    def one(x, lens):
        h, *states = call(cell, layer(cell), {**inputs, "x": x}, lengths=lens, reverse=True, return_state=True)
        return jnp.sum(h**2) + sum(jnp.sum(s) for s in states)

    values = jax.vmap(one)(xs, lengths)
    grads = jax.jit(jax.vmap(jax.grad(one)))(xs, lengths)
    one_value, one_grad = jax.jit(one), jax.jit(jax.grad(one))  # each batch alone: one program each, not op by op
    for k in range(B):
        np.testing.assert_allclose(values[k], one_value(xs[k], lengths[k]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grads[k], one_grad(xs[k], lengths[k]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ ladder 5: custom_vjp, no autodiff


@pytest.mark.parametrize("cell", DIFFERENTIABLE_CELLS)
def test_differentiable_layers_run_their_custom_vjp_rule(cell, monkeypatch):
    """The jaxpr holds a custom_vjp call, and jax.grad calls the hand backward (spied)."""
    import importlib

    module_name, backward_name = {
        "rnn": ("jaxseq.layers.rnn", "rnn_backward"), "lstm": ("jaxseq.layers.lstm", "lstm_fast_backward"),
        "gru": ("jaxseq.layers.gru", "gru_backward"),
    }[base_cell(cell)]
    module = importlib.import_module(module_name)
    calls = []
    original = getattr(module, backward_name)
    monkeypatch.setattr(module, backward_name, lambda *a, **k: calls.append(1) or original(*a, **k))
    inputs = random_sequence_inputs(cell, np.random.default_rng(14), 2, 3, 2, 3, dtype=np.float32)
    fn = lambda *v: call(cell, layer(cell), dict(zip(inputs, v)), lengths=np.array([3, 1]))  # noqa: E731
    assert "custom_vjp_call" in str(jax.make_jaxpr(fn)(*inputs.values()))
    jax.grad(lambda *v: jnp.sum(fn(*v)), argnums=range(len(inputs)))(*inputs.values())
    assert calls == [1]


# Every autodiff entry point (jax.grad, value_and_grad, vjp, jvp, linearize, jacfwd, jacrev,
# hessian, linear_transpose, however imported: `from jax import vjp` binds the function before
# any patch) ends in one of these functions of JAX's differentiation machinery, looked up on
# the module at each call. A JAX that renames them fails here (monkeypatch raises), loudly.
AUTODIFF_MACHINERY = ("jvp", "linearize", "backward_pass", "backward_pass3")


def forbid_autodiff(monkeypatch) -> None:
    """Make any differentiation by JAX raise from now until the test ends."""
    from jax._src.interpreters import ad

    def forbidden(*args, **kwargs):
        raise AssertionError("the hand-written backward called autodiff")

    for name in AUTODIFF_MACHINERY:
        monkeypatch.setattr(ad, name, forbidden)


def _square(x):
    return jnp.sum(x ** 2)


BOUND_EARLY = {  # each bound at import, as `from jax import vjp` in a module would be
    "vjp": lambda x: vjp(_square, x)[1](1.0), "jacrev": lambda x: jacrev(_square)(x),
    "jacfwd": lambda x: jacfwd(_square)(x), "jvp": lambda x: jvp(_square, (x,), (x,)),
    "linear_transpose": lambda x: linear_transpose(lambda v: 2.0 * v, x)(x),
    "grad": lambda x: grad(_square)(x), "hessian": lambda x: hessian(_square)(x),
}


@pytest.mark.parametrize("name", sorted(BOUND_EARLY))
def test_the_tripwire_catches_autodiff_however_imported(name, monkeypatch):
    x = jnp.arange(3.0)
    BOUND_EARLY[name](x)  # works before
    forbid_autodiff(monkeypatch)
    with pytest.raises(AssertionError, match="called autodiff"):
        BOUND_EARLY[name](x)
    with pytest.raises(AssertionError, match="called autodiff"):
        jax.jit(BOUND_EARLY[name])(x)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_hand_backward_never_calls_autodiff(cell, monkeypatch):
    inputs = random_sequence_inputs(cell, np.random.default_rng(15), 2, 3, 2, 3, dtype=np.float32)
    forward, backward, _, _ = sequence_layer_case(cell, lengths=np.array([3, 2]), reverse=True)
    outs = forward(*inputs.values())
    forbid_autodiff(monkeypatch)
    douts = [np.ones(np.shape(o), np.float32) for o in outs[:-1]]
    backward(*douts, outs[-1])
    jax.jit(backward)(*douts, outs[-1])
    step_inputs = random_sequence_inputs("gru", np.random.default_rng(16), 2, 1, 2, 3, dtype=np.float32)
    args = (step_inputs["x"][:, 0], step_inputs["h0"], step_inputs["Wx"], step_inputs["Wh"], step_inputs["b"],
            step_inputs["bh"])
    next_h, cache = L.gru_step_forward(*args)
    L.gru_step_backward(np.ones_like(next_h), cache)


# ------------------------------------------------------------------ ladder 6: bad lengths


@pytest.mark.parametrize("cell", SEQUENCE_CELLS)
def test_bad_lengths_are_value_errors_naming_lengths(cell):
    inputs = random_sequence_inputs(cell, np.random.default_rng(17), 3, 4, 2, 3, dtype=np.float32)
    cases = [
        (np.array([4, 4]), r"lengths must have shape \(N,\) = \(3,\), got \(2,\)"),
        (np.array([[4, 4, 4]]), r"lengths must have shape \(N,\) = \(3,\), got \(1, 3\)"),
        (np.array([4.0, 2.0, 1.0]), r"lengths must be an integer array of shape \(N,\) = \(3,\), got dtype float"),
        (np.array([4, 5, 1]), r"lengths holds 5, outside the valid range \[0, T\] = \[0, 4\]"),
        (np.array([4, -1, 1]), r"lengths holds -1, outside the valid range \[0, T\] = \[0, 4\]"),
        (np.array([2**32 + 5, 1, 1], np.int64), r"lengths holds 4294967301, outside the valid range"),  # not 5
        ([2**32 + 1, 1, 0], r"lengths holds 4294967297, outside the valid range"),
        ("abc", r"lengths must be an integer array of shape \(N,\) = \(3,\), got dtype <U3"),
    ]
    for fn in (layer(cell), forward_pair(cell)):
        for lengths, message in cases:
            with pytest.raises(ValueError, match=message):
                call(cell, fn, inputs, lengths=lengths)


def test_bad_projection_and_nonlinearity_are_value_errors_naming_them():
    inputs = random_sequence_inputs("lstm_proj", np.random.default_rng(18), 3, 4, 2, 4, dtype=np.float32)  # P = 2
    cases = [
        ({"Wr": inputs["Wr"][:, :1]}, r"h0 must have shape \(N, P\) = \(3, 1\), got \(3, 2\)"),
        ({"Wr": inputs["Wr"][:3]}, r"c0 must have shape \(N, H\) = \(3, 3\), got \(3, 4\)"),  # H is Wr's
        ({"Wr": inputs["Wr"][0]}, r"Wr must have rank 2, got shape \(2,\)"),
        ({"Wh": inputs["Wh"][:1]}, r"Wh must have shape \(P, 4H\) = \(2, 16\), got \(1, 16\)"),
        ({"c0": inputs["c0"][:, :2]}, r"c0 must have shape \(N, H\) = \(3, 4\), got \(3, 2\)"),
    ]
    for fn in (L.lstm, L.lstm_forward, L.lstm_fast_forward):
        for change, message in cases:
            with pytest.raises(ValueError, match=message):
                call("lstm_proj", fn, {**inputs, **change})
    rnn_inputs = random_sequence_inputs("rnn", np.random.default_rng(19), 3, 4, 2, 4, dtype=np.float32)
    step_args = (rnn_inputs["x"][:, 0], rnn_inputs["h0"], rnn_inputs["Wx"], rnn_inputs["Wh"], rnn_inputs["b"])
    for fn, args in ((L.rnn, rnn_inputs.values()), (L.rnn_forward, rnn_inputs.values()), (L.rnn_step, step_args),
                     (L.rnn_step_forward, step_args)):
        with pytest.raises(ValueError, match=r'nonlinearity must be "tanh" or "relu", got .sigmoid.'):
            fn(*args, nonlinearity="sigmoid")
