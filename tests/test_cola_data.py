"""CoLA loaders: the three formats (detected or given), tokenization, malformed lines with
file and line in the error, folder layouts, and the seeded 7,000 / 1,551 course split."""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxseq.data import cola, locations, sentence_files
from jaxseq.data.cola import find_cola_files, load_cola
from jaxseq.data.sentence_files import detect_format, read_sentences
from jaxseq.data.tokenizer import tokenize
from jaxseq.data.sentences import LabelledSentences, split_train_val

RAW = (
    "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
    "gj04\t0\t*\tThe more we study verbs, the crazier they get get.\n"
    "\n"
    "clc95\t1\t\tIs it raining?\n"
)
TOKENIZED = (
    "our friends wo n't buy this analysis , let alone the next one we propose\t1\n"
    "the more we study verbs , the crazier they get get\t0\n"
    "is it raining ?\t1\n"
)
GLUE = (
    "index\tlabel\tsentence\n"
    "0\t1\tOur friends won't buy this analysis, let alone the next one we propose.\n"
    "1\t0\tThe more we study verbs, the crazier they get get.\n"
    "2\t1\tIs it raining?\n"
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_tokenize_matches_the_tokenized_files():
    assert tokenize("Our friends won't buy this, let alone that.") == \
        ["our", "friends", "wo", "n't", "buy", "this", ",", "let", "alone", "that"]
    assert tokenize("Is it raining?") == ["is", "it", "raining", "?"]


@pytest.mark.parametrize("name, text, expected", [("raw.tsv", RAW, "raw"), ("tok.tsv", TOKENIZED, "tokenized"),
                                                  ("glue.tsv", GLUE, "glue")])
def test_three_formats_detected_and_give_the_same_tokens(tmp_path, name, text, expected):
    path = write(tmp_path, name, text)
    assert detect_format(path) == expected
    data = read_sentences(path)
    reference = read_sentences(write(tmp_path, "ref.tsv", TOKENIZED), format="tokenized")
    assert data.sentences == reference.sentences
    np.testing.assert_array_equal(data.labels, [1, 0, 1])
    assert data.labels.dtype == np.int32
    assert read_sentences(path, format=expected).sentences == data.sentences


@pytest.mark.parametrize("text, fmt, line, message", [
    (TOKENIZED + "a sentence with no label\n", "auto", 4, "expected 2 tab-separated fields"),
    (TOKENIZED.replace("\t0\n", "\t2\n"), "auto", 2, "label must be 0 or 1, got '2'"),
    (RAW + "gj04\tyes\t\tA sentence.\n", "auto", 5, "label must be 0 or 1"),
    (RAW + "gj04\t1\tA sentence.\n", "auto", 5, "expected 4 tab-separated fields"),
    ("\t1\n", "tokenized", 1, "empty sentence"),
    (GLUE + "3\t1\n", "auto", 5, "expected 3 tab-separated fields"),
    (TOKENIZED, "glue", 1, "header line naming 'sentence' and 'label'"),
    ("a\tb\tc\n", "auto", 1, "cannot detect the format"),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, fmt, line, message):
    path = write(tmp_path, "bad.tsv", text)
    with pytest.raises(ValueError, match=message) as error:
        read_sentences(path, format=fmt)
    assert f"{path}:{line}:" in str(error.value)


def test_empty_missing_and_unknown(tmp_path):
    with pytest.raises(ValueError, match="no examples"):
        read_sentences(write(tmp_path, "empty.tsv", "\n\n"))
    with pytest.raises(ValueError, match="no examples"):
        read_sentences(write(tmp_path, "header.tsv", "sentence\tlabel\n"))
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_sentences(tmp_path / "missing.tsv")
    with pytest.raises(ValueError, match="format must be"):
        read_sentences(write(tmp_path, "ok.tsv", TOKENIZED), format="csv")
    (tmp_path / "latin1.tsv").write_bytes(b"caf\xe9\t1\n")
    with pytest.raises(ValueError, match=r"latin1.tsv:1: not UTF-8"):
        read_sentences(tmp_path / "latin1.tsv")


def test_a_directory_or_a_fifo_is_not_a_tsv_file(tmp_path):
    (tmp_path / "folder.tsv").mkdir()
    os.mkfifo(tmp_path / "pipe.tsv")  # reading it would wait for a writer forever
    for name, what in (("folder.tsv", "a directory"), ("pipe.tsv", "not a regular file")):
        for call in (read_sentences, detect_format):
            with pytest.raises(ValueError) as info:
                call(tmp_path / name)
            assert str(info.value) == f"{tmp_path / name}: is {what}, expected a file of labelled sentences"


def test_an_overlong_line_is_refused_before_it_is_read_whole(tmp_path):
    path = write(tmp_path, "long.tsv", TOKENIZED + "word " * 40_000 + "\t1\n")  # a 200 kB line
    with pytest.raises(ValueError) as error:
        read_sentences(path)
    assert str(error.value) == (f"{path}:4: line is longer than 65,536 bytes; sentences are limited "
                                "to 5,000 characters")


@pytest.mark.parametrize("fmt", ["raw", "tokenized"])
def test_an_overlong_sentence_is_refused_before_tokenizing(tmp_path, monkeypatch, fmt):
    tokenized = []
    monkeypatch.setattr(sentence_files, "tokenize", lambda text: tokenized.append(len(text)) or text.split())
    longest = "ab " * 1666 + "ab"  # 5,000 characters: accepted
    rows = (f"src\t1\t\t{longest}\nsrc\t0\t*\t{longest}x\n" if fmt == "raw"
            else f"{longest}\t1\n{longest}x\t0\n")
    path = write(tmp_path, "long.tsv", rows)
    with pytest.raises(ValueError) as error:
        read_sentences(path, fmt)
    assert str(error.value) == f"{path}:2: sentence has 5,001 characters, more than the limit of 5,000"
    assert all(length <= 5000 for length in tokenized)


GLUE_SENTENCE_FIRST = "sentence\tlabel\n" + "".join(
    f"{line.split(chr(9))[2]}\t{line.split(chr(9))[1]}\n" for line in GLUE.splitlines()[1:])


@pytest.mark.parametrize("text, fmt", [(RAW, "raw"), (TOKENIZED, "tokenized"), (GLUE, "glue"),
                                       (GLUE_SENTENCE_FIRST, "glue")],
                         ids=["raw", "tokenized", "glue", "glue-sentence-first"])
def test_a_byte_order_mark_is_not_part_of_the_data(tmp_path, text, fmt):
    plain = read_sentences(write(tmp_path, "plain.tsv", text))
    path = tmp_path / "bom.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # as Excel and Notepad save "UTF-8"
    assert detect_format(path) == fmt
    for given in ("auto", fmt):
        data = read_sentences(path, given)
        assert data.sentences == plain.sentences
        assert "\ufeff" not in " ".join(" ".join(tokens) for tokens in data.sentences)


def many(n, seed=0):
    rng = np.random.default_rng(seed)
    return "".join(f"sentence number {i}\t{int(rng.integers(2))}\n" for i in range(n))


@pytest.mark.parametrize("layout", [("train.tsv", "dev.tsv"),
                                    ("cola_public/raw/in_domain_train.tsv", "cola_public/raw/out_of_domain_dev.tsv")])
def test_folder_layouts_and_seeded_split(tmp_path, layout):
    train_text = many(50) if layout[0] == "train.tsv" else \
        "".join(f"src\t{line.split(chr(9))[1].strip()}\t\tSentence number {i}.\n" for i, line in enumerate(many(50).splitlines()))
    write(tmp_path, layout[0], train_text)
    write(tmp_path, layout[1], TOKENIZED)
    assert find_cola_files(tmp_path) == (tmp_path / layout[0], tmp_path / layout[1])
    splits = load_cola(tmp_path, val_size=10, seed=3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 3)
    everything = sorted(" ".join(s) for s in splits.train.sentences + splits.val.sentences)
    assert everything == sorted(f"sentence number {i}" for i in range(50))
    again = load_cola(tmp_path, val_size=10, seed=3)
    assert again.val.sentences == splits.val.sentences
    assert load_cola(tmp_path, val_size=10, seed=4).val.sentences != splits.val.sentences


def test_missing_folder_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        find_cola_files(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="train.tsv"):
        find_cola_files(tmp_path)
    write(tmp_path, "train.tsv", TOKENIZED)
    with pytest.raises(FileNotFoundError, match="dev.tsv"):
        find_cola_files(tmp_path)


def test_default_cola_dir_follows_jaxseq_data(tmp_path, monkeypatch):
    write(tmp_path, "cola/train.tsv", TOKENIZED)
    write(tmp_path, "cola/dev.tsv", TOKENIZED)
    monkeypatch.setenv("JAXSEQ_DATA", str(tmp_path))
    assert cola.default_cola_dir() == tmp_path / "cola"
    monkeypatch.setattr(locations, "candidate_dirs", lambda name: [tmp_path / "elsewhere" / name])
    assert cola.default_cola_dir() is None


def test_split_train_val_checks_size():
    data = LabelledSentences([["a"]] * 5, np.ones(5, np.int32))
    with pytest.raises(ValueError, match="val_size"):
        split_train_val(data, 5, seed=0)


def test_real_cola_course_split(cola_dir):
    splits = load_cola(cola_dir)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (7000, 1551, 516)
    assert 0.69 < splits.train.labels.mean() < 0.72 and abs(splits.test.labels.mean() - 0.686) < 0.005
