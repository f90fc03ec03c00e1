"""The demo step "Transformer sentence classifier" on the built-in task (CoLA absent)."""

from __future__ import annotations

import argparse
import json

from jaxseq.commands import classifier_demo, demo


def test_demo_step_trains_on_the_builtin_task_without_cola(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("jaxseq.data.cola.default_cola_dir", lambda: None)
    step = dict(demo.DEMO_STEPS)["Transformer sentence classifier"]
    step(argparse.Namespace(output_dir=tmp_path, seed=0))
    out = capsys.readouterr().out
    assert "built-in task" in out and "test MCC" in out
    summary = json.loads((tmp_path / "classifier_metrics.json").read_text())
    assert summary["data"] == "brackets"
    assert summary["val"]["mcc"] > 0.6 and summary["test"]["mcc"] > 0.6 and summary["test"]["accuracy"] > 0.8
    assert len(summary["seconds_per_epoch"]) == classifier_demo.BUILTIN_SETTINGS["train"]["epochs"]
    assert any((tmp_path / "classifier").glob("ckpt-*"))
