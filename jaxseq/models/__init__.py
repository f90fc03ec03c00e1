"""Flax linen models — the RNN/LSTM image captioner, the transformer and recurrent sentence
classifiers — and decoding (greedy sampling, beam search)."""

from jaxseq.models.captioning import CaptioningRNN
from jaxseq.models.classifiers import ARCHITECTURES, build_classifier, classifier_config, classifier_from_config
from jaxseq.models.decoding import beam_search, sample
from jaxseq.models.recurrent_classifier import RecurrentClassifier
from jaxseq.models.transformer import ClassificationTransformer

__all__ = [
    "ARCHITECTURES",
    "CaptioningRNN",
    "ClassificationTransformer",
    "RecurrentClassifier",
    "beam_search",
    "build_classifier",
    "classifier_config",
    "classifier_from_config",
    "sample",
]
