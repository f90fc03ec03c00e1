"""The NNX front-end of a recurrent stack: PyTorch's constructor, parameters held as NNX
`Param`s under PyTorch's names, and every call run by the one Linen stack underneath
(`jaxseq.nn.RecurrentStack`), so both front-ends share the cells, the parameter layout and
the hand-written backward passes.

Shapes (batch first by default): N batch, T time, D input (input_size), H hidden,
S = num_layers * num_directions.

    m = LSTM(D, H, num_layers=2, bidirectional=True, dropout=0.1, rngs=nnx.Rngs(0))
    out, (h_n, c_n) = m(x, lengths=None, initial_state=None)

x (N, T, D) (time-major (T, N, D) with batch_first=False) -> out (N, T, num_directions * R);
states (S, N, R) and the LSTM's c (S, N, H); R = proj_size or H. Dropout between layers acts
while the module is in training mode (the default, as in PyTorch; `m.eval()` / `m.train()`
or `nnx.view(m, deterministic=True)` switch it), with keys from `rngs['dropout']`.

Every constructor option goes to the Linen stack unchanged, which checks it.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseq.checks import check_positive_int
from jaxseq.nn.parameters import torch_uniform
from jaxseq.nn.stack import RecurrentStack as LinenStack

__all__ = ["RecurrentStack", "draw_parameters"]


@functools.lru_cache(maxsize=None)
def _parameter_shapes(linen_module: LinenStack, input_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """{PyTorch name: shape and dtype} of every parameter the Linen module has for inputs of
    size D = input_size, read by `jax.eval_shape` of its `init` (which computes nothing), so
    the two front-ends cannot disagree on them."""
    x = jax.ShapeDtypeStruct((1, 1, input_size), linen_module.param_dtype)
    return dict(jax.eval_shape(linen_module.init, jax.random.key(0), x)["params"])


def draw_parameters(linen_module: LinenStack, input_size: int, key: jax.Array) -> dict[str, jax.Array]:
    """Every parameter drawn as PyTorch draws it, uniform(-1/sqrt(H), 1/sqrt(H)), from `key`.

    One draw of all the values, cut into the parameters: a single small program to compile
    per model size (a jitted draw of each parameter compiles 16 random generators for a
    2-layer bidirectional stack, ten times slower on a CPU)."""
    shapes = _parameter_shapes(linen_module, input_size)
    sizes = [math.prod(spec.shape) for spec in shapes.values()]
    dtype = linen_module.param_dtype
    flat = np.asarray(torch_uniform(linen_module.hidden_size)(key, (sum(sizes),), dtype))
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    return {name: jnp.asarray(piece.reshape(spec.shape)) for piece, (name, spec) in zip(pieces, shapes.items())}


class RecurrentStack(nnx.Module):
    """A stack of recurrent layers as an NNX module (see the module docstring).

    Subclasses set `linen_class` (the `jaxseq.nn` module that runs the call) and define
    `__init__` with PyTorch's signature, calling `_build`.

    Attributes: input_size, hidden_size, num_layers, dropout, bidirectional and the other
    options as given; deterministic (False: training mode, dropout on); one `nnx.Param` per
    parameter under PyTorch's name (`weight_ih_l0`, ...), parameter_names listing them;
    rngs (the dropout masks' stream, None without dropout); `linen` the Linen twin.
    """

    linen_class: ClassVar[type[LinenStack]]

    def _build(self, input_size: int, hidden_size: int, options: dict[str, Any], param_dtype: Any,
               rngs: nnx.Rngs) -> None:
        """Check and store the options, build the Linen twin and draw the parameters."""
        owner = type(self).__name__
        check_positive_int("input_size", input_size, owner=owner)
        if not isinstance(rngs, nnx.Rngs):
            raise ValueError(f"{owner}: rngs must be an nnx.Rngs (e.g. nnx.Rngs(0)), got {type(rngs).__name__}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        for name, value in options.items():
            setattr(self, name, value)
        self.linen = self.linen_class(hidden_size=hidden_size, param_dtype=param_dtype, **options)
        self.deterministic = False
        self.rngs = rngs["dropout"].fork() if self.linen.dropout > 0 else None  # the masks' keys
        params = draw_parameters(self.linen, input_size, rngs["params"]())
        self.parameter_names = tuple(params)
        for name, value in params.items():
            setattr(self, name, nnx.Param(value))

    @property
    def num_directions(self) -> int:
        """2 when bidirectional, else 1."""
        return self.linen.num_directions

    def params(self) -> dict[str, jax.Array]:
        """{PyTorch name: array}: the parameters as the Linen twin's variables["params"]."""
        return {name: getattr(self, name)[...] for name in self.parameter_names}

    def set_view(self, deterministic: bool | None = None):
        """`nnx.view(m, deterministic=...)`: True turns dropout off, False on."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(self, x, lengths=None, initial_state=None):
        """Run the stack (the Linen twin's call on this module's parameters).

        Inputs: x (N, T, D), or (T, N, D) with batch_first=False; lengths (N,) int in [0, T]
          or None (every sequence T long); initial_state: h0 (S, N, R), for the LSTM (h0, c0)
          with c0 (S, N, H), or None (zeros). R = proj_size or H.
        Returns: (out (N, T, num_directions * R), h_n (S, N, R)), for the LSTM
          (out, (h_n, c_n)); out (T, N, .) with batch_first=False, 0 after each length; h_n
          the state after each sequence's last valid step. Dropout between layers unless
          `deterministic` (`m.eval()`).
        """
        dropping = not self.deterministic and self.linen.dropout > 0 and self.linen.num_layers > 1
        rngs = {"dropout": self.rngs()} if dropping and self.rngs is not None else None  # rngs is set with dropout
        return self.linen.apply({"params": self.params()}, x, lengths=lengths, initial_state=initial_state,
                                deterministic=not dropping, rngs=rngs)
