"""Text corpora for language models: a text file (or two or three) as token ids, with its vocabulary.

Input is either one file split in order, nanoGPT's convention (`load_text_corpus`: the first
`int(L * 0.9)` tokens train, the rest validation), or explicit train / validation [/ test]
files (`load_text_files`), or strings already in memory (`text_corpus_from_strings`, which the
built-in text uses). At character level the tokens are characters, so nanoGPT's split of
Tiny Shakespeare is 1,003,854 / 111,540 characters. At word level (PyTorch's
word_language_model) the tokens are the words of each line and an `<eos>` at each line end,
and the 90/10 split is made on that token stream (a line may straddle the boundary).

The vocabulary (`jaxseq.data.token_vocabulary.TokenVocabulary`) comes from the training split
alone; tokens of the other splits outside it become `<unk>`, and `TextCorpus.num_unknown`
says how many per split. At word level, the distinct words of the whole single file (or of the
training file) may number at most `jaxseq.limits.MAX_VOCAB_SIZE` and a word may have at most
`MAX_WORD_CHARS` characters; at character level the training split may hold at most
`jaxseq.limits.MAX_CHAR_VOCAB_SIZE` distinct characters. Files are read by
`jaxseq.data.text_files.read_text_chunks` (size bound, NUL bytes, UTF-8 with the byte offset of
the first bad byte), in chunks, so time and memory stay linear in the text's size, one single
line of 100 MB included. Every split must hold at least 2 tokens (an input and its target).
Every failure is one line naming the file or argument.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from jaxseq.checks import check_rate
from jaxseq.data.text_files import read_text_chunks, text_chunks
from jaxseq.data.token_vocabulary import EOS, UNK, TokenVocabulary, check_level
from jaxseq.limits import MAX_CHAR_VOCAB_SIZE, MAX_VOCAB_SIZE

MAX_WORD_CHARS = 10_000  # a longer "word" is not text split on whitespace (a blob, a file with no spaces)
SPLITS = ("train", "val", "test")
_SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


@dataclass(frozen=True, eq=False)
class TextCorpus:
    """A language-model corpus: each split as one stream of token ids, and the vocabulary.

    vocab: TokenVocabulary of V tokens (from the training split).
    train, val: (L,) int32 ids in [0, V), L >= 2 each; test: the same, or None.
    num_unknown: {"val": n, "test": n}: tokens of that split outside the training split's
    vocabulary, now `<unk>` (the test entry only where there is a test split).
    source: where the text came from, for logs ("path (90/10 split)", "builtin", ...).
    """

    vocab: TokenVocabulary
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray | None
    num_unknown: dict
    source: str

    def split(self, name: str) -> np.ndarray:
        """The ids (L,) of split "train", "val" or "test"; ValueError naming what exists otherwise."""
        present = [split for split in SPLITS if getattr(self, split) is not None]
        if name not in present:
            raise ValueError(f"split must be one of {', '.join(present)}, got {name!r}")
        return getattr(self, name)

    def summary(self) -> str:
        """One line for a log: level, V, tokens per split and how many became `<unk>`."""
        unit = "characters" if self.vocab.level == "char" else "tokens"
        parts = [f"train {len(self.train):,}"]
        for name in ("val", "test"):
            ids = getattr(self, name)
            if ids is not None:
                unknown = self.num_unknown.get(name, 0)
                parts.append(f"{name} {len(ids):,}" + (f" ({unknown:,} {UNK})" if unknown else ""))
        return f"{self.source}: {self.vocab.level} level, V = {len(self.vocab):,}; {', '.join(parts)} {unit}"


# --- characters ------------------------------------------------------------------------------

def _char_codes(chunks: Iterable[str]) -> np.ndarray:
    """(L,) code points of the text in `chunks`: uint8 while the text is ASCII, else uint32."""
    parts = []
    for chunk in chunks:
        if chunk.isascii():
            parts.append(np.frombuffer(chunk.encode("ascii"), np.uint8))
        else:
            parts.append(np.frombuffer(chunk.encode("utf-32-le", "surrogatepass"), np.uint32))
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


def _char_corpus(codes: dict, names: dict, source: str) -> TextCorpus:
    """The corpus of the splits' code points: the sorted characters of "train" are the vocabulary."""
    present = np.flatnonzero(np.bincount(codes["train"]))
    if len(present) > MAX_CHAR_VOCAB_SIZE:
        raise ValueError(f"{names['train']}: {len(present):,} distinct characters, more than the "
                         f"{MAX_CHAR_VOCAB_SIZE:,} a character-level vocabulary may hold "
                         "(jaxseq.limits.MAX_CHAR_VOCAB_SIZE); is this a word-level corpus?")
    table = np.full(max(int(c.max()) for c in codes.values()) + 1, -1, np.int32)
    table[present] = np.arange(len(present), dtype=np.int32)
    ids = {name: table[c] for name, c in codes.items()}
    num_unknown = {name: int(np.count_nonzero(ids[name] < 0)) for name in ids if name != "train"}
    tokens = tuple(chr(code) for code in present.tolist())
    if any(num_unknown.values()):
        tokens += (UNK,)
        for name in num_unknown:
            ids[name][ids[name] < 0] = len(present)
    return TextCorpus(TokenVocabulary("char", tokens), ids["train"], ids["val"], ids.get("test"), num_unknown, source)


