"""`jaxseq.models.LanguageModel`: PyTorch parity of a TBPTT segment and of 20 clipped SGD steps,
truncation, the hand-written backward against plain autodiff, AWD-LSTM's regularisers, the
config and the PyTorch weights.

Shapes: N streams, T steps, V vocabulary, E embedding, H hidden, S = num_layers.

- Parity: the twin is `benchmarks/speed/torch_models.LanguageModel` (PyTorch's
  `word_language_model` `RNNModel`) with the jaxseq model's weights; a segment entered with
  a random carried state: loss, final state and every gradient (parameters and the state)
  within 1e-5 (float32, scaled error max|a-b|/max|b|); 20 SGD steps with global-norm
  clipping (optax vs torch.nn.utils.clip_grad_norm_), the state carried and detached:
  losses within 1e-4.
- Truncation: segment-by-segment token losses equal one long forward; the gradient of a
  segment's loss from a stop_gradient'ed state is that of a fresh forward from the state as a
  constant, and the words read only by the earlier segment get no gradient.
- `jax.grad` equals autodiff of a plain-JAX model (embedding, `lax.scan` cells of
  tests/test_nn_autodiff.py, affine, log-softmax) in float64 to 1e-9, and its jaxpr holds the
  layers' custom_vjp calls.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from jax import lax

import jaxseq.models.language_model as lm_module
from jaxseq import layers as jaxseq_layers
from jaxseq import nn as jnn
from jaxseq.models import (LanguageModel, language_model_config, lm_loss, lm_params_from_torch, lm_params_to_torch,
                           token_losses)
from tests.helpers import AUTODIFF_TOL, relative_error, scaled_error
from tests.test_nn_autodiff import CELLS as REFERENCE_CELLS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "speed"))
from torch_models import detach_state, language_model_from_jax  # noqa: E402

V, N, T = 13, 3, 6
SEGMENT_TOL = 1e-5
SGD_TOL = 1e-4


def build(cell="lstm", num_layers=2, tie=False, seed=0, embed_size=6, **fields):
    """A model (H = 6; E = 6 unless given: one shape for every layer, so the tests share their
    compiled loops) and variables with a random decoder bias (every parameter's value matters)."""
    model = LanguageModel(vocab_size=V, cell=cell, embed_size=embed_size, hidden_size=6, num_layers=num_layers,
                          tie_weights=tie, **fields)
    variables = model.init(jax.random.key(seed), jnp.zeros((1, 1), jnp.int32))
    bias = np.random.default_rng(seed).normal(0, 0.5, V).astype(np.float32)
    variables["params"]["decoder"]["bias"] = jnp.asarray(bias, model.param_dtype)
    return model, variables


def random_state(model, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    shape = (model.num_layers, N, model.hidden_size)
    draw = lambda: (scale * rng.standard_normal(shape)).astype(np.float32)  # noqa: E731
    return (draw(), draw()) if model.cell == "lstm" else draw()


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def loss_and_grads(model, params, tokens, targets, state):
    """((loss, final state), (dparams, dstate)) of one segment. Not jitted: the recurrent
    loops are (`jaxseq.nn.cells`), and the tests' models share their shapes, so each loop
    compiles once for the whole file where a jitted step would compile per model."""

    def loss(params, state):
        return model.apply({"params": params}, tokens, targets, state, method="loss")

    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, state)


def torch_segment(twin, tokens, targets, state):
    twin.zero_grad()
    state_t = tuple(torch.tensor(s, requires_grad=True) for s in as_tuple(state))
    loss, final = twin.loss(torch.tensor(tokens, dtype=torch.int64), torch.tensor(targets, dtype=torch.int64),
                            state_t if len(state_t) > 1 else state_t[0])
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in twin.named_parameters()}  # tied: encoder.weight once
    final = tuple(f.detach().numpy() for f in as_tuple(final))
    return loss.item(), final, grads, tuple(s.grad.numpy() for s in state_t)


