"""The recurrent sentence classifier (`--model lstm|gru`): shapes, padding that never changes
the output, learning the built-in task with the shared trainer, its checkpoint metadata
(validated field by field; old transformer checkpoints still load) and `cola predict`."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.data.bracket_nesting import bracket_nesting_task
from jaxseq.models.classifiers import build_classifier, classifier_config, classifier_from_config
from jaxseq.models.recurrent_classifier import RecurrentClassifier
from jaxseq.models.transformer import ClassificationTransformer
from jaxseq.train.checkpoint import best_checkpoint, read_metadata
from jaxseq.inference import load_sentence_classifier, predict_probabilities
from jaxseq.train.classifier import ClassifierTrainConfig, fit_sentence_classifier, train_classifier
from jaxseq.train.run_metadata import check_run_metadata
from tests.bracket_task import TINY_RECURRENT, encoded_task

IDS = jnp.array([[1, 5, 2, 7, 0, 0], [1, 3, 0, 0, 0, 0], [1, 4, 4, 4, 4, 2]])  # [CLS] first, [PAD] = 0 after


def init(model, ids=IDS):
    return model.init(jax.random.key(0), ids)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("pooling, width", [("max", 2 * 5), ("final", 2 * 5), ("max+final", 4 * 5)])
def test_shapes(cell, pooling, width):
    model = RecurrentClassifier(vocab_size=9, cell=cell, embed_dim=4, hidden_size=5, num_layers=2, pooling=pooling,
                                max_length=8)
    variables = init(model)
    assert model.num_features == width
    assert model.apply(variables, IDS, method="features").shape == (3, width)
    assert model.apply(variables, IDS, method="logits").shape == (3,)
    probabilities = model.apply(variables, IDS)
    assert probabilities.shape == (3, 1) and bool(jnp.all((probabilities > 0) & (probabilities < 1)))
    assert set(variables["params"]) == {"token_embeddings", "encoder", "final_dense"}
    assert variables["params"]["final_dense"]["kernel"].shape == (width, 1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("pooling", ["max", "final", "max+final"])
def test_padding_never_changes_the_logits(cell, pooling):
    model = RecurrentClassifier(vocab_size=9, cell=cell, embed_dim=4, hidden_size=5, num_layers=2, dropout=0.2,
                                embed_dropout=0.1, pooling=pooling, max_length=12)
    variables = init(model)
    logits = model.apply(variables, IDS, method="logits")
    longer = jnp.pad(IDS, ((0, 0), (0, 6)))  # T = 12
    np.testing.assert_allclose(model.apply(variables, longer, method="logits"), logits, rtol=1e-6, atol=1e-6)
    # each sentence alone, cut to its own length
    for row, length in enumerate([4, 2, 6]):
        alone = model.apply(variables, IDS[row:row + 1, :length], method="logits")
        np.testing.assert_allclose(alone, logits[row:row + 1], rtol=1e-6, atol=1e-6)
    # a pad_mask gives the lengths; whatever the masked positions hold does not matter
    mask = IDS != 0
    garbage = jnp.where(mask, IDS, 8)
    np.testing.assert_allclose(model.apply(variables, garbage, mask, method="logits"), logits, rtol=1e-6, atol=1e-6)


def test_fields_are_checked():
    with pytest.raises(ValueError, match="cell must be one of"):
        RecurrentClassifier(vocab_size=9, cell="rnn")
    with pytest.raises(ValueError, match="pooling must be one of"):
        RecurrentClassifier(vocab_size=9, pooling="mean")
    with pytest.raises(ValueError, match="embed_dropout must be a number in"):
        RecurrentClassifier(vocab_size=9, embed_dropout=1.0)
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        RecurrentClassifier(vocab_size=9, num_layers=0)
    with pytest.raises(ValueError, match="max_length is 8"):
        model = RecurrentClassifier(vocab_size=9, embed_dim=4, hidden_size=3, max_length=8)
        model.init(jax.random.key(0), jnp.ones((1, 9), jnp.int32))
    with pytest.raises(ValueError, match="model must be one of"):
        build_classifier("rnn", 9, 8)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_learns_the_builtin_task(cell):
    model, train, val = encoded_task(1200, 300, seed=0, architecture=cell)
    assert isinstance(model, RecurrentClassifier) and model.cell == cell
    config = ClassifierTrainConfig(epochs=4, batch_size=32, learning_rate=1e-2)
    result = train_classifier(model, train, val, config, progress=False, log=None)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_val_mcc > 0.5 and max(h["val_accuracy"] for h in result.history) > 0.75


def test_config_round_trip_and_old_transformer_configs():
    model = build_classifier("gru", 30, 14, embed_dim=8, hidden_size=6, num_layers=2, dropout=0.1, pooling="final")
    config = classifier_config(model)
    assert config["architecture"] == "gru" and config["hidden_size"] == 6 and config["pooling"] == "final"
    assert classifier_from_config(json.loads(json.dumps(config))) == model
    transformer = build_classifier("transformer", 30, 14, hidden_dim=16, num_heads=2)
    old = classifier_config(transformer)
    assert "architecture" not in old  # as checkpoints held it before the recurrent models
    assert isinstance(classifier_from_config(old), ClassificationTransformer)
    assert classifier_from_config({**old, "architecture": "transformer"}) == transformer


@pytest.mark.parametrize("change, message", [
    ({"architecture": "rnn"}, "model.architecture must be one of 'transformer', 'lstm', 'gru', got 'rnn'"),
    ({"hidden_size": 0}, r"model.hidden_size must be an integer in \[1, 65536\], got 0"),
    ({"num_layers": 65}, r"model.num_layers must be an integer in \[1, 64\], got 65"),
    ({"pooling": "mean"}, "model.pooling must be one of 'max', 'final', 'max\\+final', got 'mean'"),
    ({"dropout": 1.0}, "model.dropout must be"),
    ({"embed_dropout": -0.1}, "model.embed_dropout must be"),
    ({"cell": 3}, "model.cell must be one of"),
    ({"num_heads": 2}, "model has unknown keys 'num_heads'"),
])
def test_recurrent_metadata_is_validated_field_by_field(change, message):
    meta = {"model": classifier_config(build_classifier("lstm", 30, 14)), "train_config": {}}
    check_run_metadata(meta, "/run/ckpt-1", "classifier")
    meta["model"].update(change)
    with pytest.raises(ValueError, match="checkpoint /run/ckpt-1/meta.json: " + message):
        check_run_metadata(meta, "/run/ckpt-1", "classifier")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A 3-epoch GRU run of fit_sentence_classifier with checkpoints: (run, folder)."""
    folder = tmp_path_factory.mktemp("gru")
    splits = bracket_nesting_task(600, 150, 150, seed=4, max_pairs=6)
    run = fit_sentence_classifier(splits, min_count=1, max_length=14, architecture="gru",
                                  model_kwargs={**TINY_RECURRENT, "num_layers": 2, "dropout": 0.1},
                                  config=ClassifierTrainConfig(epochs=3, learning_rate=1e-2), checkpoint_dir=folder,
                                  progress=False, log=None)
    return run, folder


