"""Compiled CPU kernels: the recurrences' loops, which XLA runs as many small operations per
step, and the decoder with its softmax loss, which XLA runs as several passes over the scores.

The layers stay pure JAX: where a compiled kernel applies (`jaxseq.kernels.lstm.applies`,
`jaxseq.kernels.gru.applies`, `jaxseq.kernels.decoder_loss.applies`), a layer's differentiable
rule calls it through XLA's foreign-function interface instead of its XLA version, for the same
arrays: the LSTM's loops (`lstm`, `lstm_lookup`) and the GRU's (`gru`, `gru_lookup`), with or
without lengths, and `temporal_affine_softmax_loss` (a language model's training loss). The
sources ship in the package and are built on first use (`build`); without a C++ compiler, or
with `JAXSEQ_KERNELS=off`, or inside `xla_loops()`, the XLA versions run; so do steps with a
state of fewer than `build.MIN_STEP_STATE` values (N H) and vocabularies of fewer than
`decoder_loss.MIN_VOCABULARY` entries, where they are as fast.
"""

from jaxseq.kernels.build import at_every_size, kernels_enabled, unavailable_reason, xla_loops

__all__ = ["at_every_size", "kernels_enabled", "unavailable_reason", "xla_loops"]
