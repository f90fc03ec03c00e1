"""One computation, several implementations: the recurrent layers' forward+backward as jaxseq,
autodiff of a plain `lax.scan`, Flax, PyTorch and NumPy, and the checks that they agree.

`jaxseq demo`'s short benchmark and the benchmark suite (benchmarks/speed/) time these
contenders side by side (`jaxseq.timing`); before timing, `check_agreement` asserts that they
compute the same thing, so a benchmark never times different computations.

A *problem* (`make_problem`) is a dict of float32 arrays: x (N, T, D), h0 (N, H), Wx (D, G),
Wh (H, G), b (G,), [bh (G,), the GRU's second bias], [lengths (N,)], and dout (N, T, H), the
upstream gradient; G = gates * H. "fwd+bwd" is the gradient of loss = sum(h * dout) with
respect to x, h0, Wx, Wh and b (PyTorch: the gradients of its parameters, input and h0);
"fwd" is the forward pass alone (PyTorch under `torch.inference_mode`).

Contenders (an `Impl` each; `lstm_impls` builds the LSTM's five):

- jaxseq          `jaxseq.layers.lstm` (custom_vjp, hand backward) + `jax.grad`, jitted
- autodiff-scan   the same forward (input projection hoisted, one `lax.scan` over the
                  recurrence, `lstm_scan`) differentiated by `jax.grad`, jitted
- flax            `nn.RNN(nn.OptimizedLSTMCell(H))` + `jax.grad`, jitted
- torch           `nn.LSTM` (`nn.GRU`, `nn.RNN`), batch_first, float32 (only where installed)
- numpy           `jaxseq.numpy_reference`: vectorised over the batch, a loop over time, hand
                  backward (input projection and weight gradients batched outside the loop)

With `lengths` every contender follows PyTorch's packed sequences (PyTorch itself runs
`pack_padded_sequence` / `pad_packed_sequence` inside the timed call).

FLOP counts (matmuls only; the O(N T H) elementwise work is left out):
    forward   F = 2 N T D G + 2 N T H G          with G = 4H (LSTM), 3H (GRU) or H (RNN)
    backward  2 F (dx = da Wx^T, dh = da Wh^T, dWx = x^T da, dWh = h^T da)
    fwd+bwd   3 F
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import numpy as np

from jaxseq import numpy_reference
from jaxseq.gradcheck import FLOAT32_TOL
from jaxseq.numpy_reference import valid_mask

PARAM_KEYS = ("x", "h0", "Wx", "Wh", "b")  # + "bh" (the GRU's hidden bias), "Wr" (an LSTM's projection)
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
AGREEMENT_RTOL = FLOAT32_TOL


def forward_flops(N: int, T: int, D: int, H: int, gates: int) -> float:
    """Matmul FLOPs of the forward pass: 2 N T D (gates H) + 2 N T H (gates H)."""
    return 2.0 * N * T * (D + H) * gates * H


def fwd_bwd_flops(N: int, T: int, D: int, H: int, gates: int) -> float:
    """Forward + backward: the backward has twice the forward's matmul FLOPs."""
    return 3.0 * forward_flops(N, T, D, H, gates)


def make_problem(N: int, T: int, D: int, H: int, gates: int, seed: int = 0, *,
                 hidden_bias: bool = False) -> dict[str, np.ndarray]:
    """float32 inputs, weights scaled 1/sqrt(fan-in) so the gates stay out of saturation;
    `hidden_bias`: also `bh` (gates*H,), the GRU's second bias (drawn after the rest, so the
    other arrays do not depend on it)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    p = {
        "x": rng.standard_normal((N, T, D)).astype(f32),
        "h0": (0.5 * rng.standard_normal((N, H))).astype(f32),
        "Wx": (rng.standard_normal((D, gates * H)) / np.sqrt(D)).astype(f32),
        "Wh": (rng.standard_normal((H, gates * H)) / np.sqrt(H)).astype(f32),
        "b": (0.1 * rng.standard_normal(gates * H)).astype(f32),
        "dout": rng.standard_normal((N, T, H)).astype(f32),
    }
    if hidden_bias:
        p["bh"] = (0.1 * rng.standard_normal(gates * H)).astype(f32)
    return p


def param_keys(p: dict) -> tuple[str, ...]:
    """The differentiated arguments of the problem's layer, in the layer's order."""
    return PARAM_KEYS + tuple(key for key in ("bh", "Wr") if key in p)


def grad_keys(p: dict) -> tuple[str, ...]:
    """The names of the gradients of problem `p`'s inputs and parameters ("dx", "dWx", ...)."""
    return tuple("d" + k for k in param_keys(p))


