"""Flax linen models and decoding."""

from jaxseq.models.captioning import CaptioningRNN
from jaxseq.models.decoding import beam_search, sample
from jaxseq.models.transformer import ClassificationTransformer
from jaxseq.models.recurrent_classifier import RecurrentClassifier
