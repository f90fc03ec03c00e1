"""The GRU's forward and backward loops compiled for the CPU (`gru_cpu.cc`), as XLA FFI calls.

`jaxseq.layers.gru`'s `gru_recurrence` / `gru_recurrence_backward` run these instead of their
`lax.scan` loops where `applies` says so, from every step's input side made before the loop
(x_t Wx + b as one product, or a `gru_lookup` table's rows), and compute the same arrays (the
cache's h_tm, gates_tm, hw_n_tm; the backward's dxw_tm, the n block of dhw_tm, dh0) in the same
layout: the tests hold them to the XLA loops at 5e-6 (float32) and 1e-13 (float64) of each
array's scale, with lengths (a row's steps past its length carry its state and its gradient),
and the layer's gradient checks run through them. What differs is how a step runs, as for the
LSTM (`jaxseq.kernels.lstm`): the recurrent weight packed once per call, the cell's elementwise
work on the product's registers, the hidden units split between the cores.

They apply where the LSTM's do (`build.loops_apply`: the CPU through
`jax.lax.platform_dependent`, float32 and float64, one device, a step's state of at least
`build.MIN_STEP_STATE` values, the library built).
"""

from __future__ import annotations

import jax

from jaxseq.kernels import build

LIBRARY = "gru_cpu"
FORWARD_TARGET, BACKWARD_TARGET = "jaxseq_gru_forward", "jaxseq_gru_backward"
TARGETS = {FORWARD_TARGET: "JaxseqGruForward", BACKWARD_TARGET: "JaxseqGruBackward"}


def applies(xw_tm) -> bool:
    """Whether the compiled loops run for a GRU whose steps' input sides are xw_tm (T, N, 3H)
    (module docstring). Decided when the function is traced."""
    return build.loops_apply(xw_tm, LIBRARY, TARGETS, gates=3)


def forward_loop(xw_tm, h0, Wh, bh, lengths=None, *, reverse: bool):
    """The forward loop from every step's input side.

    Inputs: xw_tm (T, N, 3H) x_t Wx + b (consumed: the gates take its place), h0 (N, H),
      Wh (H, 3H), bh (3H,), lengths (N,) or None.
    Returns: (h_tm (T, N, H), gates_tm (T, N, 3H) r, z, n, hw_n_tm (T, N, H)).
    """
    T, N, G = xw_tm.shape
    shapes = [jax.ShapeDtypeStruct(s, xw_tm.dtype) for s in ((T, N, G // 3), (T * N, G), (T, N, G // 3))]
    call = jax.ffi.ffi_call(FORWARD_TARGET, shapes, input_output_aliases={0: 1}, vmap_method="sequential")
    h_tm, gate_rows, hw_n_tm = call(build.as_rows(xw_tm), h0, Wh, bh, build.step_counts(lengths, T, N),
                                    reverse=bool(reverse))
    return h_tm, gate_rows.reshape(T, N, G), hw_n_tm


def backward_loop(dh, gates_tm, hw_n_tm, h_tm, h0, Wh, dh_n, lengths=None, *, reverse: bool):
    """The backward loop.

    Inputs: dh (N, T, H) the gradients of the outputs; gates_tm (T, N, 3H) and hw_n_tm
      (T, N, H) from the forward (consumed: the gradients take their places), h_tm (T, N, H),
      h0 (N, H), Wh (H, 3H), dh_n (N, H), lengths (N,) or None.
    Returns: (dxw_tm (T, N, 3H), dhw_n_tm (T, N, H) the n block of dhw_tm, dh0 (N, H)).
    """
    T, N, G = gates_tm.shape
    shapes = [jax.ShapeDtypeStruct(s, gates_tm.dtype) for s in ((T * N, G), (T, N, G // 3), (N, G // 3))]
    call = jax.ffi.ffi_call(BACKWARD_TARGET, shapes, input_output_aliases={1: 0, 2: 1}, vmap_method="sequential")
    dxw_rows, dhw_n_tm, dh0 = call(dh, build.as_rows(gates_tm), hw_n_tm, h_tm, h0, Wh, dh_n,
                                   build.step_counts(lengths, T, N), reverse=bool(reverse))
    return dxw_rows.reshape(T, N, G), dhw_n_tm, dh0
