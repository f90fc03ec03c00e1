"""Tiny Shakespeare (char-rnn's and nanoGPT's corpus): where its file is, and nanoGPT's split.

The file is never copied into the repository; its folder `tinyshakespeare/` (holding
`input.txt`) is found by the data-location rule every loader follows
(`jaxseq.data.locations`): the folder given, else `$JAXSEQ_DATA`, `~/.cache/jaxseq`, then
`../shared/data`.
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxseq.data.locations import find_data_dir
from jaxseq.data.text_corpus import TextCorpus, load_text_corpus

NAME, TITLE, FILE_NAME = "tinyshakespeare", "Tiny Shakespeare", "input.txt"


def tiny_shakespeare_file(data_dir: str | os.PathLike | None = None) -> Path | None:
    """`input.txt` in Tiny Shakespeare's folder (`data_dir`, or the first found by the
    data-location rule), or None where there is none."""
    try:
        return find_data_dir(NAME, [FILE_NAME], data_dir, title=TITLE) / FILE_NAME
    except FileNotFoundError:
        return None


def load_tiny_shakespeare(path: str | os.PathLike | None = None) -> TextCorpus:
    """nanoGPT's split of Tiny Shakespeare at character level: the first 90% of the
    characters train (1,003,854), the rest validation (111,540), V = 65 with nanoGPT's ids.

    path: the file (default: found by the data-location rule); FileNotFoundError (one line:
    every folder looked in and what it lacks) when there is none.
    """
    if path is None:
        path = find_data_dir(NAME, [FILE_NAME], title=TITLE, argument="path") / FILE_NAME
    return load_text_corpus(path, level="char", train_fraction=0.9)
