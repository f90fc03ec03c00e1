"""Vocabulary: specials, min-count, deterministic order, encoding, truncation, JSON round trip,
and files that lie (wrong types, too large, nested too deep)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxseq.data import vocabulary
from jaxseq.data.sentences import LabelledSentences
from jaxseq.data.vocabulary import CLS_ID, MAX_FILE_BYTES, PAD_ID, SPECIAL_TOKENS, UNK_ID, Vocabulary
from jaxseq.limits import MAX_VOCAB_SIZE

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
    ('{"words": []}', "lacks 'tokens'"),
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


@pytest.mark.parametrize("min_count", ["[2]", "null", "0", "true", "2.5", '"2"'])
def test_min_count_must_be_a_positive_integer(tmp_path, min_count):
    path = tmp_path / "vocab.json"
    path.write_text('{"tokens": ["[PAD]", "[UNK]", "[CLS]"], "min_count": %s}' % min_count, encoding="utf-8")
    with pytest.raises(ValueError, match=r"min_count must be an integer in \[1, 2147483647\]") as error:
        Vocabulary.load(path)
    assert str(error.value).startswith(f"vocabulary file {path}: ")


def test_huge_vocabularies_are_refused_bounded(tmp_path):
    path = tmp_path / "vocab.json"
    with open(path, "wb") as handle:  # ten million tokens: refused by its size, before it is read
        handle.write(b'{"tokens": ["[PAD]", "[UNK]", "[CLS]", ' + b'"a", ' * 10_000_000 + b'"a"]}')
    with pytest.raises(ValueError, match=rf"{path}: \d+ bytes, more than the {MAX_FILE_BYTES} bytes allowed"):
        Vocabulary.load(path)
    tokens = [*SPECIAL_TOKENS, *(f"w{i}" for i in range(MAX_VOCAB_SIZE))]  # small enough a file, too many tokens
    path.write_text(json.dumps({"tokens": tokens}), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path}: tokens must hold at most {MAX_VOCAB_SIZE} items, got 1000003"):
        Vocabulary.load(path)
    with pytest.raises(ValueError, match=f"a vocabulary may hold at most {MAX_VOCAB_SIZE} tokens"):
        Vocabulary(tuple(tokens))


def test_deep_or_huge_numbers_in_a_vocabulary_file_name_it(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}: lists and objects nested more than 64 deep"):
        Vocabulary.load(path)
    path.write_text('{"tokens": [], "min_count": %s}' % ("1" * 100_000), encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}: holds a number 100000 characters long"):
        Vocabulary.load(path)


def test_a_vocabulary_too_large_to_read_back_is_not_written(tmp_path, monkeypatch):
    """Long words make a vocabulary of allowed size larger than `load` reads: `save` (which the
    trainer calls before its first step) refuses it rather than leave a run nobody can load."""
    monkeypatch.setattr(vocabulary, "MAX_FILE_BYTES", 4096)
    fits = Vocabulary.build([[f"w{i}" for i in range(100)]])
    fits.save(tmp_path / "fits.json")
    assert Vocabulary.load(tmp_path / "fits.json").to_json() == fits.to_json()
    long_words = Vocabulary.build([["x" * 100 + str(i) for i in range(50)]])
    with pytest.raises(ValueError, match=r"vocabulary file .*long\.json: 53 tokens take \d+ bytes, more than the "
                                         r"4096 a vocabulary file may hold; not written \(raise min_count\)"):
        long_words.save(tmp_path / "long.json")
    assert not list(tmp_path.glob("long.json*"))
