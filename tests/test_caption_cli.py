"""`jaxseq caption train|sample|eval`."""

from __future__ import annotations

import pytest

from jaxseq import cli
from tests.coco_files import course_arrays, write_course_files

SMALL = ["--hidden-dim", "16", "--wordvec-dim", "16", "--quiet"]


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "-1"], "argument --epochs: expected a positive integer, got -1"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
    (["--lr", "-0.1"], "argument --lr: expected a positive number"),
    (["--cell", "gru"], "argument --cell: invalid choice"),
])
def test_parser_rejects_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["caption", "train", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_train_sample_eval_on_builtin_data(tmp_path, capsys):
    run_dir = tmp_path / "run"
    rc = cli.main(["caption", "train", "--cell", "lstm", "--epochs", "2", "--max-train", "300",
                   "--checkpoint-dir", str(run_dir), *SMALL])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "300 training captions" in out and "val BLEU-1 (greedy)" in out and "steps/s" in out
    assert sorted(path.name for path in run_dir.iterdir()) == ["ckpt-00000003", "ckpt-00000006", "logs"]
    assert (run_dir / "logs" / "metrics.jsonl").is_file()
    train_again = ["caption", "train", "--cell", "lstm", "--epochs", "2", "--max-train", "300",
                   "--checkpoint-dir", str(run_dir), *SMALL]
    assert cli.main(train_again) == 2  # the folder holds a run: say how to continue or replace it
    assert "already holds checkpoints (ckpt-00000006, ...); resume that run (--resume)" in capsys.readouterr().err
    assert cli.main([*train_again, "--resume"]) == 0  # finished: nothing left to train
    assert "val BLEU-1 (greedy)" in capsys.readouterr().out
    assert sorted(path.name for path in run_dir.iterdir()) == ["ckpt-00000003", "ckpt-00000006", "logs"]
    assert (run_dir / "logs" / "metrics.jsonl").is_file()

    assert cli.main(["caption", "sample", "--checkpoint", str(run_dir), "--beam", "3", "--num", "2"]) == 0
    out = capsys.readouterr().out
    assert "beam search (width 3)" in out and out.count("generated:") == 2 and out.count("true:") == 2
    assert "builtin://scenes/val/" in out

    assert cli.main(["caption", "eval", "--checkpoint", str(run_dir / "ckpt-00000003"),
                     "--num-samples", "40", "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert "BLEU-1 on 40 val captions: greedy 0." in out and "beam search (width 2) 0." in out


def test_train_and_eval_on_coco_files(tmp_path, capsys):
    coco = write_course_files(tmp_path / "coco")
    run_dir = tmp_path / "run"
    assert cli.main(["caption", "train", "--data", "coco", "--data-dir", str(coco), "--epochs", "1",
                     "--cell", "rnn", "--checkpoint-dir", str(run_dir), *SMALL]) == 0
    assert "9 training captions" in capsys.readouterr().out
    moved = coco.rename(tmp_path / "moved")
    assert cli.main(["caption", "eval", "--checkpoint", str(run_dir), "--data-dir", str(moved)]) == 0
    assert "BLEU-1 on 5 val captions" in capsys.readouterr().out

    # Features of another width than the run was trained on (8): one line, no Flax traceback.
    wider = write_course_files(tmp_path / "wider", course_arrays(pca_dim=5))
    for command in ("sample", "eval"):
        assert cli.main(["caption", command, "--checkpoint", str(run_dir), "--data-dir", str(wider)]) == 2
        assert capsys.readouterr().err == (
            f"jaxseq caption: error: {wider / 'train2014_vgg16_fc7_pca.h5'}:features: features of width 5, but "
            f"checkpoint {run_dir} was trained on features of width 8\n")


def test_zero_width_features_are_one_line(tmp_path, capsys):
    coco = write_course_files(tmp_path / "coco", course_arrays(pca_dim=0))
    assert cli.main(["caption", "train", "--data", "coco", "--data-dir", str(coco), "--epochs", "1",
                     "--checkpoint-dir", str(tmp_path / "run"), *SMALL]) == 2
    assert capsys.readouterr().err == (f"jaxseq caption: error: {coco / 'train2014_vgg16_fc7_pca.h5'}:features: "
                                       "features of width 0, expected a width D of at least 1\n")
    assert not (tmp_path / "run").exists()


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert cli.main(["caption", "sample", "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "no captioning checkpoint found at" in capsys.readouterr().err
    assert cli.main(["caption", "train", "--data", "coco", "--data-dir", str(tmp_path), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "coco2014_captions.h5 not found" in err and "jaxseq data download coco" in err
