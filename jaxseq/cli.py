"""The `jaxseq` console entry point.

It only assembles the sub-commands; each lives in `jaxseq.commands.<name>` with a
`register(subparsers)` function that adds its parser and sets `func` to the function that
runs it. Heavy imports (JAX, Flax, the data loaders) happen inside those functions, so
`jaxseq --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from jaxseq import __version__, process_memory
from jaxseq.commands import bench, caption, check, classify, cola, data, demo, lm, plot

COMMAND_MODULES = [bench, caption, check, cola, classify, data, demo, lm, plot]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxseq",
        description="Sequence models in JAX with hand-written, verified backward passes.",
    )
    parser.add_argument("--version", action="version", version=f"jaxseq {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_environment()
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Documented input errors: one clear line, no traceback.
        print(f"jaxseq {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # The machine refused (a full disk, a read-only folder, no permission): one line naming
        # the file, as OSError's message does; a trainer's says which checkpoint it kept.
        print(f"jaxseq {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        # Ctrl-C (a trainer's second one says what it left behind): one line, the shell's 128 + SIGINT.
        print(f"jaxseq {args.command}: {str(error) or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as error:
        # A trainer stopped by SIGTERM / Ctrl-C after checkpointing: say where, exit as the
        # signal would. (Its class is looked up, not imported: that would load JAX for every command.)
        interrupt = sys.modules.get("jaxseq.train.interrupt")
        if interrupt is not None and isinstance(error, interrupt.TrainingInterrupted):
            print(f"jaxseq {args.command}: {error}", file=sys.stderr)
            return error.exit_code
        if out_of_memory(error):  # sizes the options allow but this machine does not
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            print(f"jaxseq {args.command}: error: out of memory ({reason}); try a smaller model or batch size",
                  file=sys.stderr)
            return 1
        raise


def check_environment() -> None:
    """The environment variables the layers read when a function is traced, checked before a
    command does anything (a bad value would otherwise stop a run midway, its folder made):
    $JAXSEQ_KERNEL_MIN_STATE. Raises the one-line ValueError naming the variable."""
    from jaxseq.kernels.build import min_step_state

    min_step_state()


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is NumPy's MemoryError or XLA's failure to allocate device memory."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return type(error).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and (
        "RESOURCE_EXHAUSTED" in text or "Out of memory" in text)


def entry_point() -> int:
    """The `jaxseq` console script: `main` in a process whose glibc malloc keeps freed memory
    (`jaxseq.process_memory`: its training steps stop page-faulting their buffers in anew; an
    epoch of `jaxseq lm train` 1.20-1.23x faster at word level, 1.03-1.08x at char level), set
    before JAX starts its threads. `JAXSEQ_MALLOC=system` keeps glibc's defaults. Calling `main` directly (from
    Python) changes nothing of the calling process."""
    try:
        if process_memory.wanted_for_command():
            process_memory.keep_freed_memory()
    except ValueError as error:
        print(f"jaxseq: error: {error}", file=sys.stderr)
        return 2
    return main()


if __name__ == "__main__":
    sys.exit(entry_point())

