"""Every `jaxseq` command line rejects unknown options in the parser, before any work, and
answers every bad input (options out of range, files and checkpoints that lie) with one
clear line, never a traceback."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxseq import cli
from jaxseq.train.checkpoint import list_checkpoints
from tests.bracket_task import write_tsv
from tests.checkpoints import first_float_entry, replace_entry, rewrite_state, tiny_runs


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
    required = [action for action in parser._actions if action.required]
    required += [group._group_actions[0] for group in parser._mutually_exclusive_groups if group.required]
    for action in required:
        if action.option_strings:
            argv += [action.option_strings[0], action.choices[0] if action.choices else "x"]
    for action in parser._actions:
        if not action.option_strings and action.nargs not in (0, "?", "*") and action.dest != "help":
            argv.append(action.choices[0] if action.choices else "x")
    return argv


def test_every_command_is_found():
    assert {"caption train", "caption sample", "caption eval", "cola train", "cola predict", "classify train",
            "classify predict", "classify eval", "lm train", "lm eval", "lm generate", "demo", "check",
            "bench"} <= set(LEAVES)


def test_version_is_the_installed_one(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"jaxseq {version('jaxseq')}\n"


@pytest.mark.parametrize("command", ["caption sample", "caption eval", "cola predict", "classify predict",
                                     "classify eval"])
def test_help_says_a_run_folder_gives_its_best_checkpoint(command):
    text = " ".join(LEAVES[command].format_help().split())
    assert "run folder: its best checkpoint by validation" in text or "--checkpoint-dir (its best checkpoint" in text
    assert "latest checkpoint is used" not in text


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


# -- bad input: every command answers with one clear line, never a traceback -----------------

@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Paths the bad-input cases use: runs of both trainers, a classifier run with NaN
    parameters, an empty folder, a path that does not exist, a small TSV file."""
    base = tmp_path_factory.mktemp("places")
    runs = tiny_runs(tmp_path_factory)  # read here, never changed
    classifier, captioner = runs["classifier"][0], runs["captioner"][0]
    broken = base / "nan-classifier"
    shutil.copytree(classifier, broken)
    for checkpoint in list_checkpoints(broken):
        rewrite_state(checkpoint, lambda state: replace_entry(
            state["params"], first_float_entry(state["params"]), lambda a: np.full(a.shape, np.nan, a.dtype)))
    (base / "empty").mkdir()
    return {"classifier": classifier, "captioner": captioner, "nan-classifier": broken, "empty": base / "empty",
            "missing": base / "missing", "tsv": write_tsv(base / "small.tsv", 40, 1)}


