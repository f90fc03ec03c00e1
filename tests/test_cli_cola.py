"""`jaxseq cola train|predict` and `jaxseq classify train|predict|eval` end to end on small files."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from jaxseq import cli
from jaxseq.cola_recipes import RECURRENT_COLA_RECIPE
from jaxseq.data import cola, locations
from tests.bracket_task import write_tsv

SMALL_MODEL = ["--hidden-dim", "16", "--num-heads", "2", "--dim-k", "8", "--dim-v", "8",
               "--dim-feedforward", "32", "--min-count", "1", "--max-length", "16", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of `jaxseq classify train` on bracket TSVs: (checkpoint dir, its stdout)."""
    folder = tmp_path_factory.mktemp("classify")
    argv = ["classify", "train", "--train", str(write_tsv(folder / "a.tsv", 800, 1)),
            "--dev", str(write_tsv(folder / "b.tsv", 200, 2)), "--test", str(write_tsv(folder / "c.tsv", 200, 3)),
            "--epochs", "4", "--lr", "3e-3", "--checkpoint-dir", str(folder / "run"), *SMALL_MODEL]
    out = io.StringIO()  # a module-scoped fixture cannot use capsys
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return folder / "run", out.getvalue(), argv


def test_classify_train_prints_epochs_and_test_scores(trained):
    run, out, _ = trained
    assert out.count("val MCC") >= 4 and "epoch   4/4" in out
    assert "test (best checkpoint): acc" in out and "checkpoint: " in out
    assert (run / "vocab.json").is_file() and len(list(run.glob("ckpt-*"))) in (2, 3)  # last two + best


def test_a_checkpoint_that_cannot_be_written_stops_training_in_one_line(trained, tmp_path, capsys, monkeypatch):
    """A full disk at epoch 2's checkpoint: `classify train` stops there, says why and which
    checkpoint it kept (exit 1, no traceback), and epoch 1's checkpoint is intact."""
    import errno

    from tests.scripts.full_disk import fill_the_disk_after

    _, _, argv = trained
    calls = fill_the_disk_after(1, setattr=monkeypatch.setattr)
    run, argv = tmp_path / "run", list(argv)
    argv[argv.index("--checkpoint-dir") + 1] = str(run)  # the fixture's run, in this test's folder
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    first, second = sorted(run.glob("ckpt-*"))[0], run / f"ckpt-{calls[1]:08d}"
    assert err == (f"jaxseq classify: error: could not write checkpoint {second}: [Errno {errno.ENOSPC}] No "
                   f"space left on device; training stopped after step {calls[1]}, the last good checkpoint is "
                   f"{first}"), err
    assert [path.name for path in run.glob("ckpt-*")] == [first.name]
    assert cli.main(["cola", "predict", "--checkpoint", str(run), "( )"]) == 0  # what was kept loads


