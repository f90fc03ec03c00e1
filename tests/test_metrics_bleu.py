"""BLEU-1 as the course scored it, and `evaluate_captions` / `generate_captions`."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from nltk.translate.bleu_score import sentence_bleu

from jaxseq.data.coco import SPECIAL_TOKENS
from jaxseq.inference import evaluate_captions, generate_captions
from jaxseq.metrics import bleu1
from jaxseq.models import CaptioningRNN


def test_bleu1_is_clipped_unigram_precision_times_brevity_penalty():
    assert bleu1("<START> a cat on a mat <END>", "a cat on a mat <END>") == 1.0
    assert bleu1("a b c", "a a a") == pytest.approx(1 / 3)  # clipped counts
    assert bleu1("a b c d", "a b") == pytest.approx(math.exp(1 - 4 / 2))  # brevity penalty
    assert bleu1("a b", "a b c d") == pytest.approx(0.5)  # longer: precision only
    assert bleu1("a <UNK> b", "a b x<UNK>y") == 1.0  # tokens containing a marker are dropped


def test_bleu1_matches_nltk_on_random_sentences():
    rng = np.random.default_rng(0)
    words = ["a", "man", "dog", "on", "the", "street", "red", "car"]
    for _ in range(30):
        reference = list(rng.choice(words, rng.integers(1, 9)))
        hypothesis = list(rng.choice(words, rng.integers(1, 9)))
        expected = sentence_bleu([reference], hypothesis, weights=[1])
        assert bleu1(" ".join(reference), " ".join(hypothesis)) == pytest.approx(expected)


WORDS = list(SPECIAL_TOKENS) + ["w4", "w5", "w6", "w7"]


def chain_model():
    """An RNN captioner that ignores the image and always says "w4 w5 <END>": one-hot word
    vectors, h = tanh(10 onehot(word)), and W_vocab sends each word to its successor."""
    V = len(WORDS)
    successor = {1: 4, 4: 5, 5: 2}
    W_vocab = np.zeros((V, V), np.float32)
    for word in range(V):
        W_vocab[word, successor.get(word, 3)] = 20.0
    eye = np.eye(V, dtype=np.float32)
    params = {"W_proj": np.zeros((3, V), np.float32), "b_proj": np.zeros(V, np.float32), "W_embed": eye,
              "Wx": 10 * eye, "Wh": np.zeros((V, V), np.float32), "b": np.zeros(V, np.float32),
              "W_vocab": W_vocab, "b_vocab": np.zeros(V, np.float32)}
    model = CaptioningRNN(V, wordvec_dim=V, hidden_dim=V, cell_type="rnn")
    return model, {"params": {name: jnp.asarray(value) for name, value in params.items()}}


def chain_data(references):
    ids = {word: index for index, word in enumerate(WORDS)}
    captions = np.zeros((len(references), 7), np.int32)
    for row, text in enumerate(references):
        tokens = [1] + [ids[word] for word in text.split()] + [2]
        captions[row, : len(tokens)] = tokens
    n = len(references)
    split = {"captions": captions, "image_idxs": np.arange(n, dtype=np.int32),
             "features": np.ones((n, 3), np.float32), "urls": np.asarray([str(i) for i in range(n)])}
    data = {f"{name}_{key}": value for name in ("train", "val") for key, value in split.items()}
    return {**data, "idx_to_word": WORDS, "word_to_idx": ids}


REFERENCES = ["w4 w5", "w4 w6", "w4 w5 w6 w7", "w6 w7"]
EXPECTED = [1.0, 0.5, math.exp(1 - 4 / 2), 0.0]


@pytest.mark.parametrize("decode", ["greedy", "beam"])
def test_evaluate_captions_scores_known_captions(decode):
    model, variables = chain_model()
    data = chain_data(REFERENCES)
    references, hypotheses = generate_captions(model, variables, data, "val", decode=decode)
    assert hypotheses == ["w4 w5 <END>"] * 4
    assert references[0] == "<START> w4 w5 <END>"
    score = evaluate_captions(model, variables, data, "val", decode=decode, beam_size=3)
    assert score == pytest.approx(np.mean(EXPECTED))


def test_evaluate_captions_subsamples_with_a_seed():
    model, variables = chain_model()
    data = chain_data(REFERENCES * 5)
    score = evaluate_captions(model, variables, data, "train", num_samples=6, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(20, 6, replace=False))
    assert score == pytest.approx(np.mean([EXPECTED[row % 4] for row in rows]))
    assert evaluate_captions(model, variables, data, "train", num_samples=6, seed=3) == score


def test_evaluate_captions_arguments_are_checked():
    model, variables = chain_model()
    data = chain_data(REFERENCES)
    with pytest.raises(ValueError, match="decode must be one of"):
        evaluate_captions(model, variables, data, "val", decode="sampling")
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        generate_captions(model, variables, data, "test")
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        evaluate_captions(model, variables, data, "val", num_samples=0)
    empty = {**data, "val_captions": data["val_captions"][:0]}
    with pytest.raises(ValueError, match="the val split has no captions"):
        evaluate_captions(model, variables, empty, "val")
