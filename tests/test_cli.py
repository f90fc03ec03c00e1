"""Every `jaxseq` command line rejects unknown options in the parser, before any work."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from jaxseq import cli


def leaf_commands(parser: argparse.ArgumentParser, prefix=()):
    """(words, parser) of every runnable command: `caption train`, `cola predict`, `demo`, ..."""
    subcommands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subcommands:
        yield prefix, parser
        return
    for name, child in subcommands[0].choices.items():
        yield from leaf_commands(child, (*prefix, name))


LEAVES = {" ".join(words): child for words, child in leaf_commands(cli.build_parser())}


def required_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for a command's required options and positionals."""
    argv = []
    for action in parser._actions:
        if action.option_strings and action.required:
            argv += [action.option_strings[0], action.choices[0] if action.choices else "x"]
        elif not action.option_strings and action.nargs not in (0, "?", "*") and action.dest != "help":
            argv.append(action.choices[0] if action.choices else "x")
    return argv


def test_every_command_is_found():
    assert {"caption train", "caption sample", "caption eval", "cola train", "cola predict", "classify train",
            "demo", "check", "bench"} <= set(LEAVES)


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_unknown_options_are_rejected_by_the_parser(command, capsys):
    argv = [*command.split(), *required_arguments(LEAVES[command])]
    cli.build_parser().parse_args(argv)  # the command line itself is valid
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--no-such-option"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_building_the_parser_loads_no_numerical_library():
    """`jaxseq --help` stays fast, and the demo can set thread-pool variables before NumPy starts."""
    code = ("import sys; from jaxseq import cli; cli.build_parser(); "
            "print(sorted(m for m in ('numpy', 'jax', 'torch', 'flax') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
