"""The benchmarks of `benchmarks/gpu/run.sh`: recurrent layers against cuDNN, and LM throughput.

Cases, float32, every contender first checked against jaxseq on the outputs and every gradient:

- "lstm layer" / "gru layer" fwd+bwd: the gradient w.r.t. x and the four weights of
  sum(out * dout) + sum(h_n * dh_n) for one layer, at N=64 T=16 D=256 H=512 and N=128 T=64
  D=512 H=512 (`--quick`: N=4 T=5 D=6 H=8). Contenders:
    jaxseq        `jaxseq.nn.LSTM` / `GRU(hidden_size=H)` (the hand-written backward), jitted
    torch         `torch.nn.LSTM` / `GRU(batch_first=True)` on CUDA (cuDNN) where there is a
                  GPU, else on the CPU (2 threads, stated in the contender's name)
    jax-cudnn     `jax.experimental.rnn.lstm` (cuDNN through XLA; LSTM only), PyTorch's weights
                  packed in cuDNN's flat layout (W_ih, W_hh, b_ih, b_hh); GPU only: its CPU
                  path has no lowering, so on CPU it is skipped and the case's notes say so
- the language-model cases of `benchmarks/speed/bench_lm.py` (char and word training step,
  generation), its PyTorch contender on CUDA where there is one.

On a GPU every contender computes in full float32: TF32 is switched off in JAX
(`jax_default_matmul_precision="highest"`), cuDNN and cuBLAS (`torch.backends.*.allow_tf32 =
False`), which is PyTorch's default for matmuls but not XLA's. The agreement tolerances there
are 2e-2 for the layers and 1e-3 for the LM cases (1e-4 on CPU), a margin for the GPU's other
summation orders; the errors measured are in the notes.

    python benchmarks/gpu/bench_gpu.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPEED = HERE.parent / "speed"
for folder in (SPEED, HERE.parents[1]):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import harness  # noqa: E402

SHAPES = {"a": (64, 16, 256, 512), "g": (128, 64, 512, 512)}
QUICK_SHAPES = {"q": (4, 5, 6, 8)}
CPU_RTOL, GPU_RTOL = 1e-4, 2e-2


def on_gpu() -> bool:
    import jax

    return jax.default_backend() == "gpu"


def torch_device() -> str:
    try:
        import torch
    except ImportError:
        return "none"
    return "cuda" if torch.cuda.is_available() else "cpu"


def make_problem(kind: str, N: int, T: int, D: int, H: int, seed: int = 0) -> dict:
    """x, dout, dh (the cotangents), PyTorch-layout weights drawn as PyTorch does."""
    rng = np.random.default_rng(seed)
    G = 4 if kind == "lstm" else 3
    bound = 1 / np.sqrt(H)
    u = lambda *shape: rng.uniform(-bound, bound, shape).astype(np.float32)  # noqa: E731
    return {"kind": kind, "x": rng.standard_normal((N, T, D)).astype(np.float32),
            "dout": rng.standard_normal((N, T, H)).astype(np.float32),
            "dh": rng.standard_normal((1, N, H)).astype(np.float32),
            "params": {"weight_ih_l0": u(G * H, D), "weight_hh_l0": u(G * H, H), "bias_ih_l0": u(G * H),
                       "bias_hh_l0": u(G * H)}}


def _named(grads: dict) -> dict:
    return {k: np.asarray(v) for k, v in grads.items()}


def jaxseq_contender(p: dict):
    """(timed callable, () -> {out, h_n, dx, d<name>})."""
    import jax
    import jax.numpy as jnp

    from jaxseq import nn as jnn

    H = p["dh"].shape[-1]
    module = (jnn.LSTM if p["kind"] == "lstm" else jnn.GRU)(hidden_size=H)
    params = jax.device_put(jnn.params_from_torch(module, p["params"])["params"])
    x, dout, dh = (jax.device_put(p[k]) for k in ("x", "dout", "dh"))

    def loss(params, x):
        out, final = module.apply({"params": params}, x)
        h_n = final[0] if p["kind"] == "lstm" else final
        return jnp.sum(out * dout) + jnp.sum(h_n * dh), (out, h_n)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))

    def values():
        (dparams, dx), (out, h_n) = grad(params, x)
        named = jnn.params_to_torch(module, dparams)
        return {"out": np.asarray(out), "h_n": np.asarray(h_n), "dx": np.asarray(dx),
                **{"d" + k: np.asarray(v) for k, v in named.items()}}

    return (lambda: jax.block_until_ready(grad(params, x))), values


def torch_contender(p: dict, device: str):
    import torch

    N, T, D = p["x"].shape
    H = p["dh"].shape[-1]
    module = (torch.nn.LSTM if p["kind"] == "lstm" else torch.nn.GRU)(D, H, batch_first=True).to(device)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in p["params"].items()})
    x = torch.from_numpy(p["x"]).to(device).requires_grad_(True)
    dout, dh = (torch.from_numpy(p[k]).to(device) for k in ("dout", "dh"))
    named = dict(module.named_parameters())

    def run():
        for leaf in (x, *named.values()):
            leaf.grad = None
        out, final = module(x)
        h_n = final[0] if p["kind"] == "lstm" else final
        ((out * dout).sum() + (h_n * dh).sum()).backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return out, h_n

    def values():
        out, h_n = run()
        return {"out": out.detach().cpu().numpy(), "h_n": h_n.detach().cpu().numpy(),
                "dx": x.grad.cpu().numpy(), **{"d" + k: v.grad.cpu().numpy() for k, v in named.items()}}

    return run, values


def jax_cudnn_contender(p: dict):
    """`jax.experimental.rnn.lstm` with the weights in cuDNN's flat layout (one layer, one
    direction: W_ih, W_hh, b_ih, b_hh, PyTorch's gate order i, f, g, o)."""
    import jax
    import jax.numpy as jnp
    from jax.experimental import rnn

    N, T, D = p["x"].shape
    H = p["dh"].shape[-1]
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    flat = jnp.asarray(np.concatenate([p["params"][k].ravel() for k in names]))
    x, dout, dh = (jax.device_put(p[k]) for k in ("x", "dout", "dh"))
    zeros = jnp.zeros((1, N, H), jnp.float32)
    lengths = jnp.full((N,), T, jnp.int32)

    def loss(w, x):
        out, h_n, _ = rnn.lstm(x, zeros, zeros, w, lengths, input_size=D, hidden_size=H, num_layers=1,
                               dropout=0.0, bidirectional=False)
        return jnp.sum(out * dout) + jnp.sum(h_n * dh), (out, h_n)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))

    def values():
        (dw, dx), (out, h_n) = grad(flat, x)
        W_ih, W_hh, b_ih, b_hh = rnn.unpack_lstm_weights(dw, D, H, 1, False)
        return {"out": np.asarray(out), "h_n": np.asarray(h_n), "dx": np.asarray(dx),
                "dweight_ih_l0": np.asarray(W_ih[0]), "dweight_hh_l0": np.asarray(W_hh[0]),
                "dbias_ih_l0": np.asarray(b_ih[0]), "dbias_hh_l0": np.asarray(b_hh[0])}

    return (lambda: jax.block_until_ready(grad(flat, x))), values


