"""Tiny Shakespeare (char-rnn's and nanoGPT's corpus): where its file is, and nanoGPT's split.

The file is never copied into the repository; it is looked for where CoLA is
(`jaxseq.data.cola`): `$JAXSEQ_DATA/tinyshakespeare/input.txt`, then
`../shared/data/tinyshakespeare/input.txt` from the working directory and from the
repository holding this package.
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxseq.data.text_corpus import TextCorpus, load_text_corpus

FILE_NAME = "input.txt"


def tiny_shakespeare_file() -> Path | None:
    """The first of $JAXSEQ_DATA/tinyshakespeare/input.txt and ../shared/data/tinyshakespeare/
    input.txt (from the working directory, then from the repository) that is a file, or None."""
    folders = [Path(os.environ["JAXSEQ_DATA"])] if os.environ.get("JAXSEQ_DATA") else []
    folders += [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[2].parent / "shared" / "data"]
    return next((folder / "tinyshakespeare" / FILE_NAME for folder in folders
                 if (folder / "tinyshakespeare" / FILE_NAME).is_file()), None)


def load_tiny_shakespeare(path: str | os.PathLike | None = None) -> TextCorpus:
    """nanoGPT's split of Tiny Shakespeare at character level: the first 90% of the
    characters train (1,003,854), the rest validation (111,540), V = 65 with nanoGPT's ids.

    path: the file (default: `tiny_shakespeare_file()`); FileNotFoundError saying where it
    was looked for when there is none.
    """
    if path is None:
        path = tiny_shakespeare_file()
        if path is None:
            raise FileNotFoundError("Tiny Shakespeare not found: looked for tinyshakespeare/input.txt in "
                                    "$JAXSEQ_DATA and ../shared/data")
    return load_text_corpus(path, level="char", train_fraction=0.9)