class Impl(NamedTuple):
    """One contender: zero-argument timed callables and converters to the common layout."""

    fwd_bwd: Callable[[], Any]  # -> raw gradients
    fwd: Callable[[], Any]  # -> raw output
    grads: Callable[[Any], dict]  # raw gradients -> {dx, dh0, dWx, dWh, db[, dbh][, dWr]} (jaxseq layout, numpy)
    out: Callable[[Any], dict]  # raw output -> {"h": (N, T, H)}, and "h_n" (N, H) with the final state


def _outputs(state: bool) -> Callable[[Any], dict]:
    """Raw forward result -> {"h"} or, with the final state, (h, h_n, ...) -> {"h", "h_n"}."""
    if state:
        return lambda r: {"h": np.asarray(r[0]), "h_n": np.asarray(r[1])}
    return lambda r: {"h": np.asarray(r)}


# ----------------------------------------------------------------------------- JAX contenders


def recurrent_scan(cell, x, carry0, Wx, b, lengths=None, reverse=False):
    """The autodiff reference shared by every cell: the input projection x Wx + b hoisted out
    of the loop, then one `lax.scan` of `cell(carry, xw_t) -> (carry, h_t)`.

    With `lengths` (N,), PyTorch's packed-sequence semantics written as plain masks: the carry
    is frozen where t >= lengths[n] and h_t is 0 there. `reverse`: the scan runs from t = T-1
    down to 0; with the masks the carry stays the initial one until t = lengths[n] - 1, so each
    sequence is read backward within its own length (a bidirectional layer's backward
    direction). Returns (h (N, T, H), final carry).
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    xw = jnp.einsum("ntd,dm->tnm", x, Wx) + b
    if lengths is None:
        carry, h_tm = lax.scan(cell, carry0, xw, reverse=reverse)
        return jnp.swapaxes(h_tm, 0, 1), carry
    valid = (jnp.arange(x.shape[1])[:, None] < lengths[None, :])[..., None]  # (T, N, 1)

    def step(carry, inputs):
        xw_t, valid_t = inputs
        new, h = cell(carry, xw_t)
        new = jax.tree_util.tree_map(lambda n, o: jnp.where(valid_t, n, o), new, carry)
        return new, jnp.where(valid_t, h, 0.0)

    carry, h_tm = lax.scan(step, carry0, (xw, valid), reverse=reverse)
    return jnp.swapaxes(h_tm, 0, 1), carry


def lstm_scan(x, h0, Wx, Wh, b, *, lengths=None, reverse=False, return_state=False):
    """Plain LSTM (gates i, f, o, g, c0 = 0) on `recurrent_scan`, for autodiff; jaxseq's
    signature: h, or (h, h_n, c_n) with return_state."""
    import jax
    import jax.numpy as jnp

    H = h0.shape[-1]

    def cell(carry, xw_t):
        h, c = carry
        a = xw_t + h @ Wh
        i = jax.nn.sigmoid(a[:, :H])
        f = jax.nn.sigmoid(a[:, H:2 * H])
        o = jax.nn.sigmoid(a[:, 2 * H:3 * H])
        g = jnp.tanh(a[:, 3 * H:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    h, (h_n, c_n) = recurrent_scan(cell, x, (h0, jnp.zeros_like(h0)), Wx, b, lengths, reverse)
    return (h, h_n, c_n) if return_state else h


def grad_fn(layer, n_params: int = 5):
    """jax.grad of loss(*params, dout, **options) = sum(layer(*params, **options) * dout) with
    respect to the params (options such as `lengths` are passed through, not differentiated)."""
    import jax
    import jax.numpy as jnp

    def loss(*args, **options):
        *params, dout = args
        return jnp.sum(layer(*params, **options) * dout)

    return jax.grad(loss, argnums=tuple(range(n_params)))


@functools.lru_cache(maxsize=None)
def _jitted(layer, n_params: int, state: bool):
    """(jitted jax.grad, jitted forward) of a layer function, one pair per layer: contenders
    built again at a shape already compiled (tests, the demo) reuse the compilation."""
    import jax

    return jax.jit(grad_fn(layer, n_params)), jax.jit(functools.partial(layer, return_state=True) if state else layer)


def jax_impl(layer, p: dict, *, state: bool = False) -> Impl:
    """A JAX layer function (x, h0, Wx, Wh, b[, bh], lengths=..., return_state=...) -> h, jitted
    forward and jitted jax.grad; `lengths` (when the problem has them) are a jit argument, so
    nothing is specialized on their values; `state`: the forward also returns h_n."""
    import jax

    keys = param_keys(p)
    args = tuple(jax.device_put(p[k]) for k in keys)
    dout = jax.device_put(p["dout"])
    options = {"lengths": jax.device_put(p["lengths"])} if "lengths" in p else {}
    grad, fwd = _jitted(layer, len(keys), state)
    return Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(*args, dout, **options)),
        fwd=lambda: jax.block_until_ready(fwd(*args, **options)),
        grads=lambda r: dict(zip(grad_keys(p), (np.asarray(a) for a in r))),
        out=_outputs(state),
    )


def flax_lstm_carry(h0):
    """OptimizedLSTMCell's carry is (c, h); jaxseq starts from c0 = 0."""
    import jax.numpy as jnp

    return jnp.zeros_like(h0), h0


