"""What the compiled loops' tests share (test_kernels.py: the LSTM's and both cells' common
behaviour; test_kernels_gru.py: the GRU's)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq import kernels
from tests.helpers import scaled_error


def some_lengths(N: int, T: int, seed: int = 0):
    """(N,) int32 lengths from 0 to T, both ends included when N allows."""
    counts = np.random.default_rng(seed).integers(0, T + 1, N)
    counts[: min(N, 2)] = [0, T][: min(N, 2)]
    return jnp.asarray(counts, jnp.int32)


def compiled_and_xla(run, p: dict):
    """(jit(run)(**p) on the compiled loops, the same on the XLA loops)."""
    compiled = jax.jit(run)(**p)
    with kernels.xla_loops():
        xla = jax.jit(run)(**p)
    return compiled, xla


def layer_loss(layer):
    """A loss of a layer called with return_state: every output and the final states count."""

    def loss(*args):
        h, *states = layer(*args)
        return jnp.sum(jnp.sin(h)) + jnp.sum(states[0] * states[-1])

    return loss


def assert_layer_gradients_match_the_xla_loops(cases: dict, targets: tuple[str, ...], tol: float = 1e-12):
    """For each case name -> (loss, args): the program of value_and_grad calls every FFI target
    in `targets` (and none inside `xla_loops()`), and its values equal the XLA loops' to `tol`."""
    for name, (loss, args) in cases.items():
        argnums = tuple(range(len(args)))
        compiled_fn = jax.jit(jax.value_and_grad(loss, argnums=argnums))
        hlo = compiled_fn.lower(*args).as_text()
        assert all(target in hlo for target in targets), name
        compiled = compiled_fn(*args)
        with kernels.xla_loops():
            xla_fn = jax.jit(jax.value_and_grad(loss, argnums=argnums))
            assert not any(target in xla_fn.lower(*args).as_text() for target in targets), name
            xla = xla_fn(*args)
        for got, want in zip(jax.tree.leaves(compiled), jax.tree.leaves(xla)):
            assert scaled_error(got, want) < tol, name


def assert_same_bits_on_one_and_two_threads(monkeypatch, compiled_arrays):
    """compiled_arrays() (a dict of arrays from the compiled loops) gives the same bits with
    JAXSEQ_KERNEL_THREADS=1 and =2 (read by every call)."""
    results = []
    for threads in ("1", "2"):
        monkeypatch.setenv("JAXSEQ_KERNEL_THREADS", threads)
        results.append(jax.tree.map(np.asarray, compiled_arrays()))
    for name in results[0]:
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)
