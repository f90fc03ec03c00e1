"""Layer-level benchmarks of issue 5: cases 1 (LSTM), 2 (vanilla RNN), 5 (matmul roofline), 6 (compile time).

Contenders (every one computes the same thing; `check_agreement` asserts it before timing):
jaxseq, autodiff-scan, flax, torch (2 threads) and numpy, as `jaxseq.contenders` describes
them; the LSTM's are `jaxseq.contenders.lstm_impls` (what `jaxseq demo` times too), the
vanilla RNN's are built here from the same pieces (`rnn_scan`, `flax_rnn_impl` on
`nn.SimpleCell`, `nn.RNN(nonlinearity='tanh')`, `jaxseq.numpy_reference.rnn_*`). The
performance levers jaxseq uses were measured one by one: benchmarks/studies/README.md.

The contenders are built from the problem dict: a hidden bias `bh` (the GRU's) and `lengths`
(PyTorch's packed-sequence semantics) are used by every contender when the problem has them;
`bench_recurrent.py` (GRU, lengths) builds its cases from the same pieces (`LayerSpec`).
FLOP counts: `jaxseq.contenders` (matmuls only; fwd+bwd = 3 x forward).
"""

from __future__ import annotations

import os
import sys
from typing import Callable, NamedTuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import harness  # noqa: E402
from jaxseq import contenders  # noqa: E402
from jaxseq.contenders import (  # noqa: E402,F401  (the pieces the other bench_* modules build on)
    AGREEMENT_RTOL, GATES, PARAM_KEYS, Impl, agreement_note, check_agreement, flax_functions, flax_impl,
    flax_lstm_carry, flax_lstm_cell, flax_lstm_impl, flax_lstm_weight_grads, forward_flops, fwd_bwd_flops, grad_fn,
    jax_impl, lstm_scan, make_problem, numpy_impl, recurrent_scan, same_carry, to_torch_gates,
    torch_impl, valid_mask,
)

# N batch, T steps, D input, H hidden (issue 5)
SHAPES = {
    "a": (64, 16, 256, 512),
    "b": (25, 16, 256, 512),
    "c": (128, 32, 512, 512),
}
QUICK_SHAPES = {"q": (8, 4, 16, 32)}


def shape_label(key: str, N: int, T: int, D: int, H: int) -> str:
    return f"({key}) N={N} T={T} D={D} H={H}"


# ----------------------------------------------------------------------------- the vanilla RNN's contenders


def rnn_scan(x, h0, Wx, Wh, b, *, lengths=None, return_state=False):
    """Plain tanh RNN on `recurrent_scan`, for autodiff: h, or (h, h_n) with return_state."""
    import jax.numpy as jnp

    def cell(h, xw_t):
        h = jnp.tanh(xw_t + h @ Wh)
        return h, h

    h, h_n = recurrent_scan(cell, x, h0, Wx, b, lengths)
    return (h, h_n) if return_state else h



def flax_rnn_impl(p: dict, state: bool = False) -> Impl:
    """nn.SimpleCell: h = tanh(Dense_i(x) + Dense_h(h)); the input Dense carries the bias."""
    import flax.linen as nn

    cell = {"i": {"kernel": p["Wx"], "bias": p["b"]}, "h": {"kernel": p["Wh"]}}

    def weight_grads(c):
        return {"dWx": np.asarray(c["i"]["kernel"]), "dWh": np.asarray(c["h"]["kernel"]),
                "db": np.asarray(c["i"]["bias"])}

    return flax_impl(nn.SimpleCell, same_carry, cell, p, weight_grads, state=state)


# ----------------------------------------------------------------------------- contenders per case


class LayerSpec(NamedTuple):
    """One recurrent layer as each contender writes it."""

    jaxseq: Callable  # the library function
    scan: Callable  # the autodiff-scan reference, same signature
    flax: Callable[..., Impl]  # (p, state) -> Impl
    kind: str  # "lstm", "gru" or "rnn": `torch_impl`'s and `numpy_impl`'s layer


def layer_spec(kind: str) -> LayerSpec:
    """The LSTM's or the RNN's contenders (the GRU's: `bench_recurrent.gru_spec`)."""
    import jaxseq.layers

    if kind == "lstm":
        return LayerSpec(jaxseq.layers.lstm, lstm_scan, flax_lstm_impl, "lstm")
    if kind == "rnn":
        return LayerSpec(jaxseq.layers.rnn, rnn_scan, flax_rnn_impl, "rnn")
    raise ValueError(f"unknown layer kind {kind!r}: expected 'lstm' or 'rnn'")


def spec_impls(spec: LayerSpec, p: dict, *, state: bool = False) -> dict[str, Impl]:
    """The five contenders of one layer on problem `p` (with its `bh`, `lengths` if any), jaxseq
    first; `state`: their forwards also return the final hidden state h_n."""
    return contenders.layer_impls(*spec, p, state=state)


def layer_impls(p: dict, kind: str) -> dict[str, Impl]:
    """The contenders of case 1 (kind="lstm") or case 2 (kind="rnn"), jaxseq first."""
    return spec_impls(layer_spec(kind), p)


