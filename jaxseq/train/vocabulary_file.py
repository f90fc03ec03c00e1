"""A run's vocabulary file: written beside the checkpoints when a run starts, checked when it
resumes, read back with a checkpoint (the classifier's `Vocabulary`, the language model's
`TokenVocabulary`: any vocabulary with `save`, `load`, `to_json` and a length)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import jax

from jaxseq.train.checkpoint import read_metadata
from jaxseq.train.run_metadata import check_run_kind


def vocabulary_file_keeper(vocab: Any, file_name: str, kind: str) -> Callable[[Path, Path | None], None]:
    """The loop's `prepare_folder` for a run of `kind` with `vocab`: write it as `file_name`
    (process 0; before the first step, so a vocabulary that could not be read back stops the
    run before it trains), or, resuming, check that the run being resumed used the very same
    vocabulary."""

    def prepare(folder: Path, resume_from: Path | None) -> None:
        vocab_file = folder / file_name
        if resume_from is not None:
            check_run_kind(read_metadata(resume_from), resume_from, kind)  # before looking for the file
            if type(vocab).load(vocab_file).to_json() != vocab.to_json():
                raise ValueError(f"{vocab_file}: the run being resumed used a different vocabulary "
                                 "(other training text or settings); resume with the same data")
        elif jax.process_index() == 0:
            vocab.save(vocab_file)

    return prepare


def read_run_vocabulary(checkpoint: Path, file_name: str, vocabulary: Any, vocab_size: int) -> Any:
    """The vocabulary (`vocabulary.load`) of checkpoint folder `checkpoint`, from `file_name`
    in it or in its run folder; FileNotFoundError without one, ValueError unless it holds the
    model's `vocab_size` tokens."""
    for folder in (checkpoint, checkpoint.parent):
        if (folder / file_name).is_file():
            vocab = vocabulary.load(folder / file_name)
            break
    else:
        raise FileNotFoundError(f"no {file_name} in {checkpoint} or {checkpoint.parent}")
    if len(vocab) != vocab_size:
        raise ValueError(f"{file_name} beside {checkpoint} has {len(vocab)} tokens, the model expects {vocab_size}")
    return vocab
