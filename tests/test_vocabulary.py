"""Vocabulary: specials, min-count, deterministic order, encoding, truncation, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxseq.data.sentences import LabelledSentences
from jaxseq.data.vocabulary import CLS_ID, PAD_ID, UNK_ID, Vocabulary

SENTENCES = [["the", "cat", "sat"], ["the", "dog", "sat"], ["a", "cat", "ran", "the"]]


def test_specials_and_min_count_and_order():
    vocab = Vocabulary.build(SENTENCES, min_count=2)
    assert vocab.tokens == ("[PAD]", "[UNK]", "[CLS]", "the", "cat", "sat")  # by count, ties alphabetical
    assert (PAD_ID, UNK_ID, CLS_ID) == (0, 1, 2)
    assert vocab.index("dog") == UNK_ID and vocab.index("cat") == 4
    assert len(Vocabulary.build(SENTENCES)) == 3 + 6
    assert Vocabulary.build(reversed(SENTENCES), min_count=2) == vocab


def test_encode_cls_first_padding_and_truncation_count():
    vocab = Vocabulary.build(SENTENCES, min_count=2)
    encoded = vocab.encode([["the", "cat"], ["dog", "sat", "the", "cat", "sat"], []], max_length=4)
    np.testing.assert_array_equal(encoded.ids, [[2, 3, 4, 0], [2, 1, 5, 3], [2, 0, 0, 0]])
    assert encoded.ids.dtype == np.int32
    np.testing.assert_array_equal(encoded.lengths, [3, 4, 1])
    assert encoded.num_truncated == 1
    np.testing.assert_array_equal(encoded.pad_mask, encoded.ids != PAD_ID)
    assert vocab.decode(encoded.ids[0]) == ["[CLS]", "the", "cat"]
    assert vocab.encode([["the"] * 3], max_length=4).num_truncated == 0  # exactly fits


def test_encode_labelled():
    vocab = Vocabulary.build(SENTENCES)
    data, truncated = vocab.encode_labelled(LabelledSentences(SENTENCES, np.array([1, 0, 1])), max_length=4)
    assert data.ids.shape == (3, 4) and truncated == 1
    np.testing.assert_array_equal(data.labels, [1, 0, 1])


def test_json_round_trip(tmp_path):
    vocab = Vocabulary.build(SENTENCES + [["naïve", "café"]], min_count=1)
    path = vocab.save(tmp_path / "sub" / "vocab.json")
    loaded = Vocabulary.load(path)
    assert loaded == vocab and loaded.index("café") == vocab.index("café")
    assert json.loads(path.read_text(encoding="utf-8"))["tokens"][:3] == ["[PAD]", "[UNK]", "[CLS]"]


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ('{"words": []}', "'tokens' list"),
    ('{"tokens": ["a", "[UNK]", "[CLS]"]}', "must start with"),
    ('{"tokens": ["[PAD]", "[UNK]", "[CLS]", "x", "x"]}', "more than once"),
])
def test_bad_vocabulary_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        Vocabulary.load(path)
    assert str(path) in str(error.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(SENTENCES, min_count=0)
    with pytest.raises(ValueError, match="max_length"):
        Vocabulary.build(SENTENCES).encode(SENTENCES, max_length=1)
    with pytest.raises(FileNotFoundError):
        Vocabulary.load("/nonexistent/vocab.json")
