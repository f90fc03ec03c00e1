"""TokenVocabulary: encoding prompts (unknown characters refused, unknown words counted),
decoding, the JSON round trip, and vocabulary files that lie."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxseq.data import token_vocabulary
from jaxseq.data.token_vocabulary import EOS, UNK, TokenVocabulary, word_tokens
from jaxseq.limits import MAX_CHAR_VOCAB_SIZE

CHARS = TokenVocabulary("char", ("\n", " ", "a", "b", "c"))
WORDS = TokenVocabulary("word", ("the", "cat", EOS, "sat", UNK))


def one_line(error) -> str:
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


def test_char_encode_decode_round_trip():
    encoded = CHARS.encode("ab c\nba")
    assert encoded.ids.dtype == np.int32 and encoded.num_unknown == 0
    assert encoded.ids.tolist() == [2, 3, 1, 4, 0, 3, 2]
    assert CHARS.decode(encoded.ids) == "ab c\nba"
    assert CHARS.unk_id is None and CHARS.eos_id is None and len(CHARS) == 5


def test_char_prompt_with_unknown_characters_is_one_line_naming_them():
    with pytest.raises(ValueError) as error:
        CHARS.encode("abz\tyz", name="--prompt")
    assert one_line(error) == ("--prompt holds 3 characters outside the model's vocabulary of 5: '\\t', 'y', 'z'")
    with pytest.raises(ValueError, match="holds 1 character outside"):
        CHARS.encode("é")


def test_char_unk_is_last_decodes_as_replacement_character_and_is_never_a_prompt_character():
    vocab = TokenVocabulary("char", ("a", "b", UNK))
    assert vocab.unk_id == 2 and vocab.decode([0, 2, 1]) == "a\ufffdb"
    with pytest.raises(ValueError, match="outside"):
        vocab.encode("ac")
    assert vocab.encode("ba").ids.tolist() == [1, 0]


def test_word_tokens_put_eos_at_line_breaks_only():
    assert word_tokens("the cat\r\nsat\n") == ["the", "cat", EOS, "sat", EOS]
    assert word_tokens("  the\u2003cat  ") == ["the", "cat"]  # any Unicode whitespace, as str.split
    assert word_tokens("") == [] and word_tokens("\n\n") == [EOS, EOS]


def test_word_encode_maps_unknown_words_to_unk_and_counts_them():
    encoded = WORDS.encode("the dog sat\nthe <unk> bird")
    assert encoded.ids.tolist() == [0, 4, 3, 2, 0, 4, 4]
    assert encoded.num_unknown == 2  # dog, bird; a literal <unk> is the unk token itself
    assert WORDS.decode([0, 1, 2, 3, 1, 2]) == "the cat\nsat cat\n"
    assert WORDS.decode_tokens([0, 4]) == ["the", UNK]
    assert (WORDS.unk_id, WORDS.eos_id) == (4, 2)


@pytest.mark.parametrize("ids, message", [
    ([0, 5], "token id 5 at position 1 is outside the vocabulary [0, 5)"),
    ([-1], "token id -1 at position 0 is outside"),
    (np.array([0.5]), "must be integers"),
])
def test_decode_refuses_ids_outside_the_vocabulary(ids, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        WORDS.decode(ids)


def test_encode_refuses_what_is_not_a_string():
    with pytest.raises(ValueError, match="prompt must be a string, got bytes"):
        CHARS.encode(b"ab")


@pytest.mark.parametrize("vocab", [CHARS, WORDS, TokenVocabulary("char", ("é", "😀", '"', "\\", UNK))])
def test_json_round_trip(tmp_path, vocab):
    path = vocab.save(tmp_path / "run" / "vocab.json")
    assert TokenVocabulary.load(path) == vocab
    assert json.loads(path.read_text(encoding="utf-8")) == {"level": vocab.level, "tokens": list(vocab.tokens)}
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("level, tokens, message", [
    ("byte", ("a",), "level must be 'char' or 'word', got 'byte'"),
    ("char", (), "holds 1 to 20,000 tokens, got 0"),
    ("char", ("a", "a"), "holds the token 'a' more than once"),
    ("char", ("a", "bc"), "token 1 of a char-level vocabulary is 'bc': expected one character"),
    ("char", (UNK, "a"), "token 0 of a char-level vocabulary is '<unk>'"),
    ("word", ("a", "b c", EOS, UNK), "token 1 of a word-level vocabulary is 'b c': expected a word"),
    ("word", ("a", "", EOS, UNK), "token 1 of a word-level vocabulary is ''"),
    ("word", ("a", EOS), "must hold <unk>"),
    ("word", ("a",), "must hold <eos> and <unk>"),
    ("word", ["a", EOS, UNK], "tokens must be a tuple of strings, got list"),
])
def test_bad_vocabularies_are_one_line_errors(level, tokens, message):
    with pytest.raises(ValueError) as error:
        TokenVocabulary(level, tokens)
    assert message in one_line(error)


def test_size_bounds(monkeypatch):
    chars = tuple(chr(0x4E00 + i) for i in range(MAX_CHAR_VOCAB_SIZE + 1))
    with pytest.raises(ValueError, match="a char-level vocabulary holds 1 to 20,000 tokens, got 20,001"):
        TokenVocabulary("char", chars)
    assert len(TokenVocabulary("word", chars + (EOS, UNK))) == MAX_CHAR_VOCAB_SIZE + 3  # words are not bounded so
    monkeypatch.setattr(token_vocabulary, "MAX_VOCAB_SIZE", 3)
    with pytest.raises(ValueError, match="a word-level vocabulary holds 1 to 3 tokens, got 4"):
        TokenVocabulary("word", ("a", "b", EOS, UNK))
    with pytest.raises(ValueError, match="at most 8,388,608 characters together"):
        TokenVocabulary("word", ("a" * (token_vocabulary.MAX_VOCAB_CHARS - 9), EOS, UNK))


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ('["a"]', "expected a JSON object"),
    ('{"tokens": ["a"]}', "lacks 'level'"),
    ('{"level": "char", "tokens": ["a"], "extra": 1}', "unknown keys 'extra'"),
    ('{"level": "chars", "tokens": ["a"]}', "level must be one of 'char', 'word'"),
    ('{"level": "char", "tokens": "abc"}', "tokens must be a list"),
    ('{"level": "char", "tokens": ["a", 1]}', "tokens[1] must be a string, got 1"),
    ('{"level": "char", "tokens": ["a", "a"]}', "holds the token 'a' more than once"),
    ('{"level": "word", "tokens": ["a", "<eos>"]}', "must hold <unk>"),
    ('{"level": "char", "tokens": []}', "holds 1 to 20,000 tokens, got 0"),
])
def test_vocabulary_files_that_lie_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as error:
        TokenVocabulary.load(path)
    line = one_line(error)
    assert line.startswith(f"vocabulary file {path}") and message in line


def test_vocabulary_file_size_is_bounded_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(token_vocabulary, "MAX_FILE_BYTES", 100)
    path = TokenVocabulary("char", tuple("abcdefghijklmnopqrstuvwxyz")).save(tmp_path / "vocab.json")
    with pytest.raises(ValueError, match="more than the 100 bytes allowed"):
        TokenVocabulary.load(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        TokenVocabulary.load(tmp_path / "missing.json")
