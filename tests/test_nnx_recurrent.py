"""`jaxseq.nnx` RNN / LSTM / GRU: equal to their `jaxseq.nn` Linen twins on the same
parameters (outputs, final states, every gradient, to 1e-6) and to `torch.nn` on packed
sequences (float32, 1e-4); Linen variables and PyTorch state_dicts both ways; dropout in
training mode only (`train()` / `eval()` / `nnx.view`); `nnx.jit`, `nnx.value_and_grad`,
`nnx.Optimizer`, `nnx.split` / `merge`, and an Orbax checkpoint of `nnx.state`; one-line
errors for bad arguments. Shapes: N batch, T time, D input, H hidden.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxseq import nn as jnn
from jaxseq import nnx as jnnx
from jaxseq.gradcheck import FLOAT32_TOL
from tests.helpers import scaled_error
from tests.nn_torch_twin import differentiate_run, jaxseq_run, make_pair, random_batch, torch_run

N, T, D, H = 4, 5, 3, 4
LENGTHS = jnp.array([5, 1, 0, 3])  # (N,): T, 1 and 0 among them
NNX_TOL = 1e-6  # NNX vs Linen on the same parameters (the same computation: in practice 0)


def _nnx_run(model, x, lengths, states, dout, dstates):
    """`differentiate_run` of tests.nn_torch_twin for an NNX model, through
    `nnx.jit(nnx.grad(...))`: (out, finals, grads) with the parameter gradients under
    PyTorch's names."""
    return differentiate_run(
        lambda m, x, lengths, initial: m(x, lengths=lengths, initial_state=initial),
        model, model.batch_first, nnx.grad, nnx.jit, lambda d: jnnx.params_to_torch(model, d),
        x, lengths, states, dout, dstates)


def _errors(ours, theirs) -> dict[str, float]:
    (out, final, grads), (out_t, final_t, grads_t) = ours, theirs
    assert list(grads["params"]) == list(grads_t["params"])
    gradients = [scaled_error(grads["x"], grads_t["x"])]
    gradients += [scaled_error(a, b) for a, b in zip(grads["states"], grads_t["states"], strict=True)]
    gradients += [scaled_error(grads["params"][name], g) for name, g in grads_t["params"].items()]
    return {"outputs": scaled_error(out, out_t),
            "states": max(scaled_error(a, b) for a, b in zip(final, final_t, strict=True)),
            "gradients": max(gradients)}


NNX_CLASSES = {"rnn": jnnx.RNN, "lstm": jnnx.LSTM, "gru": jnnx.GRU}
CONFIGS = [("rnn", 1, True, {"nonlinearity": "relu"}), ("lstm", 1, True, {"proj_size": 2}),
           ("gru", 2, False, {"bias": False, "batch_first": False})]


@pytest.mark.parametrize("cell,num_layers,bidirectional,options", CONFIGS,
                         ids=[f"{c[0]}-{c[1]}-{'bi' if c[2] else 'uni'}-{'-'.join(map(str, c[3].values()))}"
                              for c in CONFIGS])
def test_nnx_equals_linen_and_torch_on_packed_sequences(cell, num_layers, bidirectional, options):
    """Lengths with 1 and T, random initial states, PyTorch's options passed alike to all
    three: the NNX module loaded from torch's state_dict equals the Linen module (1e-6) and
    torch (1e-4), and from_linen gives it the same parameters."""
    module, variables, torch_module = make_pair(cell, D, H, num_layers, bidirectional, seed=1, **options)
    model = NNX_CLASSES[cell](D, H, num_layers=num_layers, bidirectional=bidirectional, **options,
                              rngs=nnx.Rngs(0))
    jnnx.params_from_torch(model, torch_module.state_dict())
    assert model.linen == module
    jax.tree.map(np.testing.assert_array_equal, jnnx.to_linen(jnnx.from_linen(module, variables))[1], variables)
    batch = random_batch(cell, N, T, D, H, num_layers, 2 if bidirectional else 1, seed=2,
                         proj_size=options.get("proj_size", 0))
    ours = _nnx_run(model, **batch)
    linen_errors = _errors(ours, jaxseq_run(module, variables, **batch))
    torch_errors = _errors(ours, torch_run(torch_module, **batch))
    assert max(linen_errors.values()) <= NNX_TOL, linen_errors
    assert max(torch_errors.values()) < FLOAT32_TOL, torch_errors


