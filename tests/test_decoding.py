"""Greedy `sample` and `beam_search`: exactness against teacher forcing and brute force,
beam 1 == greedy, early termination, `<NULL>` after `<END>`, batching, argument errors."""

from __future__ import annotations

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseq.models import CaptioningRNN, beam_search, sample

START, END, NULL = 1, 2, 0
CELLS = ("rnn", "lstm")


def random_model(cell, seed, V=12, W=8, H=16, D=5, N=6, scale=3.0):
    """A randomly initialized captioner with weights scaled up, so its word distributions
    are peaked and differ between steps (a freshly initialized one is nearly uniform)."""
    model = CaptioningRNN(V, W, H, cell)
    features = jax.random.normal(jax.random.key(seed), (N, D))
    variables = model.init(jax.random.key(seed + 1), features, jnp.zeros((N, 1), jnp.int32))
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed + 2), len(leaves))
    variables = jax.tree.unflatten(tree, [scale * jax.random.normal(k, a.shape) / np.sqrt(max(a.shape[0], 1))
                                          for k, a in zip(keys, leaves)])
    return model, variables, features


@partial(jax.jit, static_argnames="model")
def _word_logp(model, variables, features, inputs):
    return jax.nn.log_softmax(model.apply(variables, features, inputs), axis=-1)


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """GNMT's length normalization (Wu et al. 2016, eq. 14), written here, not taken from
    jaxseq: lp(Y) = (5 + |Y|)^alpha / (5 + 1)^alpha."""
    return (5.0 + length) ** alpha / 6.0 ** alpha


def test_the_penalty_is_gnmts():
    assert gnmt_length_penalty(1, 0.7) == 1.0 and gnmt_length_penalty(7, 0.0) == 1.0
    assert gnmt_length_penalty(7, 1.0) == 2.0 and gnmt_length_penalty(19, 0.5) == 2.0


def teacher_forced_logp(model, variables, features, captions, length_penalty=0.0):
    """Sum of log p of each caption's words up to and including <END> (or all of them),
    divided by the GNMT length penalty; from the full-sequence model, not the decoder."""
    captions = np.asarray(captions)
    inputs = np.concatenate([np.full((len(captions), 1), START), captions[:, :-1]], axis=1)
    logp = _word_logp(model, variables, jnp.asarray(features), jnp.asarray(inputs))
    picked = np.take_along_axis(np.asarray(logp, np.float64), captions[..., None], -1)[..., 0]
    totals = []
    for row, words in enumerate(captions):
        ends = np.flatnonzero(words == END)
        length = ends[0] + 1 if ends.size else len(words)
        totals.append(picked[row, :length].sum() / gnmt_length_penalty(length, length_penalty))
    return np.asarray(totals)