def segment_errors(cell, num_layers, tie, seed=0):
    """Scaled errors of one TBPTT segment entered with a random state, jaxseq vs the twin."""
    model, variables = build(cell, num_layers, tie, seed)
    twin = language_model_from_jax(language_model_config(model), lm_params_to_torch(model, variables))
    rng = np.random.default_rng(seed + 1)
    tokens, targets = rng.integers(0, V, (2, N, T))
    state = random_state(model, seed + 2)
    (loss, final), (dparams, dstate) = loss_and_grads(model, variables["params"], tokens, targets, state)
    loss_t, final_t, grads_t, dstate_t = torch_segment(twin, tokens, targets, state)
    grads = lm_params_to_torch(model, dparams)
    errors = {"loss": abs(float(loss) - loss_t) / abs(loss_t)}
    errors |= {f"grad {name}": scaled_error(grads[name], g) for name, g in grads_t.items()}
    errors |= {f"grad state {k}": scaled_error(a, b) for k, (a, b) in enumerate(zip(as_tuple(dstate), dstate_t))}
    errors |= {f"final state {k}": scaled_error(a, b) for k, (a, b) in enumerate(zip(as_tuple(final), final_t))}
    assert set(grads_t) == {k for k in grads if not (tie and k == "decoder.weight")}
    return errors


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers,tie", [(1, False), (1, True), (2, False), (2, True)])
def test_a_tbptt_segment_from_a_carried_state_matches_pytorch(cell, num_layers, tie):
    errors = segment_errors(cell, num_layers, tie, seed=num_layers + 2 * tie)
    worst = max(errors, key=errors.get)
    print(f"{cell} layers={num_layers} tie={tie}: largest {worst} {errors[worst]:.1e}")
    assert errors[worst] < SEGMENT_TOL, errors


def learnable_text(streams, length, seed):
    """(streams, length) ids that mostly count up (t+1 follows t, modulo V), one in five random."""
    rng = np.random.default_rng(seed)
    text = (rng.integers(0, V, (streams, 1)) + np.arange(length)) % V
    return np.where(rng.random(text.shape) < 0.2, rng.integers(0, V, text.shape), text)


def sgd_losses(cell, num_layers, tie, steps=20, bptt=5, lr=2.0, clip=0.25, seed=3):
    """Plain SGD with clipping by global norm on both sides (the PyTorch example's recipe with
    its clip 0.25; lr 2, as its lr 20 makes a model this small diverge), the state carried from
    segment to segment (detached on torch's side, a plain input on jaxseq's).
    Returns (our losses, torch's losses, torch's gradient norms before clipping)."""
    model, variables = build(cell, num_layers, tie, seed)
    twin = language_model_from_jax(language_model_config(model), lm_params_to_torch(model, variables))
    data = learnable_text(N, steps * bptt + 1, seed)
    tx = optax.chain(optax.clip_by_global_norm(clip), optax.sgd(lr))

    @jax.jit
    def step(params, opt_state, state, tokens, targets):
        (loss, state), (grads, _) = loss_and_grads(model, params, tokens, targets, state)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, loss

    params, opt_state, state = variables["params"], tx.init(variables["params"]), model.initial_state(N)
    optimizer = torch.optim.SGD(twin.parameters(), lr=lr)
    state_t = twin.init_state(N)
    ours, theirs, norms = [], [], []
    for i in range(steps):
        tokens, targets = data[:, i * bptt:(i + 1) * bptt], data[:, i * bptt + 1:(i + 1) * bptt + 1]
        params, opt_state, state, loss = step(params, opt_state, state, tokens, targets)
        ours.append(float(loss))
        optimizer.zero_grad()
        loss_t, state_t = twin.loss(torch.tensor(tokens), torch.tensor(targets), detach_state(state_t))
        loss_t.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(twin.parameters(), clip)))
        optimizer.step()
        theirs.append(loss_t.item())
    return np.array(ours), np.array(theirs), np.array(norms)


