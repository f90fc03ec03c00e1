"""Study (issue 22): a wavefront over a 2-layer LSTM stack, measured only (no library change).

The language model's stack runs layer 0 over all T steps, then layer 1 (2T sequential steps).
A wavefront runs layer 1's step t-1 beside layer 0's step t in one loop iteration (T+1
iterations): both read h0_{t-1}, so its two matmuls become one, h0_{t-1} [Wh0 | Wx1]
(H x 8H), plus h1_{t-2} Wh1. Fewer, larger matmuls per iteration is the lever.

Contenders, fwd+bwd of loss = sum(out * dout) w.r.t. x and the six weights (Wx, Wh, b per
layer, jaxseq's layout, gates i, f, o, g), jitted, checked to agree first:

    jaxseq-layers     jaxseq.layers.lstm twice (the hand-written backward; what the model runs)
    scan-layers       plain autodiff: one lax.scan per layer (bench_layers.lstm_scan)
    scan-wavefront    plain autodiff: the wavefront, one lax.scan of T + 1 iterations

scan-wavefront / scan-layers is the lever's effect under the same (autodiff) backward; against
jaxseq-layers it says whether the lever alone beats the hand-written backward.

    python benchmarks/studies/lm_wavefront.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SPEED = Path(__file__).resolve().parents[1] / "speed"
sys.path.insert(0, str(SPEED))

import harness  # noqa: E402

SHAPES = {"char": (64, 128, 128, 512), "word": (20, 35, 200, 200)}  # N, T, E, H
QUICK_SHAPES = {"q": (3, 5, 4, 6)}


def make_problem(N, T, E, H, seed=0):
    rng = np.random.default_rng(seed)
    u = lambda *s: rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), s).astype(np.float32)  # noqa: E731
    params = {"Wx0": u(E, 4 * H), "Wh0": u(H, 4 * H), "b0": u(4 * H),
              "Wx1": u(H, 4 * H), "Wh1": u(H, 4 * H), "b1": u(4 * H)}
    return {"x": rng.standard_normal((N, T, E)).astype(np.float32), "params": params,
            "dout": rng.standard_normal((N, T, H)).astype(np.float32)}


def _cell(gates, c, H):
    """jaxseq's gate order i, f, o, g."""
    import jax
    import jax.numpy as jnp

    i, f, o = (jax.nn.sigmoid(gates[:, k * H:(k + 1) * H]) for k in range(3))
    g = jnp.tanh(gates[:, 3 * H:])
    c = f * c + i * g
    return o * jnp.tanh(c), c


def jaxseq_layers(params, x):
    import jax.numpy as jnp

    from jaxseq.layers import lstm

    N, H = x.shape[0], params["Wh0"].shape[0]
    h0 = jnp.zeros((N, H), x.dtype)
    out = lstm(x, h0, params["Wx0"], params["Wh0"], params["b0"])
    return lstm(out, h0, params["Wx1"], params["Wh1"], params["b1"])


def scan_layers(params, x):
    import jax.numpy as jnp

    import bench_layers as bl

    N, H = x.shape[0], params["Wh0"].shape[0]
    h0 = jnp.zeros((N, H), x.dtype)
    out = bl.lstm_scan(x, h0, params["Wx0"], params["Wh0"], params["b0"])
    return bl.lstm_scan(out, h0, params["Wx1"], params["Wh1"], params["b1"])


def scan_wavefront(params, x):
    import jax.numpy as jnp
    from jax import lax

    N, T, _ = x.shape
    H = params["Wh0"].shape[0]
    xg0 = jnp.einsum("nte,eg->tng", x, params["Wx0"]) + params["b0"]  # (T, N, 4H), time-major
    xg0 = jnp.concatenate([xg0, jnp.zeros_like(xg0[:1])])  # iteration T runs layer 1 only
    W01 = jnp.concatenate([params["Wh0"], params["Wx1"]], axis=1)  # (H, 8H): both read h0_{t-1}
    zeros = jnp.zeros((N, H), x.dtype)

    def step(carry, inputs):
        h0, c0, h1, c1 = carry
        t, xg = inputs
        both = h0 @ W01
        new_h0, new_c0 = _cell(xg + both[:, :4 * H], c0, H)  # layer 0, step t
        new_h1, new_c1 = _cell(both[:, 4 * H:] + h1 @ params["Wh1"] + params["b1"], c1, H)  # layer 1, step t-1
        first = t == 0  # layer 1 has no step -1
        new_h1, new_c1 = jnp.where(first, h1, new_h1), jnp.where(first, c1, new_c1)
        return (new_h0, new_c0, new_h1, new_c1), new_h1

    _, outs = lax.scan(step, (zeros, zeros, zeros, zeros), (jnp.arange(T + 1), xg0))
    return jnp.swapaxes(outs[1:], 0, 1)  # layer 1's steps 0..T-1


FORWARDS = {"jaxseq-layers": jaxseq_layers, "scan-layers": scan_layers, "scan-wavefront": scan_wavefront}


def contenders(p):
    import jax
    import jax.numpy as jnp

    params, x, dout = (jax.device_put(p[k]) for k in ("params", "x", "dout"))
    out = {}
    for name, forward in FORWARDS.items():
        grad = jax.jit(jax.grad(lambda q, x, f=forward: jnp.sum(f(q, x) * dout), argnums=(0, 1)))
        out[name] = (lambda g=grad: jax.block_until_ready(g(params, x)), grad, jax.jit(forward))
    return out, params, x


def check(impls, params, x, rtol=1e-4):
    from jaxseq.contenders import assert_agree

    def values(name):
        _, grad, fwd = impls[name]
        dparams, dx = grad(params, x)
        return {"h": np.asarray(fwd(params, x)), "dx": np.asarray(dx), **{k: np.asarray(v) for k, v in dparams.items()}}

    expected = values("jaxseq-layers")
    return {name: max(assert_agree(name, values(name), expected, rtol, "jaxseq-layers").values())
            for name in impls if name != "jaxseq-layers"}


def run(quick: bool = False) -> list[dict]:
    harness.setup()
    reps, warmup = harness.repetitions(True) if quick else (5, 1)
    results = []
    for label, (N, T, E, H) in (QUICK_SHAPES if quick else SHAPES).items():
        impls, params, x = contenders(make_problem(N, T, E, H))
        errors = check(impls, params, x)
        flops = 3 * 2.0 * N * T * ((E + H) + 2 * H) * 4 * H
        notes = "agree with jaxseq-layers: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items())
        results += harness.bench("2-layer LSTM stack", [(k, v[0]) for k, v in impls.items()], variant="fwd+bwd",
                                 shape=f"({label}) N={N} T={T} E={E} H={H}", flops=flops, reps=reps, warmup=warmup,
                                 reference="jaxseq-layers", notes=notes)
    return results


if __name__ == "__main__":
    harness.main(run, "wavefront study (issue 22)", __doc__.splitlines()[0])
