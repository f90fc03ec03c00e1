"""Compiled CPU loops for the recurrences XLA runs as many small operations per step.

The layers stay pure JAX: where a compiled loop applies (`jaxseq.kernels.lstm.applies`,
`jaxseq.kernels.gru.applies`), a layer's differentiable rule calls it through XLA's
foreign-function interface instead of its `lax.scan`, for the same arrays: the LSTM's
(`lstm`, `lstm_lookup`) and the GRU's (`gru`, `gru_lookup`), with or without lengths. The
sources ship in the package and are built on first use (`build`);
without a C++ compiler, or with `JAXSEQ_KERNELS=off`, or inside `xla_loops()`, the XLA loops run;
so do steps with a state of fewer than `build.MIN_STEP_STATE` values (N H), where they are as fast.
"""

from jaxseq.kernels.build import at_every_size, kernels_enabled, unavailable_reason, xla_loops

__all__ = ["at_every_size", "kernels_enabled", "unavailable_reason", "xla_loops"]