def bench_fwd_bwd_and_fwd(case: str, impls: dict[str, Impl], label: str, fwd_flops: float, *, reps: int,
                          warmup: int, notes: str, variants=("fwd+bwd", "fwd")) -> list[dict]:
    """Time the contenders' fwd+bwd and fwd (interleaved, each variant its own table)."""
    results = []
    for variant in variants:
        fns = [(name, impl.fwd_bwd if variant == "fwd+bwd" else impl.fwd) for name, impl in impls.items()]
        results += harness.bench(case, fns, variant=variant, shape=label,
                                 flops=3 * fwd_flops if variant == "fwd+bwd" else fwd_flops,
                                 reps=reps, warmup=warmup, notes=notes)
    return results


def bench_recurrent(kind: str, shapes: dict, *, reps: int, warmup: int) -> list[dict]:
    gates = GATES[kind]
    results = []
    for key, (N, T, D, H) in shapes.items():
        p = make_problem(N, T, D, H, gates, seed=0)
        impls = layer_impls(p, kind)
        note = agreement_note(check_agreement(impls))
        results += bench_fwd_bwd_and_fwd(kind, impls, shape_label(key, N, T, D, H), forward_flops(N, T, D, H, gates),
                                         reps=reps, warmup=warmup, notes=note)
        del impls
    return results


def roofline_shapes(shapes: dict, square: int) -> list[tuple[int, int, int, str]]:
    """The square matmul and each LSTM shape's own matmuls (m, k, n, label)."""
    out = [(square, square, square, f"{square}^2")]
    for key, (N, T, D, H) in shapes.items():
        out += [
            (N * T, D, 4 * H, f"({key}) x Wx"),  # input projection, all steps
            (N, H, 4 * H, f"({key}) h Wh"),  # the recurrence, one step
            (N, 4 * H, H, f"({key}) da Wh^T"),  # backward recurrence, one step
            (D, N * T, 4 * H, f"({key}) x^T da"),  # weight gradient, all steps
        ]
    return out


def compile_contenders(p_lstm: dict, p_rnn: dict) -> list[harness.Contender]:
    """Trace + lower + compile of each JAX fwd+bwd from scratch (a fresh function every call)."""
    import flax.linen as nn
    import jax

    import jaxseq.layers

    def timer(layer, p):
        args = tuple(jax.device_put(p[k]) for k in ("x", "h0", "Wx", "Wh", "b", "dout"))

        def compile_once():
            fresh = grad_fn(lambda *a: layer(*a))  # a new function: no trace-cache hit
            return jax.jit(fresh).lower(*args).compile()

        return compile_once

    def flax_timer(p):
        H = p["h0"].shape[1]
        x, h0, dout = (jax.device_put(p[k]) for k in ("x", "h0", "dout"))
        params = jax.device_put(nn.RNN(nn.OptimizedLSTMCell(H)).init(jax.random.key(0), x))

        def compile_once():
            _, loss = flax_functions(nn.RNN(nn.OptimizedLSTMCell(H)), flax_lstm_carry)
            return jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(params, x, h0, dout).compile()

        return compile_once

    return [
        ("jaxseq", timer(jaxseq.layers.lstm, p_lstm)),
        ("autodiff-scan", timer(lstm_scan, p_lstm)),
        ("flax", flax_timer(p_lstm)),
        ("jaxseq rnn", timer(jaxseq.layers.rnn, p_rnn)),
        ("autodiff-scan rnn", timer(rnn_scan, p_rnn)),
    ]


def run(quick: bool = False) -> list[dict]:
    """All layer cases; `quick`: tiny shapes and few repetitions (a smoke test, not a measurement)."""
    harness.setup()
    shapes = QUICK_SHAPES if quick else SHAPES
    reps, warmup = harness.repetitions(quick)
    results = []
    # case 1: LSTM fwd+bwd and fwd at (a), (b), (c)
    results += bench_recurrent("lstm", shapes, reps=reps, warmup=warmup)
    # case 2: vanilla RNN at (a)
    rnn_shapes = shapes if quick else {"a": SHAPES["a"]}
    results += bench_recurrent("rnn", rnn_shapes, reps=reps, warmup=warmup)
    # case 5: matmul roofline (2048^2 and the LSTM's own matmuls)
    results += harness.matmul_roofline(roofline_shapes(shapes, 256 if quick else 2048), reps=reps, warmup=warmup)
    # case 6: compile time of the LSTM / RNN fwd+bwd (trace + lower + compile)
    key = next(iter(shapes))
    N, T, D, H = shapes[key]
    results += harness.bench(
        "compile", compile_contenders(make_problem(N, T, D, H, 4), make_problem(N, T, D, H, 1)),
        variant="fwd+bwd jit (trace+lower+compile)", shape=shape_label(key, N, T, D, H),
        reps=min(reps, 7), warmup=1, notes="a fresh function per call, so nothing is cached")
    return results


if __name__ == "__main__":
    harness.main(run, "layers", __doc__.splitlines()[0])
