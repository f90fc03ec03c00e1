"""`jaxseq.models.generation_step`: the fast step (weights converted once, the embedding folded
into layer 0's input side) gives the readable step's logits and state, and the same text for
the same key, for every cell; its loop body transposes no weight; bad variables are named.

Shapes: N streams, V vocabulary, S layers, H hidden size, L generated tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.models import LanguageModel
from jaxseq.models import text_sampling
from jaxseq.models.generation_step import fast_step, model_step, prepare_step

V, N, L = 11, 2, 40
PROMPT = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
SAMPLED = text_sampling._options(1.0, 8, None, V)  # temperature 1, top-k 8 (top-p off)


def small_model(cell: str, tie_weights: bool):
    """A 2-layer model with a non-zero decoder bias (0 would hide a missing bias)."""
    model = LanguageModel(vocab_size=V, cell=cell, embed_size=6, hidden_size=6, num_layers=2, tie_weights=tie_weights)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    bias = np.random.default_rng(1).normal(0.0, 1.0, V).astype(np.float32)
    variables["params"]["decoder"]["bias"] = jnp.asarray(bias)
    return model, variables


def random_state(model, seed: int = 2):
    rng = np.random.default_rng(seed)
    shape = (model.num_layers, N, model.hidden_size)
    h = jnp.asarray(rng.normal(0.0, 0.5, shape), jnp.float32)
    return (h, jnp.asarray(rng.normal(0.0, 0.5, shape), jnp.float32)) if model.cell == "lstm" else h


@pytest.mark.parametrize("cell,tie_weights", [("gru", True), ("rnn", False)])  # the LSTM: the loop test below
def test_the_fast_step_gives_the_model_steps_logits_and_state(cell, tie_weights):
    model, variables = small_model(cell, tie_weights)
    state = random_state(model)
    both = jax.jit(lambda v, token, s: (model_step(model, v, token, s),
                                        fast_step(model, prepare_step(model, v), token, s)))
    expected, got = both(variables, PROMPT[:, 0], state)  # one compilation for the two
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(expected[0]).max()) > 0.1  # logits far from 0: the comparison means something


def test_the_fast_loop_samples_the_readable_loops_text_for_the_same_key():
    """The LSTM (the char model's cell): 40 sampled tokens and the state after them."""
    model, variables = small_model("lstm", False)
    sampler = text_sampling.SamplerState(random_state(model), jnp.asarray(PROMPT[:, -1]), jax.random.key(3))
    readable, readable_end = text_sampling._sample(model_step, model, variables, sampler, L, SAMPLED)
    fast, fast_end = text_sampling._sample(fast_step, model, prepare_step(model, variables), sampler, L, SAMPLED)
    np.testing.assert_array_equal(fast, readable)
    assert len(np.unique(np.asarray(fast))) > 3  # sampled, not a constant
    for a, b in zip(jax.tree_util.tree_leaves(fast_end.state), jax.tree_util.tree_leaves(readable_end.state)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _primitives(jaxpr) -> set[str]:
    """Every primitive in a jaxpr and the jaxprs nested in its equations' parameters."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    names |= _primitives(inner)
    return names


def _loop_body_primitives(step, model, inputs, sampler) -> set[str]:
    closed = jax.make_jaxpr(lambda s: text_sampling._sample(step, model, inputs, s, 5, SAMPLED))(sampler)
    loop = next(eqn for eqn in _all_eqns(closed.jaxpr) if eqn.primitive.name == "scan")  # the outermost
    assert loop.params["length"] == 5
    return _primitives(loop.params["jaxpr"].jaxpr)


def _all_eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                yield from _all_eqns(inner)


def test_the_fast_loop_transposes_no_weight_per_token():
    model, variables = small_model("lstm", False)
    sampler = text_sampling.start_sampling(model, variables, PROMPT, jax.random.key(0))
    assert "transpose" in _loop_body_primitives(model_step, model, variables, sampler)  # the check can fail
    assert "transpose" not in _loop_body_primitives(fast_step, model, prepare_step(model, variables), sampler)


def test_bad_variables_are_one_line_errors_naming_what_is_missing():
    model, variables = small_model("lstm", False)
    with pytest.raises(ValueError, match=r"variables must be the model's \{'params'"):
        prepare_step(model, {"rnn": {}})
    rnn = dict(variables["params"]["rnn"])
    del rnn["weight_hh_l1"]
    with pytest.raises(ValueError, match=r"variables\['params'\]\['rnn'\] is missing 'weight_hh_l1'") as info:
        prepare_step(model, {"params": {**variables["params"], "rnn": rnn}})
    assert "\n" not in str(info.value)
