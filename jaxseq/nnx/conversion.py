"""Moving parameters in and out of the NNX modules: a Linen twin's variables both ways, and
PyTorch state_dicts both ways.

    model = from_linen(linen_module, variables, rngs=nnx.Rngs(0))   # jaxseq.nn -> jaxseq.nnx
    linen_module, variables = to_linen(model)                      # jaxseq.nnx -> jaxseq.nn
    params_from_torch(model, torch_module.state_dict())            # loads in place, returns model
    state_dict = params_to_torch(model)                            # {name: np.ndarray}
    grads_dict = params_to_torch(model, grads)                     # grads = nnx.grad(loss)(model)

The NNX module's parameters are the Linen variables["params"] entry for entry (same PyTorch
names, shapes, dtypes), so each direction is a check and a copy of references, nothing else.
The checks are `jaxseq.nn.torch_weights`' (a missing, extra or wrongly shaped entry is a
one-line ValueError naming it); on top, every array must keep the model's shape (its D).
"""

from __future__ import annotations

import inspect
from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseq import nn as linen
from jaxseq.nn.torch_weights import checked_specs
from jaxseq.nnx.recurrent import GRU, LSTM, RNN
from jaxseq.nnx.stack import RecurrentStack

__all__ = ["from_linen", "to_linen", "params_from_torch", "params_to_torch"]

NNX_CLASSES = {cls.linen_class: cls for cls in (RNN, LSTM, GRU)}


def _check_model(model, argument: str = "model") -> None:
    if not isinstance(model, RecurrentStack):
        raise ValueError(f"{argument} must be a jaxseq.nnx RNN, LSTM or GRU, got a {type(model).__name__}")


def _check_shapes(model: RecurrentStack, arrays: Mapping, what: str) -> None:
    """Every entry of `arrays` named as one of the model's parameters has that parameter's
    shape (the model's D included), checked before the general checks so that the message
    names the model's shape rather than one inferred from the arrays."""
    if not isinstance(arrays, Mapping):
        return  # the general checks name the type
    for name in model.parameter_names:
        if name in arrays:
            want, got = getattr(model, name).shape, tuple(np.shape(arrays[name]))
            if got != want:
                raise ValueError(f"{what} {name!r} must have shape {want} (input_size={model.input_size}), got {got}")


def _load(model: RecurrentStack, arrays: Mapping, what: str) -> None:
    """Set the model's parameters to `arrays` {PyTorch name: array} after checking them."""
    _check_shapes(model, arrays, what)
    checked_specs(model.linen, arrays, what)
    for name in model.parameter_names:
        getattr(model, name).set_value(jnp.asarray(arrays[name]))


def to_linen(model: RecurrentStack):
    """The Linen twin of an NNX module and its variables: (module, {"params": {name: array}}).

    `module.apply(variables, x, ...)` equals `model(x, ...)` in eval mode (the arrays are the
    model's own, not copies)."""
    _check_model(model)
    return model.linen, {"params": model.params()}


def from_linen(module, variables: Mapping, *, rngs: nnx.Rngs | None = None) -> RecurrentStack:
    """The NNX module of a `jaxseq.nn` RNN, LSTM or GRU with the given variables.

    Inputs: module: a `jaxseq.nn` RNN / LSTM / GRU; variables: {"params": {...}} as its
      `init` returns them (or the params dict itself); rngs: the NNX module's dropout keys
      (default nnx.Rngs(0)). input_size is read from weight_ih_l0.
    Returns: the `jaxseq.nnx` module of the same class and options, holding those arrays.
    """
    if type(module) not in NNX_CLASSES:
        raise ValueError(f"module must be a jaxseq.nn RNN, LSTM or GRU, got a {type(module).__name__}")
    if not isinstance(variables, Mapping):
        raise ValueError(f"variables must be a mapping {{'params': {{...}}}}, got a {type(variables).__name__}")
    params = variables["params"] if "params" in variables else variables
    if not isinstance(params, Mapping):
        raise ValueError(f"variables['params'] must be a mapping of parameter names to arrays, got a "
                         f"{type(params).__name__}")
    checked_specs(module, params, "variables['params']")
    cls = NNX_CLASSES[type(module)]
    accepted = inspect.signature(cls.__init__).parameters
    options = {name: getattr(module, name) for name in accepted if name not in ("self", "input_size", "rngs")
               and hasattr(module, name)}
    first = params["weight_ih_l0"] if "weight_ih_l0" in params else params["weight_ih_l0_reverse"]
    model = cls(np.shape(first)[1], **options, rngs=nnx.Rngs(0))  # its drawn parameters are replaced
    _load(model, params, "variables['params']")
    if rngs is not None and model.rngs is not None:
        model.rngs = rngs["dropout"].fork()
    return model


def params_from_torch(model: RecurrentStack, state_dict: Mapping) -> RecurrentStack:
    """Load a PyTorch state_dict of the same architecture into the model (in place).

    state_dict: {name: tensor or array} with PyTorch's names (weight_ih_l{k}[_reverse], ...),
    the model's shapes. Returns the model. Dtypes are kept, as in `jaxseq.nn.params_from_torch`.
    """
    _check_model(model)
    _check_shapes(model, state_dict, "state_dict")
    variables = linen.params_from_torch(model.linen, state_dict)
    _load(model, variables["params"], "state_dict")
    return model


def params_to_torch(model: RecurrentStack, state=None) -> dict[str, np.ndarray]:
    """A PyTorch state_dict {name: np.ndarray} (PyTorch's names, shapes and order).

    state: None (the model's parameters) or an `nnx.State` / mapping of the same names,
    e.g. `nnx.grad(loss)(model)`, whose entries then compare with a torch module's `.grad`s.
    """
    _check_model(model)
    if state is None:
        params = model.params()
    elif isinstance(state, nnx.State):
        params = nnx.to_pure_dict(state)
    else:
        params = state
    return linen.params_to_torch(model.linen, params)
