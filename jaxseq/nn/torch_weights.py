"""PyTorch state_dicts in and out of the `jaxseq.nn` modules.

The modules keep PyTorch's parameter names, shapes, layout and gate order
(`jaxseq.nn.parameters`), so the mapping is a check and a change of array type, nothing
else: `params_to_torch(m, params_from_torch(m, sd))` equals `sd` bit for bit.

    variables = params_from_torch(m, torch_module.state_dict())   # -> {"params": {...}}
    state_dict = params_to_torch(m, variables)                    # -> {name: np.ndarray}

`params_to_torch` maps any tree of that structure, e.g. `jax.grad` of a loss with respect to
the variables, whose entries then compare with the PyTorch module's `.grad`s by name.
A missing, extra or wrongly shaped entry is a one-line `ValueError` naming it and the
expected shape, as are a state_dict that is no mapping and a tensor of a dtype that cannot
be converted. bfloat16 tensors are converted exactly (to JAX's bfloat16).
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np

from jaxseq.nn.parameters import ParameterSpec, parameter_name, parameter_specs

__all__ = ["params_from_torch", "params_to_torch"]


def _as_numpy(name: str, value) -> np.ndarray:
    """A torch tensor (detached, moved to the CPU), JAX or NumPy array as a NumPy array.

    NumPy has no bfloat16 of its own, so torch cannot hand one over: such a tensor goes
    through float32 (exact: bfloat16 is float32 with a shorter mantissa) to JAX's bfloat16.
    """
    if hasattr(value, "detach"):  # a torch.Tensor: jaxseq never imports torch
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            return tensor.float().numpy().astype(jnp.bfloat16)
        try:
            value = tensor.numpy()
        except TypeError:  # float8 and other dtypes NumPy cannot hold
            raise ValueError(f"{name} has dtype {tensor.dtype}, which cannot be converted; expected float16, "
                             "bfloat16, float32 or float64") from None
    array = np.asarray(value)
    if not jnp.issubdtype(array.dtype, jnp.floating):  # jnp's: it knows bfloat16
        raise ValueError(f"{name} must be a floating-point array, got dtype {array.dtype}")
    return array


def _mapping(value, name: str, holding: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping of parameter names to {holding}, got a {type(value).__name__}")
    return value


def _describe(shape: tuple) -> str:
    dims = ["?" if dim is None else str(dim) for dim in shape]
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"


def _module_label(module) -> str:
    extra = "".join(f", {name}={getattr(module, name)}" for name, default in (("bias", True), ("proj_size", 0))
                    if getattr(module, name) != default)
    return (f"{module.cell.name}(hidden_size={module.hidden_size}, num_layers={module.num_layers}, "
            f"bidirectional={module.bidirectional}{extra})")


def _input_size(arrays: Mapping[str, np.ndarray]) -> int | None:
    """D, read from the first layer's input weights (either direction), or None."""
    for direction in (0, 1):
        weight = arrays.get(parameter_name("weight_ih", 0, direction))
        if weight is not None and weight.ndim == 2:
            return weight.shape[1]
    return None


def checked_specs(module, arrays: Mapping[str, np.ndarray], what: str) -> list[ParameterSpec]:
    """The module's parameter specs (state_dict order) after checking `arrays` against them.

    Raises ValueError for the first missing, extra or wrongly shaped entry; `what` names the
    mapping in the message ("state_dict", "params").
    """
    specs = parameter_specs(module.cell.gates, module.hidden_size, module.num_layers, module.num_directions,
                            _input_size(arrays), proj_size=module.proj_size, bias=module.bias)
    expected = {spec.name for spec in specs}
    for spec in specs:
        if spec.name not in arrays:
            expected_shape = f"{spec.meaning} = {_describe(spec.shape)}"
            raise ValueError(f"{what} is missing {spec.name!r}, expected shape {expected_shape}")
        shape = arrays[spec.name].shape
        if len(shape) != len(spec.shape) or any(want not in (None, got) for want, got in zip(spec.shape, shape)):
            raise ValueError(
                f"{what} {spec.name!r} must have shape {spec.meaning} = {_describe(spec.shape)}, got {tuple(shape)}"
            )
    for name in arrays:
        if name not in expected:
            raise ValueError(f"{what} has an unexpected key {name!r}: {_module_label(module)} has no such parameter")
    return specs


def params_from_torch(module, state_dict: Mapping) -> dict:
    """The module's variables from a PyTorch state_dict of the same architecture.

    Inputs: module: a `jaxseq.nn` RNN, LSTM or GRU; state_dict {name: tensor or array} with
      PyTorch's names: weight_ih_l{k}[_reverse] (G*H, D_in), weight_hh_l{k}[_reverse]
      (G*H, H), bias_ih_l{k}[_reverse] and bias_hh_l{k}[_reverse] (G*H,) (not with
      bias=False), weight_hr_l{k}[_reverse] (P, H) (an LSTM with proj_size P; weight_hh is
      then (4H, P)).
    Returns: {"params": {name: jax.Array}}, for `module.apply`. Dtypes are kept (float64
      stays float64 when JAX's x64 mode is on).
    """
    state_dict = _mapping(state_dict, "state_dict", "tensors (a state_dict)")
    arrays = {name: _as_numpy(f"state_dict {name!r}", value) for name, value in state_dict.items()}
    specs = checked_specs(module, arrays, "state_dict")
    return {"params": {spec.name: jnp.asarray(arrays[spec.name]) for spec in specs}}


def params_to_torch(module, variables: Mapping) -> dict[str, np.ndarray]:
    """A PyTorch state_dict from the module's variables (or a gradient tree of them).

    Inputs: module: a `jaxseq.nn` RNN, LSTM or GRU; variables: {"params": {...}} as `init`
      or `params_from_torch` return them (or `jax.grad` with respect to them), or the
      "params" dict itself.
    Returns: {name: np.ndarray} with PyTorch's names, shapes and order (G*H, D_in) etc.;
      `torch_module.load_state_dict({k: torch.from_numpy(v) for k, v in ...items()})` loads it.
    """
    variables = _mapping(variables, "variables", "arrays ({'params': {...}} or the params themselves)")
    params = _mapping(variables["params"] if "params" in variables else variables, "variables['params']", "arrays")
    arrays = {name: _as_numpy(f"params {name!r}", value) for name, value in params.items()}
    specs = checked_specs(module, arrays, "params")
    return {spec.name: np.array(arrays[spec.name], copy=True) for spec in specs}
