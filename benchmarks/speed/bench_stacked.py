"""Stacked benchmark of issue 14: a 2-layer bidirectional LSTM and GRU with variable lengths.

Cases "stacked lstm" and "stacked gru", fwd+bwd at N=64 T=32 D=256 H=256 (`--quick`: N=8
T=4 D=16 H=32), float32, lengths drawn uniform in [T/2, T] (seeded, `bench_recurrent.make_lengths`),
PyTorch's packed-sequence semantics (outputs 0 past each length, the backward direction reads
each sequence from its own last valid step, h_n / c_n the state after each sequence's last
valid step). The parameters are drawn as PyTorch draws them, uniform(-1/sqrt(H), 1/sqrt(H)).

fwd+bwd is the gradient, with respect to x and every parameter (16 arrays: weight_ih, weight_hh,
bias_ih, bias_hh of 2 layers x 2 directions), of

    loss = sum(out * dout) + sum(h_n * dh_n) [+ sum(c_n * dc_n), the LSTM]

with random cotangents dout (N, T, 2H), dh_n and dc_n (4, N, H): the final states are part of
the loss, so their gradients are checked too. The initial states are zeros (not differentiated).

Contenders (every one computes the same thing; `bench_layers.check_agreement` asserts it first):

- jaxseq         `jaxseq.nn.LSTM` / `GRU(hidden_size=H, num_layers=2, bidirectional=True)` with
                 `lengths=`, `jax.grad` w.r.t. its params and x (the layers' hand-written
                 backward passes), jitted
- autodiff-scan  the same stack written on `bench_layers.lstm_scan` / `bench_recurrent.gru_scan`
                 (the masked `lax.scan` reference; `reverse=True` reads the backward direction
                 within each length), PyTorch-layout weights converted inside the differentiated
                 function, plain `jax.grad`, jitted
- flax           two `nn.Bidirectional(nn.RNN(cell), nn.RNN(cell))` layers, cell
                 `nn.OptimizedLSTMCell(H)` / `nn.GRUCell(H)`, `seq_lengths=` and
                 `return_carry=True`; Bidirectional runs its backward RNN with `reverse=True,
                 keep_order=True`, which flips each sequence within its length. Flax does not
                 zero the outputs past the lengths, so they are zeroed by a mask (in the timed
                 call; only the last layer's: padded steps never reach a valid one)
- torch          `torch.nn.LSTM` / `GRU(D, H, num_layers=2, bidirectional=True, batch_first=True)`
                 on `pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)`,
                 `pad_packed_sequence(..., total_length=T)`, both in the timed call; float32,
                 2 threads (`harness.setup`)

The common layout is PyTorch's: outputs {h: out, h_n[, c_n]} and gradients {dx, d<name>} for
each parameter name (`jaxseq.nn.params_to_torch` for jaxseq). Flax gets the PyTorch weights
per gate (`bench_layers.flax_lstm_cell` / `bench_recurrent.flax_gru_cell` on the jaxseq layout):

    LSTM  OptimizedLSTMCell ii, if, ig, io (kernel) = weight_ih^T's gate blocks i, f, g, o;
          hi, hf, hg, ho (kernel, bias) = weight_hh^T's blocks and bias_ih + bias_hh
          (the gradient of that bias is both of PyTorch's)
    GRU   GRUCell ir, iz, in (kernel, bias), hr, hz, hn (kernel; hn also a bias):
          ir = b_ir + b_hr, iz = b_iz + b_hz, in = b_in, hn = b_hn (PyTorch's GRU exactly: its
          r and z see their two biases only as a sum)

Targets (issue 14): jaxseq >= 1.5x PyTorch packed and >= 1.5x Flax (ratio = contender median
/ jaxseq median); each case's notes start with the measured speed-ups. GFLOP/s count the valid
steps only (the sum of the lengths).
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_layers as bl  # noqa: E402
import bench_recurrent as br  # noqa: E402
import harness  # noqa: E402

NUM_LAYERS = 2
NUM_DIRECTIONS = 2
SHAPE = (64, 32, 256, 256)  # N, T, D, H (issue 14)
QUICK_SHAPE = bl.QUICK_SHAPES["q"]  # (8, 4, 16, 32): shared with the tests' compilations
KINDS = ("lstm", "gru")
KINDS_STATES = {"lstm": ("h_n", "c_n"), "gru": ("h_n",)}
SPEEDUP_TARGET = 1.5  # jaxseq at least 1.5x faster than torch and than flax
TARGET_CONTENDERS = ("torch", "flax")
TORCH_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _module(kind: str, H: int):
    from jaxseq import nn as jnn

    cls = {"lstm": jnn.LSTM, "gru": jnn.GRU}[kind]
    return cls(hidden_size=H, num_layers=NUM_LAYERS, bidirectional=True)


def _names(layer: int, direction: int) -> dict[str, str]:
    """{kind: PyTorch's parameter name} of one layer and direction."""
    from jaxseq.nn.parameters import parameter_name

    return {kind: parameter_name(kind, layer, direction) for kind in TORCH_KINDS}


def _directions():
    """(layer, direction, state row) in PyTorch's order."""
    return [(layer, d, layer * NUM_DIRECTIONS + d) for layer in range(NUM_LAYERS) for d in range(NUM_DIRECTIONS)]


def shape_label(N: int, T: int, D: int, H: int) -> str:
    return f"N={N} T={T} D={D} H={H}, {NUM_LAYERS} layers bidirectional, lengths in [T/2, T]"


def make_problem(N: int, T: int, D: int, H: int, kind: str, seed: int = 0) -> dict:
    """x (N, T, D) (the padding keeps random values: nothing read there may reach a result),
    lengths (N,) uniform in [T/2, T], params {PyTorch name: array} in a state_dict's order drawn
    as PyTorch does, and the cotangents dout (N, T, 2H) and dstates (one (S, N, H) per state)."""
    from jaxseq.nn.parameters import parameter_specs

    module = _module(kind, H)
    rng = np.random.default_rng(seed)
    f32 = np.float32
    bound = 1.0 / np.sqrt(H)
    specs = parameter_specs(module.cell.gates, H, NUM_LAYERS, NUM_DIRECTIONS, D)
    S = NUM_LAYERS * NUM_DIRECTIONS
    return {
        "x": rng.standard_normal((N, T, D)).astype(f32),
        "lengths": br.make_lengths(N, T, seed),
        "params": {spec.name: rng.uniform(-bound, bound, spec.shape).astype(f32) for spec in specs},
        "dout": rng.standard_normal((N, T, NUM_DIRECTIONS * H)).astype(f32),
        "dstates": tuple(rng.standard_normal((S, N, H)).astype(f32) for _ in KINDS_STATES[kind]),
    }


def stacked_flops(lengths, D: int, H: int, gates: int) -> float:
    """Forward matmul FLOPs of the stack on the valid steps (layer 0 reads D, layer 1 2H)."""
    steps = int(np.sum(lengths))
    return sum(NUM_DIRECTIONS * bl.forward_flops(1, steps, D if layer == 0 else NUM_DIRECTIONS * H, H, gates)
               for layer in range(NUM_LAYERS))


def _outputs(kind: str):
    """Raw forward (out, states) -> {"h": out, "h_n"[, "c_n"]} (NumPy)."""
    def out(r):
        h, states = r
        return {"h": np.asarray(h), **{name: np.asarray(s) for name, s in zip(KINDS_STATES[kind], states)}}

    return out


# ----------------------------------------------------------------------------- JAX contenders


def _loss(forward):
    """loss(params, x, lengths, dout, dstates) = sum(out * dout) + sum over the final states of
    sum(state * dstate), for forward(params, x, lengths) -> (out, states)."""
    import jax.numpy as jnp

    def loss(params, x, lengths, dout, dstates):
        out, states = forward(params, x, lengths)
        return jnp.sum(out * dout) + sum(jnp.sum(s * d) for s, d in zip(states, dstates))

    return loss


def _jax_impl(jitted, params, p: dict, kind: str, grads_to_torch) -> bl.Impl:
    """A JAX contender from its (jitted grad w.r.t. (params, x), jitted forward); `grads_to_torch`
    maps its parameter gradients to {PyTorch name: array}. lengths are a jit argument."""
    import jax

    grad, fwd = jitted
    params = jax.device_put(params)
    x, lengths, dout = (jax.device_put(p[k]) for k in ("x", "lengths", "dout"))
    dstates = jax.device_put(p["dstates"])

    def grads(r):
        dparams, dx = r
        return {"dx": np.asarray(dx), **{"d" + k: np.asarray(v) for k, v in grads_to_torch(dparams).items()}}

    return bl.Impl(
        fwd_bwd=lambda: jax.block_until_ready(grad(params, x, lengths, dout, dstates)),
        fwd=lambda: jax.block_until_ready(fwd(params, x, lengths)),
        grads=grads,
        out=_outputs(kind),
    )


def _jit_pair(forward):
    import jax

    return jax.jit(jax.grad(_loss(forward), argnums=(0, 1))), jax.jit(forward)


@functools.lru_cache(maxsize=None)
def _jaxseq_jitted(kind: str, H: int):
    module = _module(kind, H)

    def forward(params, x, lengths):
        out, final = module.apply({"params": params}, x, lengths=lengths)
        return out, (final if kind == "lstm" else (final,))

    return _jit_pair(forward)


def jaxseq_impl(p: dict, kind: str) -> bl.Impl:
    """`jaxseq.nn.LSTM` / `GRU`, num_layers=2, bidirectional, loaded from the PyTorch weights."""
    from jaxseq.nn import params_from_torch, params_to_torch

    H = p["dstates"][0].shape[-1]
    module = _module(kind, H)
    params = params_from_torch(module, p["params"])["params"]
    return _jax_impl(_jaxseq_jitted(kind, H), params, p, kind, lambda g: params_to_torch(module, g))


def scan_stack(kind: str, params: dict, x, lengths):
    """The stack on the plain masked `lax.scan` layers of bench_layers / bench_recurrent, PyTorch's
    weights converted inside (differentiable): (out (N, T, 2H), states, each (S, N, H))."""
    import jax.numpy as jnp

    from jaxseq.nn.cells import torch_lstm_gates_to_jaxseq as reorder

    N = x.shape[0]
    layer_input, finals = x, []
    for layer in range(NUM_LAYERS):
        outs = []
        for direction in range(NUM_DIRECTIONS):
            w = {kind_: params[name] for kind_, name in _names(layer, direction).items()}
            H = w["weight_hh"].shape[1]
            h0 = jnp.zeros((N, H), x.dtype)
            options = {"lengths": lengths, "reverse": bool(direction), "return_state": True}
            if kind == "lstm":
                h, *final = bl.lstm_scan(layer_input, h0, reorder(w["weight_ih"]).T, reorder(w["weight_hh"]).T,
                                         reorder(w["bias_ih"] + w["bias_hh"]), **options)
            else:
                h, *final = br.gru_scan(layer_input, h0, w["weight_ih"].T, w["weight_hh"].T, w["bias_ih"],
                                        w["bias_hh"], **options)
            outs.append(h)
            finals.append(final)
        layer_input = jnp.concatenate(outs, axis=-1)
    return layer_input, tuple(jnp.stack(rows) for rows in zip(*finals))


@functools.lru_cache(maxsize=None)
def _scan_jitted(kind: str):
    return _jit_pair(functools.partial(scan_stack, kind))


def scan_impl(p: dict, kind: str) -> bl.Impl:
    """The plain autodiff stack (`scan_stack`) on PyTorch-layout weights."""
    return _jax_impl(_scan_jitted(kind), dict(p["params"]), p, kind, dict)


# ----------------------------------------------------------------------------- Flax contender


def _jaxseq_layout(kind: str, w: dict) -> tuple:
    """One direction's PyTorch weights {kind: array} in jaxseq's layout: LSTM (Wx, Wh, b) with
    gates i, f, o, g and b = bias_ih + bias_hh; GRU (Wx, Wh, b, bh)."""
    if kind == "lstm":
        H = w["weight_hh"].shape[1]
        reorder = functools.partial(bl.to_torch_gates, H=H)  # an involution: PyTorch's order -> jaxseq's
        return reorder(w["weight_ih"].T), reorder(w["weight_hh"].T), reorder(w["bias_ih"] + w["bias_hh"])
    return w["weight_ih"].T, w["weight_hh"].T, w["bias_ih"], w["bias_hh"]


def _torch_layout_grads(kind: str, g: dict, H: int) -> dict:
    """{dWx, dWh, db[, dbh]} (jaxseq's layout) as PyTorch's {kind: gradient}; the LSTM's one
    bias b = bias_ih + bias_hh gives both biases its gradient, as PyTorch's do."""
    if kind == "lstm":
        reorder = functools.partial(bl.to_torch_gates, H=H)
        db = reorder(g["db"])
        return {"weight_ih": reorder(g["dWx"]).T, "weight_hh": reorder(g["dWh"]).T, "bias_ih": db, "bias_hh": db}
    return {"weight_ih": g["dWx"].T, "weight_hh": g["dWh"].T, "bias_ih": g["db"], "bias_hh": g["dbh"]}


FLAX_DIRECTIONS = ("forward_rnn", "backward_rnn")  # nn.Bidirectional's submodules


def _flax_cell(kind: str, H: int):
    import flax.linen as nn

    return nn.OptimizedLSTMCell(H) if kind == "lstm" else nn.GRUCell(H)


def _flax_state_rows(kind: str, carries) -> tuple:
    """Flax's carries (one per layer and direction, PyTorch's row order) as (h_n[, c_n]), each
    (S, N, H); OptimizedLSTMCell's carry is (c, h)."""
    import jax.numpy as jnp

    if kind == "lstm":
        return jnp.stack([c[1] for c in carries]), jnp.stack([c[0] for c in carries])
    return (jnp.stack(carries),)


@functools.lru_cache(maxsize=None)
def _flax_module(kind: str, H: int):
    import flax.linen as nn
    import jax.numpy as jnp

    class FlaxBidirectionalStack(nn.Module):
        """NUM_LAYERS nn.Bidirectional(nn.RNN(cell), nn.RNN(cell)) layers, seq_lengths=, the
        last layer's outputs zeroed past the lengths; params {"layers_<k>": {"forward_rnn" /
        "backward_rnn": {"cell": ...}}}."""

        def setup(self):
            rnn = lambda: nn.RNN(_flax_cell(kind, H))  # noqa: E731
            self.layers = [nn.Bidirectional(rnn(), rnn()) for _ in range(NUM_LAYERS)]

        def __call__(self, x, seq_lengths):
            carries = []
            for layer in self.layers:
                (forward_carry, backward_carry), x = layer(x, seq_lengths=seq_lengths, return_carry=True)
                carries += [forward_carry, backward_carry]
            valid = (jnp.arange(x.shape[1])[None, :] < seq_lengths[:, None])[..., None]
            return jnp.where(valid, x, 0.0), _flax_state_rows(kind, carries)

    return FlaxBidirectionalStack()


@functools.lru_cache(maxsize=None)
def _flax_jitted(kind: str, H: int):
    model = _flax_module(kind, H)
    return _jit_pair(lambda params, x, lengths: model.apply({"params": params}, x, lengths))


def flax_params(kind: str, torch_params: dict) -> dict:
    """The Flax stack's params from PyTorch's weights (see the module docstring)."""
    to_cell = bl.flax_lstm_cell if kind == "lstm" else br.flax_gru_cell
    return {
        f"layers_{layer}": {
            FLAX_DIRECTIONS[d]: {"cell": to_cell(*_jaxseq_layout(kind, {k: torch_params[n] for k, n in
                                                                         _names(layer, d).items()}))}
            for d in range(NUM_DIRECTIONS)
        }
        for layer in range(NUM_LAYERS)
    }


def flax_grads_to_torch(kind: str, grads: dict, H: int) -> dict:
    """The Flax stack's parameter gradients as {PyTorch name: array}, in a state_dict's order."""
    weight_grads = bl.flax_lstm_weight_grads if kind == "lstm" else br.flax_gru_weight_grads
    named = {}
    for layer, d, _ in _directions():
        g = _torch_layout_grads(kind, weight_grads(grads[f"layers_{layer}"][FLAX_DIRECTIONS[d]]["cell"]), H)
        named.update({name: g[k] for k, name in _names(layer, d).items()})
    return named


def flax_impl(p: dict, kind: str) -> bl.Impl:
    H = p["dstates"][0].shape[-1]
    return _jax_impl(_flax_jitted(kind, H), flax_params(kind, p["params"]), p, kind,
                     lambda g: flax_grads_to_torch(kind, g, H))


# ----------------------------------------------------------------------------- PyTorch contender


def torch_impl(p: dict, kind: str) -> bl.Impl:
    """torch.nn.LSTM / GRU (2 layers, bidirectional, batch_first) on a packed sequence; the
    timed call packs x, runs the module, pads the output back to T and runs the backward."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    N, T, D = p["x"].shape
    H = p["dstates"][0].shape[-1]
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    module = cls(D, H, num_layers=NUM_LAYERS, bidirectional=True, batch_first=True)
    module.load_state_dict({name: torch.from_numpy(value) for name, value in p["params"].items()})
    x = torch.from_numpy(p["x"]).requires_grad_(True)
    lengths = torch.from_numpy(np.asarray(p["lengths"], np.int64))
    dout = torch.from_numpy(p["dout"])
    dstates = tuple(torch.from_numpy(d) for d in p["dstates"])
    named = dict(module.named_parameters())
    leaves = [x, *named.values()]

    def run():
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = module(packed)
        out = pad_packed_sequence(out, batch_first=True, total_length=T)[0]
        return out, (final if kind == "lstm" else (final,))

    def fwd_bwd():
        for leaf in leaves:
            leaf.grad = None
        out, states = run()
        loss = (out * dout).sum() + sum((s * d).sum() for s, d in zip(states, dstates))
        loss.backward()
        return x.grad, {name: param.grad for name, param in named.items()}

    def fwd():
        with torch.inference_mode():
            return run()

    def grads(r):
        dx, dparams = r
        return {"dx": dx.numpy(), **{"d" + name: g.numpy() for name, g in dparams.items()}}

    def out(r):
        h, states = r
        return _outputs(kind)((h.numpy(), tuple(s.numpy() for s in states)))

    return bl.Impl(fwd_bwd=fwd_bwd, fwd=fwd, grads=grads, out=out)


# ----------------------------------------------------------------------------- the cases


def stacked_impls(p: dict, kind: str) -> dict[str, bl.Impl]:
    """The four contenders of one case, jaxseq first."""
    return {
        "jaxseq": jaxseq_impl(p, kind),
        "autodiff-scan": scan_impl(p, kind),
        "flax": flax_impl(p, kind),
        "torch": torch_impl(p, kind),
    }


def speedups(results: list[dict]) -> dict[str, float]:
    """{contender: its median / jaxseq's median} of one case (> 1: jaxseq is faster)."""
    medians = {r["contender"]: r["median_ms"] for r in results}
    return {name: m / medians["jaxseq"] for name, m in medians.items() if name != "jaxseq"}


def speedup_summary(ups: dict[str, float]) -> str:
    parts = [f"{name} {ups[name]:.2f}x" for name in ups]
    met = all(ups.get(name, 0.0) >= SPEEDUP_TARGET for name in TARGET_CONTENDERS)
    return (f"jaxseq speed-up: {', '.join(parts)} (target >= {SPEEDUP_TARGET}x over "
            f"{' and '.join(TARGET_CONTENDERS)}: {'met' if met else 'not met'})")


def loss_note(kind: str) -> str:
    states = " + ".join(f"sum({s} * d{s})" for s in KINDS_STATES[kind])
    return (f"loss = sum(out * dout) + {states}, gradient w.r.t. x and all {4 * NUM_LAYERS * NUM_DIRECTIONS} "
            "parameters")


STACKED_NOTE = (
    "jaxseq: jaxseq.nn (hand backward); flax: 2 nn.Bidirectional(nn.RNN, nn.RNN) layers with seq_lengths=, "
    "outputs past the lengths zeroed by a mask (Flax does not zero them); torch: pack_padded_sequence / "
    "pad_packed_sequence in the timed call; GFLOP/s count valid steps only"
)
FLAX_MAPPING_NOTE = {
    "lstm": "flax OptimizedLSTMCell: h{gate} bias = bias_ih + bias_hh",
    "gru": "flax GRUCell: ir bias = b_ir + b_hr, iz bias = b_iz + b_hz, in bias = b_in, hn bias = b_hn "
           "(PyTorch's GRU exactly)",
}


def bench_stacked(kind: str, shape: tuple, *, reps: int, warmup: int) -> list[dict]:
    """fwd+bwd of the stacked `kind` at `shape`; the notes start with the speed-ups."""
    N, T, D, H = shape
    p = make_problem(N, T, D, H, kind)
    impls = stacked_impls(p, kind)
    errors = bl.check_agreement(impls, valid=bl.valid_mask(p["lengths"], T))
    lengths = p["lengths"]
    note = (f"lengths uniform in [{T // 2}, {T}] (seed {br.LENGTHS_SEED}, mean {lengths.mean():.1f}); "
            f"{loss_note(kind)}; {bl.agreement_note(errors)} on out, the final states and every gradient, "
            f"and out and dx are exactly 0 past the lengths; {STACKED_NOTE}; {FLAX_MAPPING_NOTE[kind]}")
    fns = [(name, impl.fwd_bwd) for name, impl in impls.items()]
    flops = 3 * stacked_flops(lengths, D, H, bl.GATES[kind])
    case = harness.bench(f"stacked {kind}", fns, variant="fwd+bwd", shape=shape_label(N, T, D, H), flops=flops,
                         reps=reps, warmup=warmup, notes=note)
    ups = speedups(case)
    summary = speedup_summary(ups)
    print(summary, flush=True)
    for r in case:
        r["notes"] = f"{summary}; {r['notes']}"
        r["speedups"] = ups
    del impls
    return case


def run(quick: bool = False, kinds=KINDS) -> list[dict]:
    """The stacked LSTM and GRU cases (those of `kinds`); `quick`: the tiny shape, few repetitions."""
    harness.setup()
    shape = QUICK_SHAPE if quick else SHAPE
    reps, warmup = harness.repetitions(quick)
    results = []
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
        results += bench_stacked(kind, shape, reps=reps, warmup=warmup)
    return results


if __name__ == "__main__":
    harness.main(run, "stacked bidirectional LSTM / GRU", __doc__.splitlines()[0])
