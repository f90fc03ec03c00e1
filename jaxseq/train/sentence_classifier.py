"""Sentence classification end to end: vocabulary, encoding, training, test scores, and
loading a trained classifier back (checkpoint + `vocab.json` beside it) for prediction.

Used by `jaxseq cola train`, `jaxseq classify train`, `jaxseq cola predict`, the demo and
`benchmarks/cola_quality.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np

from jaxseq.data.sentences import SentenceSplits
from jaxseq.data.vocabulary import Vocabulary
from jaxseq.models.classifiers import SentenceClassifier, build_classifier, classifier_from_config
from jaxseq.cola_recipes import COLA_RECIPE  # noqa: F401  (re-exported: the recipe beside its trainer)
from jaxseq.train.checkpoint import (
    load_checkpoint,
    load_run_checkpoint,
    notice_on_stderr,
    prepare_checkpoint_dir,
    read_metadata,
)
from jaxseq.train.classifier import (
    ClassifierResult,
    ClassifierTrainConfig,
    evaluate_classifier,
    make_logits_fn,
    predict_logits,
    train_classifier,
)
from jaxseq.train.run_metadata import check_run_kind, read_run_metadata

VOCAB_FILE = "vocab.json"


class SentenceClassifierRun(NamedTuple):
    """model, best params and vocabulary; the trainer's result; scores of the best params on
    validation and (when the splits have one) test: dicts of loss, accuracy, mcc, confusion;
    num_truncated: sentences cut to max_length per split."""

    model: SentenceClassifier
    params: Any
    vocab: Vocabulary
    result: ClassifierResult
    val_scores: dict
    test_scores: dict | None
    num_truncated: dict[str, int]


def fit_sentence_classifier(
    splits: SentenceSplits,
    *,
    min_count: int = 5,
    max_length: int = 43,
    architecture: str = "transformer",
    model_kwargs: dict[str, Any] | None = None,
    config: ClassifierTrainConfig = ClassifierTrainConfig(),
    checkpoint_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: int | None = None,
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    devices: int | None = None,
) -> SentenceClassifierRun:
    """Build the vocabulary on `splits.train` (words seen >= `min_count` times), encode every
    split to `max_length` tokens (`[CLS]` included), train the classifier `architecture`
    ("transformer", "lstm" or "gru", see `jaxseq.models.classifiers`; `model_kwargs`: its
    fields other than vocab_size, max_length and cell) and score the best
    parameters on validation and test. With `checkpoint_dir`, the vocabulary is written
    there as `vocab.json` and the checkpoints beside it; `resume` continues the run in it
    (the vocabulary built now must equal the saved one), `overwrite` replaces it;
    `checkpoint_every` (steps) adds checkpoints inside epochs.
    `devices`: data parallelism (see `train_classifier`)."""
    say = log or (lambda line: None)
    vocab = Vocabulary.build(splits.train.sentences, min_count)
    encoded, truncated = {}, {}
    for name in ("train", "val", "test"):
        data = getattr(splits, name)
        if data is not None:
            encoded[name], truncated[name] = vocab.encode_labelled(data, max_length)
    say(
        f"vocabulary: {len(vocab)} tokens (words seen >= {min_count} times in training); "
        + ", ".join(f"{name} {len(data.ids)} sentences ({truncated[name]} truncated to {max_length})"
                    for name, data in encoded.items())
    )
    model = build_classifier(architecture, len(vocab), max_length, **(model_kwargs or {}))
    if checkpoint_dir is not None:
        vocab_file = Path(checkpoint_dir) / VOCAB_FILE
        resume_from = prepare_checkpoint_dir(checkpoint_dir, overwrite=overwrite, resume=resume)
        if resume_from is not None:
            check_run_kind(read_metadata(resume_from), resume_from, "classifier")  # before looking for vocab.json
            if Vocabulary.load(vocab_file).to_json() != vocab.to_json():
                raise ValueError(f"{vocab_file}: the run being resumed used a different vocabulary "
                                 "(other training sentences or min_count); resume with the same data")
        elif jax.process_index() == 0:
            vocab.save(vocab_file)
    result = train_classifier(
        model, encoded["train"], encoded["val"], config, checkpoint_dir=checkpoint_dir,
        metadata={**(metadata or {}), "min_count": min_count}, resume=resume,
        checkpoint_every=checkpoint_every, progress=progress, log=log, devices=devices,
    )
    scores = lambda name: evaluate_classifier(model, result.params, encoded[name], name=name,
                                              use_pad_mask=config.use_pad_mask)
    return SentenceClassifierRun(model, result.params, vocab, result, scores("val"),
                                 scores("test") if "test" in encoded else None, truncated)


def _load_classifier_checkpoint(checkpoint: Path):
    """(model, params, vocab, metadata) of one checkpoint folder; ValueError naming the file
    and the entry for anything that does not check out."""
    metadata = read_run_metadata(checkpoint, "classifier")
    try:
        model = classifier_from_config(metadata["model"])
    except ValueError as error:  # sizes that do not fit together, e.g. hidden_dim and num_heads
        raise ValueError(f"checkpoint {checkpoint / 'meta.json'}: model: {error}") from None
    for folder in (checkpoint, checkpoint.parent):
        if (folder / VOCAB_FILE).is_file():
            vocab = Vocabulary.load(folder / VOCAB_FILE)
            break
    else:
        raise FileNotFoundError(f"no {VOCAB_FILE} in {checkpoint} or {checkpoint.parent}")
    if len(vocab) != model.vocab_size:
        raise ValueError(f"{VOCAB_FILE} beside {checkpoint} has {len(vocab)} tokens, "
                         f"the model expects {model.vocab_size}")
    template = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 2), np.int32))  # shapes only
    state, metadata = load_checkpoint(checkpoint, {"params": template["params"]})
    return model, state["params"], vocab, metadata


def load_sentence_classifier(path: str | os.PathLike, *, log: Callable[[str], None] | None = notice_on_stderr):
    """(model, params, vocab, metadata) of a checkpoint folder or a training run's folder.

    A run folder gives its best checkpoint (by validation MCC); if that one cannot be used
    (a corrupt or invalid file), the next best, saying on `log` (default: stderr) which was
    skipped and why. The vocabulary is read from `vocab.json` in the checkpoint folder or
    its parent. Everything read is checked first (`jaxseq.train.run_metadata`, dtypes,
    shapes and finite parameters): ValueError naming the file and entry; RunKindError for
    a captioner's checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found")
    loaded = load_run_checkpoint(path, _load_classifier_checkpoint, prefer="best", log=log)
    if loaded is None:
        raise FileNotFoundError(f"no checkpoint in {path} (expected ckpt-* folders from `jaxseq cola train`)")
    return loaded


def predict_probabilities(model: SentenceClassifier, params, vocab: Vocabulary,
                          sentences: Sequence[Sequence[str]], *, use_pad_mask: bool = True) -> np.ndarray:
    """Probability of class 1 (acceptable) for N tokenized sentences. Returns: (N,) float."""
    ids = vocab.encode(sentences, model.max_length).ids
    logits = predict_logits(make_logits_fn(model, use_pad_mask), params, ids)
    return 1.0 / (1.0 + np.exp(-logits))
