"""Evaluation metrics: BLEU-1 for captions; accuracy, Matthews correlation and the
confusion matrix for binary classification.

All functions take plain Python/NumPy values and return Python floats or NumPy arrays; they
run on the host, after decoding, never inside `jit`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

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


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """loss (mean binary cross-entropy), accuracy, mcc and confusion matrix of logits (N,)
    thresholded at 0 (probability 0.5) against labels (N,) of 0/1."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    predictions = (logits >= 0).astype(np.int64)
    loss = float(np.mean(np.logaddexp(0.0, logits) - labels * logits))
    return {
        "loss": loss,
        "accuracy": accuracy(labels, predictions),
        "mcc": matthews_corrcoef(labels, predictions),
        "confusion": confusion_matrix(labels, predictions).tolist(),
    }
