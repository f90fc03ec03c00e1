"""Every trainer at its DEFAULT model sizes, end to end through the command line: train a few
steps on small data, stop it with SIGTERM in the middle of an epoch, `--resume` it to the
end, then predict / sample / eval from the run folder.

Tiny models once hid a checkpoint bound that refused every real model's checkpoint (a
params-only template under a file that also holds Adam's two moments): the sizes here are
the ones a user gets by passing no size option at all, and each model's state is several
MB, beyond the loader's fixed slack. Small data keeps the steps few, not the model small.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from jaxseq import cli
from jaxseq.train.checkpoint import STATE_FILE, STATE_OVERHEAD_BYTES, latest_checkpoint, read_metadata
from jaxseq.train.state_check import state_nbytes
from tests.bracket_task import write_wide_tsv
from tests.conftest import REPO_ROOT, command_env

INTERRUPT_SCRIPT = REPO_ROOT / "tests" / "scripts" / "interrupt_training.py"


def classifier_argv(folder, model: str) -> list[str]:
    """`classify train --model MODEL` on wide TSVs with every size at its default."""
    return ["classify", "train", "--model", model, "--train", str(write_wide_tsv(folder / "train.tsv", 200, 1)),
            "--dev", str(write_wide_tsv(folder / "dev.tsv", 64, 2)), "--epochs", "2", "--no-progress"]


def cola_argv(folder) -> list[str]:
    """`cola train` (the transformer, the default model) on a CoLA-format folder."""
    data = folder / "cola"
    data.mkdir()
    write_wide_tsv(data / "train.tsv", 260, 3)
    write_wide_tsv(data / "dev.tsv", 40, 4)
    return ["cola", "train", "--data-dir", str(data), "--val-size", "60", "--epochs", "2", "--min-count", "1",
            "--no-progress"]


def captioner_argv(cell: str) -> list[str]:
    return ["caption", "train", "--cell", cell, "--max-train", "300", "--epochs", "2"]


def language_model_argv(folder) -> list[str]:
    """`lm train` on the built-in text: char-rnn's recipe (2-layer LSTM of 128, 50 streams of 50)."""
    return ["lm", "train", "--epochs", "2", "--no-progress"]


TRAINERS = {  # name: (argv builder, step at which SIGTERM stops the run: inside epoch 1 or 2)
    "caption-rnn": (lambda folder: captioner_argv("rnn"), 4),
    "caption-lstm": (lambda folder: captioner_argv("lstm"), 2),
    "transformer": (cola_argv, 16),
    "lstm": (lambda folder: classifier_argv(folder, "lstm"), 3),
    "gru": (lambda folder: classifier_argv(folder, "gru"), 9),
    "language-model": (language_model_argv, 100),
}


def use_the_run(name: str, run, capsys) -> None:
    """What a user does with a trained run: predict (classifiers), sample and eval (captioners)."""
    if name == "language-model":
        assert cli.main(["lm", "generate", "--checkpoint", str(run), "--prompt", "the ", "--length", "40"]) == 0
        assert capsys.readouterr().out.startswith("the ")
        assert cli.main(["lm", "eval", "--checkpoint", str(run), "--split", "val"]) == 0
        assert "bits per character" in capsys.readouterr().out
    elif name.startswith("caption"):
        assert cli.main(["caption", "sample", "--checkpoint", str(run), "--num", "2"]) == 0
        assert capsys.readouterr().out.count("generated:") == 2
        assert cli.main(["caption", "eval", "--checkpoint", str(run), "--num-samples", "20"]) == 0
        assert "BLEU-1 on 20 val captions: greedy" in capsys.readouterr().out
    else:
        assert cli.main(["cola", "predict", "--checkpoint", str(run), "w2 w7 w11", "w3 w5"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert [line.split("\t")[-1] for line in lines] == ["w2 w7 w11", "w3 w5"]
        assert all(0.0 <= float(line.split("\t")[0]) <= 1.0 for line in lines)


@pytest.mark.parametrize("name", list(TRAINERS))
def test_default_sizes_train_stop_resume_and_predict(name, tmp_path, capsys):
    build, stop_at = TRAINERS[name]
    argv, run, marker = build(tmp_path), tmp_path / "run", tmp_path / "signalled"
    stopped = subprocess.run([sys.executable, str(INTERRUPT_SCRIPT), str(marker), str(stop_at), "sigterm", *argv,
                              "--checkpoint-dir", str(run)], capture_output=True, text=True, cwd=REPO_ROOT,
                             timeout=600, env=command_env(argv))
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    checkpoint = latest_checkpoint(run)
    assert read_metadata(checkpoint)["step"] == stop_at and read_metadata(checkpoint)["metric"] is None

    use_the_run(name, run, capsys)  # the stopped run can be used already
    # The checkpoint holds the whole state, Adam's moments included: more than twice the
    # parameters, and for the classifiers more than that and the loader's fixed slack, which
    # a parameters-only bound refused (the captioner's and the char-rnn recipe's defaults are
    # smaller than the slack).
    from jaxseq.inference import load_captioning_checkpoint, load_sentence_classifier

    from jaxseq.inference.language_model import load_language_model

    load = {"caption": load_captioning_checkpoint, "language": load_language_model}.get(name.split("-")[0],
                                                                                     load_sentence_classifier)
    size, params_bytes = (checkpoint / STATE_FILE).stat().st_size, state_nbytes(load(run)[1])
    assert size > 2 * params_bytes
    if not name.startswith(("caption", "language")):
        assert size > 2 * params_bytes + STATE_OVERHEAD_BYTES

    assert cli.main([*argv, "--checkpoint-dir", str(run), "--resume"]) == 0
    assert f"resuming from {checkpoint}" in capsys.readouterr().out
    meta = read_metadata(latest_checkpoint(run))
    assert meta["epoch"] == 2 and meta["step"] > stop_at
    use_the_run(name, run, capsys)
