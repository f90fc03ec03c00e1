"""CoLA (the Corpus of Linguistic Acceptability): where its files are and the course split.

The course split: the 8,551 in-domain training sentences are split (seeded) into 7,000
train / 1,551 validation; the out-of-domain dev file is the held-out test set. The files
are read by `jaxseq.data.sentence_files.read_sentences` (raw, GLUE or tokenized format).
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxseq.data.locations import candidate_dirs, find_data_dir
from jaxseq.data.sentence_files import read_sentences
from jaxseq.data.sentences import SentenceSplits, split_train_val

COURSE_VAL_SIZE = 1551

# (train, test) file pairs looked for inside a CoLA folder, in this order.
LAYOUTS = (
    ("train.tsv", "dev.tsv"),
    ("cola_public/raw/in_domain_train.tsv", "cola_public/raw/out_of_domain_dev.tsv"),
    ("raw/in_domain_train.tsv", "raw/out_of_domain_dev.tsv"),
)


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
    """Where CoLA is looked for when no folder is given (`jaxseq.data.locations`):
    `$JAXSEQ_DATA/cola`, `~/.cache/jaxseq/cola`, then `../shared/data/cola`."""
    return candidate_dirs("cola")


def find_cola_dir(data_dir: str | os.PathLike | None = None, *, argument: str = "data_dir") -> Path:
    """The CoLA folder by the data-location rule of `jaxseq.data.locations`: `data_dir` if
    given, else the first of `cola_dir_candidates()` holding CoLA's files (`find_cola_files`).
    FileNotFoundError naming `argument` and each folder looked in."""
    return find_data_dir("cola", find_cola_files, data_dir, title="CoLA", argument=argument, download="cola")


def default_cola_dir() -> Path | None:
    """The first candidate folder that holds CoLA, or None."""
    try:
        return find_cola_dir()
    except FileNotFoundError:
        return None


def load_cola(
    data_dir: str | os.PathLike | None = None, *, val_size: int = COURSE_VAL_SIZE, seed: int = 0,
    format: str = "auto",
) -> SentenceSplits:
    """The course split of CoLA: seeded train/validation from the in-domain training file
    (7,000 / 1,551 for the 8,551 sentences), the out-of-domain dev file as test. `data_dir`:
    the CoLA folder; None looks where `find_cola_dir` does (`$JAXSEQ_DATA/cola`,
    `~/.cache/jaxseq/cola`, `../shared/data/cola`)."""
    train_file, test_file = find_cola_files(find_cola_dir(data_dir))
    train, val = split_train_val(read_sentences(train_file, format), val_size, seed)
    return SentenceSplits(train, val, read_sentences(test_file, format))
