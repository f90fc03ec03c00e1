"""Text corpora: character level equal to nanoGPT's encoding, word level equal to PyTorch's
word_language_model `Corpus`, the 90/10 split, `<unk>` counts, Tiny Shakespeare, and every
bad input a one-line error naming the file or argument."""

from __future__ import annotations

import io
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq.data import load_text_corpus, load_text_files, load_tiny_shakespeare, text_corpus_from_strings
from jaxseq.data import locations, text_corpus, text_files, tiny_shakespeare
from jaxseq.data.token_vocabulary import EOS, UNK


# PyTorch's examples/word_language_model/data.py (Dictionary and Corpus.tokenize), with the
# torch.tensor of ids as a list.
class Dictionary(object):
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]


def pytorch_tokenize(dictionary, path):
    with open(path, 'r', encoding="utf8") as f:
        for line in f:
            words = line.split() + ['<eos>']
            for word in words:
                dictionary.add_word(word)
    with open(path, 'r', encoding="utf8") as f:
        idss = []
        for line in f:
            words = line.split() + ['<eos>']
            ids = []
            for word in words:
                ids.append(dictionary.word2idx[word])
            idss.append(ids)
    return [i for ids in idss for i in ids]


def nanogpt_encode(path, fraction=0.9):
    """nanoGPT's data/shakespeare_char/prepare.py: the vocabulary of the whole text, the first 90% train."""
    with open(path, 'r') as f:
        data = f.read()
    chars = sorted(list(set(data)))
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(data)
    return chars, [stoi[c] for c in data[:int(n * fraction)]], [stoi[c] for c in data[int(n * fraction):]]


def expected_word_corpus(train: Path, others: list[Path]):
    """PyTorch's Corpus ids, with the words first seen outside train mapped to <unk>."""
    dictionary = Dictionary()
    train_ids = pytorch_tokenize(dictionary, train)
    tokens = list(dictionary.idx2word)
    tokens += [token for token in (EOS, UNK) if token not in tokens]
    known = {word: i for i, word in enumerate(tokens)}
    splits = []
    for path in others:
        ids = pytorch_tokenize(dictionary, path)
        splits.append([known.get(dictionary.idx2word[i], known[UNK]) for i in ids])
    return tokens, train_ids, splits


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def one_line(error) -> str:
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


# --- character level -------------------------------------------------------------------------

def test_char_vocabulary_is_the_sorted_training_characters_and_unk_comes_only_when_needed():
    corpus = text_corpus_from_strings("hello world\n", "low\n", "old\n")
    assert corpus.vocab.tokens == tuple(sorted(set("hello world\n")))
    assert corpus.vocab.unk_id is None and corpus.num_unknown == {"val": 0, "test": 0}
    assert corpus.vocab.decode(corpus.test) == "old\n"
    assert corpus.train.dtype == np.int32 and corpus.val.dtype == np.int32

    corpus = text_corpus_from_strings("hello\n", "help!", "hi")
    assert corpus.vocab.tokens == ("\n", "e", "h", "l", "o", UNK)
    assert corpus.num_unknown == {"val": 2, "test": 1}  # 'p', '!' / 'i'
    assert corpus.val.tolist() == [2, 1, 3, 5, 5] and corpus.vocab.decode(corpus.test) == "h\ufffd"
    assert corpus.summary() == "text: char level, V = 6; train 6, val 5 (2 <unk>), test 2 (1 <unk>) characters"


def test_char_split_of_one_file_follows_nanogpt(tmp_path):
    path = write(tmp_path, "t.txt", "First Citizen:\r\nBefore we proceed any further, hear me speak.\n" * 3 + "Zz")
    corpus = load_text_corpus(path)
    text = path.read_text()  # "\r\n" read as "\n"
    cut = int(len(text) * 0.9)
    assert corpus.vocab.tokens == tuple(sorted(set(text[:cut]))) + (UNK,)  # 'Z' only in val ('z' is in Citizen)
    _, nanogpt_train, nanogpt_val = nanogpt_encode(path)
    assert (len(corpus.train), len(corpus.val)) == (cut, len(text) - cut) == (len(nanogpt_train), len(nanogpt_val))
    assert corpus.num_unknown == {"val": 1} and corpus.test is None
    assert corpus.vocab.decode(corpus.train) == text[:cut]