def project_first_layer(monkeypatch):
    """From here on the model's layer 0 projects its embedded tokens (x_t Wx + b per token), as
    it does when V > N T or under input dropout, instead of the table lookup it uses at this
    file's V <= N T."""
    monkeypatch.setattr(LanguageModel, "_looks_up_first_layer", lambda self, tokens, deterministic: False)


@pytest.fixture
def projecting_first_layer(monkeypatch):
    project_first_layer(monkeypatch)


# (the GRU projects in these deterministic segments anyway: `Cell.lookup_in_evaluation`)
@pytest.mark.parametrize("cell", ["lstm"])
@pytest.mark.parametrize("num_layers,tie", [(1, True), (2, False)])
def test_a_projecting_first_layer_matches_pytorch_too(projecting_first_layer, cell, num_layers, tie):
    errors = segment_errors(cell, num_layers, tie, seed=num_layers + 2 * tie)
    worst = max(errors, key=errors.get)
    print(f"{cell} (projecting layer 0) layers={num_layers} tie={tie}: largest {worst} {errors[worst]:.1e}")
    assert errors[worst] < SEGMENT_TOL, errors


@pytest.mark.parametrize("fields,shape,deterministic,expected", [
    ({}, (N, T), True, True),  # V = 13 <= N T = 18
    ({}, (N, T), False, True),  # training with no input dropout
    ({}, (2, 5), True, False),  # V = 13 > N T = 10: the table would cost more than the projection
    ({"input_dropout": 0.2}, (N, T), True, True),  # evaluation: no dropout acts
    ({"input_dropout": 0.2}, (N, T), False, False),  # training: the dropout sits between embedding and layer 0
    ({"hidden_dropout": 0.2, "output_dropout": 0.2, "embedding_dropout": 0.1, "weight_drop": 0.2}, (N, T), False,
     True),  # none of these sits between the embedding's rows and layer 0's input side
    ({"cell": "gru"}, (N, T), False, True),  # the GRU has one too, used in training
    ({"cell": "gru"}, (N, T), True, False),  # but not in evaluation, where it does not pay
    ({"cell": "rnn"}, (N, T), True, False),  # the RNN has none
])
def test_layer_0_looks_its_input_side_up_only_where_that_is_the_same_and_cheaper(fields, shape, deterministic,
                                                                                 expected):
    model = LanguageModel(vocab_size=V, embed_size=6, hidden_size=6, **fields)
    assert model._looks_up_first_layer(jnp.zeros(shape, jnp.int32), deterministic) is expected


def test_a_stack_without_a_lookup_loop_refuses_token_inputs():
    stack = lm_module._STACKS["rnn"](hidden_size=4, num_layers=1)
    inputs = lm_module.TokenInputs(jnp.zeros((2, 3), jnp.int32), jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"the RNN cell has no lookup loop: pass the stack its input x \(N, T, D\)"):
        stack.init(jax.random.key(0), inputs)


@pytest.mark.parametrize("cell,num_layers,tie", [("lstm", 2, True)])
def test_twenty_clipped_sgd_steps_with_the_carried_state_match_pytorch(cell, num_layers, tie):
    ours, theirs, norms = sgd_losses(cell, num_layers, tie)
    error = float(np.max(np.abs(ours - theirs) / np.abs(theirs)))
    print(f"{cell} layers={num_layers} tie={tie}: 20 SGD steps, largest relative loss error {error:.1e}, "
          f"clipped {np.sum(norms > 0.25)} of 20")
    assert np.sum(norms > 0.25) >= 10  # the clipping acts
    assert ours[-5:].mean() < ours[:5].mean() - 0.1  # it learned: the steps are not no-ops
    assert error < SGD_TOL, (ours, theirs)


# ----------------------------------------------------------------------------- truncation


