"""Layer benchmarks of issues 11 and 25: the GRU, the LSTM and GRU with variable lengths, the
relu RNN and the LSTM with projections.

Cases (shapes (a) N=64 T=16 D=256 H=512 and (c) N=128 T=32 D=512 H=512 of `bench_layers`;
`--quick`: the tiny shape (q)):

- gru            fwd+bwd (gradient of sum(h * dout) w.r.t. x, h0, Wx, Wh, b, bh) and fwd of
                 PyTorch's GRU (gates r, z, n, two biases). Contenders as for the LSTM:
                 jaxseq (`jaxseq.layers.gru` + `jax.grad`), autodiff-scan (`gru_scan`, the same
                 math on `bench_layers.recurrent_scan`), flax (`nn.RNN(nn.GRUCell(H))`, see
                 `flax_gru_impl`), torch (`nn.GRU`), numpy (`jaxseq.numpy_reference.gru_*`).
- lstm lengths,  fwd+bwd with lengths drawn uniform in [T/2, T] (seeded), PyTorch's packed
  gru lengths    semantics: the state freezes after each length, outputs there are 0, and so
                 are the gradients of the padded inputs. Contenders: jaxseq with `lengths=`;
                 "jaxseq (no lengths)", the same call without lengths on the same padded batch
                 (the cost of lengths: target <= 10%); autodiff-scan with masks; flax `nn.RNN`
                 with `seq_lengths=`, its outputs past the lengths zeroed by a mask (Flax does
                 not zero them); torch on `pack_padded_sequence(..., enforce_sorted=False)` and
                 `pad_packed_sequence(..., total_length=T)` inside the timed call; numpy with masks.

- rnn relu       fwd+bwd and fwd of PyTorch's `nn.RNN(nonlinearity='relu')` (issue 25).
                 Contenders: jaxseq (`jaxseq.layers.rnn(..., nonlinearity="relu")` + `jax.grad`),
                 autodiff-scan (`relu_rnn_scan`), torch. (Flax's SimpleCell and the NumPy
                 reference have no relu case here: the issue asks for PyTorch and autodiff.)
                 The problem's seed keeps every pre-activation 2e-6 from relu's kink
                 (`relu_problem`), so that the agreement check compares like with like.
- lstm proj      fwd+bwd and fwd of `nn.LSTM(proj_size=P)`, P = H/4 (issue 25): h_t =
                 (o_t * tanh(c_t)) Wr, the recurrence on the P-wide h. Contenders: jaxseq
                 (`jaxseq.layers.lstm(..., Wr=Wr)`), autodiff-scan (`lstm_proj_scan`), torch
                 (which falls back from oneDNN to its native LSTM with projections).

Before timing, `bench_layers.check_agreement` asserts that every contender's outputs and
gradients agree with jaxseq's; with lengths also its final state h_n, and that its outputs
and input gradients past each length are exactly 0. "jaxseq (no lengths)" computes the plain
unmasked layer: its upstream gradient is dout masked past the lengths (a different input
array, no extra work), so its gradients are the masked problem's and are checked as such,
while its outputs and final state are checked on the valid steps only (`unmasked_baseline`).
GFLOP/s of the lengths cases count the valid steps only (sum of the lengths).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_layers as bl  # noqa: E402
import harness  # noqa: E402

SHAPES = {key: bl.SHAPES[key] for key in ("a", "c")}
LENGTHS_SEED = 0
NO_LENGTHS = "jaxseq (no lengths)"
LENGTHS_TARGET = 0.10  # lengths may cost at most 10% over the same call without them


# ----------------------------------------------------------------------------- GRU contenders


def gru_scan(x, h0, Wx, Wh, b, bh, *, lengths=None, reverse=False, return_state=False):
    """Plain GRU (PyTorch's equations, gates r, z, n) on `bench_layers.recurrent_scan`, for
    autodiff: h, or (h, h_n) with return_state."""
    import jax
    import jax.numpy as jnp

    H = h0.shape[-1]

    def cell(h, xw_t):
        hw = h @ Wh + bh
        r = jax.nn.sigmoid(xw_t[:, :H] + hw[:, :H])
        z = jax.nn.sigmoid(xw_t[:, H:2 * H] + hw[:, H:2 * H])
        n = jnp.tanh(xw_t[:, 2 * H:] + r * hw[:, 2 * H:])
        h = (1.0 - z) * n + z * h
        return h, h

    h, h_n = bl.recurrent_scan(cell, x, h0, Wx, b, lengths, reverse)
    return (h, h_n) if return_state else h


# Flax's GRUCell: r = σ(x W_ir + b_ir + h W_hr), z = σ(x W_iz + b_iz + h W_hz),
# n = tanh(x W_in + b_in + r * (h W_hn + b_hn)): the input Dense layers ir, iz, in carry a bias,
# of the hidden ones only hn. PyTorch's r and z see their two biases only as a sum, so
# b_ir = b_r + bh_r and b_iz = b_z + bh_z, b_in = b_n, b_hn = bh_n is PyTorch's GRU exactly;
# the gradient of b_ir is both db_r and dbh_r (they are equal in PyTorch too), likewise for z.
_GRU_GATES = ("r", "z", "n")


def flax_gru_cell(Wx, Wh, b, bh) -> dict:
    """GRUCell's parameters from jaxseq's (PyTorch's) GRU: Wx (D, 3H), Wh (H, 3H), b, bh (3H,)."""
    H = Wh.shape[0]
    block = {gate: slice(k * H, (k + 1) * H) for k, gate in enumerate(_GRU_GATES)}
    cell = {f"h{g}": {"kernel": Wh[:, block[g]]} for g in _GRU_GATES}
    cell["hn"]["bias"] = bh[block["n"]]
    for g in _GRU_GATES:
        cell[f"i{g}"] = {"kernel": Wx[:, block[g]], "bias": b[block[g]] + (bh[block[g]] if g != "n" else 0)}
    return cell


def flax_gru_weight_grads(c: dict) -> dict:
    """GRUCell's parameter gradients as {dWx, dWh, db, dbh} in jaxseq's layout."""
    grad = lambda name, leaf: np.asarray(c[name][leaf])  # noqa: E731
    return {
        "dWx": np.concatenate([grad(f"i{g}", "kernel") for g in _GRU_GATES], axis=1),
        "dWh": np.concatenate([grad(f"h{g}", "kernel") for g in _GRU_GATES], axis=1),
        "db": np.concatenate([grad(f"i{g}", "bias") for g in _GRU_GATES]),
        "dbh": np.concatenate([grad("ir", "bias"), grad("iz", "bias"), grad("hn", "bias")]),
    }


def flax_gru_impl(p: dict, state: bool = False) -> bl.Impl:
    import flax.linen as nn

    cell = flax_gru_cell(p["Wx"], p["Wh"], p["b"], p["bh"])
    return bl.flax_impl(nn.GRUCell, bl.same_carry, cell, p, flax_gru_weight_grads, state=state)


def gru_spec() -> bl.LayerSpec:
    import jaxseq.layers

    return bl.LayerSpec(jaxseq.layers.gru, gru_scan, flax_gru_impl, "gru")


def spec(kind: str) -> bl.LayerSpec:
    return gru_spec() if kind == "gru" else bl.layer_spec(kind)


def make_problem(N: int, T: int, D: int, H: int, kind: str, seed: int = 0) -> dict[str, np.ndarray]:
    """`bench_layers.make_problem` for `kind` ("lstm", "gru", "rnn"): the GRU's with bh."""
    return bl.make_problem(N, T, D, H, bl.GATES[kind], seed, hidden_bias=kind == "gru")


def gru_impls(p: dict) -> dict[str, bl.Impl]:
    """The GRU case's five contenders, jaxseq first."""
    return bl.spec_impls(gru_spec(), p)


# ----------------------------------------------------------------------------- lengths


def make_lengths(N: int, T: int, seed: int = LENGTHS_SEED) -> np.ndarray:
    """(N,) int32 lengths drawn uniform in [T/2, T] (both ends included), seeded."""
    return np.random.default_rng(seed).integers(T // 2, T + 1, size=N).astype(np.int32)


def lengths_problem(N: int, T: int, D: int, H: int, kind: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A padded batch: the problem of `make_problem` plus `lengths` (the padding keeps its
    random values: whatever a contender reads there must not reach the results)."""
    return {**make_problem(N, T, D, H, kind, seed), "lengths": make_lengths(N, T, seed)}


def unmasked_baseline(layer, p: dict) -> bl.Impl:
    """`layer` called without lengths on the padded batch of `p`: the cost baseline.

    The timed fwd+bwd is the plain call; its upstream gradient is dout masked past the
    lengths (an input array like any other: the work is the unmasked call's), which makes its
    gradients the masked problem's. Its outputs past the lengths are not 0 and its state runs
    on, so for the agreement check (untimed) they are read on the valid steps only: h masked
    and h_n = h at each sequence's last valid step (the final state of a forward layer).
    """
    lengths = p["lengths"]
    valid = bl.valid_mask(lengths, p["x"].shape[1])
    plain = {**{k: v for k, v in p.items() if k != "lengths"}, "dout": p["dout"] * valid}
    impl = bl.jax_impl(layer, plain)

    def valid_outputs(r):
        h = np.asarray(r)
        return {"h": h * valid, "h_n": h[np.arange(h.shape[0]), lengths - 1]}

    return impl._replace(out=valid_outputs)


def lengths_impls(p: dict, kind: str) -> dict[str, bl.Impl]:
    """The lengths case's contenders for `kind` ("lstm", "gru"), jaxseq first, then the same
    call without lengths; their forwards also return h_n (checked, not timed)."""
    layer = spec(kind)
    impls = bl.spec_impls(layer, p, state=True)
    return {"jaxseq": impls.pop("jaxseq"), NO_LENGTHS: unmasked_baseline(layer.jaxseq, p), **impls}


def lengths_cost(results: list[dict]) -> float | None:
    """jaxseq's median with lengths / the same call's without, minus 1 (one case's results)."""
    medians = {r["contender"]: r["median_ms"] for r in results}
    if "jaxseq" not in medians or NO_LENGTHS not in medians:
        return None
    return medians["jaxseq"] / medians[NO_LENGTHS] - 1.0


LENGTHS_NOTE = (
    f"'{NO_LENGTHS}': the same call without lengths on the padded batch (outputs and state "
    "past the lengths not masked; checked on the valid steps); flax: seq_lengths= and its "
    "outputs past the lengths zeroed by a mask (Flax does not zero them); torch: "
    "pack_padded_sequence / pad_packed_sequence in the timed call; GFLOP/s count valid steps only"
)

GRU_NOTE = (
    "flax GRUCell: b_ir = b_r + bh_r, b_iz = b_z + bh_z, b_in = b_n, b_hn = bh_n (PyTorch's GRU exactly)"
)


# ----------------------------------------------------------------------------- cases


def bench_gru(shapes: dict, *, reps: int, warmup: int) -> list[dict]:
    results = []
    for key, (N, T, D, H) in shapes.items():
        impls = gru_impls(make_problem(N, T, D, H, "gru"))
        note = f"{bl.agreement_note(bl.check_agreement(impls))}; {GRU_NOTE}"
        results += bl.bench_fwd_bwd_and_fwd("gru", impls, bl.shape_label(key, N, T, D, H),
                                            bl.forward_flops(N, T, D, H, 3), reps=reps, warmup=warmup, notes=note)
        del impls
    return results


def bench_lengths(kind: str, shapes: dict, *, reps: int, warmup: int) -> list[dict]:
    """fwd+bwd of `kind` with lengths at each shape; the notes end with the cost of lengths."""
    results = []
    for key, (N, T, D, H) in shapes.items():
        p = lengths_problem(N, T, D, H, kind)
        impls = lengths_impls(p, kind)
        errors = bl.check_agreement(impls, valid=bl.valid_mask(p["lengths"], T))
        lengths = p["lengths"]
        note = (f"lengths uniform in [{T // 2}, {T}] (seed {LENGTHS_SEED}, mean {lengths.mean():.1f}); "
                f"{bl.agreement_note(errors)}, on h, h_n and the gradients, and h and dx are exactly 0 "
                f"past the lengths; {LENGTHS_NOTE}")
        label = f"{bl.shape_label(key, N, T, D, H)} lengths in [T/2, T]"
        useful_flops = bl.forward_flops(1, int(lengths.sum()), D, H, bl.GATES[kind])
        case = bl.bench_fwd_bwd_and_fwd(f"{kind} lengths", impls, label, useful_flops, reps=reps, warmup=warmup,
                                        notes=note, variants=("fwd+bwd",))
        cost = lengths_cost(case)
        summary = f"cost of lengths: jaxseq {cost:+.1%} vs '{NO_LENGTHS}' (target <= +{LENGTHS_TARGET:.0%})"
        print(summary, flush=True)
        for r in case:
            r["notes"] = f"{summary}; {r['notes']}"
            r["lengths_cost"] = cost
        results += case
        del impls
    return results


# ----------------------------------------------------------------------------- issue 25: relu, projections


def relu_rnn_scan(x, h0, Wx, Wh, b, *, lengths=None, reverse=False, return_state=False):
    """Plain relu RNN on `bench_layers.recurrent_scan`, for autodiff: h, or (h, h_n)."""
    import jax

    def cell(h, xw_t):
        h = jax.nn.relu(xw_t + h @ Wh)
        return h, h

    h, h_n = bl.recurrent_scan(cell, x, h0, Wx, b, lengths, reverse)
    return (h, h_n) if return_state else h


def jaxseq_relu_rnn(x, h0, Wx, Wh, b, **options):
    """`jaxseq.layers.rnn` with nonlinearity="relu" (one function, so its compilation is shared)."""
    import jaxseq.layers

    return jaxseq.layers.rnn(x, h0, Wx, Wh, b, nonlinearity="relu", **options)


def lstm_proj_scan(x, h0, Wx, Wh, b, Wr, *, lengths=None, reverse=False, return_state=False):
    """Plain LSTM with projections (gates i, f, o, g, c0 = 0, h_t = (o tanh c_t) Wr) on
    `recurrent_scan`, for autodiff: h (N, T, P), or (h, h_n, c_n) with return_state."""
    import jax
    import jax.numpy as jnp

    H = Wr.shape[0]

    def cell(carry, xw_t):
        h, c = carry
        a = xw_t + h @ Wh
        i, f, o = (jax.nn.sigmoid(a[:, k * H:(k + 1) * H]) for k in range(3))
        c = f * c + i * jnp.tanh(a[:, 3 * H:])
        h = (o * jnp.tanh(c)) @ Wr
        return (h, c), h

    c0 = jnp.zeros((h0.shape[0], H), h0.dtype)
    h, (h_n, c_n) = bl.recurrent_scan(cell, x, (h0, c0), Wx, b, lengths, reverse)
    return (h, h_n, c_n) if return_state else h


RELU_MARGIN = 2e-6


def relu_kink_margin(p: dict) -> float:
    """min |a_t| over every pre-activation of the relu RNN on problem `p`, in float64 (NumPy)."""
    x, h, Wx, Wh, b = (p[k].astype(np.float64) for k in ("x", "h0", "Wx", "Wh", "b"))
    xw = np.einsum("ntd,dh->tnh", x, Wx) + b
    margin = np.inf
    for xw_t in xw:
        a = xw_t + h @ Wh
        margin, h = min(margin, float(np.abs(a).min())), np.maximum(a, 0.0)
    return margin


def relu_problem(N: int, T: int, D: int, H: int) -> dict[str, np.ndarray]:
    """The RNN problem of `make_problem` with the first seed (0, 1, ...) whose pre-activations
    all lie at least RELU_MARGIN from relu's kink at 0.

    Where one lies closer, float32 rounding can put it on the other side for one contender
    and not another: their gradients then differ by the choice of subgradient there, not by
    a mistake (at (c) with seed 0 one pre-activation is 1.2e-7 from 0: torch and
    autodiff-scan in float32 both differ by 1.2e-2 in dx from jaxseq and from the float64
    gradients, which jaxseq's float32 ones meet to 7e-7, and the float64 gradients of jaxseq
    and autodiff-scan agree to 1e-15)."""
    for seed in range(100):
        p = make_problem(N, T, D, H, "rnn", seed)
        if relu_kink_margin(p) >= RELU_MARGIN:
            return p
    raise RuntimeError(f"no seed below 100 keeps the relu pre-activations {RELU_MARGIN} from 0")


def jaxseq_lstm_proj(x, h0, Wx, Wh, b, Wr, **options):
    """`jaxseq.layers.lstm` with the projection Wr (fast hand backward)."""
    import jaxseq.layers

    return jaxseq.layers.lstm(x, h0, Wx, Wh, b, Wr=Wr, **options)


def projection_size(H: int) -> int:
    """P of the projection case: H / 4 (Sak et al. project 2048 cells to 512)."""
    return max(1, H // 4)


def proj_problem(N: int, T: int, D: int, H: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The LSTM problem of `make_problem` with a P-wide hidden state: h0 (N, P), Wh (P, 4H),
    Wr (H, P), dout (N, T, P), scaled 1/sqrt(fan-in) as the rest."""
    P = projection_size(H)
    p = make_problem(N, T, D, H, "lstm", seed)
    rng = np.random.default_rng(seed + 1)
    f32 = np.float32
    p["h0"] = (0.5 * rng.standard_normal((N, P))).astype(f32)
    p["Wh"] = (rng.standard_normal((P, 4 * H)) / np.sqrt(P)).astype(f32)
    p["Wr"] = (rng.standard_normal((H, P)) / np.sqrt(H)).astype(f32)
    p["dout"] = rng.standard_normal((N, T, P)).astype(f32)
    return p


def option_impls(p: dict, layer, scan, torch_kind: str) -> dict[str, bl.Impl]:
    """jaxseq, autodiff-scan and torch (where installed) on problem `p`, jaxseq first."""
    impls = {"jaxseq": bl.jax_impl(layer, p), "autodiff-scan": bl.jax_impl(scan, p)}
    try:
        impls["torch"] = bl.torch_impl(p, torch_kind)
    except ImportError:
        pass
    return impls


def torch_setting() -> str:
    """PyTorch's threads and OpenMP wait policy (read once when torch loads), as the notes state them."""
    value = os.environ.get("OMP_WAIT_POLICY")
    policy = f"OMP_WAIT_POLICY={value}" if value else "OMP_WAIT_POLICY unset (libgomp default: busy-wait, then sleep)"
    return f"torch threads {harness.MODE['torch_threads']}, {policy}"


def bench_option(case: str, shapes: dict, *, reps: int, warmup: int) -> list[dict]:
    """fwd+bwd and fwd of "rnn relu" or "lstm proj" at each shape."""
    results = []
    for key, (N, T, D, H) in shapes.items():
        if case == "rnn relu":
            p = relu_problem(N, T, D, H)
            impls = option_impls(p, jaxseq_relu_rnn, relu_rnn_scan, "rnn_relu")
            label, flops = bl.shape_label(key, N, T, D, H), bl.forward_flops(N, T, D, H, 1)
        else:
            p = proj_problem(N, T, D, H)
            P = p["Wr"].shape[1]
            impls = option_impls(p, jaxseq_lstm_proj, lstm_proj_scan, "lstm")
            label = f"{bl.shape_label(key, N, T, D, H)} P={P}"
            flops = 2.0 * N * T * ((D + P) * 4 * H + H * P)
        note = f"{bl.agreement_note(bl.check_agreement(impls))}; {torch_setting()}"
        results += bl.bench_fwd_bwd_and_fwd(case, impls, label, flops, reps=reps, warmup=warmup, notes=note)
        del impls
    return results


CASES = ("gru", "lstm lengths", "gru lengths", "rnn relu", "lstm proj")


def run(quick: bool = False, cases=CASES) -> list[dict]:
    """The GRU case, the LSTM / GRU lengths cases, the relu RNN and the LSTM with projections
    (those of `cases`); `quick`: the tiny shape, few repetitions."""
    harness.setup()
    shapes = bl.QUICK_SHAPES if quick else SHAPES
    reps, warmup = harness.repetitions(quick)
    results = []
    for case in cases:
        if case == "gru":
            results += bench_gru(shapes, reps=reps, warmup=warmup)
        elif case.endswith(" lengths"):
            results += bench_lengths(case.split()[0], shapes, reps=reps, warmup=warmup)
        elif case in ("rnn relu", "lstm proj"):
            results += bench_option(case, shapes, reps=reps, warmup=warmup)
        else:
            raise ValueError(f"unknown case {case!r}; expected one of {CASES}")
    return results


if __name__ == "__main__":
    harness.main(run, "recurrent layers (GRU, lengths, relu, projections)", __doc__.splitlines()[0], cases=CASES)