def _flax_lstm_h(carry):
    return carry[1]


def same_carry(carry):
    """The carry of a cell whose state is h alone (SimpleCell, GRUCell), and its h."""
    return carry


def flax_functions(model, initial_carry, final_h=same_carry):
    """forward(params, x, h0, lengths=None, state=False) -> h [, h_n] and loss(params, x, h0,
    dout, lengths=None) = sum(h * dout) of a Flax `nn.RNN`.

    With lengths: `seq_lengths=` is passed, and since Flax does not zero the outputs past a
    length (it only uses seq_lengths to pick the final carry), they are zeroed by a mask, so
    that the contender computes what the others do. `final_h` takes h out of the cell's carry.
    """
    import jax.numpy as jnp

    def forward(params, x, h0, lengths=None, state=False):
        options = {} if lengths is None else {"seq_lengths": lengths}
        result = model.apply(params, x, initial_carry=initial_carry(h0), return_carry=state, **options)
        carry, h = result if state else (None, result)
        if lengths is not None:
            h = jnp.where((jnp.arange(x.shape[1])[None, :] < lengths[:, None])[..., None], h, 0.0)
        return (h, final_h(carry)) if state else h

    def loss(params, x, h0, dout, lengths=None):
        return jnp.sum(forward(params, x, h0, lengths) * dout)

    return forward, loss


@functools.lru_cache(maxsize=None)
def _flax_jitted(cell_type, H: int, initial_carry, final_h, state: bool):
    """(jitted jax.grad, jitted forward) of `nn.RNN(cell_type(H))`, one pair per kind (as `_jitted`)."""
    import flax.linen as nn
    import jax

    forward, loss = flax_functions(nn.RNN(cell_type(H)), initial_carry, final_h)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2))), jax.jit(functools.partial(forward, state=state))


def flax_impl(cell_type, initial_carry, cell: dict, p: dict, weight_grads: Callable[[dict], dict], *,
               final_h=same_carry, state: bool = False) -> Impl:
    """`nn.RNN(cell_type(H))` with the given cell parameters; `weight_grads` maps the cell's
    parameter gradients to {dWx, dWh, db[, dbh]} in jaxseq's layout."""
    import jax

    grad, fwd = _flax_jitted(cell_type, p["h0"].shape[1], initial_carry, final_h, state)
    params = jax.device_put({"params": {"cell": cell}})
    x, h0, dout = (jax.device_put(p[k]) for k in ("x", "h0", "dout"))
    options = {"lengths": jax.device_put(p["lengths"])} if "lengths" in p else {}

    def grads(r):
        dparams, dx, dh0 = r
        return {"dx": np.asarray(dx), "dh0": np.asarray(dh0), **weight_grads(dparams["params"]["cell"])}

    return Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(params, x, h0, dout, **options)),
        fwd=lambda: jax.block_until_ready(fwd(params, x, h0, **options)),
        grads=grads,
        out=_outputs(state),
    )


