"""`jaxseq check`: every layer's gradient check, printed as a table of relative errors."""

from __future__ import annotations

import argparse

from jaxseq.commands._options import random_seed


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "check", help="gradient-check every layer: hand backward vs jax.grad vs numerical (float64)"
    )
    parser.add_argument("--seed", type=random_seed, default=0, help="seed of the random inputs (default: 0)")
    parser.set_defaults(func=run)


def print_check_table(seed: int = 0) -> bool:
    """Run the checks, print the table and a verdict; True when every error is within tolerance."""
    from jaxseq.gradcheck import AUTODIFF_TOL, NUMERICAL_TOL, builtin_layer_checks, format_results

    results = builtin_layer_checks(seed=seed)
    print(format_results(results))
    worst_autodiff = max(max(r.hand_vs_autodiff, r.custom_vjp_vs_hand or 0.0) for r in results)
    worst_numerical = max(r.hand_vs_numerical for r in results)
    ok = worst_autodiff < AUTODIFF_TOL and worst_numerical < NUMERICAL_TOL
    print(
        f"\nlargest error vs jax.grad: {worst_autodiff:.2e} (tolerance {AUTODIFF_TOL:.0e}); "
        f"vs numerical: {worst_numerical:.2e} (tolerance {NUMERICAL_TOL:.0e}) -> "
        + ("all layers pass" if ok else "FAILED")
    )
    return ok


def run(args: argparse.Namespace) -> int:
    return 0 if print_check_table(seed=args.seed) else 1
