"""The LSTM's forward and backward loops compiled for the CPU (`lstm_cpu.cc`), as XLA FFI calls.

`jaxseq.layers.lstm_fast`'s `recurrence_forward` / `recurrence_backward` run these instead of
their `lax.scan` loops where `applies` says so, and compute the same arrays (the fast path's
cache: h_tm, P_tm, q_tm, f_tm; the backward's da_tm, dh0, dc0), in the same layout: the
tests hold them to the XLA loops at 5e-6 (float32) and 1e-13 (float64) of each array's scale, and the layer's
gradient checks run through them. What differs is only how a step runs (`lstm_cpu.cc`):
the recurrent weight packed once per call instead of once per step, the cell's elementwise
work done on the product's registers, the hidden units split between the cores.

With lengths, a row's steps t >= lengths[n] carry its state and its gradients through, as
the XLA loops' masks do (`jaxseq.layers.sequence.valid_steps_tm`).

They apply on the CPU only (`jax.lax.platform_dependent`: a GPU runs the XLA loops), to
float32 and float64, without projections, in a process with one device (XLA's
partitioner cannot split a foreign call: with several devices it would run whole on each),
to steps whose state N H has at least `build.MIN_STEP_STATE` values (below, the XLA loops are
as fast), and when the library could be built (`build.py`).

Measured (2-core Xeon, float32, medians of interleaved runs): one layer's forward and backward
loops at N=64 T=128 H=512, 158 ms against the XLA loops' 197 ms; the char language model's
training step (2 x 512, `benchmarks/speed/bench_lm.py`) 1.10-1.16x.
"""

from __future__ import annotations

import jax

from jaxseq.kernels import build

LIBRARY = "lstm_cpu"
FORWARD_TARGET, BACKWARD_TARGET = "jaxseq_lstm_forward", "jaxseq_lstm_backward"
TARGETS = {FORWARD_TARGET: "JaxseqLstmForward", BACKWARD_TARGET: "JaxseqLstmBackward"}


def applies(xw_tm, Wr) -> bool:
    """Whether the compiled loops run for an LSTM whose steps' input sides are xw_tm
    (T, N, 4H) and whose projection is Wr (module docstring). Decided when the function is
    traced."""
    return Wr is None and build.loops_apply(xw_tm, LIBRARY, TARGETS, gates=4)


def forward_loop(xw_tm, h0, c0, Wh, b, lengths=None, *, reverse: bool):
    """The forward loop from every step's input side.

    Inputs: xw_tm (T, N, 4H) x_t Wx (consumed: P_t takes its place), h0, c0 (N, H), Wh (H, 4H),
      b (4H,) added at every step, lengths (N,) or None.
    Returns: (h_tm (T, N, H), P_tm (T, N, 4H), q_tm, f_tm (T, N, H), c_n (N, H)).
    """
    T, N, G = xw_tm.shape
    shapes = [jax.ShapeDtypeStruct(s, xw_tm.dtype) for s in ((T, N, G // 4), (T * N, G), (T, N, G // 4),
                                                             (T, N, G // 4), (N, G // 4))]
    call = jax.ffi.ffi_call(FORWARD_TARGET, shapes, input_output_aliases={0: 1}, vmap_method="sequential")
    h_tm, P_rows, q_tm, f_tm, c_n = call(build.as_rows(xw_tm), h0, c0, Wh, b, build.step_counts(lengths, T, N),
                                         reverse=bool(reverse))
    return h_tm, P_rows.reshape(T, N, G), q_tm, f_tm, c_n


def backward_loop(dh, P_tm, q_tm, f_tm, Wh, dh_n, dc_n, lengths=None, *, reverse: bool):
    """The backward loop.

    Inputs: dh (N, T, H) the gradients of the outputs; P_tm (T, N, 4H) (consumed: da_t takes
      its place), q_tm, f_tm (T, N, H) from the forward; Wh (H, 4H); dh_n, dc_n (N, H);
      lengths (N,) or None.
    Returns: (da_tm (T, N, 4H), dh0 (N, H), dc0 (N, H)).
    """
    T, N, G = P_tm.shape
    shapes = [jax.ShapeDtypeStruct(s, P_tm.dtype) for s in ((T * N, G), (N, G // 4), (N, G // 4))]
    call = jax.ffi.ffi_call(BACKWARD_TARGET, shapes, input_output_aliases={1: 0}, vmap_method="sequential")
    da_rows, dh0, dc0 = call(dh, build.as_rows(P_tm), q_tm, f_tm, Wh, dh_n, dc_n, build.step_counts(lengths, T, N),
                             reverse=bool(reverse))
    return da_rows.reshape(T, N, G), dh0, dc0
