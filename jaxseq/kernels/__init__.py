"""Compiled CPU loops for the recurrences XLA runs as many small operations per step.

The layers stay pure JAX: where a compiled loop applies (`jaxseq.kernels.lstm.applies`), a
layer's fast path calls it through XLA's foreign-function interface instead of its `lax.scan`,
for the same arrays. The source ships in the package and is built on first use (`build`);
without a C++ compiler, or with `JAXSEQ_KERNELS=off`, or inside `xla_loops()`, the XLA loops run.
"""

from jaxseq.kernels.build import kernels_enabled, unavailable_reason, xla_loops

__all__ = ["kernels_enabled", "unavailable_reason", "xla_loops"]
