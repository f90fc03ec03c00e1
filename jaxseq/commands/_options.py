"""Command-line option types and option groups shared by the sub-commands.

Every number a command takes is checked by its argparse type, so a bad one is a usage
error naming the option: counts are positive and fit in int32, model sizes and seeds stay
within `jaxseq.limits` (the bounds the checkpoint checks use too). Numbers are written in
ASCII digits without underscores or spaces (Python's int() reads "1_0" as 10).
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from jaxseq.limits import MAX_BATCH_SIZE, MAX_BEAM_WIDTH, MAX_COUNT, MAX_SEED, MAX_TRAIN_CAPTIONS, MAX_WIDTH


def _shown(text: str) -> str:
    """An option's value as typed, cut short if it is long (a 100,000-digit "seed")."""
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def _plain(parse, pattern: str):
    """`parse` (int or float) of text written as a number is written: ASCII digits, no
    underscores or spaces, which int() and float() also take ("1_0" is 10 to them)."""
    plain = re.compile(pattern, re.ASCII)

    def convert(text: str):
        if not plain.fullmatch(text):
            raise ValueError(text)
        return parse(text)

    return convert


_INTEGER = _plain(int, r"[+-]?\d+")
_REAL = _plain(float, r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)")


def _number(parse, accept, expected: str):
    """An argparse type: `parse(text)` must succeed and satisfy `accept`, else the message
    "expected <expected>, got <text>"."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {_shown(text)}")
        return value

    convert.__name__ = expected.replace(" ", "_")
    convert.__doc__ = f"argparse type: {expected}."
    return convert


def bounded_int(low: int, high: int, expected: str):
    """An argparse type: an integer in [low, high]; below `low` the message says `expected`
    ("a positive integer"), above `high` it gives the bound."""
    at_least = _number(_INTEGER, lambda value: value >= low, expected)

    def convert(text: str):
        value = at_least(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"expected {expected} of at most {high}, got {_shown(text)}")
        return value

    convert.__name__ = at_least.__name__
    convert.__doc__ = f"argparse type: {expected} up to {high}."
    return convert


positive_int = bounded_int(1, MAX_COUNT, "a positive integer")  # epochs, batch sizes, counts (int32)
model_size = bounded_int(1, MAX_WIDTH, "a positive integer")  # widths, heads, tokens per sentence
batch_size = bounded_int(1, MAX_BATCH_SIZE, "a positive integer")  # --batch-size
random_seed = bounded_int(0, MAX_SEED, "an integer >= 0")  # every --seed: JAX and NumPy take [0, 2**63 - 1]
train_captions = bounded_int(1, MAX_TRAIN_CAPTIONS, "a positive integer")  # --max-train
beam_width = bounded_int(1, MAX_BEAM_WIDTH, "a positive integer")  # --beam
positive_float = _number(_REAL, lambda value: 0 < value < math.inf, "a positive number")
nonnegative_float = _number(_REAL, lambda value: 0 <= value < math.inf, "a number >= 0")
fraction = _number(_REAL, lambda value: 0 <= value < 1, "a number in [0, 1)")  # dropout, smoothing


def add_checkpoint_args(parser: argparse.ArgumentParser, what: str, default: str | None = None,
                        shown_default: str | None = None) -> None:
    """--checkpoint-dir (holding `what`; `shown_default` describes a default the command
    computes), and --resume / --overwrite for a folder that already holds checkpoints
    (without either, that is an error: nothing is lost by accident)."""
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--checkpoint-dir", type=Path, default=None if default is None else Path(default),
                       help=f"where {what} go (default: {shown_default or default})")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--resume", action="store_true",
                        help="continue the run in --checkpoint-dir from its latest checkpoint, exactly as if "
                             "it had not stopped (same settings and data); starts afresh if there is none")
    choice.add_argument("--overwrite", action="store_true", help="delete checkpoints already in --checkpoint-dir")
    group.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="STEPS",
                       help="also checkpoint every STEPS steps inside an epoch, so that even a hard kill "
                            "loses at most STEPS steps (default: at epoch ends only)")


def check_folder_options(checkpoint_dir: Path, log_dir: Path | None) -> None:
    """--checkpoint-dir and --log-dir checked as run folders (`check_run_dir`, creating
    nothing) before any data is read: a file given for either, or a path under one, is a
    one-line ValueError naming the option."""
    from jaxseq.train.run_folder import check_run_dir

    check_run_dir(checkpoint_dir, label="--checkpoint-dir")
    if log_dir is not None:
        check_run_dir(log_dir, label="--log-dir")


def add_log_args(parser: argparse.ArgumentParser) -> None:
    """--log-dir and --log-every: the run log (TensorBoard event files and metrics.jsonl)."""
    group = parser.add_argument_group("run log (TensorBoard, metrics.jsonl; see `jaxseq plot`)")
    group.add_argument("--log-dir", type=Path, default=None,
                       help="write TensorBoard event files and metrics.jsonl here (default: "
                            "CHECKPOINT_DIR/logs)")
    group.add_argument("--log-every", type=positive_int, default=50, metavar="STEPS",
                       help="steps between train-loss, learning-rate and steps/s points (default: 50)")


def add_parallel_args(parser: argparse.ArgumentParser) -> None:
    """--devices and the multi-process options (see README, "Scaling out")."""
    group = parser.add_argument_group("scaling out")
    group.add_argument("--devices", type=positive_int, default=None,
                       help="data-parallel over this many devices (default: one device; with "
                            "--num-processes, every process's devices)")
    group.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="multi-process run: address of process 0's coordinator")
    group.add_argument("--num-processes", type=positive_int, default=None, help="multi-process run: process count")
    group.add_argument("--process-id", type=bounded_int(0, MAX_COUNT, "an integer >= 0"), default=None,
                       help="multi-process run: this process's rank")


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
