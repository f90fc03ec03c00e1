"""`jaxseq.models.text_sampling`: greedy three ways, the distribution of a sampled token
(chi-square against softmax(logits / T) restricted to top-k / top-p, computed here in NumPy),
chunked output equal to one-shot output, one jitted scan, option checks, and hypothesis
properties of `filter_logits`.

Shapes: N prompts, P prompt length, L generated tokens, V vocabulary.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq.models import (LanguageModel, filter_logits, generate, generate_chunks, sample_tokens,
                           start_sampling)

V = 13
SAMPLES = 20_000
SAMPLED = {"temperature": 1.0, "top_k": 8}  # one compiled loop shared by the tests that sample 10 tokens


@pytest.fixture(scope="module")
def lm():
    """A small LSTM language model whose next-token distributions are far from uniform."""
    model = LanguageModel(vocab_size=V, cell="lstm", embed_size=6, hidden_size=6, num_layers=1)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    bias = np.random.default_rng(0).normal(0.0, 1.5, V).astype(np.float32)
    variables["params"]["decoder"]["bias"] = jnp.asarray(bias)
    prompt = np.array([[3, 1, 4, 1], [5, 9, 2, 6]], np.int32)
    return model, variables, prompt


def is_greedy(model, variables, prompt, tokens) -> bool:
    """Whether every generated token is the argmax of the model's logits after the prompt and
    the tokens before it: one teacher-forced forward pass over prompt + tokens[:, :-1]."""
    logits, _ = model.apply(variables, np.concatenate([prompt, tokens[:, :-1]], axis=1))
    return bool(np.all(np.argmax(logits[:, prompt.shape[1] - 1:], axis=-1) == tokens))


def test_temperature_zero_top_k_one_and_a_tiny_top_p_are_all_greedy(lm):
    model, variables, prompt = lm
    expected = np.asarray(generate(model, variables, prompt, 10, jax.random.key(0), temperature=0.0))
    assert is_greedy(model, variables, prompt, expected)
    for key in (jax.random.key(0), jax.random.key(1)):
        for options in ({"temperature": 0.0}, {"top_k": 1}, {"top_p": 1e-6}):
            np.testing.assert_array_equal(generate(model, variables, prompt, 10, key, **options), expected,
                                          err_msg=str(options))
    sampled = np.asarray(generate(model, variables, prompt, 10, jax.random.key(0), **SAMPLED))
    assert not is_greedy(model, variables, prompt, sampled)  # sampling is not greedy: the check can fail


def expected_distribution(logits, temperature, top_k, top_p):
    """softmax(logits / T), restricted to the top_k most probable, then to the smallest set of
    most probable tokens whose renormalised mass reaches top_p; float64 NumPy."""
    p = np.exp((logits - logits.max()) / temperature)
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    keep = np.zeros(len(p), bool)
    keep[order[: top_k or len(p)]] = True
    p = np.where(keep, p, 0.0) / p[keep].sum()
    if top_p is not None:
        mass_before = np.cumsum(p[order]) - p[order]
        keep = np.zeros(len(p), bool)
        keep[order[mass_before < top_p]] = True
        p = np.where(keep, p, 0.0) / p[keep].sum()
    return p


def chi_square_p_value(counts, expected_p):
    """p-value of Pearson's chi-square test over the kept tokens, bins expecting fewer than 5
    samples merged into one."""
    kept = expected_p > 0
    observed, expected = counts[kept], expected_p[kept] * counts.sum()
    small = expected < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    if len(observed) < 2:
        return 1.0
    return float(scipy.stats.chisquare(observed, expected).pvalue)


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, None, None), (1.5, 4, None), (0.8, 6, 0.7)])
def test_the_first_sampled_token_follows_the_filtered_softmax(lm, temperature, top_k, top_p):
    model, variables, prompt = lm
    logits = np.asarray(model.apply(variables, prompt)[0][:, -1], np.float64)  # (N, V) after each prompt
    keys = jax.random.split(jax.random.key(42), SAMPLES)
    first = jax.vmap(lambda key: generate(model, variables, prompt, 1, key, temperature, top_k, top_p))(keys)
    for n in range(len(prompt)):  # each prompt's first token, an independent sample of 20,000
        expected = expected_distribution(logits[n], temperature, top_k, top_p)
        counts = np.bincount(np.asarray(first)[:, n, 0], minlength=V)
        assert counts.sum() == SAMPLES
        assert not counts[expected == 0].any(), (counts, expected)  # nothing outside the kept set
        assert (expected > 0).sum() > 1  # a real distribution, not a single token
        p_value = chi_square_p_value(counts, expected)
        print(f"T={temperature} top_k={top_k} top_p={top_p} prompt {n}: kept {(expected > 0).sum()} of {V}, "
              f"chi-square p {p_value:.3f}")
        assert p_value > 1e-3, (counts, expected * SAMPLES)


def test_chunks_equal_one_shot_output_and_the_same_key_gives_the_same_text(lm):
    model, variables, prompt = lm
    options = SAMPLED
    key = jax.random.key(7)
    whole = np.asarray(generate(model, variables, prompt, 10, key, **options))
    chunks = [np.asarray(c) for c in generate_chunks(model, variables, prompt, 10, key, chunk=4, **options)]
    assert [c.shape for c in chunks] == [(2, 4), (2, 4), (2, 2)]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole)
    np.testing.assert_array_equal(generate(model, variables, prompt, 10, key, **options), whole)
    sampler = start_sampling(model, variables, prompt, key)
    pieces = []
    for size in (4, 2, 4):  # another split than generate_chunks' 4, 4, 2
        tokens, sampler = sample_tokens(model, variables, sampler, size, **options)
        pieces.append(tokens)
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), whole)
    other = np.asarray(generate(model, variables, prompt, 10, jax.random.key(8), **options))
    assert np.any(other != whole)


def test_the_prompt_is_read_in_one_forward_pass_and_the_tokens_in_one_scan(lm):
    model, variables, prompt = lm
    sampler = start_sampling(model, variables, prompt, jax.random.key(0))
    _, state = model.apply(variables, prompt[:, :-1])
    for a, b in zip(jax.tree_util.tree_leaves(sampler.state), jax.tree_util.tree_leaves(state)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(sampler.token, prompt[:, -1])
    one_token = start_sampling(model, variables, prompt[:, :1], jax.random.key(0))
    for a, b in zip(jax.tree_util.tree_leaves(one_token.state), jax.tree_util.tree_leaves(model.initial_state(2))):
        np.testing.assert_array_equal(a, b)
    jaxpr = str(jax.make_jaxpr(lambda s: sample_tokens(model, variables, s, 50))(sampler))
    assert "length=50" in jaxpr and jaxpr.count("random_bits") == 1  # one traced step (one draw), scanned


@pytest.mark.parametrize("options,message", [
    ({"temperature": -0.5}, "temperature must be a finite number >= 0"),
    ({"temperature": math.nan}, "temperature must be a finite number >= 0"),
    ({"temperature": math.inf}, "temperature must be a finite number >= 0"),
    ({"temperature": True}, "temperature must be a finite number >= 0"),
    ({"temperature": "0.8"}, "temperature must be a finite number >= 0"),
    ({"top_k": 0}, "top_k must be a positive int or None, got 0"),
    ({"top_k": 2.0}, "top_k must be a positive int or None"),
    ({"top_p": 0.0}, r"top_p must be a number in \(0, 1\] or None, got 0.0"),
    ({"top_p": 1.5}, r"top_p must be a number in \(0, 1\]"),
    ({"top_p": math.nan}, r"top_p must be a number in \(0, 1\]"),
])
def test_bad_sampling_options_are_one_line_errors_naming_the_argument(lm, options, message):
    model, variables, prompt = lm
    for call in (lambda: filter_logits(jnp.zeros(V), **options),
                 lambda: generate(model, variables, prompt, 5, jax.random.key(0), **options),
                 lambda: generate_chunks(model, variables, prompt, 5, jax.random.key(0), **options)):
        with pytest.raises(ValueError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_bad_lengths_and_prompts_are_named_before_any_token_is_produced(lm):
    model, variables, prompt = lm
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="length must be a positive int, got 0"):
        generate(model, variables, prompt, 0, key)
    with pytest.raises(ValueError, match="chunk must be a positive int, got 0"):
        generate_chunks(model, variables, prompt, 5, key, chunk=0)  # at the call, not at the first next()
    with pytest.raises(ValueError, match=r"prompt holds token id 13, outside the valid range \[0, 13\)"):
        generate(model, variables, np.array([[1, V]]), 5, key)
    with pytest.raises(ValueError, match=r"prompt must have shape \(N, P\) with N >= 1 and P >= 1, got \(1, 0\)"):
        generate(model, variables, np.zeros((1, 0), np.int32), 5, key)


# ----------------------------------------------------------------------------- filter_logits properties


@st.composite
def filter_cases(draw):
    size = draw(st.sampled_from([1, 5, 16]))  # few shapes: filter_logits compiles once per shape
    logits = np.array(draw(st.lists(st.integers(-16, 16), min_size=size, max_size=size)), np.float32) / 2  # ties
    temperature = draw(st.sampled_from([0.25, 0.5, 1.0, 3.0]))
    top_k = draw(st.none() | st.integers(1, 20))
    top_p = draw(st.none() | st.floats(0.01, 1.0))
    return logits, temperature, top_k, top_p


@settings(max_examples=60, deadline=None)
@given(filter_cases())
def test_filter_logits_keeps_the_most_probable_set_and_renormalises_over_it(case):
    logits, temperature, top_k, top_p = case
    filtered = np.asarray(filter_logits(logits, temperature, top_k, top_p), np.float64)
    kept = np.isfinite(filtered)
    assert kept[np.argmax(logits)]  # the most probable token always stays
    assert logits[kept].min() >= logits[~kept].max(initial=-np.inf)  # every kept token beats every dropped one
    np.testing.assert_allclose(filtered[kept], logits[kept] / temperature, rtol=1e-6)
    after_k = min(top_k or logits.size, logits.size)
    if top_p is None:
        assert kept.sum() == after_k
    else:
        assert kept.sum() <= after_k
        p = expected_distribution(logits.astype(np.float64), temperature, top_k, None)
        kept_mass = np.sort(p[kept])[::-1]
        assert kept_mass.sum() >= top_p - 1e-5  # the kept set reaches top_p ...
        assert kept_mass[:-1].sum() < top_p + 1e-5  # ... and is the smallest that does
    probabilities = np.exp(filtered - filtered.max())
    probabilities /= probabilities.sum()
    reference = expected_distribution(logits.astype(np.float64), temperature, top_k, None)
    np.testing.assert_allclose(probabilities[kept], reference[kept] / reference[kept].sum(), rtol=1e-5, atol=1e-7)


@settings(max_examples=20, deadline=None)
@given(filter_cases())
def test_temperature_zero_keeps_only_the_first_argmax_whatever_the_other_options(case):
    logits, _, top_k, top_p = case
    for row in (logits, logits[::-1]):
        filtered = np.asarray(filter_logits(row, 0.0, top_k, top_p))
        assert np.isfinite(filtered).sum() == 1
        assert filtered[np.argmax(row)] == row.max()  # np.argmax: the first of tied maxima