# Flax OptimizedLSTMCell keeps one kernel per gate: input kernels i{gate} (no bias), hidden
# kernels h{gate} with the bias. jaxseq's 4H axis is ordered i, f, o, g.
_JAXSEQ_GATES = ("i", "f", "o", "g")


def flax_lstm_cell(Wx, Wh, b) -> dict:
    """OptimizedLSTMCell's parameters from jaxseq's layout: Wx (D, 4H), Wh (H, 4H), b (4H,)."""
    H = Wh.shape[0]
    cell = {}
    for k, gate in enumerate(_JAXSEQ_GATES):
        cols = slice(k * H, (k + 1) * H)
        cell[f"i{gate}"] = {"kernel": Wx[:, cols]}
        cell[f"h{gate}"] = {"kernel": Wh[:, cols], "bias": b[cols]}
    return cell


def flax_lstm_weight_grads(c: dict) -> dict:
    """OptimizedLSTMCell's parameter gradients as {dWx, dWh, db} in jaxseq's layout."""
    return {
        "dWx": np.concatenate([np.asarray(c[f"i{g}"]["kernel"]) for g in _JAXSEQ_GATES], axis=1),
        "dWh": np.concatenate([np.asarray(c[f"h{g}"]["kernel"]) for g in _JAXSEQ_GATES], axis=1),
        "db": np.concatenate([np.asarray(c[f"h{g}"]["bias"]) for g in _JAXSEQ_GATES]),
    }


def flax_lstm_impl(p: dict, state: bool = False) -> Impl:
    """Flax's `OptimizedLSTMCell` under `nn.RNN` on problem `p`, jaxseq's weights in Flax's layout
    (`state`: also the final state as an output)."""
    import flax.linen as nn

    cell = flax_lstm_cell(p["Wx"], p["Wh"], p["b"])
    return flax_impl(nn.OptimizedLSTMCell, flax_lstm_carry, cell, p, flax_lstm_weight_grads,
                      final_h=_flax_lstm_h, state=state)


# PyTorch's 4H axis is ordered i, f, g, o: jaxseq's blocks (i, f, o, g) taken as 0, 1, 3, 2.
_TORCH_BLOCKS = (0, 1, 3, 2)


def to_torch_gates(a: np.ndarray, H: int) -> np.ndarray:
    """Reorder the last axis (4H) from jaxseq's i, f, o, g to PyTorch's i, f, g, o (an involution)."""
    return np.concatenate([a[..., k * H:(k + 1) * H] for k in _TORCH_BLOCKS], axis=-1)


def torch_module(p: dict, kind: str):
    """The PyTorch layer of `kind` ("lstm", "gru", "rnn", or "rnn_relu": nonlinearity='relu')
    with the problem's weights (jaxseq's gate order mapped to PyTorch's; a problem with "Wr"
    (H, P) is an LSTM with proj_size=P, weight_hr = Wr^T); returns (module, reorder),
    reorder mapping a 4H/3H/H axis between the two."""
    import torch

    D, H = p["x"].shape[2], p["Wx"].shape[1] // GATES[kind.split("_")[0]]
    module: Any  # torch.nn.LSTM / GRU / RNN: their weight_*_l0 attributes are made at run time
    if kind == "lstm":
        module = torch.nn.LSTM(D, H, batch_first=True, proj_size=p["Wr"].shape[1] if "Wr" in p else 0)
    elif kind == "gru":
        module = torch.nn.GRU(D, H, batch_first=True)
    else:
        module = torch.nn.RNN(D, H, nonlinearity="relu" if kind == "rnn_relu" else "tanh", batch_first=True)
    reorder = (lambda a: to_torch_gates(a, H)) if kind == "lstm" else (lambda a: a)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(reorder(p["Wx"]).T)))
        module.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(reorder(p["Wh"]).T)))
        module.bias_ih_l0.copy_(torch.from_numpy(reorder(p["b"])))
        if "bh" in p:
            module.bias_hh_l0.copy_(torch.from_numpy(reorder(p["bh"])))
        else:
            module.bias_hh_l0.zero_()
        if "Wr" in p:
            module.weight_hr_l0.copy_(torch.from_numpy(np.ascontiguousarray(p["Wr"].T)))
    return module, reorder


