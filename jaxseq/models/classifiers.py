"""The sentence classifiers the trainer can train, by name, and their checkpoint configs.

"transformer" is `ClassificationTransformer` (its config has no "architecture" entry, so
checkpoints written before the recurrent models load as transformers); "lstm" and "gru"
are `RecurrentClassifier` with that cell (config["architecture"] names it).
"""

from __future__ import annotations

from typing import Any

from jaxseq.models import recurrent_classifier, transformer
from jaxseq.models.recurrent_classifier import RecurrentClassifier
from jaxseq.models.transformer import ClassificationTransformer

ARCHITECTURES = ("transformer", "lstm", "gru")
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
