"""The language-model trainer (`jaxseq.train.language_model`): segments and the carried
state, evaluation with the state carried over a split, the plateau schedule, learning,
resuming exactly in the middle of an epoch, and the checkpoint loader."""

from __future__ import annotations

import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.data.builtin_text import load_builtin_text
from jaxseq.data.text_corpus import text_corpus_from_strings
from jaxseq.data.text_streams import batchify, get_batch, segment_starts
from jaxseq.models.language_model import LanguageModel, token_losses
from jaxseq.train.checkpoint import list_checkpoints, read_metadata
from jaxseq.train.language_model import (
    LMTrainConfig,
    LanguageModelTask,
    evaluate_language_model,
    learning_rate_of,
    lm_optimizer,
    plateau_rate,
    set_learning_rate,
    train_language_model,
)
from jaxseq.train.parallel import Placement
from tests.checkpoints import assert_same_run


@pytest.fixture(scope="module")
def corpus():
    return load_builtin_text(num_train_chars=12_000, num_val_chars=2_000)


def small_model(corpus, **fields):
    return LanguageModel(vocab_size=len(corpus.vocab), embed_size=16, hidden_size=24, num_layers=2, **fields)


def test_evaluation_carries_the_state_over_the_split_as_one_forward(corpus):
    """One stream in segments of 7 (the last one shorter) with the state carried equals one
    forward over the whole split; several streams equal each stream's own forward."""
    model = small_model(corpus)
    params = model.init(jax.random.key(1), jnp.zeros((1, 2), jnp.int32))["params"]
    ids = corpus.val[:500]
    whole = token_losses(model.apply({"params": params}, ids[None, :-1])[0], ids[None, 1:])
    scores = evaluate_language_model(model, params, ids, batch_size=1, bptt=7)
    assert scores["tokens"] == 499 and (499 % 7) != 0
    np.testing.assert_allclose(scores["loss"], float(jnp.mean(whole)), rtol=1e-6)
    assert scores["perplexity"] == pytest.approx(math.exp(scores["loss"]))
    assert scores["bits_per_token"] == pytest.approx(scores["loss"] / math.log(2))

    streams = batchify(ids, 4)
    per_stream = token_losses(model.apply({"params": params}, streams[:, :-1])[0], streams[:, 1:])
    four = evaluate_language_model(model, params, ids, batch_size=4, bptt=30)
    np.testing.assert_allclose(four["loss"], float(jnp.mean(per_stream)), rtol=1e-6)


def test_evaluation_refuses_what_it_cannot_score(corpus):
    model = small_model(corpus)
    params = model.init(jax.random.key(1), jnp.zeros((1, 2), jnp.int32))["params"]
    with pytest.raises(ValueError, match=r"^val ids: token id 99 is outside the model's vocabulary \[0, 23\)$"):
        evaluate_language_model(model, params, np.array([1, 2, 99, 3]), name="val")
    with pytest.raises(ValueError, match="5 tokens cannot make 4 streams of at least 2 tokens"):
        evaluate_language_model(model, params, np.arange(5) % 3, batch_size=4)


def test_an_epoch_walks_every_segment_in_order_from_a_zero_state(corpus):
    """The task's segments are PyTorch's get_batch ones (the last shorter), and each step
    enters its segment with the state the previous one left: the carry after the epoch's
    first two steps equals one forward over those 2T steps with the parameters of each."""
    config = LMTrainConfig(epochs=1, batch_size=8, bptt=50, optimizer="sgd", learning_rate=1e-9, clip_norm=None)
    model = small_model(corpus)
    task = LanguageModelTask(model, corpus, config, {}, Placement.create(None, 8))
    streams = batchify(corpus.train, 8)
    assert task.starts == list(segment_starts(streams.shape[1], 50))
    assert sum(task.segment_lengths) == streams.shape[1] - 1 and task.segment_lengths[-1] < 50
    step = task.epoch_step(1)
    state = task.initial_state()
    params = state.params
    state, _ = step(state, 0)
    after_first = task.extra_state["carry"]
    state, loss = step(state, 1)
    logits, final = model.apply({"params": params}, streams[:, :100])
    for ours, theirs in zip(jax.tree.leaves(task.extra_state["carry"]), jax.tree.leaves(final)):
        np.testing.assert_allclose(np.swapaxes(ours, 0, 1), theirs, atol=1e-5)  # (N, S, H); lr 1e-9: same params
    _, y = get_batch(streams, task.starts[1], 50)
    np.testing.assert_allclose(float(loss), float(jnp.mean(token_losses(logits[:, 50:], y))), rtol=1e-5)
    task.epoch_step(2)(state, 0)  # a new epoch enters its first segment with zeros again
    for again, first in zip(jax.tree.leaves(task.extra_state["carry"]), jax.tree.leaves(after_first)):
        np.testing.assert_allclose(again, first, atol=1e-5)


def test_the_plateau_schedule_divides_the_rate_after_each_epoch_without_a_new_best():
    config = LMTrainConfig(learning_rate=20.0)
    history = [{"val_loss": v} for v in (5.0, 4.0, 4.5, 3.9, 3.9, 3.0)]
    assert [plateau_rate(config, history[:k]) for k in range(7)] == [20.0, 20.0, 20.0, 5.0, 5.0, 1.25, 1.25]
    optimizer = lm_optimizer(config, 100)
    state = optimizer.init({"w": jnp.ones(3)})
    assert learning_rate_of(state) == 20.0
    assert learning_rate_of(set_learning_rate(state, 1.25)) == 1.25


