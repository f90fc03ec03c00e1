"""Flax linen models — the RNN/LSTM image captioner, the transformer and recurrent sentence
classifiers, the recurrent language model — decoding (greedy sampling, beam search) and text
sampling."""

from jaxseq.models.captioning import CaptioningRNN
from jaxseq.models.classifiers import ARCHITECTURES, build_classifier, classifier_config, classifier_from_config
from jaxseq.models.decoding import beam_search, sample
from jaxseq.models.language_model import (LanguageModel, language_model_config, lm_loss, lm_params_from_torch,
                                          lm_params_to_torch, token_losses)
from jaxseq.models.recurrent_classifier import RecurrentClassifier
from jaxseq.models.regularisers import embedding_dropout, sequence_dropout, weight_drop
from jaxseq.models.text_sampling import (SamplerState, filter_logits, generate, generate_chunks, sample_tokens,
                                         start_sampling)
from jaxseq.models.transformer import ClassificationTransformer

__all__ = [
    "ARCHITECTURES",
    "CaptioningRNN",
    "ClassificationTransformer",
    "LanguageModel",
    "RecurrentClassifier",
    "SamplerState",
    "beam_search",
    "build_classifier",
    "classifier_config",
    "classifier_from_config",
    "embedding_dropout",
    "filter_logits",
    "generate",
    "generate_chunks",
    "language_model_config",
    "lm_loss",
    "lm_params_from_torch",
    "lm_params_to_torch",
    "sample",
    "sample_tokens",
    "sequence_dropout",
    "start_sampling",
    "token_losses",
    "weight_drop",
]