# --- words -----------------------------------------------------------------------------------

def _word_ids(chunks: Iterable[str], index: dict, *, grow: bool, name: str) -> np.ndarray:
    """(L,) int32 ids of the words of `chunks`, `<eos>` at each line end (PyTorch's `Corpus`:
    a last line without a line break ends with `<eos>` too).

    grow: a word missing from `index` is added with the next id (first-appearance order), at
    most MAX_VOCAB_SIZE of them; else it gets id -1. A word may cross from one chunk to the
    next; one longer than MAX_WORD_CHARS is an error naming `name`.
    """
    out: list[np.ndarray] = []
    carry, line_open = "", False

    def add(tokens: list[str]) -> None:
        if grow:
            for token in dict.fromkeys(tokens):  # new words in order of first appearance
                if token not in index:
                    index[token] = len(index)
            if len(index) > MAX_VOCAB_SIZE:
                raise ValueError(f"{name}: more than {MAX_VOCAB_SIZE:,} distinct words "
                                 "(jaxseq.limits.MAX_VOCAB_SIZE)")
            out.append(np.fromiter(map(index.__getitem__, tokens), np.int32, len(tokens)))
        else:
            out.append(np.fromiter((index.get(token, -1) for token in tokens), np.int32, len(tokens)))

    for chunk in chunks:
        text = carry + chunk
        lines = text.split("\n")
        last = lines.pop()  # the line still open at the chunk's end
        tokens = []
        for line in lines:
            tokens += line.split()
            tokens.append(EOS)
        words = last.split()
        carry = words.pop() if words and not last[-1].isspace() else ""  # may go on in the next chunk
        tokens += words
        line_open = bool(last)
        _check_word_lengths(tokens + [carry], name)
        add(tokens)
    add(([carry] if carry else []) + ([EOS] if line_open else []))
    return np.concatenate(out)


def _check_word_lengths(tokens: list[str], name: str) -> None:
    longest = max(map(len, tokens), default=0)
    if longest > MAX_WORD_CHARS:
        raise ValueError(f"{name}: a word of more than {MAX_WORD_CHARS:,} characters (a word is what lies between "
                         "whitespace); is this text for level='char'?")


def _word_vocabulary(tokens: list[str], name: str) -> TokenVocabulary:
    """`tokens` (first-appearance order), then `<eos>` and `<unk>` where missing."""
    tokens = tokens + [token for token in (EOS, UNK) if token not in set(tokens)]
    try:
        return TokenVocabulary("word", tuple(tokens))
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


# --- the three ways in -----------------------------------------------------------------------

def _check_length(ids: np.ndarray, name: str, split: str = "") -> None:
    """ValueError "<name>: [<split> ]holds n tokens; ..." unless `ids` holds at least 2 tokens."""
    if len(ids) < 2:
        raise ValueError(f"{name}: {split + ' ' if split else ''}holds {len(ids)} token{'' if len(ids) == 1 else 's'}; "
                         "a split needs at least 2 (an input and its target)")


def _from_splits(chunks: dict, names: dict, level: str, source: str) -> TextCorpus:
    """The corpus of separate splits: `chunks` and `names` map "train", "val"[, "test"] to the
    text's chunks and to its name for messages."""
    if level == "char":
        codes = {}
        for split, split_chunks in chunks.items():
            codes[split] = _char_codes(split_chunks)
            _check_length(codes[split], names[split])
        return _char_corpus(codes, names, source)
    index: dict = {}
    train = _word_ids(chunks["train"], index, grow=True, name=names["train"])
    _check_length(train, names["train"])
    vocab = _word_vocabulary(list(index), names["train"])
    lookup = {token: i for i, token in enumerate(vocab.tokens)}
    ids, num_unknown = {"train": train}, {}
    for split in ("val", "test"):
        if split in chunks:
            ids[split] = _word_ids(chunks[split], lookup, grow=False, name=names[split]).copy()
            _check_length(ids[split], names[split])
            unknown = ids[split] < 0
            num_unknown[split] = int(np.count_nonzero(unknown))
            ids[split][unknown] = vocab.unk_id
    return TextCorpus(vocab, ids["train"], ids["val"], ids.get("test"), num_unknown, source)