def torch_impl(p: dict, kind: str, state: bool = False) -> Impl:
    """nn.LSTM (kind="lstm"; proj_size=P where the problem has "Wr"), nn.GRU ("gru": gates
    r, z, n as jaxseq, bias_hh = bh) or nn.RNN(nonlinearity='tanh') ("rnn"; 'relu':
    "rnn_relu"), batch_first, float32; bias_hh is 0 for LSTM and RNN.

    With lengths, the timed call is what a PyTorch user runs: `pack_padded_sequence(x,
    lengths, batch_first=True, enforce_sorted=False)`, the module, `pad_packed_sequence(...,
    total_length=T)`.
    """
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    T = p["x"].shape[1]
    module, reorder = torch_module(p, kind)
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    h0 = torch.from_numpy(p["h0"])[None].clone().requires_grad_(True)
    dout = torch.from_numpy(p["dout"])
    c0 = torch.zeros((1, h0.shape[1], p["Wx"].shape[1] // 4), dtype=h0.dtype)  # (1, N, H): h0 is P wide with Wr
    initial = (lambda: (h0, c0)) if kind == "lstm" else (lambda: h0)
    final_h = (lambda final: final[0][0]) if kind == "lstm" else (lambda final: final[0])
    leaves = [x, h0, *module.parameters()]
    lengths = torch.from_numpy(np.asarray(p["lengths"], np.int64)) if "lengths" in p else None

    def run():
        if lengths is None:
            return module(x, initial())
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = module(packed, initial())
        return pad_packed_sequence(out, batch_first=True, total_length=T)[0], final

    def fwd_bwd():
        for leaf in leaves:
            leaf.grad = None
        out, _ = run()
        (out * dout).sum().backward()
        biases = (module.bias_ih_l0.grad,) + ((module.bias_hh_l0.grad,) if "bh" in p else ())
        projection = (module.weight_hr_l0.grad,) if "Wr" in p else ()
        return (x.grad, h0.grad, module.weight_ih_l0.grad, module.weight_hh_l0.grad, *biases, *projection)

    def fwd():
        with torch.inference_mode():
            out, final = run()
            return (out, final_h(final)) if state else out

    def grads(r):
        dx, dh0, dWih, dWhh, *rest = (t.detach().numpy() for t in r)
        named = {"dx": dx, "dh0": dh0[0], "dWx": reorder(dWih.T), "dWh": reorder(dWhh.T)}
        if "Wr" in p:
            *rest, dWhr = rest
            named["dWr"] = dWhr.T
        return {**named, **dict(zip(("db", "dbh"), (reorder(d) for d in rest)))}

    return Impl(fwd_bwd=fwd_bwd, fwd=fwd, grads=grads, out=_outputs(state))


# ----------------------------------------------------------------------------- NumPy contender


def numpy_impl(p: dict, kind: str, state: bool = False) -> Impl:
    """`jaxseq.numpy_reference`'s forward and hand backward of `kind` ("lstm", "gru", "rnn")."""
    forward, backward = numpy_reference.LAYERS[kind]
    args = tuple(p[k] for k in param_keys(p))
    dout, lengths = p["dout"], p.get("lengths")

    def fwd_bwd():
        *_, cache = forward(*args, lengths=lengths)
        return backward(dout, cache)  # d sum(h * dout) / dh = dout

    def fwd():
        h, h_n, *_ = forward(*args, lengths=lengths)
        return (h, h_n) if state else h

    return Impl(fwd_bwd=fwd_bwd, fwd=fwd, grads=lambda r: {k: np.asarray(r[k]) for k in grad_keys(p)},
                out=_outputs(state))


# ----------------------------------------------------------------------------- agreement


def max_rel_error(actual, expected) -> float:
    """max |actual - expected| / max |expected| (scale-relative, robust to entries near zero)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape mismatch: {actual.shape} vs {expected.shape}")
    scale = max(float(np.max(np.abs(expected))) if expected.size else 0.0, 1e-30)
    return float(np.max(np.abs(actual - expected))) / scale if actual.size else 0.0


def assert_agree(name: str, actual: dict, expected: dict, rtol: float = AGREEMENT_RTOL,
                 against: str = "jaxseq") -> dict:
    """Check that contender `name` computed the same arrays as `against` (same keys, rel error < rtol).

    Returns {key: relative error}; raises AssertionError naming the contender and array.
    """
    if set(actual) != set(expected):
        raise AssertionError(f"{name}: outputs {sorted(actual)} differ from {against}'s {sorted(expected)}")
    errors = {key: max_rel_error(actual[key], expected[key]) for key in expected}
    bad = {key: err for key, err in errors.items() if not err < rtol}
    if bad:
        detail = ", ".join(f"{key}: {err:.2e}" for key, err in bad.items())
        raise AssertionError(f"{name} disagrees with {against} beyond relative {rtol:g}: {detail}")
    return errors


def _assert_zero_padding(name: str, out: dict, grads: dict, valid: np.ndarray) -> None:
    """Outputs and input gradients past each length must be exactly 0 (packed-sequence semantics)."""
    pad = ~valid[..., 0]
    for what, array in (("h", out["h"]), ("dx", grads["dx"])):
        worst = float(np.max(np.abs(array[pad]), initial=0.0))
        if worst != 0.0:
            raise AssertionError(f"{name}: {what} is not 0 past the lengths (largest |value| {worst:.2e})")


def check_agreement(impls: dict[str, Impl], rtol: float = AGREEMENT_RTOL, reference: str = "jaxseq",
                    valid: np.ndarray | None = None) -> dict:
    """Assert that every contender's output and gradients match the reference's (float32, rtol).

    `valid` (N, T, 1) bool, for problems with lengths: also assert that every contender's
    outputs and input gradients past each length are exactly 0.
    Returns {contender: {array: relative error}}; raises AssertionError on a mismatch, so a
    benchmark never times different computations.
    """
    computed = {name: (impl.grads(impl.fwd_bwd()), impl.out(impl.fwd())) for name, impl in impls.items()}
    if valid is not None:
        for name, (grads, out) in computed.items():
            _assert_zero_padding(name, out, grads, valid)
    ref_grads, ref_out = computed[reference]
    errors = {}
    for name, (grads, out) in computed.items():
        if name == reference:
            continue
        errs = assert_agree(name + " (fwd+bwd)", grads, ref_grads, rtol, reference)
        errs.update(assert_agree(name + " (fwd)", out, ref_out, rtol, reference))
        errors[name] = errs
    return errors


def agreement_note(errors: dict) -> str:
    """One line for a table: the largest relative error of any contender against jaxseq."""
    worst = max((max(e.values()) for e in errors.values()), default=0.0)
    return f"all contenders agree with jaxseq (largest relative error {worst:.1e})"


# ----------------------------------------------------------------------------- the LSTM's contenders


def layer_impls(layer: Callable, scan: Callable, flax: Callable[..., Impl], kind: str, p: dict, *,
                state: bool = False) -> dict[str, Impl]:
    """The contenders of one layer on problem `p`, jaxseq first: `layer` (jaxseq's function),
    `scan` (its autodiff-scan twin, same signature), `flax` ((p, state) -> Impl), and PyTorch's
    (only where installed) and NumPy's of `kind`; `state`: the forwards also return h_n."""
    impls = {
        "jaxseq": jax_impl(layer, p, state=state),
        "autodiff-scan": jax_impl(scan, p, state=state),
        "flax": flax(p, state=state),
    }
    try:
        impls["torch"] = torch_impl(p, kind, state=state)
    except ImportError:
        pass
    impls["numpy"] = numpy_impl(p, kind, state=state)
    return impls


def lstm_impls(p: dict, *, state: bool = False) -> dict[str, Impl]:
    """The LSTM's contenders (`layer_impls`): jaxseq, autodiff-scan, flax, [torch], numpy."""
    import jaxseq.layers

    return layer_impls(jaxseq.layers.lstm, lstm_scan, flax_lstm_impl, "lstm", p, state=state)