# --- word level ------------------------------------------------------------------------------

PTB_LIKE = (" aer banknote berlitz <unk> calloway \n pierre <unk> N years old will join the board \n"
            " mr. <unk> is chairman of <unk> n.v. the dutch publishing group \n")


@pytest.mark.parametrize("train_text, val_text, test_text", [
    (PTB_LIKE, " the board will join \n mr. vinken is old \n", "no words seen\n"),
    ("a b\n\nc", "c a\n", "\n\nd d a"),  # an empty line, a last line without a line break
    ("only\u2003one line, no <unk>", "one <unk> line\r\nzz", "x y"),  # Unicode whitespace, \r\n
])
def test_word_level_equals_pytorch_corpus(tmp_path, train_text, val_text, test_text):
    paths = [write(tmp_path, name, text) for name, text in
             (("train.txt", train_text), ("valid.txt", val_text), ("test.txt", test_text))]
    corpus = load_text_files(*paths, level="word")
    tokens, train, (val, test) = expected_word_corpus(paths[0], paths[1:])
    assert corpus.vocab.tokens == tuple(tokens)
    assert corpus.train.tolist() == train and corpus.val.tolist() == val and corpus.test.tolist() == test
    words_unknown = lambda path: sum(word not in tokens for word in path.read_text().split())
    assert corpus.num_unknown == {"val": words_unknown(paths[1]), "test": words_unknown(paths[2])}


def test_word_split_of_one_file_is_made_on_the_token_stream(tmp_path):
    path = write(tmp_path, "t.txt", "a b c\nd e\n" * 4 + "f <unk> g\n")
    corpus = load_text_corpus(path, level="word")
    dictionary = Dictionary()
    ids = pytorch_tokenize(dictionary, path)  # 32 tokens: 28 train, 4 validation
    assert len(corpus.train) == int(len(ids) * 0.9) == 28 and corpus.train.tolist() == ids[:28]
    assert corpus.vocab.tokens == ("a", "b", "c", EOS, "d", "e", UNK)
    assert corpus.vocab.decode(corpus.val) == "<unk> <unk> <unk>\n"
    assert corpus.num_unknown == {"val": 2}  # f and g; the literal <unk> is the unk token
    half = load_text_corpus(path, level="word", train_fraction=0.5)
    assert len(half.train) == 16 and half.vocab.tokens[-1] == UNK


ALPHABET = st.sampled_from(["a", "b", "ab", " ", "  ", "\n", "\r", "\r\n", "\t", "é", "€", "😀", "\u2003", "\x0c"])


@settings(max_examples=40, deadline=None)
@given(train=st.lists(ALPHABET, max_size=40).map("".join), val=st.lists(ALPHABET, max_size=20).map("".join),
       chunk=st.integers(1, 9))
def test_chunked_reading_equals_pytorch_and_nanogpt_on_any_text(train, val, chunk):
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(text_files, "CHUNK_BYTES", chunk)
        paths = [write(Path(folder), "train.txt", train), write(Path(folder), "val.txt", val)]
        tokens, train_ids, (val_ids,) = expected_word_corpus(paths[0], paths[1:])
        if len(train_ids) >= 2 and len(val_ids) >= 2:
            corpus = load_text_files(*paths, level="word")
            assert (corpus.vocab.tokens, corpus.train.tolist(), corpus.val.tolist()) == (tuple(tokens), train_ids,
                                                                                         val_ids)
        whole = write(Path(folder), "whole.txt", train + val)
        text = io.open(whole, encoding="utf-8").read()
        cut = int(len(text) * 0.9)
        if cut >= 2 and len(text) - cut >= 2:
            corpus = load_text_corpus(whole)
            assert corpus.vocab.decode(corpus.train) == text[:cut]
            assert corpus.vocab.tokens[:len(set(text[:cut]))] == tuple(sorted(set(text[:cut])))
            assert corpus.num_unknown["val"] == sum(char not in text[:cut] for char in text[cut:])


def test_a_single_long_line_is_read_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(text_files, "CHUNK_BYTES", 4096)
    words = np.random.default_rng(0).choice(["alpha", "be", "c", "délta"], 100_000)
    path = write(tmp_path, "line.txt", " ".join(words))
    corpus = load_text_corpus(path, level="word")
    assert len(corpus.train) + len(corpus.val) == 100_001 and len(corpus.vocab) == 6
    assert corpus.vocab.decode_tokens(corpus.train[:5]) == list(words[:5])
    chars = load_text_corpus(path, level="char")
    assert len(chars.train) + len(chars.val) == path.stat().st_size - sum(words == "délta")  # é: 2 bytes


