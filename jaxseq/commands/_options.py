"""Command-line option types and option groups shared by the sub-commands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (rejects 0, negatives and non-numbers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (dropout, label smoothing)."""
    value = nonnegative_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def add_parallel_args(parser: argparse.ArgumentParser) -> None:
    """--devices and the multi-process options (see README, "Scaling out")."""
    group = parser.add_argument_group("scaling out")
    group.add_argument("--devices", type=positive_int, default=None,
                       help="data-parallel over this many devices (default: one device; with "
                            "--num-processes, every process's devices)")
    group.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="multi-process run: address of process 0's coordinator")
    group.add_argument("--num-processes", type=positive_int, default=None, help="multi-process run: process count")
    group.add_argument("--process-id", type=int, default=None, help="multi-process run: this process's rank")


def setup_parallel(args: argparse.Namespace) -> int | None:
    """Join a multi-process run when asked (before any JAX computation); the trainer's devices.

    Returns: the device count to train on, or None for a plain single-device run.
    """
    multi = (args.coordinator, args.num_processes, args.process_id)
    if all(value is None for value in multi):
        return args.devices
    if any(value is None for value in multi):
        raise ValueError("a multi-process run needs --coordinator, --num-processes and --process-id together")
    from jaxseq.train.parallel import initialize_distributed

    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    return args.devices if args.devices is not None else jax.device_count()