# ------------------------------------------------------------------ conversions


def _x(seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((N, T, D)), jnp.float32)


@pytest.fixture(scope="module")
def lstm_pair():
    """A 2-layer bidirectional Linen LSTM with dropout, its variables and its NNX twin."""
    module = jnn.LSTM(hidden_size=H, num_layers=2, bidirectional=True, dropout=0.5)
    variables = module.init(jax.random.key(0), _x(), lengths=LENGTHS)  # the shapes every call here uses
    return module, variables, jnnx.from_linen(module, variables, rngs=nnx.Rngs(dropout=7))




def test_from_linen_and_to_linen_round_trip(lstm_pair):
    module, variables, model = lstm_pair
    assert isinstance(model, jnnx.LSTM) and (model.input_size, model.hidden_size) == (D, H)
    assert (model.num_layers, model.bidirectional, model.dropout) == (2, True, 0.5)
    assert model.weight_hh_l1_reverse.shape == (4 * H, H)
    back_module, back_variables = jnnx.to_linen(model)
    assert back_module == module
    jax.tree.map(np.testing.assert_array_equal, back_variables, variables)
    x = _x()
    model.eval()
    jax.tree.map(np.testing.assert_array_equal, model(x, lengths=LENGTHS),
                 module.apply(variables, x, lengths=LENGTHS))
    model.train()


def test_torch_state_dict_round_trips_bit_for_bit(lstm_pair):
    module, variables, _ = lstm_pair
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    state_dict = {k: v.numpy() for k, v in torch.nn.LSTM(D, H, 2, bidirectional=True).state_dict().items()}
    model = jnnx.params_from_torch(jnnx.from_linen(module, variables), state_dict)
    back = jnnx.params_to_torch(model)
    assert list(back) == list(state_dict)
    for name, value in state_dict.items():
        np.testing.assert_array_equal(back[name], value)
        np.testing.assert_array_equal(getattr(model, name)[...], value)


# ------------------------------------------------------------------ dropout and modes


def test_dropout_only_in_training_mode(lstm_pair):
    """Training mode (the default): masks differ per call and per rngs seed; eval() and
    nnx.view(deterministic=True): the Linen module's deterministic output."""
    module, variables, model = lstm_pair
    x = _x()
    plain = module.apply(variables, x, lengths=LENGTHS)[0]
    model.train()
    first, second = model(x, lengths=LENGTHS)[0], model(x, lengths=LENGTHS)[0]
    assert not np.allclose(first, plain) and not np.allclose(first, second)
    view = nnx.view(model, deterministic=True)
    np.testing.assert_array_equal(view(x, lengths=LENGTHS)[0], plain)
    model.eval()
    np.testing.assert_array_equal(model(x, lengths=LENGTHS)[0], plain)
    model.train()
    same_seed = [jnnx.from_linen(module, variables, rngs=nnx.Rngs(dropout=3))(x, lengths=LENGTHS)[0]
                 for _ in range(2)]
    np.testing.assert_array_equal(*same_seed)


# ------------------------------------------------------------------ NNX transforms


