"""Labelled sentences for binary classification, and the seeded train/validation split."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LabelledSentences(NamedTuple):
    """N tokenized sentences and their 0/1 labels.

    sentences: list of N token lists (lowercased words, punctuation split off).
    labels: (N,) int32 of 0/1.
    """

    sentences: list[list[str]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.sentences)

    def subset(self, indices: np.ndarray) -> "LabelledSentences":
        return LabelledSentences([self.sentences[i] for i in indices], self.labels[np.asarray(indices)])


class ClassificationData(NamedTuple):
    """Encoded examples: ids (N, T) int32 token ids, `[CLS]` first and `[PAD]` (0) after each
    sentence; labels (N,) int32 of 0/1."""

    ids: np.ndarray
    labels: np.ndarray


class SentenceSplits(NamedTuple):
    """Training, validation (model selection) and held-out test sentences."""

    train: LabelledSentences
    val: LabelledSentences
    test: LabelledSentences | None


def split_train_val(data: LabelledSentences, val_size: int, seed: int) -> tuple[LabelledSentences, LabelledSentences]:
    """Seeded random split into (train, val) with `val_size` validation sentences.

    The permutation is `np.random.default_rng(seed).permutation(N)`; its first `val_size`
    entries are validation, the rest training (in permuted order).
    """
    if not 0 < val_size < len(data):
        raise ValueError(f"val_size must be in [1, {len(data) - 1}] for {len(data)} sentences, got {val_size}")
    order = np.random.default_rng(seed).permutation(len(data))
    return data.subset(order[val_size:]), data.subset(order[:val_size])
