"""Where a language model's text comes from, as plain JSON-able data a checkpoint can hold,
so `jaxseq lm eval --split` reads the very text a run was trained on.

    spec = text_source_spec(text="input.txt", level="char")      # one file, split 90/10
    spec = text_source_spec(train="a.txt", val="b.txt", test="c.txt", level="word")
    spec = text_source_spec(data="builtin", level="char")         # the built-in text
    spec = text_source_spec(data="shakespeare")                   # Tiny Shakespeare, nanoGPT's split
    corpus = load_text_source(spec)

Files are recorded by their absolute paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jaxseq.data.builtin_text import load_builtin_text
from jaxseq.data.json_fields import check_fields, choice, fields, nullable, number, string
from jaxseq.data.text_corpus import TextCorpus, load_text_corpus, load_text_files
from jaxseq.data.locations import find_data_dir
from jaxseq.data.tiny_shakespeare import FILE_NAME, NAME, TITLE
from jaxseq.data.token_vocabulary import check_level

DATA_SETS = ("builtin", "shakespeare")
SPEC = fields(required={"kind": choice("builtin", "file", "files"), "level": choice("char", "word")},
              optional={"path": string(), "train_fraction": number(0, 1, above=True, below=True),
                        "train": string(), "val": string(), "test": nullable(string())})


def text_source_spec(*, text: str | os.PathLike | None = None, train: str | os.PathLike | None = None,
                     val: str | os.PathLike | None = None, test: str | os.PathLike | None = None,
                     data: str | None = None, level: str = "char", train_fraction: float = 0.9) -> dict[str, Any]:
    """The spec of one of: `text` (one file split in order), `train` + `val` [+ `test`] files,
    or `data` ("builtin"; "shakespeare": found as `jaxseq.data.tiny_shakespeare` says, at
    character level). ValueError naming the options when none or several are given."""
    check_level(level)
    given = [name for name, value in (("text", text), ("train/val", train or val), ("data", data)) if value]
    if len(given) != 1:
        raise ValueError("give exactly one text source: --text FILE, --train FILE --val FILE [--test FILE], or "
                         f"--data {'|'.join(DATA_SETS)}" + (f" (got {' and '.join(given)})" if given else ""))
    if data is not None:
        if data not in DATA_SETS:
            raise ValueError(f"data must be one of {DATA_SETS}, got {data!r}")
        if data == "builtin":
            return {"kind": "builtin", "level": level}
        path = find_data_dir(NAME, [FILE_NAME], title=TITLE, argument="--text FILE") / FILE_NAME
        if level != "char":
            raise ValueError("--data shakespeare is nanoGPT's character-level split; for words pass --text FILE "
                             "--level word")
        return {"kind": "file", "path": str(path.resolve()), "level": "char", "train_fraction": 0.9}
    if text is not None:
        return {"kind": "file", "path": str(Path(text).resolve()), "level": level, "train_fraction": train_fraction}
    if train is None or val is None:
        raise ValueError("--train and --val go together (and --test with them)")
    return {"kind": "files", "train": str(Path(train).resolve()), "val": str(Path(val).resolve()),
            "test": None if test is None else str(Path(test).resolve()), "level": level}


def load_text_source(spec: dict[str, Any], source: str = "text source") -> TextCorpus:
    """The corpus a `text_source_spec` describes (`source`: where the spec came from, named
    in the error when it does not check out)."""
    check_fields(spec, SPEC, source)
    level = spec["level"]
    if spec["kind"] == "builtin":
        return load_builtin_text(level=level)
    if spec["kind"] == "file":
        if "path" not in spec:
            raise ValueError(f"{source}: path is missing")
        return load_text_corpus(spec["path"], level=level, train_fraction=spec.get("train_fraction", 0.9))
    if "train" not in spec or "val" not in spec:
        raise ValueError(f"{source}: train and val are required")
    return load_text_files(spec["train"], spec["val"], spec.get("test"), level=level)