def bench_layer(kind: str, label: str, shape: tuple, *, reps: int, warmup: int) -> list[dict]:
    from jaxseq.contenders import assert_agree

    N, T, D, H = shape
    p = make_problem(kind, *shape)
    rtol = GPU_RTOL if on_gpu() else CPU_RTOL
    contenders = {"jaxseq": jaxseq_contender(p)}
    skipped = []
    device = torch_device()
    if device == "none":
        skipped.append("torch (not installed)")
    else:
        contenders[f"torch-{'cudnn' if device == 'cuda' else 'cpu'}"] = torch_contender(p, device)
        if device != "cuda":
            skipped.append("torch on cuDNN (no CUDA device: torch ran on the CPU)")
    if kind == "lstm":
        if on_gpu():
            try:
                contenders["jax-cudnn"] = jax_cudnn_contender(p)
            except Exception as error:  # an API change must not lose the other contenders
                skipped.append(f"jax.experimental.rnn.lstm ({type(error).__name__}: {error})")
        else:
            skipped.append("jax.experimental.rnn.lstm (GPU only: no CPU lowering)")
    expected = contenders["jaxseq"][1]()
    errors = {}
    for name, (_, values) in list(contenders.items())[1:]:
        try:
            errors[name] = max(assert_agree(name, values(), expected, rtol, "jaxseq").values())
        except Exception as error:
            skipped.append(f"{name} (disagrees or failed: {str(error)[:300]})")
            del contenders[name]
    agree = ", ".join(f"{k} {v:.1e}" for k, v in errors.items()) or "none"
    notes = (f"fwd+bwd: grad of sum(out * dout) + sum(h_n * dh_n) w.r.t. x and the 4 weights; agree with jaxseq "
             f"(largest relative error, tolerance {rtol:g}): {agree}; backend {harness.machine_info().get('jax_backend')}"
             + (f"; skipped: {'; '.join(skipped)}" if skipped else ""))
    if skipped:
        print(f"{kind} {label}: skipped: {'; '.join(skipped)}", flush=True)
    G = 4 if kind == "lstm" else 3
    flops = 3 * 2.0 * N * T * (D + H) * G * H
    return harness.bench(f"{kind} layer", [(k, v[0]) for k, v in contenders.items()], variant="fwd+bwd",
                         shape=f"({label}) N={N} T={T} D={D} H={H}", flops=flops, reps=reps, warmup=warmup,
                         notes=notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repetitions (a smoke test)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results" / "gpu")
    parser.add_argument("--skip-lm", action="store_true", help="only the layer cases")
    parser.add_argument("--kind", action="append", choices=("lstm", "gru"), default=None,
                        help="only this layer (repeatable; default both)")
    args = parser.parse_args(argv)
    harness.setup()
    import bench_lm

    device = torch_device()
    bench_lm.TORCH_DEVICE["name"] = "cuda" if device == "cuda" else "cpu"
    if on_gpu():
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
        bench_lm.AGREEMENT_RTOL = 1e-3
    if device == "cuda":
        import torch

        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    meta = harness.machine_info()
    meta["mode"] = "quick (smoke test)" if args.quick else "full"
    meta["torch_device"] = device
    meta["float32"] = "full float32 (TF32 off in JAX, cuDNN and cuBLAS)" if on_gpu() else "CPU float32"
    if device == "cuda":
        import torch

        meta["torch_cuda_device"] = torch.cuda.get_device_name(0)
    reps, warmup = harness.repetitions(args.quick)
    results, failed = [], []
    for kind in args.kind or ("lstm", "gru"):
        for label, shape in (QUICK_SHAPES if args.quick else SHAPES).items():
            try:
                results += bench_layer(kind, label, shape, reps=reps, warmup=warmup)
            except Exception:
                traceback.print_exc()
                failed.append(f"{kind} {label}")
    if not args.skip_lm:
        try:
            results += bench_lm.run(quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append("lm")
    meta["load_average_end"] = harness.load_average()
    if failed:
        meta["failed_cases"] = failed
    stem = "gpu" if on_gpu() else "gpu-script-on-cpu"
    if args.quick:
        stem += "-quick"
    try:
        paths = bench_lm.write_results(results, args.out, stem, meta)
    except ImportError as error:  # matplotlib missing: the chart; write the table and JSON alone
        print(f"chart skipped ({error}); writing the table and JSON only", flush=True)
        import json

        args.out.mkdir(parents=True, exist_ok=True)
        paths = {"md": args.out / f"{stem}.md", "json": args.out / f"{stem}.json"}
        paths["md"].write_text(harness.format_table(results, title="GPU run", meta=meta) + "\n"
                               + bench_lm.throughput_table(results) + "\n")
        paths["json"].write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str) + "\n")
    for path in paths.values():
        print(f"wrote {path}", flush=True)
    if failed:
        print(f"bench_gpu.py: error: case(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
