"""Pure-function layers with hand-written backward passes.

Each layer comes as three names (see DESIGN.md, "The layer contract"):
`<name>_forward(...) -> (out, cache)`, `<name>_backward(dout, cache) -> grads` derived by
hand, and `<name>(...) -> out`, a `jax.custom_vjp` function whose rule is that pair.
"""

from jaxseq.layers.affine import (
    TemporalAffineCache,
    temporal_affine,
    temporal_affine_backward,
    temporal_affine_forward,
)
from jaxseq.layers.embedding import (
    WordEmbeddingCache,
    word_embedding,
    word_embedding_backward,
    word_embedding_forward,
)
from jaxseq.layers.loss import (
    TemporalSoftmaxLossCache,
    temporal_softmax_loss,
    temporal_softmax_loss_backward,
    temporal_softmax_loss_forward,
)
from jaxseq.layers.affine_softmax_loss import (
    TemporalAffineSoftmaxLossCache,
    temporal_affine_softmax_loss,
    temporal_affine_softmax_loss_backward,
    temporal_affine_softmax_loss_forward,
)
from jaxseq.layers.gru import (
    GRUCache,
    GRUStepCache,
    gru,
    gru_backward,
    gru_forward,
    gru_step,
    gru_step_backward,
    gru_step_forward,
)
from jaxseq.layers.lstm import (
    LSTMCache,
    LSTMStepCache,
    lstm,
    lstm_backward,
    lstm_forward,
    lstm_step,
    lstm_step_backward,
    lstm_step_forward,
)
from jaxseq.layers.rnn import (
    RNNCache,
    RNNStepCache,
    rnn,
    rnn_backward,
    rnn_forward,
    rnn_step,
    rnn_step_backward,
    rnn_step_forward,
)
from jaxseq.layers.lstm_fast import LSTMFastCache, lstm_fast_backward, lstm_fast_forward
from jaxseq.layers.lstm_lookup import lstm_lookup, lstm_lookup_backward, lstm_lookup_forward
from jaxseq.layers.gru_lookup import gru_lookup, gru_lookup_backward, gru_lookup_forward

__all__ = [
    "rnn_step", "rnn_step_forward", "rnn_step_backward", "RNNStepCache",
    "rnn", "rnn_forward", "rnn_backward", "RNNCache",
    "lstm_step", "lstm_step_forward", "lstm_step_backward", "LSTMStepCache",
    "lstm", "lstm_forward", "lstm_backward", "LSTMCache",
    "lstm_fast_forward", "lstm_fast_backward", "LSTMFastCache",
    "lstm_lookup", "lstm_lookup_forward", "lstm_lookup_backward",
    "gru_step", "gru_step_forward", "gru_step_backward", "GRUStepCache",
    "gru", "gru_forward", "gru_backward", "GRUCache",
    "gru_lookup", "gru_lookup_forward", "gru_lookup_backward",
    "word_embedding", "word_embedding_forward", "word_embedding_backward", "WordEmbeddingCache",
    "temporal_affine", "temporal_affine_forward", "temporal_affine_backward", "TemporalAffineCache",
    "temporal_softmax_loss", "temporal_softmax_loss_forward", "temporal_softmax_loss_backward",
    "TemporalSoftmaxLossCache",
    "temporal_affine_softmax_loss", "temporal_affine_softmax_loss_forward",
    "temporal_affine_softmax_loss_backward", "TemporalAffineSoftmaxLossCache",
]
