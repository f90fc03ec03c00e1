"""Word dropout of the recurrent classifier (`word_dropout`): words become `[UNK]` with the
given probability while training only; `[CLS]` and padding are never touched; checkpoints
written before the field still load."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.data.vocabulary import CLS_ID, PAD_ID, UNK_ID
from jaxseq.models.classifiers import build_classifier, classifier_config, classifier_from_config
from jaxseq.models.recurrent_classifier import RecurrentClassifier
from jaxseq.models.word_dropout import drop_words
from jaxseq.train.run_metadata import check_run_metadata

VOCAB = 50


def sentences(n=400, t=20, seed=0):
    """(n, t) ids as Vocabulary.encode writes them: [CLS], words (ids >= 3), then [PAD]."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, t + 1, n)
    ids = rng.integers(3, VOCAB, (n, t))
    ids[:, 0] = CLS_ID
    ids[np.arange(t)[None, :] >= lengths[:, None]] = PAD_ID
    return jnp.asarray(ids, jnp.int32)


def embedded_ids(model, variables, ids, **kwargs):
    """The ids `model`'s token embedding receives in one apply."""
    seen = []

    def record(next_fun, args, call_kwargs, context):
        if isinstance(context.module, nn.Embed) and context.method_name == "__call__":
            seen.append(args[0])
        return next_fun(*args, **call_kwargs)

    with nn.intercept_methods(record):
        model.apply(variables, ids, method="logits", **kwargs)
    assert len(seen) == 1
    return np.asarray(seen[0])


@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_drop_words_replaces_the_given_fraction_and_only_where_allowed(rate):
    ids = sentences()
    replaceable = (ids != PAD_ID) & (jnp.arange(ids.shape[1]) > 0)
    out = np.asarray(drop_words(jax.random.key(3), ids, replaceable, rate, UNK_ID))
    changed = out != np.asarray(ids)
    assert out.dtype == np.int32 and np.all(out[changed] == UNK_ID)
    assert not changed[~np.asarray(replaceable)].any()
    fraction = changed[np.asarray(replaceable)].mean()  # ~3,800 words: sd of the fraction < 0.01
    assert abs(fraction - rate) < 0.03, fraction
    np.testing.assert_array_equal(drop_words(jax.random.key(3), ids, replaceable, 0.0, UNK_ID), ids)
    with pytest.raises(ValueError, match=r"drop_words: rate must be a number in \[0, 1\), got 1.0"):
        drop_words(jax.random.key(3), ids, replaceable, 1.0, UNK_ID)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_model_drops_words_only_when_training_with_a_dropout_rng(cell):
    ids = sentences(t=12)
    model = RecurrentClassifier(vocab_size=VOCAB, cell=cell, embed_dim=4, hidden_size=3, word_dropout=0.3,
                                max_length=12)
    variables = model.init(jax.random.key(0), ids[:2])
    plain = RecurrentClassifier(vocab_size=VOCAB, cell=cell, embed_dim=4, hidden_size=3, max_length=12)
    np.testing.assert_array_equal(embedded_ids(model, variables, ids), ids)
    np.testing.assert_array_equal(embedded_ids(model, variables, ids, deterministic=False), ids)  # no rng
    np.testing.assert_allclose(model.apply(variables, ids, method="logits"),
                               plain.apply(variables, ids, method="logits"))
    seen = embedded_ids(model, variables, ids, deterministic=False, rngs={"dropout": jax.random.key(1)})
    changed = seen != np.asarray(ids)
    words = (np.asarray(ids) != PAD_ID) & (np.arange(12) > 0)
    assert np.all(seen[changed] == UNK_ID)
    assert not changed[~words].any()  # [CLS] and [PAD] stay
    assert abs(changed[words].mean() - 0.3) < 0.04


def test_word_dropout_and_unk_id_are_checked_and_recorded():
    with pytest.raises(ValueError, match=r"RecurrentClassifier: word_dropout must be a number in \[0, 1\), got 1.0"):
        RecurrentClassifier(vocab_size=9, word_dropout=1.0)
    with pytest.raises(ValueError, match=r"RecurrentClassifier: unk_id must be an id in \[0, vocab_size\), got 9"):
        RecurrentClassifier(vocab_size=9, unk_id=9)
    model = build_classifier("gru", 30, 14, word_dropout=0.2)
    config = classifier_config(model)
    assert config["word_dropout"] == 0.2 and config["unk_id"] == UNK_ID
    assert classifier_from_config(config) == model
    for key, value, message in [("word_dropout", -0.1, "model.word_dropout must be"),
                                ("unk_id", -1, "model.unk_id must be")]:
        with pytest.raises(ValueError, match=message):
            check_run_metadata({"model": {**config, key: value}, "train_config": {}}, "/run/ckpt-1", "classifier")


def test_configs_written_before_word_dropout_still_load():
    old = classifier_config(build_classifier("lstm", 30, 14, dropout=0.3))
    del old["word_dropout"], old["unk_id"]
    check_run_metadata({"model": old, "train_config": {}}, "/run/ckpt-1", "classifier")
    model = classifier_from_config(old)
    assert model.word_dropout == 0.0 and model.unk_id == UNK_ID and model.dropout == 0.3
