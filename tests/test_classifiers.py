"""`jaxseq.models.classifiers.predict_logits` over more sentences than one batch (the default
1,024): every batch has the same shape (one compilation), the last one is padded, and the
logits equal those of each sentence alone: the padding rows change nothing and are dropped.
(Before, only the real-CoLA test predicted more than 1,024 sentences.)"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxseq.data.bracket_nesting import bracket_nesting_task
from jaxseq.data.vocabulary import Vocabulary
from jaxseq.models.classifiers import build_classifier, make_logits_fn, predict_logits

N = 1_100  # a full batch of 1,024 and a last one of 76 sentences, padded to 1,024
SMALL = dict(hidden_dim=16, num_heads=2, dim_k=8, dim_q=8, dim_v=8, dim_feedforward=32)


@pytest.fixture(scope="module")
def sentences():
    task = bracket_nesting_task(num_train=N, num_val=1, num_test=1, max_pairs=6, seed=3)
    vocab = Vocabulary.build(task.train.sentences, 1)
    return vocab, vocab.encode(task.train.sentences, 16).ids


def test_more_than_a_batch_gives_each_sentence_its_own_logit(sentences):
    vocab, ids = sentences
    assert len(ids) == N and len(np.unique(ids, axis=0)) > 500
    model = build_classifier("transformer", len(vocab), ids.shape[1], **SMALL)
    params = model.init(jax.random.key(0), ids[:2])["params"]
    logits_fn = make_logits_fn(model)
    shapes = []

    def recording(params, chunk):
        shapes.append(chunk.shape)
        return logits_fn(params, chunk)

    logits = predict_logits(recording, params, ids)  # the default batch of 1,024
    assert shapes == [(1024, ids.shape[1])] * 2 and logits.shape == (N,) and logits.dtype == np.float64
    alone = np.asarray(logits_fn(params, ids))  # all of them in one call: no batches, no padding
    np.testing.assert_allclose(logits, alone, rtol=1e-5, atol=1e-6)
    assert np.std(logits[1024:]) > 0  # the padded batch's sentences differ: no row repeated or shifted
