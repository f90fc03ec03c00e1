"""The sentence classifiers the trainer can train, by name, their checkpoint configs, and
their logits over a whole data set in fixed-size batches.

"transformer" is `ClassificationTransformer` (its config has no "architecture" entry, so
checkpoints written before the recurrent models load as transformers); "lstm" and "gru"
are `RecurrentClassifier` with that cell (config["architecture"] names it).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from jaxseq.data.vocabulary import PAD_ID
from jaxseq.models import recurrent_classifier, transformer
from jaxseq.models.recurrent_classifier import RecurrentClassifier
from jaxseq.models.transformer import ClassificationTransformer

ARCHITECTURES = ("transformer", "lstm", "gru")
"""The sentence classifiers `build_classifier` makes, by the name a run's config records."""
SentenceClassifier = ClassificationTransformer | RecurrentClassifier


def build_classifier(architecture: str, vocab_size: int, max_length: int, **fields: Any) -> SentenceClassifier:
    """The classifier `architecture` with its `fields` (the model's own, e.g. hidden_dim)."""
    if architecture == "transformer":
        return ClassificationTransformer(vocab_size, max_length=max_length, **fields)
    if architecture in recurrent_classifier.CELLS:
        return RecurrentClassifier(vocab_size, cell=architecture, max_length=max_length, **fields)
    raise ValueError(f"model must be one of {ARCHITECTURES}, got {architecture!r}")


def classifier_config(model: SentenceClassifier) -> dict[str, Any]:
    """The model's JSON-able config, as checkpoints record it."""
    if isinstance(model, RecurrentClassifier):
        return recurrent_classifier.model_config(model)
    return transformer.model_config(model)


def classifier_from_config(config: dict[str, Any]) -> SentenceClassifier:
    """Rebuild a classifier from `classifier_config` output (no "architecture": a transformer)."""
    config = dict(config)
    architecture = config.get("architecture", "transformer")
    if architecture == "transformer":
        config.pop("architecture", None)
        return transformer.model_from_config(config)
    if architecture not in recurrent_classifier.CELLS:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    return recurrent_classifier.model_from_config(config)


def pad_mask(ids: jax.Array, use_pad_mask: bool) -> jax.Array | None:
    """(B, T) True where ids are not `[PAD]`, or None (the course's unmasked transformer)."""
    return ids != PAD_ID if use_pad_mask else None


def make_logits_fn(model: SentenceClassifier, use_pad_mask: bool = True) -> Callable:
    """Jitted `(params, ids (B, T)) -> logits (B,)`, deterministic (no dropout)."""
    return jax.jit(lambda params, ids: model.apply({"params": params}, ids, pad_mask(ids, use_pad_mask),
                                                   method="logits"))


def predict_logits(logits_fn: Callable, params, ids: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits (N,) float64 of ids (N, T), in fixed-size batches (the last one padded) to compile once."""
    ids = np.asarray(ids, dtype=np.int32)
    size = min(batch_size, len(ids))
    out = []
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        if len(chunk) < size:
            chunk = np.concatenate([chunk, np.zeros((size - len(chunk), ids.shape[1]), np.int32)])
        out.append(np.asarray(logits_fn(params, chunk)))
    return np.concatenate(out)[: len(ids)].astype(np.float64)
