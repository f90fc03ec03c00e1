"""The gates' activation, shared by the cells."""

from __future__ import annotations

import jax.numpy as jnp


def sigmoid(a):
    """The logistic function 1 / (1 + exp(-a)), computed as 0.5 tanh(a / 2) + 0.5.

    The same function (an identity), with one tanh: XLA:CPU evaluates it faster than
    `jax.nn.sigmoid` (a GRU forward at N=64 T=16 D=256 H=512 took 17.8 instead of 21.5 ms of
    CPU time), and it cannot overflow.
    """
    return 0.5 * jnp.tanh(0.5 * a) + 0.5
