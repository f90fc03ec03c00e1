"""The `jaxseq` console entry point.

It only assembles the sub-commands; each lives in `jaxseq.commands.<name>` with a
`register(subparsers)` function that adds its parser and sets `func` to the function that
runs it. Heavy imports (JAX, Flax, the data loaders) happen inside those functions, so
`jaxseq --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from jaxseq.commands import bench, caption, check, cola, data, demo

COMMAND_MODULES = [bench, caption, check, cola, data, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxseq",
        description="Sequence models in JAX with hand-written, verified backward passes.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Documented input errors: one clear line, no traceback.
        print(f"jaxseq {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        # A trainer stopped by SIGTERM / Ctrl-C after checkpointing: say where, exit as the
        # signal would. (Its class is looked up, not imported: that would load JAX for every command.)
        interrupt = sys.modules.get("jaxseq.train.interrupt")
        if interrupt is None or not isinstance(error, interrupt.TrainingInterrupted):
            raise
        print(f"jaxseq {args.command}: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
