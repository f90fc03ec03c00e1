"""The decoder's affine map and the softmax loss compiled as one CPU kernel
(`decoder_loss_cpu.cc`), as XLA FFI calls.

`jaxseq.layers.affine_softmax_loss` runs these where `applies` says so. For M rows x (M, D),
the decoder's weight w (V, D) (the (V, D) layout a language model keeps: its encoder's, or
its decoder's as PyTorch stores it), bias b (V,), targets y (M,) and row weights r (M,):

    s      = x w^T + b                                  (M, V), never whole in memory
    loss_m = r_m (logsumexp(s_m) - s_m[y_m])            (M,)
    ds     = r (softmax(s) - onehot(y))                 (M, V)
    dx = ds w,  dw = ds^T x,  db = sum_m ds             (the gradients of sum_m loss_m)

`losses` computes the first two; `losses_and_gradients` all of them in one call, which is what
a training step needs (the layer's forward keeps the gradients and its backward scales them).
The XLA version writes the (M, V) scores and their gradients to memory and reads them back
in several passes, and XLA:CPU allocates that buffer afresh for every call (62.5 MB for
PyTorch's word-level example, page-faulted in anew each step: `jaxseq.process_memory`). The
kernel goes over the vocabulary in panels of 4 L columns (L = one vector register of the
dtype): each panel's scores come out of a register-tiled product with their exponentials
and the panel's row maxima and sums made on the spot, the log-sum-exp combines the panels'
sums, and then each panel becomes its ds (one multiply: the exponentials are kept), its rows
of dw and its db, and each block of rows its dx. Its memory (the packed weight, the
exponentials) is kept from call to call up to `kKeptWorkspaceBytes` (64 MB; the word example
needs 47 MB).

Targets outside [0, V) give a NaN loss for their row and no one-hot term, as the XLA version
(`jnp.take_along_axis` fills NaN, `jax.nn.one_hot` gives zeros).

It applies on the CPU only (`jax.lax.platform_dependent`), to float32 and float64, in a process
with one device, for a vocabulary of at least `MIN_VOCABULARY` entries and rows of at most
`MAX_INPUTS` values (elsewhere XLA's version was as fast or faster; at every size where the
compiled loops run at every size: `build.every_size`), and when the library could be built
(`build.py`).
"""

from __future__ import annotations

import jax

from jaxseq.kernels import build

LIBRARY = "decoder_loss_cpu"
LOSS_TARGET, GRADIENTS_TARGET = "jaxseq_decoder_loss", "jaxseq_decoder_loss_gradients"
TARGETS = {LOSS_TARGET: "JaxseqDecoderLoss", GRADIENTS_TARGET: "JaxseqDecoderLossGradients"}
# Where the kernel runs by default (every size under `build.every_size()`): a vocabulary of at
# least MIN_VOCABULARY entries and rows of at most MAX_INPUTS values. Measured (2-core Xeon,
# malloc keeping freed memory so that XLA's version does not page-fault; the layer's value and
# gradients, kernel against XLA's): (M, D, V) = (700, 200, 65) 0.80x, (700, 200, 256) 1.41x,
# (700, 200, 512) 1.27x, (700, 200, 1,000) 1.06x, (700, 128, 10,000) 1.21x, (700, 200, 10,000)
# 1.00-1.08x, (2,560, 200, 10,000) 1.07x, (8,192, 256, 2,048) 1.08x, (700, 400, 10,000)
# 0.99-1.01x; (8,192, 512, 65) 0.40x, (8,192, 512, 512) 0.84-0.92x, (700, 650, 10,000) 0.81x.
# Where XLA's version page-faults its scores in (by default), the kernel gains 1.1-1.3x more.
MIN_VOCABULARY = 512
MAX_INPUTS = 400


def applies(x, w) -> bool:
    """Whether the kernel runs for rows x (M, D) and a decoder weight w (V, D) (module
    docstring). Decided when the function is traced."""
    if x.dtype != w.dtype or min(w.shape) == 0:
        return False
    if (w.shape[0] < MIN_VOCABULARY or w.shape[1] > MAX_INPUTS) and not build.every_size():
        return False
    return build.kernel_applies(x, LIBRARY, TARGETS)


def _out(shape, like):
    return jax.ShapeDtypeStruct(shape, like.dtype)


def _registered() -> None:
    """The library loaded and its handlers registered, else RuntimeError with the reason."""
    if not build.loops_available(LIBRARY, TARGETS):
        raise RuntimeError(f"the compiled decoder-loss kernel is not available: {build.unavailable_reason(LIBRARY)}")


def losses(x, w, b, y, row_weights):
    """Inputs: x (M, D), w (V, D), b (V,), y (M,) int, row_weights (M,) in x's dtype.
    Returns: (M,) row_weights * (logsumexp(x w^T + b) - (x w^T + b)[y])."""
    _registered()
    M = x.shape[0]
    call = jax.ffi.ffi_call(LOSS_TARGET, _out((M,), x), vmap_method="sequential")
    return call(x, w, b, y.astype(jax.numpy.int32), row_weights)


def losses_and_gradients(x, w, b, y, row_weights):
    """Inputs as `losses`. Returns: (losses (M,), dx (M, D), dw (V, D), db (V,)), the gradients
    of sum(losses) (module docstring)."""
    _registered()
    (M, D), V = x.shape, w.shape[0]
    call = jax.ffi.ffi_call(GRADIENTS_TARGET, [_out((M,), x), _out((M, D), x), _out((V, D), x), _out((V,), x)],
                            vmap_method="sequential")
    return tuple(call(x, w, b, y.astype(jax.numpy.int32), row_weights))