BIG_SEED, HUGE_NUMBER = str(2**64), "9" * 100_000
TINY_CAPTIONER = ["--max-train", "100", "--hidden-dim", "8", "--wordvec-dim", "8", "--quiet"]
BAD_INPUTS = [  # (command, its arguments ({name} -> a path of `places`), what the one error line says)
    ("caption train", ["--seed", BIG_SEED], f"argument --seed: expected an integer >= 0 of at most {2**63 - 1}, "
                                            f"got {BIG_SEED}"),
    ("caption train", ["--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    ("caption train", ["--epochs", HUGE_NUMBER], "argument --epochs: expected a positive integer, got "
                                                 "99999999999999999999... (100000 characters)"),
    ("caption train", ["--batch-size", "2147483647"], "argument --batch-size: expected a positive integer of at "
                                                      "most 65536"),
    ("caption train", ["--hidden-dim", "100000"], "argument --hidden-dim: expected a positive integer of at most "
                                                  "65536, got 100000"),
    ("caption train", ["--max-train", "10000000"], "argument --max-train: expected a positive integer of at most"),
    ("caption train", ["--process-id", "-1"], "argument --process-id: expected an integer >= 0, got -1"),
    ("caption train", ["--data", "coco", "--data-dir", "{empty}"], "coco2014_captions.h5 not found"),
    ("caption train", [*TINY_CAPTIONER, "--checkpoint-dir", "{classifier}", "--resume"],
     "is not an image-captioning checkpoint: it holds a sentence-classifier run"),
    ("caption sample", ["--checkpoint", "{classifier}"], "is not an image-captioning checkpoint"),
    ("caption sample", ["--checkpoint", "{missing}"], "no captioning checkpoint found at"),
    ("caption sample", ["--checkpoint", "{captioner}", "--seed", "-5"], "argument --seed: expected an integer >= 0"),
    ("caption sample", ["--checkpoint", "{captioner}", "--beam", "1000"], "argument --beam: expected a positive "
                                                                          "integer of at most 100, got 1000"),
    ("caption eval", ["--checkpoint", "{classifier}"], "use it with `jaxseq cola predict`"),
    ("caption eval", ["--checkpoint", "{captioner}", "--num-samples", "0"], "argument --num-samples: expected a "
                                                                            "positive integer, got 0"),
    ("cola train", ["--split-seed", "-1"], "argument --split-seed: expected an integer >= 0, got -1"),
    ("cola train", ["--seed", BIG_SEED], "argument --seed: expected an integer >= 0 of at most"),
    ("cola train", ["--val-size", "0"], "argument --val-size: expected a positive integer, got 0"),
    ("cola train", ["--data-dir", "{empty}"], "empty"),
    ("cola predict", ["--checkpoint", "{captioner}", "hi"], "is not a sentence-classifier checkpoint: it holds an "
                                                            "image-captioning run"),
    ("cola predict", ["--checkpoint", "{nan-classifier}", "hi"], "NaN or infinite values"),
    ("cola predict", ["--checkpoint", "{missing}", "hi"], "not found"),
    ("classify train", ["--train", "{missing}", "--dev", "{missing}"], "not found"),
    ("classify predict", ["--checkpoint", "{captioner}", "hi"], "is not a sentence-classifier checkpoint"),
    ("classify predict", ["--checkpoint", "{nan-classifier}", "hi"], "NaN or infinite values"),
    ("classify eval", ["--checkpoint", "{classifier}", "--test", "{missing}"], "missing: file not found"),
    ("classify eval", ["--checkpoint", "{captioner}", "--test", "{tsv}"], "is not a sentence-classifier checkpoint"),
    ("classify train", ["--train", "a", "--dev", "b", "--min-count", "0"], "argument --min-count: expected a "
                                                                           "positive integer, got 0"),
    ("classify train", ["--train", "a", "--dev", "b", "--max-length", "100000"], "argument --max-length: expected a "
                                                                                 "positive integer of at most 65536"),
    ("classify train", ["--train", "{tsv}", "--dev", "{tsv}", "--checkpoint-dir", "{captioner}", "--resume",
                        "--no-progress"], "is not a sentence-classifier checkpoint"),
    ("demo", ["--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
    ("check", ["--seed", BIG_SEED], "argument --seed: expected an integer >= 0 of at most"),
    ("bench", ["--only", "no_such_benchmark"], "no_such_benchmark"),
    ("data download", ["cola", "--sha256", "xyz"], "argument --sha256: expected 64 hexadecimal digits"),
    ("plot", ["{missing}"], "no metrics.jsonl in"),
    ("plot", ["{tsv}"], "small.tsv, line 1: not valid JSON"),
    ("caption train", ["--log-every", "0"], "argument --log-every: expected a positive integer, got 0"),
    ("lm train", ["--bptt", "0"], "argument --bptt: expected a positive integer, got 0"),
    ("lm train", ["--text", "{missing}", "--checkpoint-dir", "{empty}"], "missing"),
    ("lm train", ["--checkpoint-dir", "{classifier}", "--resume", "--epochs", "1", "--hidden-size", "8", "--embed-size",
                  "8", "--no-progress"], "is not a language-model checkpoint: it holds a sentence-classifier run"),
    ("lm eval", ["--checkpoint", "{captioner}", "--split", "val"], "is not a language-model checkpoint: it holds an "
                                                                   "image-captioning run"),
    ("lm eval", ["--checkpoint", "{missing}", "--text", "{tsv}"], "not found"),
    ("lm generate", ["--checkpoint", "{classifier}"], "use it with `jaxseq cola predict`"),
    ("lm generate", ["--checkpoint", "{empty}", "--top-p", "2"], "argument --top-p: expected a number in (0, 1]"),
    ("classify train", ["--train", "{tsv}", "--dev", "{tsv}", "--log-dir", "{tsv}", "--no-progress"],
     "--log-dir"),
]


def test_every_command_has_bad_input_cases():
    assert {command for command, _, _ in BAD_INPUTS} == set(LEAVES)


@pytest.mark.parametrize("command, arguments, message", BAD_INPUTS,
                         ids=[f"{command}:{' '.join(arguments)[:40]}" for command, arguments, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line_never_a_traceback(places, capfd, command, arguments, message):
    argv = [*command.split(), *(str(places[arg[1:-1]]) if arg[1:-1] in places else arg for arg in arguments)]
    parser_error = False
    try:
        code = cli.main(argv)  # an exception escaping here is the traceback a user would see
    except SystemExit as parser_exit:  # argparse: its usage lines, then the error line
        code, parser_error = parser_exit.code, True
    err = capfd.readouterr().err  # file-level: bench's runner is a child process
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert message in lines[-1], err
    if parser_error or command == "bench":  # bench: its runner's own usage error
        assert lines[-1].startswith(f"jaxseq {command}: error: argument ") or command == "bench", err
    else:
        assert len(lines) == 1 and lines[0].startswith(f"jaxseq {command.split()[0]}: error: "), err


def test_ctrl_c_in_any_command_is_one_line(monkeypatch, capsys):
    from jaxseq.commands import check
    from jaxseq.train.interrupt import StoppedAtOnce

    def interrupted(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "print_check_table", lambda seed: interrupted(seed))
    assert cli.main(["check"]) == 130
    assert capsys.readouterr().err == "jaxseq check: interrupted\n"

    def pressed_twice(_):
        raise StoppedAtOnce()

    monkeypatch.setattr(check, "print_check_table", lambda seed: pressed_twice(seed))
    assert cli.main(["check"]) == 130
    assert capsys.readouterr().err.startswith("jaxseq check: stopped at once by a second SIGINT; a checkpoint being "
                                              "written was abandoned, the checkpoints written before are kept")