def test_predict_prints_probabilities(trained, capsys):
    run, _, _ = trained
    assert cli.main(["cola", "predict", "--checkpoint", str(run), "( [ ] )", ") ( ] ["]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("\t( [ ] )")
    probabilities = [float(line.split("\t")[0]) for line in lines]
    assert all(0.0 <= p <= 1.0 for p in probabilities) and probabilities[0] > probabilities[1]
    assert lines[1].split("\t")[1] == "unacceptable"
    # a ckpt-* folder works too
    checkpoint = sorted(run.glob("ckpt-*"))[-1]
    assert cli.main(["cola", "predict", "--checkpoint", str(checkpoint), "( )"]) == 0


def test_classify_predict_and_eval_use_the_run_as_cola_predict_does(trained, capsys):
    """`classify predict` prints what `cola predict` does (class words 1/0), and `classify eval`
    scores the best checkpoint: on the validation file, the MCC the run selected it by; on
    the test file, the line the training printed for it."""
    run, out, argv = trained
    sentences = ["( [ ] )", ") ( ] [", "[ ( ) ]"]
    assert cli.main(["cola", "predict", "--checkpoint", str(run), *sentences]) == 0
    cola_lines = capsys.readouterr().out.splitlines()
    assert cli.main(["classify", "predict", "--checkpoint", str(run), *sentences]) == 0
    classify_lines = capsys.readouterr().out.splitlines()
    words = {"acceptable": "1", "unacceptable": "0"}
    assert classify_lines == ["\t".join([p, words[w], text]) for p, w, text in (x.split("\t") for x in cola_lines)]
    dev, test = argv[argv.index("--dev") + 1], argv[argv.index("--test") + 1]
    assert cli.main(["classify", "eval", "--checkpoint", str(run), "--test", dev]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{dev}: 200 sentences (0 truncated to 16 tokens)"
    val_mcc = out.split("best epoch ")[1].split("val MCC ")[1].split()[0]
    assert f"MCC {val_mcc}  confusion" in lines[1]
    assert cli.main(["classify", "eval", "--checkpoint", str(run), "--test", test]) == 0
    scores = capsys.readouterr().out.splitlines()[1]
    trained_line = next(line for line in out.splitlines() if line.startswith("test (best checkpoint): "))
    assert scores.startswith(trained_line.removeprefix("test (best checkpoint): ") + "  loss ")


def test_existing_checkpoints_need_resume_or_overwrite(trained, capsys):
    run, _, argv = trained
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and "--resume" in err and "--overwrite" in err
    before = sorted(path.name for path in run.glob("ckpt-*"))
    assert cli.main([*argv, "--resume"]) == 0  # a finished run: nothing left to train, the same report
    out = capsys.readouterr().out
    assert f"resuming from {run}" in out and "(epoch 4 of 4" in out and "epoch   1/4" not in out
    assert "test (best checkpoint): acc" in out
    assert sorted(path.name for path in run.glob("ckpt-*")) == before
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([*argv, "--resume", "--overwrite"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_cola_train_on_a_folder(tmp_path, capsys):
    data = tmp_path / "cola"
    data.mkdir()
    write_tsv(data / "train.tsv", 300, 4)
    write_tsv(data / "dev.tsv", 60, 5)
    argv = ["cola", "train", "--data-dir", str(data), "--val-size", "60", "--epochs", "2",
            "--checkpoint-dir", str(tmp_path / "run"), "--patience", "3", "--dropout", "0.1",
            "--weight-decay", "0.01", "--schedule", "cosine", "--warmup-epochs", "0.5", *SMALL_MODEL]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"CoLA from {data}" in out and "train 240 sentences" in out and "val 60 sentences" in out
    assert "dev (out-of-domain test) (best checkpoint): acc" in out


def test_cola_train_without_data_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(locations, "candidate_dirs", lambda name: [tmp_path / "nowhere" / name])
    assert cli.main(["cola", "train", "--checkpoint-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "CoLA not found" in err and "nowhere" in err and "--data-dir" in err


def test_malformed_file_and_missing_checkpoint_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a fine sentence\t1\nno label here\n", encoding="utf-8")
    assert cli.main(["classify", "train", "--train", str(bad), "--dev", str(bad)]) == 2
    assert f"{bad}:2: expected 2 tab-separated fields" in capsys.readouterr().err
    assert cli.main(["cola", "predict", "--checkpoint", str(tmp_path / "none"), "hi"]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--epochs", "0"), ("--batch-size", "-4"), ("--lr", "0"),
                                           ("--lr", "-1e-3"), ("--dropout", "1.0"), ("--weight-decay", "-0.1"),
                                           ("--patience", "0"), ("--label-smoothing", "-0.1"), ("--epochs", "two"),
                                           # what int() and float() take but a person does not mean:
                                           ("--epochs", "1_0"), ("--seed", "1_000"), ("--batch-size", "\u0663\u0662"),
                                           ("--lr", "1_0e-3"), ("--warmup-epochs", "0_5"), ("--epochs", " 10")])
def test_parser_rejects_bad_values(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["classify", "train", "--train", "a", "--dev", "b", option, value])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_plain_numbers_still_parse():
    args = cli.build_parser().parse_args(["classify", "train", "--train", "a", "--dev", "b", "--epochs", "+10",
                                          "--lr", "3e-4", "--warmup-epochs", ".5", "--seed", "007"])
    assert (args.epochs, args.lr, args.warmup_epochs, args.seed) == (10, 3e-4, 0.5, 7)


def test_warmup_longer_than_the_run_and_empty_sentences_are_refused(tmp_path, capsys):
    assert cli.main(["cola", "train", "--data-dir", str(tmp_path), "--epochs", "2", "--warmup-epochs", "1e20",
                     "--checkpoint-dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (
        "jaxseq cola: error: warmup_epochs (1e+20) is longer than the run (epochs 2): the learning rate would "
        "still be warming up when training ends; give a warm-up of at most the epochs\n")
    assert not (tmp_path / "run").exists()
    for sentence in ("", "   "):
        assert cli.main(["cola", "predict", "--checkpoint", str(tmp_path / "none"), "A fine one.", sentence]) == 2
        assert capsys.readouterr().err == f"jaxseq cola: error: sentence 2 ({sentence!r}): empty sentence\n"


SMALL_RECURRENT = ["--embed-dim", "16", "--hidden-dim", "16", "--min-count", "1", "--max-length", "16",
                   "--no-progress"]


@pytest.mark.parametrize("model, extra", [("lstm", ["--word-dropout", "0.2", "--num-layers", "2",
                                                    "--pooling", "max+final"]),
                                          ("gru", ["--pooling", "final"])])
def test_classify_train_with_a_recurrent_model_then_predict(model, extra, tmp_path, capsys):
    argv = ["classify", "train", "--model", model, "--train", str(write_tsv(tmp_path / "a.tsv", 300, 1)),
            "--dev", str(write_tsv(tmp_path / "b.tsv", 80, 2)), "--epochs", "2", "--lr", "1e-2",
            "--checkpoint-dir", str(tmp_path / "run"), *SMALL_RECURRENT, *extra]
    assert cli.main(argv) == 0
    assert "epoch   2/2" in capsys.readouterr().out
    meta = json.loads(sorted((tmp_path / "run").glob("ckpt-*"))[-1].joinpath("meta.json").read_text())
    expected = {"architecture": model, "embed_dim": 16, "hidden_size": 16, "pooling": extra[-1],
                "num_layers": 2 if model == "lstm" else 1, "dropout": 0.3,
                "word_dropout": 0.2 if model == "lstm" else RECURRENT_COLA_RECIPE["model"]["word_dropout"]}
    assert {key: meta["model"][key] for key in expected} == expected
    assert meta["train_config"]["patience"] == 5 and meta["train_config"]["batch_size"] == 32  # its recipe
    assert cli.main(["cola", "predict", "--checkpoint", str(tmp_path / "run"), "( )"]) == 0
    assert capsys.readouterr().out.strip().endswith("\t( )")


def test_a_bad_model_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["classify", "train", "--train", "a", "--dev", "b", "--model", "rnn"])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "argument --model: invalid choice: 'rnn'" in errors[0]
    assert "transformer" in errors[0] and "lstm" in errors[0] and "gru" in errors[0]
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["cola", "train", "--model", "bert"])
    assert "argument --model: invalid choice: 'bert'" in capsys.readouterr().err


def test_no_pad_mask_is_for_the_transformer(tmp_path, capsys):
    argv = ["classify", "train", "--model", "lstm", "--train", str(write_tsv(tmp_path / "a.tsv", 50, 1)),
            "--dev", str(write_tsv(tmp_path / "b.tsv", 20, 2)), "--no-pad-mask", *SMALL_RECURRENT]
    assert cli.main(argv) == 2
    assert "--no-pad-mask is for the transformer" in capsys.readouterr().err
    argv = ["classify", "train", "--train", str(tmp_path / "a.tsv"), "--dev", str(tmp_path / "b.tsv"),
            "--word-dropout", "0.1", "--no-progress"]
    assert cli.main(argv) == 2
    assert "--word-dropout is for lstm/gru" in capsys.readouterr().err