def test_a_carried_run_equals_one_long_forward_and_no_gradient_crosses_a_segment():
    model, variables = build("lstm", 2, tie=False)
    params = variables["params"]
    rng = np.random.default_rng(5)
    text = rng.integers(0, V, (N, 3 * T + 1))
    state0 = random_state(model, 6)
    forward = lambda params, tokens, state: model.apply({"params": params}, tokens, state)  # noqa: E731

    logits, final = forward(params, text[:, :-1], state0)
    whole = token_losses(logits, text[:, 1:])
    pieces, state = [], state0
    for i in range(3):
        logits, state = forward(params, text[:, i * T:(i + 1) * T], state)
        pieces.append(token_losses(logits, text[:, i * T + 1:(i + 1) * T + 1]))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=2e-6, atol=2e-6)
    for a, b in zip(as_tuple(state), as_tuple(final)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6)

    # segment 1 reads words 0..5 only, segment 2 words 6..12: the decoder is untied, so encoder
    # rows 0..5 get a gradient from segment 2's loss only through the carried state
    first = rng.integers(0, 6, (N, T))
    second, targets = rng.integers(6, V, (N, T)), rng.integers(0, V, (N, T))

    def second_segment_loss(params, truncate):
        _, carried = model.apply({"params": params}, first, state0)
        if truncate:
            carried = lax.stop_gradient(carried)
        return model.apply({"params": params}, second, targets, carried, method="loss")[0]

    _, carried = forward(params, first, state0)
    truncated = jax.grad(second_segment_loss)(params, True)
    full = jax.grad(second_segment_loss)(params, False)
    constant = loss_and_grads(model, params, second, targets, carried)[1][0]
    for a, b in zip(jax.tree_util.tree_leaves(truncated), jax.tree_util.tree_leaves(constant)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.any(truncated["encoder"]["weight"][:6])
    assert np.all(np.abs(full["encoder"]["weight"][:6]).sum(axis=1) > 0)  # the test can fail


# ----------------------------------------------------------------------------- hand-written backward


def reference_loss(model, params, tokens, targets, state):
    """Plain JAX (no custom_vjp): lookup, one `lax.scan` per layer of PyTorch's equations
    (test_nn_autodiff's cells), affine, mean -log_softmax of the targets. -> (loss, final)."""
    cell = REFERENCE_CELLS[model.cell][1]
    W = params["encoder"]["weight"]
    layer_input, finals = W[tokens], []
    for layer in range(model.num_layers):
        w = {kind: params["rnn"][f"{kind}_l{layer}"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}

        def step(carry, x_t, w=w):
            carry = cell(x_t, carry, w)
            return carry, carry[0]

        final, out = lax.scan(step, tuple(s[layer] for s in as_tuple(state)), jnp.swapaxes(layer_input, 0, 1))
        layer_input = jnp.swapaxes(out, 0, 1)
        finals.append(final)
    W_out = W if model.tie_weights else params["decoder"]["weight"]
    logits = layer_input @ W_out.T + params["decoder"]["bias"]
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], axis=-1))
    stacked = tuple(jnp.stack(rows) for rows in zip(*finals))
    return loss, stacked if len(stacked) > 1 else stacked[0]


