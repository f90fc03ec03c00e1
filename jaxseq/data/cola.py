"""CoLA (Corpus of Linguistic Acceptability) and any `sentence<TAB>label` file.

Three file formats (tab-separated, UTF-8):

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

Raw text ("raw", "glue") is tokenized by `tokenize`: lowercase, nltk's
`TreebankWordTokenizer` (rules only, no nltk data download), and the `.` tokens dropped
(the tokenized CoLA files carry no periods), so raw and pre-tokenized CoLA give the same
tokens. Tokenized text is split on whitespace.

The course split: the 8,551 in-domain training sentences are split (seeded) into 7,000
train / 1,551 validation; the out-of-domain dev file is the held-out test set.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import numpy as np

from jaxseq.data.sentences import LabelledSentences, SentenceSplits, split_train_val

FORMATS = ("raw", "glue", "tokenized")
COURSE_VAL_SIZE = 1551
DROPPED_TOKENS = frozenset({"."})
MAX_LINE_BYTES = 65_536
MAX_SENTENCE_CHARS = 5_000

# (train, test) file pairs looked for inside a CoLA folder, in this order.
LAYOUTS = (
    ("train.tsv", "dev.tsv"),
    ("cola_public/raw/in_domain_train.tsv", "cola_public/raw/out_of_domain_dev.tsv"),
    ("raw/in_domain_train.tsv", "raw/out_of_domain_dev.tsv"),
)

_tokenizer = None


def tokenize(text: str) -> list[str]:
    """Lowercase, Treebank-tokenize and drop `.` tokens: "Won't it?" -> ["wo", "n't", "it", "?"]."""
    global _tokenizer
    if _tokenizer is None:
        from nltk.tokenize import TreebankWordTokenizer

        _tokenizer = TreebankWordTokenizer()
    return [token for token in _tokenizer.tokenize(text.lower()) if token not in DROPPED_TOKENS]


def _lines(path: Path):
    """(line number, text) of the non-blank lines of `path`, with errors naming file and line.

    A UTF-8 byte order mark opening the file is dropped; a line of more than MAX_LINE_BYTES
    bytes (its line break not counted) is refused, having read no more than that of it.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
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


def _sentence_tokens(text: str, format: str, path: Path, number: int) -> list[str]:
    """The tokens of one sentence, its length bounded before the tokenizer sees it."""
    if len(text) > MAX_SENTENCE_CHARS:
        raise ValueError(f"{path}:{number}: sentence has {len(text):,} characters, more than the "
                         f"limit of {MAX_SENTENCE_CHARS:,}")
    if format == "tokenized":
        return text.lower().split()
    try:
        return tokenize(text)
    except TimeoutError as error:  # nltk runs its regular expressions under a time limit
        raise ValueError(f"{path}:{number}: the tokenizer gave up on this sentence ({error})") from None


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
            expected, sentence_at, label_at = width, columns["sentence"], columns["label"]
        if len(fields) != expected:
            raise ValueError(
                f"{path}:{number}: expected {expected} tab-separated fields ({format} format), got {len(fields)}"
            )
        label = _label(fields[label_at], path, number)
        tokens = _sentence_tokens(fields[sentence_at], format, path, number)
        if not tokens:
            raise ValueError(f"{path}:{number}: empty sentence")
        sentences.append(tokens)
        labels.append(label)
    if not sentences:
        raise ValueError(f"{path}: no examples")
    return LabelledSentences(sentences, np.asarray(labels, dtype=np.int32))


def find_cola_files(data_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(training file, out-of-domain dev file) inside a CoLA folder.

    Accepts `<dir>/train.tsv` + `<dir>/dev.tsv` (tokenized or GLUE) and the public
    download's `<dir>/cola_public/raw/in_domain_train.tsv` + `out_of_domain_dev.tsv`.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"CoLA folder {data_dir} not found")
    for train_name, test_name in LAYOUTS:
        train, test = data_dir / train_name, data_dir / test_name
        if train.is_file():
            if not test.is_file():
                raise FileNotFoundError(f"CoLA folder {data_dir}: found {train_name} but not {test_name}")
            return train, test
    tried = ", ".join(train for train, _ in LAYOUTS)
    raise FileNotFoundError(f"no CoLA training file in {data_dir}: looked for {tried}")


def cola_dir_candidates() -> list[Path]:
    """Where CoLA is looked for: $JAXSEQ_DATA/cola, then ../shared/data/cola from the working
    directory and from the repository holding this package."""
    candidates = []
    if os.environ.get("JAXSEQ_DATA"):
        candidates.append(Path(os.environ["JAXSEQ_DATA"]) / "cola")
    candidates.append(Path.cwd().parent / "shared" / "data" / "cola")
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cola")
    return candidates


def default_cola_dir() -> Path | None:
    """The first candidate folder that holds CoLA, or None."""
    for candidate in cola_dir_candidates():
        try:
            find_cola_files(candidate)
        except FileNotFoundError:
            continue
        return candidate
    return None


def load_cola(
    data_dir: str | os.PathLike, *, val_size: int = COURSE_VAL_SIZE, seed: int = 0, format: str = "auto"
) -> SentenceSplits:
    """The course split of CoLA: seeded train/validation from the in-domain training file
    (7,000 / 1,551 for the 8,551 sentences), the out-of-domain dev file as test."""
    train_file, test_file = find_cola_files(data_dir)
    train, val = split_train_val(read_sentences(train_file, format), val_size, seed)
    return SentenceSplits(train, val, read_sentences(test_file, format))
