"""A trained sentence classifier: rebuilt from its checkpoint and the `vocab.json` beside it,
its probabilities for new sentences, its scores on a labelled set.

    model, params, vocab, meta = load_sentence_classifier("checkpoints/cola")
    probabilities = predict_probabilities(model, params, vocab, [tokenize("The cat sat.")],
                                          use_pad_mask=uses_pad_mask(meta))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from jaxseq.data.vocabulary import Vocabulary
from jaxseq.models.classifiers import SentenceClassifier, classifier_from_config, make_logits_fn, predict_logits
from jaxseq.train.checkpoint import load_checkpoint, load_trained_run, notice_on_stderr
from jaxseq.train.classifier import (  # noqa: F401  (evaluate_classifier: re-exported)
    VOCAB_FILE,
    ClassifierTrainConfig,
    classifier_checkpoint_template,
    evaluate_classifier,
    recorded_steps_per_epoch,
)
from jaxseq.train.run_metadata import read_run_metadata
from jaxseq.train.vocabulary_file import read_run_vocabulary

def _load_one(checkpoint: Path):
    """(model, params, vocab, metadata) of one checkpoint folder; ValueError naming the file
    and the entry for anything that does not check out."""
    metadata = read_run_metadata(checkpoint, "classifier")
    try:
        model = classifier_from_config(metadata["model"])
    except ValueError as error:  # sizes that do not fit together, e.g. hidden_dim and num_heads
        raise ValueError(f"checkpoint {checkpoint / 'meta.json'}: model: {error}") from None
    vocab = read_run_vocabulary(checkpoint, VOCAB_FILE, Vocabulary, model.vocab_size)
    try:  # the file holds the whole training state: read it against all of it
        config = ClassifierTrainConfig(**metadata.get("train_config", {}))
        template = classifier_checkpoint_template(model, config, recorded_steps_per_epoch(metadata))
    except (TypeError, ValueError, OverflowError) as error:  # an unknown or out-of-range training setting
        raise ValueError(f"checkpoint {checkpoint / 'meta.json'}: train_config: {error}") from None
    state, metadata = load_checkpoint(checkpoint, template)
    return model, state["params"], vocab, metadata


def load_sentence_classifier(path: str | os.PathLike, *, log: Callable[[str], None] | None = notice_on_stderr):
    """(model, params, vocab, metadata) of a checkpoint folder or a training run's folder.

    A run folder gives its best checkpoint (by validation MCC; see `jaxseq.inference`); if
    that one cannot be used (a corrupt or invalid file), the next best, saying on `log`
    (default: stderr) which was skipped and why. The vocabulary is read from `vocab.json`
    in the checkpoint folder or its parent. Everything read is checked first
    (`jaxseq.train.run_metadata`, dtypes, shapes and finite parameters): ValueError naming
    the file and entry; RunKindError for a captioner's checkpoint.
    """
    return load_trained_run(path, _load_one, "`jaxseq cola train`", log=log)


def uses_pad_mask(metadata: dict[str, Any]) -> bool:
    """Whether the run trained with the `[PAD]` mask (its train_config; True when absent)."""
    return bool(metadata.get("train_config", {}).get("use_pad_mask", True))


def predict_probabilities(model: SentenceClassifier, params, vocab: Vocabulary,
                          sentences: Sequence[Sequence[str]], *, use_pad_mask: bool = True) -> np.ndarray:
    """Probability of class 1 (acceptable) for N tokenized sentences. Returns: (N,) float."""
    ids = vocab.encode(sentences, model.max_length).ids
    logits = predict_logits(make_logits_fn(model, use_pad_mask), params, ids)
    return 1.0 / (1.0 + np.exp(-logits))