# One model: the GRU's and RNN's loops climb this rung in test_nn_autodiff.py, tying in the parity tests;
# what the model adds (lookup, layer-to-layer, decoder, loss) is the same for every cell. E != H.
@pytest.mark.parametrize("cell,num_layers,tie,embed_size", [("lstm", 2, False, 4)])
@pytest.mark.parametrize("lookup", [True, False])
def test_jax_grad_runs_the_hand_written_backward_and_equals_autodiff(x64, monkeypatch, cell, num_layers, tie,
                                                                     embed_size, lookup):
    if not lookup:
        project_first_layer(monkeypatch)
    model, variables = build(cell, num_layers, tie, embed_size=embed_size, param_dtype=jnp.float64)
    rng = np.random.default_rng(11)
    tokens, targets = rng.integers(0, V, (2, N, T))
    state = jax.tree_util.tree_map(lambda s: s.astype(np.float64), random_state(model, 12))
    ours_fn = lambda p, s: model.apply({"params": p}, tokens, targets, s, method="loss")  # noqa: E731
    theirs_fn = lambda p, s: reference_loss(model, p, tokens, targets, s)  # noqa: E731
    jaxpr = str(jax.make_jaxpr(ours_fn)(variables["params"], state))
    # custom_vjp layers: the embedding (or layer 0's table, an affine layer), affine and loss,
    # and the cell's loops (each jitted body printed once and called once per layer)
    first = "_temporal_affine_forward" if lookup else "_word_embedding_forward"
    assert {first, "_temporal_affine_forward", "_temporal_softmax_loss_forward",
            "fwd_rule"} <= set(re.findall(r"fwd=(\w+)", jaxpr))
    assert jaxpr.count("custom_vjp_call[") >= 4
    names = re.findall(r"name=(_run_\w+)", jaxpr)
    assert names == [f"_run_{cell}_lookup"] + [f"_run_{cell}"] * (num_layers - 1) if lookup else \
        names == [f"_run_{cell}"] * num_layers
    value_and_grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))  # noqa: E731
    (loss, final), grads = value_and_grad(ours_fn)(variables["params"], state)
    (ref, ref_final), ref_grads = value_and_grad(theirs_fn)(variables["params"], state)
    assert np.isclose(loss, ref, rtol=1e-12)
    for a, b in zip(as_tuple(final), as_tuple(ref_final)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(ref_grads)
    errors = jax.tree_util.tree_map(relative_error, grads, ref_grads)
    worst = max(jax.tree_util.tree_leaves(errors))
    print(f"{cell}: largest relative gradient error {worst:.1e}")
    assert worst < AUTODIFF_TOL, errors


# ----------------------------------------------------------------------------- regularisers


@pytest.fixture
def spies(monkeypatch):
    """Record every call of the three regularisers inside the model: (name, input, output, rate, extra)."""
    calls = []

    def spy(name, function):
        def wrapper(key, x, rate, *args):
            out = function(key, x, rate, *args)
            calls.append((name, np.asarray(x), np.asarray(out), rate, args))
            return out
        monkeypatch.setattr(lm_module, name, wrapper)

    for name in ("sequence_dropout", "embedding_dropout", "weight_drop"):
        spy(name, getattr(lm_module, name))
    return calls


def tokens_with_repeats(seed=0):
    return np.random.default_rng(seed).integers(0, 5, (N, T))  # few words, each read many times


@pytest.mark.parametrize("locked", [True, False])
def test_locked_dropout_shares_one_mask_per_sequence_over_time_at_the_three_places(spies, locked):
    model, variables = build("lstm", 2, input_dropout=0.5, hidden_dropout=0.5, output_dropout=0.5,
                             locked_dropout=locked)
    model.apply(variables, tokens_with_repeats(), deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert [(name, x.shape) for name, x, *_ in spies] == [("sequence_dropout", (N, T, 6)),  # embedded tokens
                                                          ("sequence_dropout", (N, T, 6)),  # between layers
                                                          ("sequence_dropout", (N, T, 6))]  # final output
    for _, x, out, rate, (locked_arg,) in spies:
        assert locked_arg is locked
        keep = out != 0
        np.testing.assert_allclose(out[keep], x[keep] / (1 - rate), rtol=1e-6)
        constant_over_time = np.all(keep == keep[:, :1])
        assert constant_over_time == locked
        if locked:
            assert any(np.any(keep[0, 0] != keep[n, 0]) for n in range(1, N))  # one mask per sequence


def test_weight_drop_masks_weight_hh_only_with_a_new_mask_per_call_and_never_when_deterministic(spies):
    model, variables = build("gru", 2, weight_drop=0.5)
    params = variables["params"]["rnn"]
    tokens = tokens_with_repeats()
    for seed in (1, 2):
        model.apply(variables, tokens, deterministic=False, rngs={"dropout": jax.random.key(seed)})
    assert [name for name, *_ in spies] == ["weight_drop"] * 4
    for (_, w, out, rate, _), name in zip(spies, ["weight_hh_l0", "weight_hh_l1"] * 2):
        np.testing.assert_array_equal(w, params[name])
        assert set(np.unique(np.round(out / w, 5))) == {0.0, 2.0}
    assert np.any((spies[0][2] == 0) != (spies[2][2] == 0))  # a new mask per call
    spies.clear()
    dropped = model.apply(variables, tokens, deterministic=True)[0]
    assert not spies
    np.testing.assert_array_equal(dropped, build("gru", 2)[0].apply(variables, tokens)[0])


def test_embedding_dropout_drops_whole_words_and_scales_the_rest(monkeypatch, projecting_first_layer):
    model, variables = build("lstm", 1, embedding_dropout=0.4)
    W = np.asarray(variables["params"]["encoder"]["weight"])
    looked_up = []
    real = jaxseq_layers.word_embedding
    monkeypatch.setattr(jaxseq_layers, "word_embedding",
                        lambda x, W_in: looked_up.append(np.asarray(real(x, W_in))) or real(x, W_in))
    tokens = tokens_with_repeats()
    model.apply(variables, tokens, deterministic=False, rngs={"dropout": jax.random.key(3)})
    (x,) = looked_up
    dropped_words = set()
    for word in np.unique(tokens):
        rows = x[tokens == word]  # every occurrence of the word in the batch
        if not rows.any():
            dropped_words.add(int(word))
        else:
            np.testing.assert_allclose(rows, np.broadcast_to(W[word] / 0.6, rows.shape), rtol=1e-6)
    assert 0 < len(dropped_words) < len(np.unique(tokens)), dropped_words


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_with_the_lookup_equals_training_with_the_projection(monkeypatch, cell):
    """Every regulariser but input dropout lets layer 0 look its input side up; the same key
    then gives the same loss, state and gradients as projecting the dropped-out embedding rows."""
    model, variables = build(cell, 2, embedding_dropout=0.4, hidden_dropout=0.3, output_dropout=0.3,
                             weight_drop=0.3, locked_dropout=True)
    tokens, targets = tokens_with_repeats(), tokens_with_repeats(seed=1)
    assert model._looks_up_first_layer(jnp.asarray(tokens), deterministic=False)

    def run():
        def loss(params):
            return model.apply({"params": params}, tokens, targets, deterministic=False, method="loss",
                               rngs={"dropout": jax.random.key(5)})
        return jax.value_and_grad(loss, has_aux=True)(variables["params"])

    (value, state), grads = run()
    project_first_layer(monkeypatch)
    (projected_value, projected_state), projected_grads = run()
    assert value == pytest.approx(float(projected_value), rel=1e-6)
    for a, b in zip(as_tuple(state), as_tuple(projected_state)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    errors = jax.tree_util.tree_map(scaled_error, grads, projected_grads)
    assert max(jax.tree_util.tree_leaves(errors)) < 1e-5, errors


def test_with_every_rate_zero_training_mode_equals_the_deterministic_model():
    tokens = tokens_with_repeats()
    plain, variables = build("lstm", 2)
    expected = plain.apply(variables, tokens)
    trained = plain.apply(variables, tokens, deterministic=False, rngs={"dropout": jax.random.key(0)})
    regularised = build("lstm", 2, input_dropout=0.3, hidden_dropout=0.3, output_dropout=0.3, locked_dropout=True,
                        embedding_dropout=0.2, weight_drop=0.4)[0]
    evaluated = regularised.apply(variables, tokens, deterministic=True)
    noisy = regularised.apply(variables, tokens, deterministic=False, rngs={"dropout": jax.random.key(0)})
    for result in (trained, evaluated):
        for a, b in zip(jax.tree_util.tree_leaves(result), jax.tree_util.tree_leaves(expected)):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(noisy[0], expected[0])  # the rates act in training mode
    with pytest.raises(ValueError, match="deterministic=False needs a 'dropout' rng"):
        regularised.apply(variables, tokens, deterministic=False)


# ----------------------------------------------------------------------------- losses, state, config, weights


def test_the_recurrent_part_is_a_jaxseq_nn_stack_with_its_parameters():
    model, variables = build("lstm", 2)
    params = variables["params"]
    tokens, state = tokens_with_repeats(), random_state(model, 4)
    out, (h_n, c_n) = jnn.LSTM(hidden_size=6, num_layers=2).apply({"params": params["rnn"]},
                                                                   params["encoder"]["weight"][tokens],
                                                                   initial_state=state)
    logits, final = model.apply(variables, tokens, state)
    np.testing.assert_allclose(logits, out @ params["decoder"]["weight"].T + params["decoder"]["bias"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final[0], h_n, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(final[1], c_n, rtol=1e-6, atol=1e-7)
    # the model's own stack takes the stack's arguments (x, lengths, initial_state); lengths must be None
    stack, x = lm_module._recurrent_stack(model), params["encoder"]["weight"][tokens]
    stack_out, _ = stack.apply({"params": params["rnn"]}, x, None, state)
    np.testing.assert_allclose(stack_out, out, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="lengths: a language model's segments are all full length"):
        stack.apply({"params": params["rnn"]}, x, jnp.full((x.shape[0],), x.shape[1]), state)


def test_lm_loss_is_the_mean_of_the_token_losses_and_respects_a_mask():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((N, T, V)).astype(np.float32)
    targets = rng.integers(0, V, (N, T))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(token_losses(logits, targets), expected, rtol=1e-5)
    np.testing.assert_allclose(lm_loss(logits, targets), expected.mean(), rtol=1e-6)
    mask = rng.random((N, T)) < 0.5
    np.testing.assert_allclose(lm_loss(logits, targets, mask), expected[mask].mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="targets holds token id 13"):
        lm_loss(logits, np.full((N, T), V))
    for loss in (lm_loss, token_losses):
        with pytest.raises(ValueError, match=rf"targets must have the logits' shape \(N, T\) = \({N}, {T}\), "
                                             rf"got \({N}, {T - 1}\)"):
            loss(logits, targets[:, 1:])
        with pytest.raises(ValueError, match=r"logits must have shape \(N, T, V\), got \(2, 3\)"):
            loss(np.zeros((2, 3), np.float32), targets)


@pytest.mark.parametrize("cell,shapes", [("lstm", [(2, N, 6)] * 2), ("gru", [(2, N, 6)]), ("rnn", [(2, N, 6)])])
def test_initial_state_is_zeros_in_the_stacks_layout_and_the_state_comes_back_alike(cell, shapes):
    model, variables = build(cell, 2)
    state = model.initial_state(N)
    assert [s.shape for s in as_tuple(state)] == shapes and not any(np.any(s) for s in as_tuple(state))
    _, final = model.apply(variables, tokens_with_repeats(), state)
    assert [s.shape for s in as_tuple(final)] == shapes
    assert type(final) is type(state)
    np.testing.assert_array_equal(model.apply(variables, tokens_with_repeats(), None)[0],
                                  model.apply(variables, tokens_with_repeats(), state)[0])


def test_config_round_trips_through_json():
    model = LanguageModel(vocab_size=50, cell="gru", embed_size=8, hidden_size=8, num_layers=3, tie_weights=True,
                          input_dropout=0.1, hidden_dropout=0.2, output_dropout=0.3, locked_dropout=True,
                          embedding_dropout=0.05, weight_drop=0.5, param_dtype=jnp.float64)
    config = json.loads(json.dumps(language_model_config(model)))
    assert config["param_dtype"] == "float64" and config["cell"] == "gru"
    assert LanguageModel.from_config(config) == model


@pytest.mark.parametrize("fields,message", [
    ({"vocab_size": 0}, "LanguageModel: vocab_size must be a positive int, got 0"),
    ({"embed_size": 2.0}, "embed_size must be a positive int"),
    ({"num_layers": True}, "num_layers must be a positive int"),
    ({"cell": "transformer"}, "cell must be one of"),
    ({"tie_weights": True, "embed_size": 4, "hidden_size": 6},
     "tie_weights needs embed_size == hidden_size, got embed_size=4 and hidden_size=6"),
    ({"tie_weights": 1}, "tie_weights must be a bool"),
    ({"locked_dropout": "yes"}, "locked_dropout must be a bool"),
    ({"input_dropout": 1.0}, r"input_dropout must be a number in \[0, 1\)"),
    ({"hidden_dropout": -0.1}, "hidden_dropout must be a number"),
    ({"output_dropout": float("nan")}, "output_dropout must be a number"),
    ({"embedding_dropout": np.float32(0.1)}, "embedding_dropout must be a number"),
    ({"weight_drop": "0.5"}, "weight_drop must be a number"),
    ({"param_dtype": "int32"}, "param_dtype must be a floating dtype"),
    ({"param_dtype": "float17"}, "param_dtype must be a floating dtype"),
    ({"colour": "red"}, "unknown keys \\['colour'\\]"),
])
def test_config_fields_are_validated_with_one_line_errors_naming_the_field(fields, message):
    config = {"vocab_size": 10, **fields}
    with pytest.raises(ValueError, match=message) as info:
        LanguageModel.from_config(config)
    assert "\n" not in str(info.value)


def test_from_config_needs_the_vocabulary_size():
    with pytest.raises(ValueError, match="missing 'vocab_size'"):
        LanguageModel.from_config({"cell": "lstm"})


@pytest.mark.parametrize("tie", [False, True])
def test_torch_state_dicts_round_trip_and_bad_ones_are_named(tie):
    model, variables = build("lstm", 2, tie)
    state_dict = lm_params_to_torch(model, variables)
    twin = language_model_from_jax(language_model_config(model), state_dict)
    assert list(state_dict) == list(twin.state_dict())  # PyTorch's names and order, decoder.weight included
    back = lm_params_from_torch(model, twin.state_dict())
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(variables)):
        np.testing.assert_array_equal(a, b)
    broken = dict(state_dict, **{"decoder.weight": state_dict["decoder.weight"] + 1})
    if tie:
        with pytest.raises(ValueError, match="decoder.weight differs from encoder.weight"):
            lm_params_from_torch(model, broken)
    missing = {k: v for k, v in state_dict.items() if k != "decoder.bias"}
    with pytest.raises(ValueError, match="missing 'decoder.bias'"):
        lm_params_from_torch(model, missing)
    with pytest.raises(ValueError, match=r"'encoder.weight' must have shape \(13, 6\), got \(12, 6\)"):
        lm_params_from_torch(model, dict(state_dict, **{"encoder.weight": np.zeros((12, 6), np.float32)}))
    with pytest.raises(ValueError, match="unexpected key 'rnn.weight_hh_l2'"):
        lm_params_from_torch(model, dict(state_dict, **{"rnn.weight_hh_l2": np.zeros((24, 6), np.float32)}))


def test_tokens_outside_the_vocabulary_are_named():
    model, variables = build("gru", 1)
    with pytest.raises(ValueError, match=r"tokens holds token id 13, outside the valid range \[0, 13\)"):
        model.apply(variables, np.full((N, T), V))
    with pytest.raises(ValueError, match="tokens must be an integer array"):
        model.apply(variables, np.zeros((N, T), np.float32))
