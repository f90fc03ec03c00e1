"""The demo's training steps: the LSTM captioner on the built-in scenes, and the transformer
classifier on the built-in task (CoLA absent)."""

from __future__ import annotations

import argparse
import json

from jaxseq import cli
from jaxseq.cola_recipes import COLA_RECIPE
from jaxseq.commands import demo, demo_steps
from jaxseq.data.cola import COURSE_VAL_SIZE
from tests.bracket_task import write_wide_tsv


def test_classifier_step_trains_on_the_builtin_task_without_cola(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("jaxseq.data.cola.default_cola_dir", lambda: None)
    step = dict(demo.DEMO_STEPS)["Transformer sentence classifier"]
    step(argparse.Namespace(output_dir=tmp_path, seed=0))
    out = capsys.readouterr().out
    assert "built-in task" in out and "test MCC" in out
    summary = json.loads((tmp_path / "classifier_metrics.json").read_text())
    assert summary["data"] == "brackets"
    assert summary["val"]["mcc"] > 0.6 and summary["test"]["mcc"] > 0.6 and summary["test"]["accuracy"] > 0.8
    assert len(summary["seconds_per_epoch"]) == demo_steps.BUILTIN_SETTINGS["train"]["epochs"]
    assert any((tmp_path / "classifier").glob("ckpt-*"))


def test_captioning_step_trains_prints_and_plots(tmp_path, capsys, monkeypatch):
    step = dict(demo.DEMO_STEPS)["LSTM captioning on the built-in set"]  # what `jaxseq demo` runs
    monkeypatch.setattr(demo_steps, "DEMO_EPOCHS", 1)
    step(argparse.Namespace(output_dir=tmp_path, seed=0))
    out = capsys.readouterr().out
    assert "unseen val scenes" in out and out.count("greedy:") == 5 and out.count("true:") == 5
    assert "val BLEU-1 (500 scenes): greedy" in out
    assert (tmp_path / "captioning_lstm_loss.png").stat().st_size > 1000


def test_classifier_step_on_cola_writes_a_run_that_predicts(tmp_path, monkeypatch, capsys):
    """With CoLA present the demo trains the library's recipe at its default sizes and writes
    checkpoints: `cola predict` must load them (a CoLA-format folder stands in for CoLA, one
    epoch of ten steps)."""
    data = tmp_path / "cola"
    data.mkdir()
    write_wide_tsv(data / "train.tsv", COURSE_VAL_SIZE + 160, 1)
    write_wide_tsv(data / "dev.tsv", 50, 2)
    monkeypatch.setattr("jaxseq.data.cola.default_cola_dir", lambda: data)
    monkeypatch.setattr(demo_steps, "COLA_EPOCHS", 1)
    step = dict(demo.DEMO_STEPS)["Transformer sentence classifier"]
    step(argparse.Namespace(output_dir=tmp_path / "out", seed=0))
    assert f"data: CoLA from {data}" in capsys.readouterr().out
    run = tmp_path / "out" / "classifier"
    meta = json.loads(sorted(run.glob("ckpt-*"))[-1].joinpath("meta.json").read_text())
    assert {key: meta["model"][key] for key in ("hidden_dim", "dim_feedforward")} == {"hidden_dim": 128,
                                                                                         "dim_feedforward": 2048}
    assert meta["train_config"]["learning_rate"] == COLA_RECIPE["train"]["learning_rate"]
    assert cli.main(["cola", "predict", "--checkpoint", str(run), "w1 w2 w3"]) == 0
    assert capsys.readouterr().out.strip().endswith("\tw1 w2 w3")


def test_language_model_step_trains_and_samples(tmp_path, monkeypatch, capsys):
    """The demo's language-model step on the built-in text (Tiny Shakespeare hidden), one
    epoch: it learns past the text's unigram entropy and prints a sample at each temperature."""
    monkeypatch.setattr("jaxseq.data.tiny_shakespeare.tiny_shakespeare_file", lambda: None)
    summary = demo_steps.language_model(argparse.Namespace(output_dir=tmp_path, seed=0), epochs=1)
    out = capsys.readouterr().out
    assert "builtin text (seed 0): char level" in out and out.count("--- sample at temperature") == 2
    assert summary["val_loss"] < 2.0  # the characters' unigram entropy is about 2.9 nats
    assert all(text.startswith("the ") and len(text) == 4 + demo_steps.LM_SAMPLE_LENGTH
               for text in summary["samples"].values())
    assert json.loads((tmp_path / "language_model.json").read_text())["epochs"] == 1
    assert any((tmp_path / "language_model").glob("ckpt-*"))
