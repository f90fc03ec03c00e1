"""CaptioningSolver: the course's overfitting runs, quality on the built-in set, one compiled
step, device-side batches, checkpoints and resuming, NaN handling, input validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.data.synthetic_captions import load_scene_captions, random_captioning_data
from jaxseq.inference import evaluate_captions, load_captioning_checkpoint
from jaxseq.models import CaptioningRNN
from jaxseq.train import CaptioningSolver, NonFiniteLossError
from jaxseq.train.captioning import caption_batch


def _coco_shaped_model(cell, data):
    return CaptioningRNN(len(data["idx_to_word"]), wordvec_dim=256, hidden_dim=512, cell_type=cell)


@pytest.mark.slow
def test_rnn_overfits_small_data_as_in_the_course():
    data = random_captioning_data(100, seed=0)
    solver = CaptioningSolver(_coco_shaped_model("rnn", data), data, update_rule="adam",
                              optim_config={"learning_rate": 5e-3}, lr_decay=0.95, num_epochs=50,
                              batch_size=25, verbose=False)
    solver.train()
    assert len(solver.loss_history) == 50 * 4
    assert solver.loss_history[0] > 50
    assert solver.loss_history[-1] < 0.1
    assert solver._step._cache_size() == 1  # one compiled step for the whole run


@pytest.mark.slow
def test_lstm_overfits_small_data_as_in_the_course():
    data = random_captioning_data(50, seed=0)
    solver = CaptioningSolver(_coco_shaped_model("lstm", data), data, update_rule="adam",
                              optim_config={"learning_rate": 5e-3}, lr_decay=0.995, num_epochs=50,
                              batch_size=25, verbose=False)
    solver.train()
    assert len(solver.loss_history) == 50 * 2
    assert solver.loss_history[-1] < 0.5


@pytest.fixture(scope="module")
def scenes():
    return load_scene_captions()


@pytest.mark.slow
@pytest.mark.parametrize("cell, epochs, target", [("lstm", 10, 0.9), ("rnn", 10, 0.8)])
def test_describes_unseen_scenes(scenes, cell, epochs, target):
    """A smaller run than benchmarks/quality/captioning_quality.py, same targets on the val split."""
    model = CaptioningRNN(len(scenes["idx_to_word"]), cell_type=cell)
    solver = CaptioningSolver(model, scenes, optim_config={"learning_rate": 5e-3}, lr_decay=0.95,
                              num_epochs=epochs, batch_size=100, verbose=False)
    solver.train()
    variables = {"params": solver.params}
    assert evaluate_captions(model, variables, scenes, "val", num_samples=500) >= target
    assert solver.steps_per_second > 0
    assert len(solver.val_loss_history) == epochs and solver.val_loss_history[-1] < solver.val_loss_history[0]


def _tiny(cell="rnn", **kwargs):
    data = random_captioning_data(60, 20, feature_dim=6, caption_length=7, vocab_size=15, min_words=2, seed=1)
    model = CaptioningRNN(15, wordvec_dim=4, hidden_dim=8, cell_type=cell)
    settings = dict(optim_config={"learning_rate": 1e-2}, num_epochs=3, batch_size=20, verbose=False)
    return model, data, {**settings, **kwargs}


def test_batches_are_drawn_on_device_with_their_images():
    data = random_captioning_data(30, feature_dim=4, caption_length=7, vocab_size=15, min_words=2, seed=2)
    split = {"features": jnp.arange(30.0)[:, None] * jnp.ones(4), "captions": jnp.asarray(data["train_captions"]),
             "image_idxs": jnp.asarray(np.random.default_rng(0).permutation(30))}
    features, captions = jax.jit(lambda key: caption_batch(key, split, 64))(jax.random.PRNGKey(0))
    assert features.shape == (64, 4) and captions.shape == (64, 7)
    for feature, caption in zip(np.asarray(features), np.asarray(captions)):
        rows = np.flatnonzero((data["train_captions"] == caption).all(1))
        assert int(feature[0]) in set(np.asarray(split["image_idxs"])[rows].tolist())


def test_epochs_steps_and_progress_lines(capsys):
    model, data, settings = _tiny(verbose=True, print_every=2)
    solver = CaptioningSolver(model, data, **settings).train()
    assert solver.iterations_per_epoch == 3 and len(solver.loss_history) == 9 and solver.epoch == 3
    out = capsys.readouterr().out
    assert "(Iteration 2 / 9) loss:" in out and "(Epoch 3 / 3) train loss:" in out and "val loss:" in out
    assert all(np.isfinite(solver.loss_history))


def test_resuming_continues_the_same_run(tmp_path):
    model, data, settings = _tiny("rnn")
    straight = CaptioningSolver(model, data, **settings).train()
    CaptioningSolver(model, data, **{**settings, "num_epochs": 2}, checkpoint_dir=tmp_path).train()
    resumed = CaptioningSolver(model, data, **settings, checkpoint_dir=tmp_path).train()
    assert resumed.epoch == 3 and len(resumed.loss_history) == 9
    np.testing.assert_allclose(resumed.loss_history, straight.loss_history, rtol=1e-5)
    for name, value in straight.params.items():
        np.testing.assert_allclose(resumed.params[name], value, rtol=1e-5, atol=1e-6)

    model2, params, meta = load_captioning_checkpoint(tmp_path)
    assert model2 == model and meta["epoch"] == 3 and meta["idx_to_word"] == data["idx_to_word"]
    for name, value in resumed.params.items():
        np.testing.assert_array_equal(params[name], value)

    other = CaptioningRNN(15, wordvec_dim=4, hidden_dim=8, cell_type="lstm")
    with pytest.raises(ValueError, match=r"different run \(model, model.cell_type differ\)"):
        CaptioningSolver(other, data, **settings, checkpoint_dir=tmp_path).train()


def test_non_finite_loss_stops_and_names_the_step(tmp_path):
    model, data, settings = _tiny()
    # One step per epoch; the first update with this rate overflows the weights.
    solver = CaptioningSolver(model, data, update_rule="sgd", optim_config={"learning_rate": 1e38},
                              num_epochs=5, batch_size=60, verbose=False, checkpoint_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"training loss became (nan|inf) at step 2 \(epoch 2\); stopped "
                                                 r"\(the last good checkpoint is .*ckpt-00000001.*\); try a lower learning rate"):
        solver.train()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ckpt-00000001", "logs"]  # logs: the run log


def test_bad_inputs_fail_before_jit():
    model, data, settings = _tiny()
    data = {**data, "train_captions": data["train_captions"].copy()}
    small = CaptioningRNN(10, wordvec_dim=4, hidden_dim=8)
    with pytest.raises(ValueError, match=r"train_captions: token id 1\d at row \d+, position \d+ is outside "
                                         r"the model's vocabulary \[0, 10\)"):
        CaptioningSolver(small, data, **settings)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        CaptioningSolver(model, data, **{**settings, "batch_size": 0})
    with pytest.raises(ValueError, match="checkpoint_every must be a positive int or None, got 0"):
        CaptioningSolver(model, data, **{**settings, "checkpoint_every": 0})
    with pytest.raises(ValueError, match="unknown optim_config keys"):
        CaptioningSolver(model, data, **{**settings, "optim_config": {"learning_rate": 1e-3, "momentum": 0.9}})
    with pytest.raises(ValueError, match="missing keys"):
        CaptioningSolver(model, {k: v for k, v in data.items() if k != "val_features"}, **settings)
