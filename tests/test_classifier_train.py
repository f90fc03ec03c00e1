"""The classifier trainer: checks before jit, the jitted step's batch weighting, schedules,
best-by-validation-MCC checkpoints, early stopping, NaN handling, and learning real CoLA."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxseq.data.sentences import ClassificationData
from jaxseq.train.checkpoint import best_checkpoint, list_checkpoints, load_checkpoint, read_metadata
from jaxseq.data.vocabulary import check_classification_data as check_data
from jaxseq.metrics import classification_metrics
from jaxseq.train.classifier import (
    ClassifierTrainConfig,
    EpochData,
    classifier_checkpoint_template,
    classifier_loss,
    epoch_batch_sampler,
    learning_rate_schedule,
    recorded_steps_per_epoch,
    train_classifier,
)
from jaxseq.train.steps import NonFiniteLossError
from tests.bracket_task import encoded_task

@pytest.fixture(scope="module")
def brackets():
    """Encoded built-in task: (model, train, val)."""
    return encoded_task(1200, 300, seed=0)


def test_learns_the_builtin_task_and_keeps_the_best_checkpoint(brackets, tmp_path):
    model, train, val = brackets
    config = ClassifierTrainConfig(epochs=6, batch_size=32, learning_rate=3e-3)
    result = train_classifier(model, train, val, config, checkpoint_dir=tmp_path, metadata={"note": "x"},
                              progress=False, log=None)
    history = result.history
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert set(history[0]) >= {"train_loss", "val_loss", "val_accuracy", "val_mcc", "seconds", "learning_rate"}
    assert all(h["seconds"] > 0 for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    best = max(history, key=lambda h: h["val_mcc"])
    assert result.best_epoch == best["epoch"] and result.best_val_mcc == best["val_mcc"] > 0.5

    checkpoint = best_checkpoint(tmp_path)
    assert checkpoint == result.checkpoint and checkpoint in list_checkpoints(tmp_path)
    meta = read_metadata(checkpoint)
    assert meta["epoch"] == result.best_epoch and meta["metric"] == pytest.approx(result.best_val_mcc)
    assert meta["note"] == "x" and meta["model"]["vocab_size"] == model.vocab_size
    assert meta["train_config"]["learning_rate"] == 3e-3
    # Read as jaxseq.inference reads it: against the whole state the file holds (the
    # optimizer's moments and keys too), rebuilt from the metadata alone.
    template = classifier_checkpoint_template(model, ClassifierTrainConfig(**meta["train_config"]),
                                              recorded_steps_per_epoch(meta))
    state, _ = load_checkpoint(checkpoint, template)
    assert set(state) == {"step", "params", "opt_state", "key", "shuffle_key"}
    jax.tree.map(np.testing.assert_array_equal, state["params"], result.params)
    assert recorded_steps_per_epoch(meta) == meta["steps_per_epoch"] == len(train.ids) // 32 + 1

    with pytest.raises(ValueError, match="already holds checkpoints"):
        train_classifier(model, train, val, config, checkpoint_dir=tmp_path, progress=False, log=None)


def test_last_batch_is_gathered_on_device_and_its_padding_weighted_out(brackets):
    model, train, _ = brackets
    ids, labels = jnp.asarray(train.ids[:6]), jnp.asarray(train.labels[:6])
    order = jnp.array([5, 3, 1, 0, 2, 4, 5, 3])  # 6 real entries, then 2 wrapped-around ones
    batch = jax.jit(epoch_batch_sampler(4, 6))(jax.random.key(0), EpochData(ids, labels, order, jnp.int32(1)))
    np.testing.assert_array_equal(batch[0], ids[jnp.array([2, 4, 5, 3])])
    np.testing.assert_array_equal(batch[2], [1, 1, 0, 0])

    params = jax.jit(model.init)(jax.random.key(0), ids)["params"]
    smoothing = 0.2
    loss = jax.jit(classifier_loss(model, ClassifierTrainConfig(label_smoothing=smoothing)))(params, batch)
    logits = model.apply({"params": params}, ids[jnp.array([2, 4])], ids[jnp.array([2, 4])] != 0, method="logits")
    targets = labels[jnp.array([2, 4])] * (1 - smoothing) + smoothing / 2
    np.testing.assert_allclose(loss, optax.sigmoid_binary_cross_entropy(logits, targets).mean(), rtol=1e-5)


def test_early_stopping(brackets):
    model, train, val = brackets
    config = ClassifierTrainConfig(epochs=10, learning_rate=1e-12, patience=2)
    lines = []
    result = train_classifier(model, train, val, config, progress=False, log=lines.append)
    assert len(result.history) == result.best_epoch + 2 < 10
    assert "early stop" in lines[-1]


def test_nonfinite_loss_stops_and_names_the_step(brackets):
    model, train, val = brackets
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ \(epoch 1\); stopped"):
        train_classifier(model, train, val, ClassifierTrainConfig(epochs=2, learning_rate=1e38),
                         progress=False, log=None)


def test_bad_data_is_rejected_before_jit(brackets):
    model, train, _ = brackets
    ids = train.ids.copy()
    ids[3, 2] = model.vocab_size
    with pytest.raises(ValueError, match=r"train ids: token id \d+ at row 3, position 2 is outside"):
        check_data(ClassificationData(ids, train.labels), "train", model.vocab_size, model.max_length)
    with pytest.raises(ValueError, match="max_length"):
        check_data(ClassificationData(np.zeros((2, 20), np.int32), np.zeros(2)), "val", model.vocab_size, model.max_length)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        check_data(ClassificationData(train.ids[:2], np.array([0, 2])), "val", model.vocab_size, model.max_length)
    with pytest.raises(ValueError, match="non-empty"):
        check_data(ClassificationData(np.zeros((0, 5), np.int32), np.zeros(0)), "val", model.vocab_size, model.max_length)
    with pytest.raises(ValueError, match="integers"):
        check_data(ClassificationData(train.ids.astype(float), train.labels), "val", model.vocab_size, model.max_length)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", -1), ("learning_rate", 0.0),
                                          ("schedule", "step"), ("label_smoothing", 1.0), ("patience", 0),
                                          ("weight_decay", -0.1), ("clip_norm", 0.0), ("warmup_epochs", 10.5)])
def test_bad_config_values(field, value):
    with pytest.raises(ValueError, match=field):
        ClassifierTrainConfig(**{field: value})


def test_learning_rate_schedules():
    assert learning_rate_schedule(ClassifierTrainConfig(learning_rate=0.1), 10) == 0.1
    warm = learning_rate_schedule(ClassifierTrainConfig(epochs=5, learning_rate=0.1, warmup_epochs=1), 10)
    np.testing.assert_allclose([warm(0), warm(5), warm(10), warm(49)], [0.0, 0.05, 0.1, 0.1], atol=1e-7)
    cosine = learning_rate_schedule(ClassifierTrainConfig(epochs=5, learning_rate=0.1, warmup_epochs=1,
                                                          schedule="cosine"), 10)
    np.testing.assert_allclose([cosine(10), cosine(30), cosine(50)], [0.1, 0.05, 0.0], atol=1e-7)
    linear = learning_rate_schedule(ClassifierTrainConfig(epochs=2, learning_rate=0.1, schedule="linear"), 10)
    np.testing.assert_allclose([linear(0), linear(10), linear(20)], [0.1, 0.05, 0.0], atol=1e-7)


def test_classification_metrics():
    scores = classification_metrics(np.array([2.0, -1.0, 0.5, -3.0]), np.array([1, 0, 0, 0]))
    assert scores["accuracy"] == 0.75 and scores["confusion"] == [[2, 1], [0, 1]]
    assert scores["mcc"] == pytest.approx(1 / np.sqrt(3))
    expected_loss = np.mean(np.log1p(np.exp(-np.array([2.0, -1.0, 0.5, -3.0]) * np.array([1, -1, -1, -1]))))
    assert scores["loss"] == pytest.approx(expected_loss)


@pytest.mark.slow
def test_short_run_on_real_cola_beats_majority_mcc(cola_dir):
    from jaxseq.data.cola import load_cola
    from jaxseq.train.classifier import fit_sentence_classifier

    run = fit_sentence_classifier(load_cola(cola_dir), min_count=5, max_length=43,
                                  config=ClassifierTrainConfig(epochs=4, learning_rate=1e-3, batch_size=64),
                                  progress=False, log=None)
    assert len(run.vocab) > 1000 and run.num_truncated["train"] <= 5
    assert run.result.best_val_mcc > 0.05 and run.val_scores["mcc"] == pytest.approx(run.result.best_val_mcc)
    assert run.test_scores["accuracy"] > 0.5


def test_steps_per_epoch_of_checkpoints_written_before_it_was_recorded():
    """Older checkpoints lack steps_per_epoch; the step, the epochs done and the losses of the
    epoch in progress give it (the loader needs it for the schedule's shape)."""
    assert recorded_steps_per_epoch({"step": 45, "epoch": 2, "epoch_losses": [0.1] * 5, "steps_per_epoch": 20}) == 20
    assert recorded_steps_per_epoch({"step": 45, "epoch": 2, "epoch_losses": [0.1] * 5}) == 20
    assert recorded_steps_per_epoch({"step": 40, "epoch": 2}) == 20
    assert recorded_steps_per_epoch({"step": 7, "epoch": 0, "epoch_losses": [0.1] * 7}) == 8  # at least 8
