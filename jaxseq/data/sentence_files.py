"""Files of labelled sentences: `sentence<TAB>label` data in three formats (tab-separated, UTF-8).

- "raw": CoLA's public files (`cola_public/raw/*.tsv`, also GLUE's CoLA `train.tsv` /
  `dev.tsv`): `source<TAB>label<TAB>original-mark<TAB>sentence`, no header.
- "glue": a header line naming (at least) a `sentence` and a `label` column, then rows
  (GLUE's SST-2 layout, exports of the GLUE CoLA data with a header).
- "tokenized": `sentence<TAB>label`, no header, the sentence already lowercased and
  tokenized with spaces (`../shared/data/cola/`).

A UTF-8 byte order mark at the start of a file (Excel and Notepad write one) is dropped. A
line longer than `MAX_LINE_BYTES` (64 KiB) is refused before it is read whole, and a
sentence longer than `MAX_SENTENCE_CHARS` (5,000 characters; CoLA's longest has a few
hundred) before it is tokenized: both are errors naming file and line.

Raw text ("raw", "glue") is tokenized by `jaxseq.data.tokenizer.tokenize`; tokenized text
is split on whitespace.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import numpy as np

from jaxseq.data.archive import file_kind
from jaxseq.data.sentences import LabelledSentences
from jaxseq.data.tokenizer import tokenize

FORMATS = ("raw", "glue", "tokenized")
MAX_LINE_BYTES = 65_536
MAX_SENTENCE_CHARS = 5_000


def _lines(path: Path):
    """(line number, text) of the non-blank lines of `path`, with errors naming file and line.

    A UTF-8 byte order mark opening the file is dropped; a line of more than MAX_LINE_BYTES
    bytes (its line break not counted) is refused, having read no more than that of it. A
    directory or a named pipe (which would block the read) is a ValueError, not "not found".
    """
    problem, _ = file_kind(path)
    if problem == "missing":
        raise FileNotFoundError(f"{path}: file not found")
    if problem is not None:
        raise ValueError(f"{path}: is {problem}, expected a file of labelled sentences")
    with open(path, "rb") as handle:
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise ValueError(f"{path}:{number}: line is longer than {MAX_LINE_BYTES:,} bytes; "
                                 f"sentences are limited to {MAX_SENTENCE_CHARS:,} characters")
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not UTF-8 text ({error.reason})") from None
            if line.strip():
                yield number, line


def _header_columns(fields: list[str]) -> dict[str, int] | None:
    names = [field.strip().lower() for field in fields]
    if "sentence" in names and "label" in names:
        return {"sentence": names.index("sentence"), "label": names.index("label")}
    return None


def detect_format(path: str | os.PathLike) -> str:
    """"glue" if the first line is a header naming `sentence` and `label`, else "raw" for 4
    fields or "tokenized" for 2; ValueError naming the file otherwise."""
    path = Path(path)
    for number, line in _lines(path):
        fields = line.split("\t")
        if _header_columns(fields) is not None:
            return "glue"
        if len(fields) == 4:
            return "raw"
        if len(fields) == 2:
            return "tokenized"
        raise ValueError(
            f"{path}:{number}: cannot detect the format from {len(fields)} tab-separated fields; "
            "expected 4 (raw CoLA: source, label, mark, sentence), 2 (tokenized: sentence, label) "
            "or a header line naming 'sentence' and 'label'"
        )
    raise ValueError(f"{path}: no examples (the file is empty)")


def _label(value: str, path: Path, number: int) -> int:
    value = value.strip()
    if value not in ("0", "1"):
        raise ValueError(f"{path}:{number}: label must be 0 or 1, got {value!r}")
    return int(value)


def sentence_tokens(text: str, where: str, format: str = "raw") -> list[str]:
    """The tokens of one sentence (raw text, or "tokenized" text split on spaces), by the
    rules the files' sentences follow: at most MAX_SENTENCE_CHARS characters (checked before
    the tokenizer sees it) and at least one token. ValueError "<where>: ..." otherwise
    (`where`: "FILE:LINE", or the argument a sentence came from)."""
    if len(text) > MAX_SENTENCE_CHARS:
        raise ValueError(f"{where}: sentence has {len(text):,} characters, more than the "
                         f"limit of {MAX_SENTENCE_CHARS:,}")
    if format == "tokenized":
        tokens = text.lower().split()
    else:
        try:
            tokens = tokenize(text)
        except TimeoutError as error:  # nltk runs its regular expressions under a time limit
            raise ValueError(f"{where}: the tokenizer gave up on this sentence ({error})") from None
    if not tokens:
        raise ValueError(f"{where}: empty sentence")
    return tokens


def read_sentences(path: str | os.PathLike, format: str = "auto") -> LabelledSentences:
    """Read one file of labelled sentences.

    Inputs: path; format: "auto" (detect), "raw", "glue" or "tokenized".
    Returns: LabelledSentences (N token lists, labels (N,) int32).
    Raises ValueError "<file>:<line>: ..." for a malformed line (wrong number of fields,
    a label other than 0/1, an empty sentence, a line over MAX_LINE_BYTES or a sentence
    over MAX_SENTENCE_CHARS) and for a file with no examples.
    """
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")

    sentences, labels = [], []
    columns = None
    for number, line in _lines(path):
        fields = line.split("\t")
        if format == "glue" and columns is None:
            columns = _header_columns(fields)
            if columns is None:
                raise ValueError(f"{path}:{number}: expected a header line naming 'sentence' and 'label' columns")
            width = len(fields)
            continue
        if format == "raw":
            expected, sentence_at, label_at = 4, 3, 1
        elif format == "tokenized":
            expected, sentence_at, label_at = 2, 0, 1
        else:
            assert columns is not None  # glue: the header line set it (or raised) above
            expected, sentence_at, label_at = width, columns["sentence"], columns["label"]
        if len(fields) != expected:
            raise ValueError(
                f"{path}:{number}: expected {expected} tab-separated fields ({format} format), got {len(fields)}"
            )
        label = _label(fields[label_at], path, number)
        tokens = sentence_tokens(fields[sentence_at], f"{path}:{number}", format)
        sentences.append(tokens)
        labels.append(label)
    if not sentences:
        raise ValueError(f"{path}: no examples")
    return LabelledSentences(sentences, np.asarray(labels, dtype=np.int32))