def assert_null_after_end(captions):
    for row in np.asarray(captions):
        ends = np.flatnonzero(row == END)
        if ends.size:
            assert (row[ends[0] + 1:] == NULL).all(), row


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_is_the_argmax_of_the_teacher_forced_model(cell):
    model, variables, features = random_model(cell, seed=0)
    captions = np.asarray(sample(model, variables, features, max_length=10))
    assert captions.shape == (6, 10) and captions.dtype == np.int32
    inputs = np.concatenate([np.full((6, 1), START), captions[:, :-1]], axis=1)
    best = np.asarray(jnp.argmax(model.apply(variables, features, jnp.asarray(inputs)), -1))
    for row in range(6):
        ends = np.flatnonzero(captions[row] == END)
        length = ends[0] + 1 if ends.size else 10
        np.testing.assert_array_equal(captions[row, :length], best[row, :length])
    assert_null_after_end(captions)
    assert (captions[:, 0] != START).any()  # the first column is the first generated word


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("seed", [0, 10, 20])
def test_beam_of_one_is_greedy(cell, seed):
    model, variables, features = random_model(cell, seed)
    greedy = sample(model, variables, features, max_length=10)
    beam, scores = beam_search(model, variables, features, beam_size=1, max_length=10)
    np.testing.assert_array_equal(beam, greedy)
    np.testing.assert_allclose(scores, teacher_forced_logp(model, variables, features, greedy), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_scores_are_teacher_forced_log_probabilities(cell, alpha):
    model, variables, features = random_model(cell, seed=3)
    captions, scores = beam_search(model, variables, features, beam_size=5, max_length=10, length_penalty=alpha)
    assert captions.shape == (6, 10) and scores.shape == (6,)
    expected = teacher_forced_logp(model, variables, features, captions, alpha)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert_null_after_end(captions)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_beam_as_wide_as_the_tree_finds_the_most_probable_caption(cell, alpha):
    """V = 4 words (<NULL> <START> <END> w) and 3 steps: 3*3*4 = 36 complete candidates at
    most, so a beam of 36 never prunes; compare with scoring every caption by brute force."""
    V, L = 4, 3
    model, variables, features = random_model(cell, seed=5, V=V, N=4, scale=1.5)
    captions, scores = beam_search(model, variables, features, beam_size=36, max_length=L, length_penalty=alpha)
    candidates = []
    for length in range(1, L + 1):  # words before <END>, then <END>, then <NULL> padding
        for words in itertools.product([w for w in range(V) if w != END], repeat=length - 1):
            candidates.append(list(words) + [END] + [NULL] * (L - length))
    candidates += [list(w) for w in itertools.product([w for w in range(V) if w != END], repeat=L)]
    candidates = np.asarray(candidates)
    C = len(candidates)
    totals = teacher_forced_logp(model, variables, np.repeat(np.asarray(features), C, axis=0),
                                 np.tile(candidates, (4, 1)), alpha).reshape(4, C)
    for row in range(4):
        best = int(np.argmax(totals[row]))
        np.testing.assert_array_equal(captions[row], candidates[best])
        np.testing.assert_allclose(scores[row], totals[row, best], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_wide_beams_score_at_least_greedy(cell):
    for seed in range(4):
        model, variables, features = random_model(cell, seed=100 + seed)
        greedy = teacher_forced_logp(model, variables, features, sample(model, variables, features, max_length=10))
        _, scores = beam_search(model, variables, features, beam_size=8, max_length=10)
        assert (np.asarray(scores) >= greedy - 1e-4).all()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_early_termination_returns_what_the_full_search_returns(cell, alpha):
    for seed in range(3):
        model, variables, features = random_model(cell, seed=200 + seed)
        early = beam_search(model, variables, features, beam_size=5, max_length=10, length_penalty=alpha,
                            return_steps=True)
        full = beam_search(model, variables, features, beam_size=5, max_length=10, length_penalty=alpha,
                           early_stop=False, return_steps=True)
        np.testing.assert_array_equal(early[0], full[0])
        np.testing.assert_array_equal(early[1], full[1])
        assert int(full[2]) == 10 and int(early[2]) <= 10


def test_early_termination_stops_once_no_live_beam_can_win():
    model, variables, features = random_model("lstm", seed=7)
    # <END> is by far the most probable first word: after one step the finished caption
    # "<END>" (log p close to 0) beats every live beam, and log-probabilities only fall.
    variables = jax.tree.map(lambda a: a, variables)
    variables["params"]["b_vocab"] = variables["params"]["b_vocab"].at[END].set(50.0)
    captions, scores, steps = beam_search(model, variables, features, beam_size=5, max_length=10,
                                          return_steps=True)
    assert int(steps) == 1
    assert (np.asarray(captions)[:, 0] == END).all() and (np.asarray(captions)[:, 1:] == NULL).all()
    assert (np.asarray(scores) > -1e-6).all()
    # <END> impossible: every beam runs to max_length.
    variables["params"]["b_vocab"] = variables["params"]["b_vocab"].at[END].set(-50.0)
    captions, _, steps = beam_search(model, variables, features, beam_size=5, max_length=10, return_steps=True)
    assert int(steps) == 10 and (np.asarray(captions) != END).all()
    greedy = sample(model, variables, features, max_length=10)
    assert (np.asarray(greedy) != NULL).all()  # no <END>: every position holds a word


@pytest.mark.parametrize("cell", CELLS)
def test_rows_are_decoded_independently(cell):
    model, variables, features = random_model(cell, seed=9)
    batch_greedy = sample(model, variables, features, max_length=10)
    batch_beam, batch_scores = beam_search(model, variables, features, beam_size=5, max_length=10)
    for row in (0, 4):
        one = features[row:row + 1]
        np.testing.assert_array_equal(sample(model, variables, one, max_length=10)[0], batch_greedy[row])
        beam, score = beam_search(model, variables, one, beam_size=5, max_length=10)
        np.testing.assert_array_equal(beam[0], batch_beam[row])
        np.testing.assert_allclose(score[0], batch_scores[row], rtol=1e-5)


def test_decoding_arguments_are_checked():
    model, variables, features = random_model("rnn", seed=0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, variables, features, beam_size=0)
    with pytest.raises(ValueError, match="max_length"):
        sample(model, variables, features, max_length=0)
    with pytest.raises(ValueError, match="end_idx must be a word id"):
        sample(model, variables, features, end_idx=12)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(model, variables, features, length_penalty=-1.0)
    with pytest.raises(ValueError, match="features must be a float array of shape"):
        sample(model, variables, features[0])
