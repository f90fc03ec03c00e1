"""Measured training recipes, as plain data: importable without JAX, so the command line
can show them as option defaults without loading JAX (or NumPy) to build its parser."""

from __future__ import annotations

from typing import Any

# The recipe that reached the CoLA MCC targets with the seed architecture (hidden
# 128, 2 heads of 96, FFN 2048); `benchmarks/quality/cola_quality.py` measures it ("seed"), and it
# is what `jaxseq cola train` / `classify train` use by default.
COLA_RECIPE: dict[str, Any] = dict(
    min_count=3,
    model=dict(dropout=0.1),
    train=dict(epochs=30, batch_size=16, learning_rate=1e-4, weight_decay=0.01, label_smoothing=0.1,
               schedule="cosine", warmup_epochs=1.0, patience=10),
)

# The recurrent classifiers' recipe (`--model lstm|gru`): a bidirectional one-layer stack,
# embed 128, hidden 128, max pooling (measured against "final" and "max+final" on CoLA
# validation, benchmarks/results/cola_quality.md), a higher learning rate and fewer epochs.
# Word dropout 0.2 with every training word in the vocabulary (min count 1) raised the
# 3-seed mean validation MCC over min count 3 without it: lstm 0.134 -> 0.138, gru 0.131 -> 0.144.
RECURRENT_COLA_RECIPE: dict[str, Any] = dict(
    min_count=1,
    model=dict(embed_dim=128, hidden_size=128, num_layers=1, dropout=0.3, embed_dropout=0.0, word_dropout=0.2,
               pooling="max"),
    train=dict(epochs=10, batch_size=32, learning_rate=1e-3, weight_decay=0.01, label_smoothing=0.1,
               schedule="cosine", warmup_epochs=0.5, patience=5),
)


def cola_recipe(model: str) -> dict[str, Any]:
    """The recipe of `--model` ("transformer", "lstm" or "gru")."""
    return COLA_RECIPE if model == "transformer" else RECURRENT_COLA_RECIPE
