"""benchmarks/quality/lm_quality.py in its smoke mode (built-in text, a tiny model, one epoch,
a one-second budget for the twin), so the long quality run cannot rot: every part runs and
the report and JSON hold what the long run's hold."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "quality"))


def test_lm_quality_smoke_runs_every_part_and_writes_the_report(tmp_path, capsys):
    pytest.importorskip("torch")
    import lm_quality

    assert lm_quality.main(["--smoke", "--budget", "1", "--out", str(tmp_path), "--note", "smoke",
                            "--set", "train.clip_norm=0.5"]) == 0
    results = json.loads((tmp_path / "lm_quality.json").read_text())
    report = (tmp_path / "lm_quality.md").read_text()
    (jaxseq,), (twin,) = results["char"], results["twin"]
    for run in (jaxseq, twin, results["word"]["jaxseq"], results["word"]["twin"]):
        assert run["curve"] and all(math.isfinite(point["val_loss"]) for point in run["curve"])
        assert run["final_val_loss"] == run["curve"][-1]["val_loss"]
    assert jaxseq["steps"] == jaxseq["steps_per_epoch"] == 8  # one epoch of the cut text
    assert jaxseq["train"]["clip_norm"] == twin["train"]["clip_norm"] == 0.5  # --set reached both contenders
    assert results["word"]["jaxseq"]["train"]["clip_norm"] == 0.25  # and not the word recipe
    assert "with train.clip_norm=0.5:" in report
    assert twin["planning"]["planned_steps"] >= 1 and twin["train_seconds"] < 5  # the budget path ran
    assert math.isfinite(results["word"]["ratio"])
    assert results["meta"]["omp_wait_policy"] and results["meta"]["load_at_end"] >= 0
    for text in ("## Character level", "### Curve: jaxseq", "### Curve: pytorch twin", "## Word level",
                 "1.4697", "## Notes", "- smoke"):
        assert text in report


def test_each_target_is_judged_only_by_the_runs_it_is_about():
    import lm_quality

    def run(loss: float, seconds: float) -> dict:
        return {"final_val_loss": loss, "train_seconds": seconds, "recipe": "r"}

    ten = lm_quality.target_lines([run(1.6, 650), run(1.5, 640), run(1.45, 600)], 600)
    assert ten[0] == "- jaxseq, 600 s, mean of 3 seed(s): 1.5167 vs <= 1.47: MISSED"
    assert ten[1] == "- best recipe <= 1.4 in <= 60 min: 1.4500 (`r`, 600 s of training): not shown by this run"
    hour = lm_quality.target_lines([run(1.39, 3500)], 3600)
    assert hour == ["- 1.47 in 10 minutes: not judged by this run (its budget is 3600 s)",
                    "- best recipe <= 1.4 in <= 60 min: 1.3900 (`r`, 3500 s of training): met"]
    assert lm_quality.target_lines([run(1.45, 3500)], 3600)[1].endswith(": MISSED")
    assert lm_quality.target_lines([run(1.3, 7000)], 7200)[1] == (
        "- best recipe <= 1.4 in <= 60 min: not judged by this run (its budget is 7200 s)")


def test_the_calibration_times_768_characters_of_each_stream_at_any_segment_length():
    """Six segments were timed at every bptt; at bptt 16 (half a second) the twin's calibration
    overestimated its step by 28% and its run used 471 of its 600 seconds."""
    import argparse

    import lm_quality

    default = argparse.Namespace(calibration_segments=None)
    assert [lm_quality.calibration_segments(default, bptt) for bptt in (128, 64, 16, 35, 1000)] == [6, 12, 48, 22, 6]
    assert lm_quality.calibration_segments(argparse.Namespace(calibration_segments=3), 16) == 3


def test_set_changes_one_recipe_field_as_json_and_refuses_unknown_fields_in_one_line():
    import argparse

    import lm_quality

    assert lm_quality.recipe_override("model.hidden_size=768") == ("model", "hidden_size", 768)
    assert lm_quality.recipe_override("train.weight_decay=0.1") == ("train", "weight_decay", 0.1)
    assert lm_quality.recipe_override("model.locked_dropout=true") == ("model", "locked_dropout", True)
    assert lm_quality.recipe_override("model.cell=gru") == ("model", "cell", "gru")
    for bad in ("model.hiden_size=768", "hidden_size=768", "model.hidden_size", "train.epochs=3",
                "optimizer.lr=1", "model.hidden_size=[1]", "model.hidden_size="):
        with pytest.raises(argparse.ArgumentTypeError) as error:
            lm_quality.recipe_override(bad)
        assert "\n" not in str(error.value) and ("expected" in str(error.value))
    args = argparse.Namespace(smoke=False, set=[("model", "hidden_size", 768), ("train", "bptt", 8)])
    model, train = lm_quality.recipe_parts(args, "jaxseq", 65)
    assert (model["hidden_size"], train["bptt"], model["embed_size"]) == (768, 8, 128)
    word_model, word_train = lm_quality.recipe_parts(args, "pytorch-example", 100, word=True)
    assert (word_model["hidden_size"], word_train["bptt"]) == (200, 35)  # the word run keeps its recipe
    assert lm_quality.LM_RECIPES["jaxseq"]["model"]["hidden_size"] == 512  # the recipe itself is untouched


def test_a_set_the_twin_cannot_follow_is_refused_before_any_training(capsys):
    import lm_quality

    with pytest.raises(SystemExit) as stop:
        lm_quality.main(["--parts", "char", "twin", "--set", "model.embedding_dropout=0.1", "--out", "/nonexistent"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--set: the PyTorch twin has one standard dropout rate" in err and "--parts char" in err


@pytest.mark.parametrize("setting, message", [("model.hidden_size=-3", "hidden_size"),
                                              ("train.learning_rate=fast", "learning_rate"),
                                              ("model.cell=transformer", "cell")])
def test_a_set_value_the_model_or_trainer_refuses_stops_before_any_training(setting, message, capsys):
    import lm_quality

    with pytest.raises(SystemExit) as stop:
        lm_quality.main(["--parts", "char", "--set", setting, "--out", "/nonexistent"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: --set: " in err and message in err, err