def test_a_small_model_learns_the_builtin_text_beyond_bigrams(tmp_path):
    """The built-in text's verbs agree with nouns a clause away: a bigram model of its
    characters scores 1.31 nats per character; three epochs of a small LSTM go well below
    (0.51 when measured)."""
    corpus = load_builtin_text(num_train_chars=80_000, num_val_chars=4_000)
    model = small_model(corpus)
    config = LMTrainConfig(epochs=3, batch_size=32, bptt=32, optimizer="adamw", learning_rate=1e-2,
                           schedule="constant", warmup_steps=5, clip_norm=1.0)
    result = train_language_model(model, corpus, config, checkpoint_dir=tmp_path, progress=False, log=None)
    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    losses = [record["val_loss"] for record in result.history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.9, losses
    assert result.best_epoch == 3 and result.checkpoint == list_checkpoints(tmp_path)[-1]
    assert read_metadata(result.checkpoint)["val_perplexity"] == pytest.approx(math.exp(result.best_val_loss))


def test_resuming_in_the_middle_of_an_epoch_is_exact(corpus, tmp_path):
    """SGD on the plateau schedule with dropout: a run stopped at a mid-epoch checkpoint and
    resumed ends bit-identical to the straight run: parameters, the carried state, the
    rate the plateau set (it divides once here), the histories and the run log."""
    model = small_model(corpus, hidden_dropout=0.2, locked_dropout=True, weight_drop=0.1)
    options = dict(progress=False, log=None, checkpoint_every=7, keep=100)
    # The plateau rule must act in the straight run. Whether the validation loss stalls at a
    # given rate depends on float32 rounding (which moves with the layers' implementation),
    # so the first rate of these at which it acts is the one resumed.
    for learning_rate in (40.0, 60.0, 80.0):
        config = LMTrainConfig(epochs=3, batch_size=16, bptt=40, optimizer="sgd", learning_rate=learning_rate,
                               clip_norm=0.5)
        shutil.rmtree(tmp_path / "straight", ignore_errors=True)
        straight = train_language_model(model, corpus, config, checkpoint_dir=tmp_path / "straight", **options)
        rates = [record["learning_rate"] for record in straight.history]
        assert rates[0] == learning_rate, rates
        if min(rates) < learning_rate:  # the plateau rule acted
            break
    else:
        pytest.fail(f"the plateau rule never acted at rates 40, 60 or 80: {rates}")
    checkpoints = list_checkpoints(tmp_path / "straight")
    middle = [path for path in checkpoints if read_metadata(path)["metric"] is None
              and read_metadata(path)["epoch"] == 2][0]
    for path in checkpoints[:checkpoints.index(middle) + 1]:  # the folder as a run killed after `middle` left it
        shutil.copytree(path, tmp_path / "resumed" / path.name)
    shutil.copy(tmp_path / "straight" / "vocab.json", tmp_path / "resumed" / "vocab.json")
    resumed = train_language_model(model, corpus, config, checkpoint_dir=tmp_path / "resumed", resume=True, **options)
    assert resumed.history == [{**a, "seconds": b["seconds"], "eval_seconds": b["eval_seconds"]}
                               for a, b in zip(straight.history, resumed.history)]
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_a_corpus_too_short_for_the_streams_is_one_line(tmp_path):
    corpus = text_corpus_from_strings("abcabcab", "abca")
    model = LanguageModel(vocab_size=len(corpus.vocab), embed_size=4, hidden_size=4)
    with pytest.raises(ValueError, match=r"the training text \(8 tokens\) is too short for 20 streams"):
        train_language_model(model, corpus, LMTrainConfig(), progress=False, log=None)
    with pytest.raises(ValueError, match=r"the model's vocab_size \(7\) is not the corpus vocabulary's size \(3\)"):
        train_language_model(model.clone(vocab_size=7), corpus, LMTrainConfig(), progress=False, log=None)


@pytest.mark.parametrize("fields, message", [
    ({"bptt": 0}, "bptt must be"), ({"batch_size": -1}, "batch_size must be"), ({"optimizer": "adam"}, "optimizer"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
    ({"plateau_factor": 1.0}, "plateau_factor must be a finite number > 1"),
    ({"weight_decay": 0.1}, "weight_decay is for optimizer 'adamw'"), ({"clip_norm": 0.0}, "clip_norm"),
    ({"warmup_steps": -1}, "warmup_steps"), ({"schedule": "linear"}, "schedule"),
    ({"warmup_steps": 10}, "warmup_steps is for the cosine and constant schedules"),
])
def test_bad_training_settings_are_one_line(fields, message):
    with pytest.raises(ValueError, match=message):
        LMTrainConfig(**fields)


def test_eval_every_logs_validation_inside_epochs(corpus, tmp_path):
    """Long epochs: `eval_every` puts the validation numbers into the run log every K steps
    as well as at each epoch's end; the epoch's history is unchanged by it."""
    from jaxseq.train.run_log import read_metrics

    model = small_model(corpus)
    config = LMTrainConfig(epochs=1, batch_size=16, bptt=40, optimizer="adamw", learning_rate=3e-3, clip_norm=1.0)
    result = train_language_model(model, corpus, config, checkpoint_dir=tmp_path, progress=False, log=None,
                                  eval_every=7)  # AdamW on the plateau schedule (the config's default)
    points = [(point.step, point.name) for point in read_metrics(tmp_path / "logs" / "metrics.jsonl")]
    steps = sorted({step for step, name in points if name == "val/loss"})
    last = read_metadata(result.checkpoint)["step"]
    assert steps == [7, 14] + [last] and last == 19
    assert ("val/bits_per_token", 7) in [(name, step) for step, name in points]
    with pytest.raises(ValueError, match="eval_every must be"):
        train_language_model(model, corpus, config, checkpoint_dir=tmp_path / "b", progress=False, log=None,
                             eval_every=0)
