"""`jaxseq lm train|eval|generate` end to end on small text, and what a careless user or an
attacker feeds them: one line each, nothing trained lost, never a traceback."""

from __future__ import annotations

import contextlib
import io

import pytest

from jaxseq import cli
from jaxseq.train.checkpoint import list_checkpoints, read_metadata
from tests.cli_process import assert_one_line_error, run_jaxseq

SMALL = ["--embed-size", "16", "--hidden-size", "32", "--batch-size", "16", "--bptt", "32", "--no-progress"]


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of `jaxseq lm train` on the built-in text (char level, char-rnn's recipe at small
    sizes, 2 epochs): (its folder, its stdout)."""
    folder = tmp_path_factory.mktemp("lm") / "run"
    code, out = run_cli("lm", "train", "--epochs", "2", "--lr", "1e-2", "--checkpoint-dir", str(folder), *SMALL)
    assert code == 0, out
    return folder, out


def test_train_prints_epochs_and_keeps_the_best(trained):
    folder, out = trained
    assert "builtin text (seed 0): char level, V = 23" in out
    assert out.count("val bpc") == 2 and "epoch   2/2" in out and "best epoch " in out
    assert f"generate with: jaxseq lm generate --checkpoint {folder}" in out
    meta = read_metadata(list_checkpoints(folder)[-1])
    assert meta["data"] == {"kind": "builtin", "level": "char"} and meta["level"] == "char"
    assert meta["model"]["hidden_size"] == 32 and meta["lm_train_config"]["optimizer"] == "adamw"  # char-rnn's
    assert (folder / "vocab.json").is_file() and (folder / "logs" / "metrics.jsonl").is_file()


def test_eval_on_its_split_and_on_a_file(trained, tmp_path):
    folder, out = trained
    code, printed = run_cli("lm", "eval", "--checkpoint", str(folder), "--split", "val")
    assert code == 0 and printed.startswith("val split: ") and "bits per character" in printed
    best = out.split("best epoch ")[1].split("val loss ")[1].split(",")[0]
    assert f"loss {best} nats" in printed  # the split scored as training scored it
    text = tmp_path / "t.txt"
    text.write_text("the dog runs .\nthe cats that the bird sees sleep .\n" * 20, encoding="utf-8")
    code, printed = run_cli("lm", "eval", "--checkpoint", str(folder), "--text", str(text), "--bptt", "16")
    assert code == 0 and printed.startswith(f"{text}: 1,019 tokens, loss ")


def test_generate_is_reproducible_and_streams_the_prompt_first(trained):
    folder, _ = trained
    argv = ["lm", "generate", "--checkpoint", str(folder), "--prompt", "the dog", "--length", "150",
            "--temperature", "0.8", "--top-k", "5", "--seed", "1"]
    code, first = run_cli(*argv)
    assert code == 0 and first.startswith("the dog") and len(first) == len("the dog") + 150 + 1
    assert run_cli(*argv) == (0, first)
    assert run_cli(*argv[:-1], "2")[1] != first
    greedy = run_cli("lm", "generate", "--checkpoint", str(folder), "--prompt", "the", "--temperature", "0")
    top_1 = run_cli("lm", "generate", "--checkpoint", str(folder), "--prompt", "the", "--top-k", "1", "--seed", "7")
    assert greedy[0] == 0 and greedy == top_1


def test_resume_of_a_finished_run_trains_nothing_and_overwrite_checks_first(trained, tmp_path):
    folder, _ = trained
    before = [path.name for path in list_checkpoints(folder)]
    code, out = run_cli("lm", "train", "--epochs", "2", "--lr", "1e-2", "--checkpoint-dir", str(folder), *SMALL,
                        "--resume")
    assert code == 0 and "resuming from" in out and [path.name for path in list_checkpoints(folder)] == before
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"abc\x00def" * 10)
    result = run_jaxseq("lm", "train", "--text", str(binary), "--checkpoint-dir", str(folder), "--overwrite")
    assert_one_line_error(result, str(binary), "NUL")
    assert [path.name for path in list_checkpoints(folder)] == before  # refused before anything was deleted


@pytest.mark.parametrize("argv, message", [
    (["lm", "train", "--bptt", "0"], "argument --bptt: expected a positive integer, got 0"),
    (["lm", "train", "--bptt", "99999999999"], "argument --bptt"),
    (["lm", "train", "--lr", "nan"], "argument --lr"),
    (["lm", "train", "--hidden-dropout", "1"], "argument --hidden-dropout"),
    (["lm", "train", "--level", "byte"], "argument --level: invalid choice"),
    (["lm", "generate", "--checkpoint", "x", "--length", "100001"], "argument --length"),
    (["lm", "generate", "--checkpoint", "x", "--temperature", "-1"], "argument --temperature"),
    (["lm", "generate", "--checkpoint", "x", "--temperature", "nan"], "argument --temperature"),
    (["lm", "generate", "--checkpoint", "x", "--top-k", "0"], "argument --top-k"),
    (["lm", "generate", "--checkpoint", "x", "--top-p", "0"], "argument --top-p"),
    (["lm", "generate", "--checkpoint", "x", "--top-p", "1.5"], "argument --top-p"),
    (["lm", "eval", "--checkpoint", "x"], "one of the arguments --text --split is required"),
])
def test_the_parser_refuses_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], errors


@pytest.mark.parametrize("argv, fragments", [
    (["lm", "train", "--text", "a.txt", "--data", "builtin"], ["give exactly one text source"]),
    (["lm", "train", "--train", "a.txt"], ["--train and --val go together"]),
    (["lm", "train", "--tie-weights", "--embed-size", "64"], ["tie_weights needs embed_size == hidden_size",
                                                              "embed_size=64 and hidden_size=128"]),
])
def test_options_that_do_not_go_together_are_one_line(argv, fragments, tmp_path):
    assert_one_line_error(run_jaxseq(*argv, "--checkpoint-dir", str(tmp_path / "run")), *fragments)
    assert not (tmp_path / "run").exists()


def assert_one_line_in_process(argv: list[str], fragments: list[str], capsys) -> None:
    """`jaxseq ARGV` in this process (the CLI's own error handler, without a child's start-up):
    exit 2 and one line on stderr holding every fragment."""
    assert run_cli(*argv)[0] == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and all(fragment in lines[0] for fragment in fragments), (fragments, lines)


def test_hostile_text_files_are_one_line_each(tmp_path, trained, capsys):
    folder, _ = trained
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait\n".encode("latin-1") * 3)
    many = tmp_path / "many.txt"
    many.write_text("".join(chr(0x4E00 + i) for i in range(20_001)) * 2, encoding="utf-8")
    short = tmp_path / "short.txt"
    short.write_text("ab", encoding="utf-8")
    run = ["--no-progress", "--checkpoint-dir", str(tmp_path / "run")]
    cases = [
        (["lm", "train", "--text", str(latin1), *run], [str(latin1), "UTF-8", "byte offset 3"]),
        (["lm", "train", "--text", str(many), *run], [str(many), "20,000"]),
        (["lm", "train", "--text", str(short), *run], [str(short), "at least 2"]),
        (["lm", "train", "--text", str(tmp_path / "missing.txt"), *run], ["missing.txt"]),
        (["lm", "train", "--text", str(tmp_path), *run], [str(tmp_path)]),
        (["lm", "eval", "--checkpoint", str(folder), "--text", str(latin1)], [str(latin1), "UTF-8"]),
        (["lm", "eval", "--checkpoint", str(folder), "--split", "test"], ["split must be one of train, val"]),
        (["lm", "generate", "--checkpoint", str(tmp_path / "nothing")], ["not found"]),
    ]
    for argv, fragments in cases:
        assert_one_line_in_process(argv, fragments, capsys)
    assert not (tmp_path / "run").exists()
    # What a user's shell sees, in a child process: one line, no traceback.
    assert_one_line_error(run_jaxseq("lm", "generate", "--checkpoint", str(folder), "--prompt", "Zebra!"),
                          "prompt", "'Z'", "'!'")


def test_a_huge_bptt_trains_one_segment_per_epoch(tmp_path):
    code, out = run_cli("lm", "train", "--epochs", "1", "--bptt", "1000000", "--batch-size", "64", "--hidden-size",
                        "8", "--embed-size", "8", "--no-progress", "--checkpoint-dir", str(tmp_path / "run"))
    assert code == 0 and "epoch   1/1" in out
    assert read_metadata(list_checkpoints(tmp_path / "run")[-1])["steps_per_epoch"] == 1
