"""The matmul roofline: float32 matmuls as XLA, torch and NumPy, the best rate of a run, and
every result's rate as a fraction of it (`frac_best_matmul`)."""

from __future__ import annotations

from typing import Iterable, Sequence

from jaxseq.timing import Contender, bench

ROOFLINE_CASE = "matmul roofline"


def best_matmul_gflops(results: Iterable[dict]) -> float | None:
    """The best GFLOP/s of the roofline cases among `results` (None without any)."""
    rates = [r["gflops"] for r in results if r["case"] == ROOFLINE_CASE and r.get("gflops")]
    return max(rates) if rates else None


def annotate_roofline(results: list[dict], best: float | None = None) -> float | None:
    """Fill `frac_best_matmul` of every result with a rate, from the best roofline rate."""
    best = best if best is not None else best_matmul_gflops(results)
    if best:
        for r in results:
            if r.get("gflops"):
                r["frac_best_matmul"] = r["gflops"] / best
    return best


def matmul_contenders(m: int, k: int, n: int, seed: int = 0) -> list[Contender]:
    """(m, k) x (k, n) float32 matmul as XLA (jit), torch.mm and NumPy `@`; 2*m*k*n FLOPs."""
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    contenders: list[Contender] = []
    a_j, b_j = jax.device_put(a), jax.device_put(b)
    xla_mm = jax.jit(lambda u, v: u @ v)
    xla_mm(a_j, b_j).block_until_ready()
    contenders.append(("xla", lambda: xla_mm(a_j, b_j).block_until_ready()))
    try:
        import torch

        a_t, b_t = torch.from_numpy(a), torch.from_numpy(b)
        contenders.append(("torch", lambda: torch.mm(a_t, b_t)))
    except ImportError:
        pass
    contenders.append(("numpy", lambda: a @ b))
    return contenders


def matmul_roofline(shapes: Sequence[tuple[int, int, int, str]], *, reps: int, warmup: int) -> list[dict]:
    """Time float32 matmuls (m, k, n, label) as XLA, torch and NumPy; ratios are to XLA."""
    results = []
    for m, k, n, label in shapes:
        results += bench(ROOFLINE_CASE, matmul_contenders(m, k, n), variant=label, shape=f"({m}x{k}) @ ({k}x{n})",
                         flops=2.0 * m * k * n, reference="xla", reps=reps, warmup=warmup)
    return results
