"""Evaluation metrics: BLEU-1 for captions; accuracy, Matthews correlation and the
confusion matrix for binary classification.

All functions take plain Python/NumPy values and return Python floats or NumPy arrays; they
run on the host, after decoding, never inside `jit`.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

SPECIAL_TOKENS_IGNORED_BY_BLEU = ("<START>", "<END>", "<UNK>")


def _bleu_tokens(caption: str) -> list[str]:
    # The course drops every whitespace token that *contains* a special marker.
    return [
        token
        for token in caption.split(" ")
        if token and not any(marker in token for marker in SPECIAL_TOKENS_IGNORED_BY_BLEU)
    ]


def bleu1(reference: str, hypothesis: str) -> float:
    """Unigram BLEU of one hypothesis caption against one reference, as the course scored it.

    Both captions are split on single spaces; tokens containing `<START>`, `<END>` or
    `<UNK>` are removed; then `nltk.translate.bleu_score.sentence_bleu([ref], hyp,
    weights=[1])` (clipped unigram precision times the brevity penalty).

    Inputs: reference, hypothesis: str (space-separated words).
    Returns: float in [0, 1].
    """
    from nltk.translate.bleu_score import sentence_bleu

    return float(sentence_bleu([_bleu_tokens(reference)], _bleu_tokens(hypothesis), weights=[1]))


def _binary_labels(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of 0/1 labels, got shape {array.shape}")
    if array.size and not np.isin(array, (0, 1, False, True)).all():
        bad = array[~np.isin(array, (0, 1, False, True))][0]
        raise ValueError(f"{name} must hold only 0/1 labels, found {bad.item()!r}")
    return array.astype(np.int64)


def confusion_matrix(y_true: Iterable[int], y_pred: Iterable[int]) -> np.ndarray:
    """2x2 confusion matrix of binary labels: `[[tn, fp], [fn, tp]]` (rows = truth).

    Inputs: y_true, y_pred: (N,) of 0/1.
    Returns: (2, 2) int64.
    """
    truth = _binary_labels(y_true, "y_true")
    pred = _binary_labels(y_pred, "y_pred")
    if truth.shape != pred.shape:
        raise ValueError(f"y_true has shape {truth.shape} but y_pred has {pred.shape}")
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (truth, pred), 1)
    return matrix


def accuracy(y_true: Iterable[int], y_pred: Iterable[int]) -> float:
    """Fraction of positions where the prediction equals the truth. Inputs: (N,) of 0/1."""
    matrix = confusion_matrix(y_true, y_pred)
    total = matrix.sum()
    if total == 0:
        raise ValueError("accuracy of an empty set of labels is undefined")
    return float(np.trace(matrix) / total)


def matthews_corrcoef(y_true: Iterable[int], y_pred: Iterable[int]) -> float:
    """Matthews correlation coefficient of binary predictions.

    MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)), in [-1, 1]; 0 when any
    factor of the denominator is 0 (a constant predictor or a single-class truth), the
    convention of scikit-learn and of GLUE's CoLA scoring.

    Inputs: y_true, y_pred: (N,) of 0/1.

    >>> round(matthews_corrcoef([0, 1, 1, 0], [0, 1, 0, 0]), 6)  # (1*2 - 0*1) / sqrt(1*2*2*3)
    0.57735
    >>> matthews_corrcoef([1, 1, 0], [1, 1, 1])  # a constant predictor
    0.0
    """
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred).astype(float)
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    if denominator == 0.0:
        return 0.0
    return float((tp * tn - fp * fn) / denominator)


DECODERS = ("greedy", "beam")


def generate_captions(model, variables, data, split: str = "val", rows=None, decode: str = "greedy", *,
                      beam_size: int = 5, max_length: int | None = None) -> tuple[list[str], list[str]]:
    """Decode captions for chosen rows of a split; returns (references, hypotheses) as text.

    Inputs: a captioning model and its variables; data in the captioning data layout
      (`jaxseq.data.coco`); rows: caption indices of the split (default: all); decode
      "greedy" (`jaxseq.models.sample`) or "beam" (`jaxseq.models.beam_search`);
      max_length: words to generate at most (default: the data's T, `<END>` included).
    Returns: two lists of strings in the course's decoded form (`<START> ... <END>` for
      the references, `... <END>` for the hypotheses).
    """
    from jaxseq.data.coco import decode_captions
    from jaxseq.models.decoding import beam_search, sample

    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if decode not in DECODERS:
        raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
    captions = np.asarray(data[f"{split}_captions"])
    rows = np.arange(captions.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise ValueError(f"no captions to decode in the {split} split")
    features = np.asarray(data[f"{split}_features"])[np.asarray(data[f"{split}_image_idxs"])[rows]]
    length = max_length if max_length is not None else captions.shape[1] - 1
    if decode == "greedy":
        generated = sample(model, variables, features, max_length=length)
    else:
        generated, _ = beam_search(model, variables, features, beam_size=beam_size, max_length=length)
    idx_to_word = data["idx_to_word"]
    return decode_captions(captions[rows], idx_to_word), decode_captions(np.asarray(generated), idx_to_word)


def evaluate_captions(model, variables, data, split: str = "val", num_samples: int = 1000,
                      decode: str = "greedy", *, beam_size: int = 5, max_length: int | None = None,
                      seed: int = 0) -> float:
    """Mean BLEU-1 of generated captions against the ground truth, as the course scored it.

    Uses `num_samples` captions of the split: all of them when the split is that small,
    else a random subset drawn with `seed` (without replacement; the course drew with
    replacement). Each image is decoded (`decode` "greedy" or "beam" with `beam_size`) and
    scored with `bleu1` against the caption it was drawn with.

    Returns: float in [0, 1].
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    size = np.asarray(data[f"{split}_captions"]).shape[0] if f"{split}_captions" in data else 0
    if size == 0:
        raise ValueError(f"the {split} split has no captions to evaluate")
    rows = None if num_samples >= size else np.sort(
        np.random.default_rng(seed).choice(size, num_samples, replace=False))
    references, hypotheses = generate_captions(model, variables, data, split, rows, decode,
                                               beam_size=beam_size, max_length=max_length)
    return float(np.mean([bleu1(ref, hyp) for ref, hyp in zip(references, hypotheses)]))