def test_optimizer_step_split_merge_and_value_and_grad():
    """A jitted nnx.Optimizer step lowers the loss and changes every parameter; the model
    rebuilt by nnx.merge(nnx.split(...)) gives the same outputs."""
    model = jnnx.GRU(D, H, num_layers=2, dropout=0.25, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)
    x, lengths = _x(), LENGTHS
    target = jnp.asarray(np.random.default_rng(1).standard_normal((N, T, H)), jnp.float32)

    def loss_fn(model):
        out, _ = model(x, lengths=lengths)
        return jnp.mean((out - target) ** 2)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    before = jnnx.params_to_torch(model)
    losses = [float(step(model, optimizer)) for _ in range(5)]
    assert losses[-1] < losses[0], losses
    after = jnnx.params_to_torch(model)
    assert all(not np.array_equal(before[name], after[name]) for name in before)
    model.eval()
    graphdef, state = nnx.split(model)
    np.testing.assert_array_equal(nnx.merge(graphdef, state)(x, lengths=lengths)[0], model(x, lengths=lengths)[0])


def _leaves(state) -> list[np.ndarray]:
    """The arrays of an nnx.State (a PRNG key as its key data), in the state's order."""
    def plain(a):
        return np.asarray(jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
    return [plain(leaf) for leaf in jax.tree.leaves(state)]


def test_orbax_checkpoint_of_the_state_round_trips(tmp_path, lstm_pair):
    """nnx.state(model) (parameters and the dropout stream) saved by Orbax restores into a
    model built with the same arguments and another seed: every array equal. (Calling the
    restored model would compile its loops again for the restored arrays' placement, so it
    is not called here: its call is a function of these arrays.)"""
    ocp = pytest.importorskip("orbax.checkpoint")
    _, _, model = lstm_pair
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "state", nnx.state(model))
        checkpointer.wait_until_finished()
        other = jnnx.LSTM(D, H, 2, bidirectional=True, dropout=0.5, rngs=nnx.Rngs(99))
        assert not np.array_equal(other.weight_ih_l0[...], model.weight_ih_l0[...])
        restored = checkpointer.restore(tmp_path / "state", nnx.state(other))
    nnx.update(other, restored)
    assert len(_leaves(nnx.state(model))) == 16 + 2  # the parameters, the stream's key and count
    for got, want in zip(_leaves(nnx.state(other)), _leaves(nnx.state(model)), strict=True):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ bad input


def test_bad_arguments_give_one_line_errors(lstm_pair):
    _, _, model = lstm_pair
    with pytest.raises(ValueError, match=r"^LSTM: input_size must be a positive int, got 0$"):
        jnnx.LSTM(0, H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^GRU: rngs must be an nnx.Rngs"):
        jnnx.GRU(D, H, rngs=0)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        jnnx.RNN(D, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^proj_size must be smaller than hidden_size = 4, got 4$"):
        jnnx.LSTM(D, H, proj_size=H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^batch_first must be a bool, got 0$"):
        jnnx.GRU(D, H, batch_first=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^module must be a jaxseq.nn RNN, LSTM or GRU, got a LSTM$"):
        jnnx.from_linen(model, {})
    with pytest.raises(ValueError, match=r"^model must be a jaxseq.nnx RNN, LSTM or GRU, got a LSTM$"):
        jnnx.params_to_torch(jnn.LSTM(hidden_size=H))
    wrong_d = dict(jnnx.params_to_torch(model), weight_ih_l0=np.zeros((4 * H, D + 1), np.float32))
    with pytest.raises(ValueError, match=r"^state_dict 'weight_ih_l0' must have shape \(16, 3\) \(input_size=3\), "
                                         r"got \(16, 4\)$"):
        jnnx.params_from_torch(model, wrong_d)
    with pytest.raises(ValueError, match=r"^state_dict is missing 'bias_hh_l1'"):
        jnnx.params_from_torch(model, {k: v for k, v in jnnx.params_to_torch(model).items() if k != "bias_hh_l1"})
    with pytest.raises(ValueError, match=r"x must have shape \(N, T, D\) = \(\?, \?, 3\)"):
        model(jnp.zeros((2, T, D + 1)))
