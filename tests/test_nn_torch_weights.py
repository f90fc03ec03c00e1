"""PyTorch weights in and out of `jaxseq.nn`: the state_dict round trip is bitwise, `init`
gives PyTorch's names, shapes, order and value range, `params_to_torch` maps gradient trees,
and a missing, extra or misshaped key is a one-line ValueError naming it and the shape."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxseq import nn as jnn
from tests.nn_torch_twin import MODULES, make_pair

D, H = 3, 4


@pytest.mark.parametrize("cell", sorted(MODULES))
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_state_dict_round_trips_bitwise(cell, num_layers, bidirectional):
    module, variables, torch_module = make_pair(cell, D, H, num_layers, bidirectional)
    state_dict = torch_module.state_dict()
    back = jnn.params_to_torch(module, jnn.params_from_torch(module, state_dict))
    assert list(back) == list(state_dict)
    for name, value in state_dict.items():
        assert back[name].dtype == np.float32 and back[name].shape == tuple(value.shape), name
        assert back[name].tobytes() == value.numpy().tobytes(), name
    torch_module.load_state_dict({name: torch.from_numpy(value) for name, value in back.items()})


def test_params_from_torch_takes_numpy_arrays_and_keeps_float64(x64):
    module, _, torch_module = make_pair("gru", D, H, 2, True)
    state_dict = {name: value.double().numpy() for name, value in torch_module.state_dict().items()}
    variables = jnn.params_from_torch(module, state_dict)
    assert all(value.dtype == jnp.float64 for value in variables["params"].values())
    back = jnn.params_to_torch(module, variables["params"])  # the params dict itself works too
    assert all(back[name].tobytes() == value.tobytes() for name, value in state_dict.items())


@pytest.mark.parametrize("cell", sorted(MODULES))
def test_init_draws_torchs_names_shapes_and_range(cell):
    ours, theirs = MODULES[cell]
    module = ours(hidden_size=H, num_layers=2, bidirectional=True)
    variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((2, 5, D)))
    expected = theirs(D, H, num_layers=2, bidirectional=True, batch_first=True).state_dict()
    assert sorted(variables["params"]) == sorted(expected)
    state_dict = jnn.params_to_torch(module, variables)
    assert list(state_dict) == list(expected)
    bound = 1 / np.sqrt(H)
    values = []
    for name, value in state_dict.items():
        assert value.shape == tuple(expected[name].shape) and value.dtype == np.float32, name
        assert np.all(np.abs(value) <= bound), name
        values.append(value.ravel())
    values = np.concatenate(values)
    assert values.min() < -0.9 * bound and values.max() > 0.9 * bound  # uniform over the range
    assert len(np.unique(values)) == values.size  # every parameter drawn independently


def test_params_to_torch_maps_a_gradient_tree():
    module, variables, _ = make_pair("lstm", D, H, 2, True)
    x = jnp.ones((2, 3, D))
    grads = jax.jit(jax.grad(lambda v: jnp.sum(module.apply(v, x)[0])))(variables)
    mapped = jnn.params_to_torch(module, grads)
    assert list(mapped) == list(jnn.params_to_torch(module, variables))
    assert all(np.any(g != 0) for g in mapped.values())
    # b = bias_ih + bias_hh inside the LSTM: both biases get the same gradient
    assert np.array_equal(mapped["bias_ih_l1_reverse"], mapped["bias_hh_l1_reverse"])


def _state_dict():
    module, _, torch_module = make_pair("lstm", D, H, 2, True)
    return module, dict(torch_module.state_dict())


def _one_line_error(module, state_dict, match):
    with pytest.raises(ValueError, match=match) as info:
        jnn.params_from_torch(module, state_dict)
    assert "\n" not in str(info.value)


def test_a_missing_key_is_named_with_its_shape():
    module, state_dict = _state_dict()
    del state_dict["bias_hh_l1_reverse"]
    _one_line_error(module, state_dict, r"missing 'bias_hh_l1_reverse', expected shape \(4H,\) = \(16,\)")
    del state_dict["weight_ih_l1"]
    _one_line_error(module, state_dict, r"missing 'weight_ih_l1', expected shape \(4H, 2H\) = \(16, 8\)")


def test_an_extra_key_is_named():
    module, state_dict = _state_dict()
    _one_line_error(module, {**state_dict, "weight_ih_l2": state_dict["weight_ih_l1"]},
                    r"unexpected key 'weight_ih_l2': LSTM\(hidden_size=4, num_layers=2, bidirectional=True\)")
    _one_line_error(module, {**state_dict, "weight_hr_l0": np.zeros((4, 4), np.float32)}, "'weight_hr_l0'")


def test_a_misshaped_key_is_named_with_the_expected_shape():
    module, state_dict = _state_dict()
    _one_line_error(module, {**state_dict, "weight_hh_l1_reverse": torch.zeros(16, 5)},
                    r"'weight_hh_l1_reverse' must have shape \(4H, H\) = \(16, 4\), got \(16, 5\)")
    _one_line_error(module, {**state_dict, "weight_ih_l0_reverse": torch.zeros(16, D + 1)},
                    r"'weight_ih_l0_reverse' must have shape \(4H, D\) = \(16, 3\), got \(16, 4\)")
    _one_line_error(module, {**state_dict, "bias_ih_l0": torch.zeros(16, 1)}, r"'bias_ih_l0' must have shape \(4H,\)")
    gru_state_dict = make_pair("gru", D, H, 2, True)[2].state_dict()  # 3H rows, not 4H
    _one_line_error(module, gru_state_dict, r"'weight_ih_l0' must have shape \(4H, D\) = \(16, 3\), got \(12, 3\)")


def test_integer_weights_and_bad_gradient_trees_are_errors():
    module, state_dict = _state_dict()
    _one_line_error(module, {**state_dict, "bias_ih_l0": np.zeros(16, np.int32)}, "'bias_ih_l0' must be a floating")
    params = jnn.params_from_torch(module, state_dict)["params"]
    with pytest.raises(ValueError, match="params is missing 'weight_ih_l0'"):
        jnn.params_to_torch(module, {k: v for k, v in params.items() if k != "weight_ih_l0"})


@pytest.mark.parametrize("state_dict, got", [([1, 2], "list"), (None, "NoneType"), ("weights.pt", "str")])
def test_a_state_dict_that_is_no_mapping_is_a_value_error(state_dict, got):
    module, _ = _state_dict()
    with pytest.raises(ValueError) as info:
        jnn.params_from_torch(module, state_dict)
    assert str(info.value) == f"state_dict must be a mapping of parameter names to tensors (a state_dict), got a {got}"
    with pytest.raises(ValueError, match=f"^variables must be a mapping of parameter names to arrays.*got a {got}$"):
        jnn.params_to_torch(module, state_dict)


def test_a_bfloat16_state_dict_is_converted_exactly():
    module, state_dict = _state_dict()
    halved = {name: tensor.to(torch.bfloat16) for name, tensor in state_dict.items()}
    params = jnn.params_from_torch(module, halved)["params"]
    assert all(value.dtype == jnp.bfloat16 for value in params.values())
    for name, tensor in halved.items():
        np.testing.assert_array_equal(np.asarray(params[name], np.float32), tensor.float().numpy())
    back = jnn.params_to_torch(module, {"params": params})
    assert back["weight_ih_l0"].dtype == jnp.bfloat16
    with pytest.raises(ValueError) as info:  # a tensor dtype NumPy has no name for
        jnn.params_from_torch(module, {**state_dict, "bias_ih_l0": state_dict["bias_ih_l0"].to(torch.float8_e4m3fn)})
    assert str(info.value) == ("state_dict 'bias_ih_l0' has dtype torch.float8_e4m3fn, which cannot be converted; "
                               "expected float16, bfloat16, float32 or float64")

