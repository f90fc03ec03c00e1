"""Inference: loading a trained run's checkpoint, rebuilding its model from the metadata,
predicting, generating and scoring captions (the course's BLEU-1, the COCO caption
evaluation), generating and scoring text. Used by the command line and the notebooks.

Which checkpoint a run folder gives (one rule for every trainer): the best by the metric
its trainer recorded — the classifier's validation MCC (higher is better), the captioner's
and the language model's validation loss (lower is better) — and, where no checkpoint of the run is scored (no
validation data, or stopped inside the first epoch), the latest. A checkpoint that cannot
be used is skipped with a one-line notice naming it and why; a checkpoint folder
(`ckpt-*`) is used as it is.
"""

from jaxseq.inference.captioning import (
    evaluate_captions,
    evaluate_coco_metrics,
    generate_captions,
    load_captioner_and_data,
    load_captioning_checkpoint,
)
from jaxseq.inference.classifier import (
    evaluate_classifier,
    load_sentence_classifier,
    predict_probabilities,
    uses_pad_mask,
)
from jaxseq.inference.language_model import evaluate_language_model, generate_text, load_language_model

__all__ = [
    "evaluate_captions",
    "evaluate_classifier",
    "evaluate_coco_metrics",
    "evaluate_language_model",
    "generate_captions",
    "generate_text",
    "load_captioner_and_data",
    "load_captioning_checkpoint",
    "load_language_model",
    "load_sentence_classifier",
    "predict_probabilities",
    "uses_pad_mask",
]