def load_text_files(train: str | os.PathLike, val: str | os.PathLike, test: str | os.PathLike | None = None,
                    *, level: str = "char") -> TextCorpus:
    """The corpus of explicit files: the vocabulary from `train`, `val` (and `test`) encoded with it.

    Returns: TextCorpus, each split (L,) int32. Raises FileNotFoundError for a missing file,
    ValueError (one line naming the file) for one that is too large, binary, not UTF-8, too
    short (< 2 tokens) or has too many distinct tokens.
    """
    check_level(level)
    files = {"train": train, "val": val} | ({"test": test} if test is not None else {})
    names = {split: f"{_SPLIT_NAMES[split]} text {path}" for split, path in files.items()}
    chunks = {split: read_text_chunks(path, label=f"{_SPLIT_NAMES[split]} text") for split, path in files.items()}
    return _from_splits(chunks, names, level, source=str(train))


def text_corpus_from_strings(train: str, val: str, test: str | None = None, *, level: str = "char",
                             source: str = "text") -> TextCorpus:
    """The corpus of texts already in memory, read as files are (line ends translated).

    >>> corpus = text_corpus_from_strings("abcab", "abd", level="char")
    >>> corpus.vocab.tokens, corpus.val.tolist(), corpus.num_unknown
    (('a', 'b', 'c', '<unk>'), [0, 1, 3], {'val': 1})
    """
    check_level(level)
    texts = {"train": train, "val": val} | ({"test": test} if test is not None else {})
    for split, text in texts.items():
        if not isinstance(text, str):
            raise ValueError(f"{split} must be a string, got {type(text).__name__}")
    names = {split: f"the {_SPLIT_NAMES[split]} text" for split in texts}
    return _from_splits({split: text_chunks(text) for split, text in texts.items()}, names, level, source)


def load_text_corpus(path: str | os.PathLike, *, level: str = "char", train_fraction: float = 0.9) -> TextCorpus:
    """One file split in order (nanoGPT's convention): the first `int(L * train_fraction)`
    tokens train, the rest validation; no test split.

    Returns: TextCorpus, train (int(L * train_fraction),) and val int32 ids. Raises as
    `load_text_files`, and ValueError when `train_fraction` is not in (0, 1) or leaves a split
    under 2 tokens.
    """
    check_level(level)
    check_rate("train_fraction", train_fraction)
    if train_fraction == 0:
        raise ValueError("train_fraction must be a number in (0, 1), got 0")
    name = f"text file {path}"
    chunks = read_text_chunks(path)
    if level == "char":
        codes = _char_codes(chunks)
    else:
        index: dict = {}
        codes = _word_ids(chunks, index, grow=True, name=name)
    cut = int(len(codes) * train_fraction)
    unit = "characters" if level == "char" else "tokens"
    share = f"{train_fraction:.0%}" if round(train_fraction, 2) == train_fraction else f"{train_fraction:g}"
    _check_length(codes[:cut], name, f"the training split (the first {share} of {len(codes):,} {unit})")
    _check_length(codes[cut:], name, f"the validation split (what follows the first {share} of {len(codes):,} {unit})")
    source = f"{path} ({train_fraction:g} / {1 - train_fraction:g} split)"
    if level == "char":
        return _char_corpus({"train": codes[:cut], "val": codes[cut:]}, {"train": name, "val": name}, source)
    # First-appearance ids: the training split's distinct words are exactly ids 0..k-1.
    k = int(codes[:cut].max()) + 1
    vocab = _word_vocabulary(list(index)[:k], name)
    remap = np.full(len(index), -1, np.int32)
    remap[:k] = np.arange(k, dtype=np.int32)
    for token in (EOS, UNK):  # a special first seen after the cut keeps its meaning
        if index.get(token, -1) >= k:
            remap[index[token]] = vocab.tokens.index(token)
    val = remap[codes[cut:]]
    unknown = val < 0
    val[unknown] = vocab.unk_id
    return TextCorpus(vocab, codes[:cut].copy(), val, None, {"val": int(np.count_nonzero(unknown))}, source)
