"""Full-state classifier checkpoints: a run stopped after any epoch and resumed ends exactly
where an uninterrupted run ends; a folder of another run is refused with the settings that
differ. (Killing real processes: tests/test_resume.py.)"""

from __future__ import annotations

import dataclasses
import shutil

import jax
import numpy as np
import pytest

from jaxseq.data.bracket_nesting import bracket_nesting_task
from jaxseq.train.checkpoint import best_checkpoint, list_checkpoints, read_metadata, save_checkpoint
from jaxseq.train.classifier import ClassifierTrainConfig, fit_sentence_classifier, train_classifier
from tests.bracket_task import TINY, encoded_task
from tests.checkpoints import assert_same_run, saved_state, without_timing

CONFIG = ClassifierTrainConfig(epochs=5, batch_size=48, learning_rate=3e-3, weight_decay=0.01, schedule="cosine",
                               warmup_epochs=1.0, label_smoothing=0.1)


@pytest.fixture(scope="module", params=["transformer", "lstm"])
def task(request):
    """(model, train, val) of the built-in bracket task, for a transformer and a recurrent
    classifier (two layers: dropout between them is part of the state); train is not a
    multiple of the batch."""
    extra = {} if request.param == "transformer" else {"num_layers": 2}
    model, train, val = encoded_task(500, 150, seed=3, architecture=request.param, dropout=0.1, **extra)
    assert len(train.ids) % CONFIG.batch_size != 0  # the wrapped-around last batch is part of the state
    return model, train, val


def train(task, folder, config=CONFIG, **options):
    model, train_data, val = task
    options = {"progress": False, "log": None, **options}
    return train_classifier(model, train_data, val, config, checkpoint_dir=folder, **options)


@pytest.fixture(scope="module")
def straight(task, tmp_path_factory):
    """An uninterrupted 5-epoch run keeping every checkpoint: (folder, result)."""
    folder = tmp_path_factory.mktemp("straight")
    return folder, train(task, folder, keep=10)


def stopped_after(straight_folder, epoch, folder):
    """`folder` as a run killed right after epoch `epoch`'s checkpoint would have left it."""
    for path in list_checkpoints(straight_folder):
        if read_metadata(path)["epoch"] <= epoch:
            shutil.copytree(path, folder / path.name)
    return folder


def test_every_epoch_is_a_full_checkpoint_and_the_best_is_kept(straight, task, tmp_path):
    folder, result = straight
    checkpoints = list_checkpoints(folder)
    assert [read_metadata(p)["epoch"] for p in checkpoints] == [1, 2, 3, 4, 5]
    state, meta = saved_state(checkpoints[-1])
    assert set(state) == {"params", "opt_state", "step", "key", "shuffle_key"}
    assert int(state["step"]) == meta["step"] == 5 * 11  # ceil(500 / 48) steps per epoch
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4, 5]
    assert meta["best_epoch"] == result.best_epoch and meta["best_val_mcc"] == result.best_val_mcc
    assert read_metadata(best_checkpoint(folder))["epoch"] == result.best_epoch
    assert result.checkpoint == best_checkpoint(folder)
    best_state, _ = saved_state(result.checkpoint)
    jax.tree.map(np.testing.assert_array_equal, best_state["params"], result.params)

    # the default keeps the last two and the best
    train(task, tmp_path)
    kept = [read_metadata(p)["epoch"] for p in list_checkpoints(tmp_path)]
    assert kept == sorted({result.best_epoch, 4, 5})


@pytest.mark.parametrize("epoch", [1, 3])
def test_resume_after_any_epoch_equals_the_uninterrupted_run(straight, task, tmp_path, epoch):
    folder, result = straight
    lines = []
    resumed = train(task, stopped_after(folder, epoch, tmp_path), keep=10, resume=True, log=lines.append)
    assert lines[0].startswith(f"resuming from {tmp_path}") and f"(epoch {epoch} of 5" in lines[0]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]
    assert without_timing(resumed.history) == without_timing(result.history)
    assert resumed.best_epoch == result.best_epoch and resumed.best_val_mcc == result.best_val_mcc
    jax.tree.map(np.testing.assert_array_equal, resumed.params, result.params)
    assert_same_run(tmp_path, folder)


def test_resuming_a_finished_run_trains_nothing(straight, task, tmp_path):
    folder, result = straight
    lines = []
    again = train(task, stopped_after(folder, 5, tmp_path), resume=True, log=lines.append)
    assert len(lines) == 1  # only "resuming from ..."
    assert without_timing(again.history) == without_timing(result.history)
    jax.tree.map(np.testing.assert_array_equal, again.params, result.params)


def test_resuming_an_early_stopped_run_stays_stopped(task, tmp_path):
    config = dataclasses.replace(CONFIG, epochs=8, learning_rate=1e-12, patience=2)
    first = train(task, tmp_path, config)
    assert len(first.history) < 8
    lines = []
    again = train(task, tmp_path, config, resume=True, log=lines.append)
    assert len(lines) == 1 and len(again.history) == len(first.history)


def test_resume_without_checkpoints_starts_afresh(task, tmp_path):
    config = dataclasses.replace(CONFIG, epochs=1)
    lines = []
    result = train(task, tmp_path, config, resume=True, log=lines.append)
    assert len(result.history) == 1 and not lines[0].startswith("resuming")


def test_a_folder_of_another_run_is_refused(straight, task, tmp_path):
    folder, _ = straight
    stopped_after(folder, 2, tmp_path)
    other = dataclasses.replace(CONFIG, learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"different run \(train_config, train_config.learning_rate differ\)"):
        train(task, tmp_path, other, resume=True)
    model, train_data, val = task
    with pytest.raises(ValueError, match=r"different run \(train_data differ\)"):
        train_classifier(model, train_data._replace(labels=1 - train_data.labels), val, CONFIG,
                         checkpoint_dir=tmp_path, resume=True, progress=False, log=None)
    best_only = tmp_path / "best-only"  # what jaxseq wrote before full-state checkpoints
    save_checkpoint(best_only, 3, {"params": train(task, None, dataclasses.replace(CONFIG, epochs=1)).params},
                    metadata={"epoch": 1})
    with pytest.raises(ValueError, match=r"no resumable training state \(metadata lacks \['history'"):
        train(task, best_only, resume=True)
    with pytest.raises(ValueError, match="already holds checkpoints .*--resume.*--overwrite"):
        train(task, tmp_path)
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        train(task, tmp_path, resume=True, overwrite=True)
    with pytest.raises(ValueError, match="checkpoint_every must be a positive int or None, got 0"):
        train(task, tmp_path, resume=True, checkpoint_every=0)


def test_sentence_classifier_resume_checks_the_vocabulary(tmp_path):
    splits = bracket_nesting_task(200, 60, 10, seed=1, max_pairs=6)
    options = dict(max_length=14, model_kwargs={**TINY, "dropout": 0.1}, checkpoint_dir=tmp_path, progress=False, log=None,
                   config=dataclasses.replace(CONFIG, epochs=1))
    fit_sentence_classifier(splits, min_count=1, **options)
    resumed = fit_sentence_classifier(splits, min_count=1, resume=True, **options)
    assert len(resumed.result.history) == 1
    with pytest.raises(ValueError, match="vocab.json: the run being resumed used a different vocabulary"):
        fit_sentence_classifier(splits, min_count=50, resume=True, **options)