def test_checkpoint_round_trip_rebuilds_the_recurrent_model(fitted):
    run, folder = fitted
    meta = read_metadata(best_checkpoint(folder))
    assert meta["model"]["architecture"] == "gru" and meta["model"]["num_layers"] == 2
    model, params, vocab, _ = load_sentence_classifier(folder)
    assert model == run.model and isinstance(model, RecurrentClassifier)
    jax.tree.map(np.testing.assert_array_equal, params, run.params)
    sentences = [s.split() for s in ("( [ ] )", ") ( ] [", "[ ( ) ]")]
    np.testing.assert_allclose(predict_probabilities(model, params, vocab, sentences),
                               predict_probabilities(run.model, run.params, run.vocab, sentences))


def test_cola_predict_on_a_recurrent_run(fitted, capsys):
    from jaxseq import cli

    _, folder = fitted
    assert cli.main(["cola", "predict", "--checkpoint", str(folder), "( [ ] )", ") ( ] ["]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    probabilities = [float(line.split("\t")[0]) for line in lines]
    assert len(lines) == 2 and probabilities[0] > probabilities[1]


def test_dropout_acts_only_when_training():
    model = RecurrentClassifier(vocab_size=9, embed_dim=4, hidden_size=5, num_layers=2, dropout=0.5,
                                embed_dropout=0.5, max_length=8)
    variables = init(model)
    plain = model.apply(variables, IDS, method="logits")
    noisy = model.apply(variables, IDS, deterministic=False, rngs={"dropout": jax.random.key(1)}, method="logits")
    assert not np.allclose(noisy, plain)