# --- Tiny Shakespeare ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shakespeare_file() -> Path:
    path = tiny_shakespeare.tiny_shakespeare_file()
    if path is None:
        pytest.skip("Tiny Shakespeare not found: set JAXSEQ_DATA or place it in ../shared/data/tinyshakespeare")
    return path


def test_tiny_shakespeare_is_nanogpts_split_and_ids(shakespeare_file):
    corpus = load_tiny_shakespeare()
    assert (len(corpus.train), len(corpus.val), len(corpus.vocab)) == (1_003_854, 111_540, 65)
    chars, train, val = nanogpt_encode(shakespeare_file)
    assert corpus.vocab.tokens == tuple(chars) and corpus.num_unknown == {"val": 0}
    np.testing.assert_array_equal(corpus.train, train)
    np.testing.assert_array_equal(corpus.val, val)


def test_tiny_shakespeare_is_found_through_jaxseq_data(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare").mkdir()
    write(tmp_path / "tinyshakespeare", "input.txt", "x")
    monkeypatch.setenv("JAXSEQ_DATA", str(tmp_path))
    assert tiny_shakespeare.tiny_shakespeare_file() == tmp_path / "tinyshakespeare" / "input.txt"
    monkeypatch.chdir(tmp_path)  # the rule's other places, none of which holds it
    monkeypatch.setattr(locations, "REPOSITORY", tmp_path / "a" / "b")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("JAXSEQ_DATA", str(tmp_path / "elsewhere"))
    assert tiny_shakespeare.tiny_shakespeare_file() is None
    with pytest.raises(FileNotFoundError, match=r"Tiny Shakespeare not found.*elsewhere/tinyshakespeare"):
        load_tiny_shakespeare()


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("train, val, split, what", [
    ("", "abc abc", "train", "training text {}: holds 0 tokens; a split needs at least 2 (an input and its target)"),
    ("abc abc", "", "val", "validation text {}: holds 0 tokens"),
    ("abc abc", "ab abc", "test", "test text {}: holds"),
])
def test_empty_splits_are_one_line_errors_naming_the_file(tmp_path, level, train, val, split, what):
    paths = {"train": write(tmp_path, "train.txt", train), "val": write(tmp_path, "val.txt", val),
             "test": write(tmp_path, "test.txt", "\n" if level == "word" else "z")}
    with pytest.raises(ValueError) as error:
        load_text_files(paths["train"], paths["val"], paths["test"], level=level)
    assert one_line(error).startswith(what.format(paths[split]))


@pytest.mark.parametrize("text, level, message", [
    ("", "char", "the training split (the first 90% of 0 characters) holds 0 tokens"),
    ("abc", "char", "the validation split (what follows the first 90% of 3 characters) holds 1 token;"),
    ("a\n", "word", "the training split (the first 90% of 2 tokens) holds 1 token;"),
])
def test_a_file_too_short_to_split_is_one_line_naming_it(tmp_path, text, level, message):
    path = write(tmp_path, "t.txt", text)
    with pytest.raises(ValueError) as error:
        load_text_corpus(path, level=level)
    line = one_line(error)
    assert line.startswith(f"text file {path}: the ") and message in line


@pytest.mark.parametrize("fraction, message", [
    (0, "train_fraction must be a number in (0, 1), got 0"), (1.0, "in [0, 1), got 1.0"),
    (math.nan, "got nan"), (True, "got True"), ("0.9", "got '0.9'"), (np.float32(0.9), "pass a Python float"),
])
def test_train_fraction_is_checked(tmp_path, fraction, message):
    with pytest.raises(ValueError, match=r"^train_fraction must be a number in .*" + re.escape(message[-10:])):
        load_text_corpus(write(tmp_path, "t.txt", "abcdefghij"), train_fraction=fraction)


@pytest.mark.parametrize("call", [
    lambda path: load_text_corpus(path, level="bytes"),
    lambda path: load_text_files(path, path, level=None),
    lambda path: text_corpus_from_strings("ab", "ab", level="Char"),
])
def test_level_is_checked(tmp_path, call):
    with pytest.raises(ValueError, match="level must be 'char' or 'word', got"):
        call(write(tmp_path, "t.txt", "abcd"))


def test_strings_must_be_strings():
    with pytest.raises(ValueError, match="val must be a string, got bytes"):
        text_corpus_from_strings("abc", b"abc")


def test_bad_files_name_their_split(tmp_path):
    train = write(tmp_path, "train.txt", "abc abc")
    with pytest.raises(ValueError) as error:
        load_text_files(train, write(tmp_path, "val.txt", b"ab\xe9c"))
    assert one_line(error) == (f"validation text {tmp_path / 'val.txt'}: not UTF-8 text (invalid continuation byte) "
                               "at byte offset 2")
    with pytest.raises(ValueError, match=r"test text .*test.bin: a NUL byte at byte offset 1"):
        load_text_files(train, train, write(tmp_path, "test.bin", b"a\x00b"))
    with pytest.raises(FileNotFoundError, match="training text .*missing.txt not found"):
        load_text_files(tmp_path / "missing.txt", train)


def test_too_many_distinct_characters_is_one_line(tmp_path):
    path = write(tmp_path, "cjk.txt", "".join(chr(0x4E00 + i) for i in range(20_001)))
    with pytest.raises(ValueError) as error:
        load_text_files(path, write(tmp_path, "val.txt", "ab"))
    assert one_line(error) == (f"training text {path}: 20,001 distinct characters, more than the 20,000 a "
                               "character-level vocabulary may hold (jaxseq.limits.MAX_CHAR_VOCAB_SIZE); is this a "
                               "word-level corpus?")


@pytest.mark.parametrize("single_file", [True, False])
def test_too_many_distinct_words_is_one_line(tmp_path, monkeypatch, single_file):
    monkeypatch.setattr(text_corpus, "MAX_VOCAB_SIZE", 50)
    monkeypatch.setattr(text_files, "CHUNK_BYTES", 64)
    path = write(tmp_path, "t.txt", " ".join(f"w{i}" for i in range(60)))
    with pytest.raises(ValueError) as error:
        load_text_corpus(path, level="word") if single_file else load_text_files(path, path, level="word")
    assert one_line(error).endswith(f"{path}: more than 50 distinct words (jaxseq.limits.MAX_VOCAB_SIZE)")
    write(tmp_path, "t.txt", " ".join(f"w{i}" for i in range(48)))  # 48 + <eos> + <unk> = 50 fit
    assert len(load_text_files(path, path, level="word").vocab) == 50


@pytest.mark.parametrize("chunk", [16, 2**20])
def test_a_word_longer_than_the_bound_is_one_line(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(text_files, "CHUNK_BYTES", chunk)
    path = write(tmp_path, "t.txt", "a b " + "x" * (text_corpus.MAX_WORD_CHARS + 1) + " c\nd e f g h\n")
    with pytest.raises(ValueError) as error:
        load_text_corpus(path, level="word")
    assert one_line(error) == (f"text file {path}: a word of more than 10,000 characters (a word is what lies "
                               "between whitespace); is this text for level='char'?")
    write(tmp_path, "t.txt", "a b " + "x" * text_corpus.MAX_WORD_CHARS + " c\nd e f g h\n")
    assert len(load_text_corpus(path, level="word").vocab) == 10  # a b x... c <eos> d e f g <unk>


def test_a_100_mb_single_line_is_read_at_character_level(tmp_path):
    """The issue's hostile input: one line of 10^8 bytes (enwik8's size) reads in linear time
    (2 to 4 s on 2 loaded cores) and memory (the ids, 4 bytes a character, and the chunks)."""
    path = tmp_path / "line.txt"
    with open(path, "wb") as handle:
        handle.write(b"the cat sat " * (10**8 // 12) + b"mat.")
    corpus = load_text_corpus(path)
    assert (len(corpus.train), len(corpus.val)) == (90_000_000, 10_000_000)
    assert corpus.vocab.tokens == tuple(" acehst") + (UNK,) and corpus.num_unknown == {"val": 2}  # 'm', '.'
    assert corpus.vocab.decode(corpus.train[:12]) == "the cat sat "
    assert corpus.vocab.decode(corpus.val[-4:]) == "\ufffdat\ufffd"
