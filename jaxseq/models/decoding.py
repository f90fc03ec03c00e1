"""Caption decoding: greedy `sample` and `beam_search`, jit-compiled and batched over N.

Both work with any model that has the captioning decoder interface of
`jaxseq.models.CaptioningRNN`: a `vocab_size` field, `decode_init(features) -> state` and
`decode_step(words (N,), state) -> (scores (N, V), state)`. Each loop iteration runs exactly
one recurrent step for all rows (and beams) at once — the prefix is never re-run — inside a
single `lax.while_loop` with fixed shapes.

Output convention (both functions): `captions[:, 0]` is the first generated word (not
`<START>`); a caption holds its words, then `<END>`, then `<NULL>` up to `max_length`. A
caption that never produced `<END>` fills all `max_length` positions.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxseq.checks import check_positive_int

_STATIC = ("model", "max_length", "start_idx", "end_idx", "null_idx")


def _check_args(model, features, max_length: int, **token_ids: int) -> jax.Array:
    features = jnp.asarray(features)
    if features.ndim != 2 or not jnp.issubdtype(features.dtype, jnp.floating):
        raise ValueError(f"features must be a float array of shape (N, D), got {features.dtype}{features.shape}")
    check_positive_int("max_length", max_length)
    for name, value in token_ids.items():
        if not 0 <= value < model.vocab_size:
            raise ValueError(f"{name} must be a word id in [0, vocab_size={model.vocab_size}), got {value}")
    return features


def sample(model, variables, features, max_length: int = 30, start_idx: int = 1, end_idx: int = 2,
           null_idx: int = 0) -> jax.Array:
    """Greedy decoding: feed `<START>`, then at every step the most probable word.

    Inputs: model, its variables ({"params": ...}), features (N, D).
    Returns: captions (N, max_length) int32; after a row's `<END>` it holds `<NULL>`.
    The loop stops as soon as every row has produced `<END>` (or at max_length).
    """
    features = _check_args(model, features, max_length, start_idx=start_idx, end_idx=end_idx,
                           null_idx=null_idx)
    return _sample(model, variables, features, max_length, start_idx, end_idx, null_idx)


@partial(jax.jit, static_argnames=_STATIC)
def _sample(model, variables, features, max_length, start_idx, end_idx, null_idx):
    N = features.shape[0]

    def body(carry):
        t, words, state, done, captions = carry
        scores, state = model.apply(variables, words, state, method="decode_step")
        words = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        captions = captions.at[:, t].set(jnp.where(done, null_idx, words))
        return t + 1, words, state, done | (words == end_idx), captions

    def cond(carry):
        t, _, _, done, _ = carry
        return (t < max_length) & ~jnp.all(done)

    state = model.apply(variables, features, method="decode_init")
    init = (jnp.int32(0), jnp.full((N,), start_idx, jnp.int32), state, jnp.zeros((N,), bool),
            jnp.full((N, max_length), null_idx, jnp.int32))
    return lax.while_loop(cond, body, init)[-1]


class _Beams(NamedTuple):
    t: jax.Array  # () number of words each live beam has generated
    live_tokens: jax.Array  # (N, K, L) words of the live beams, <NULL> beyond t
    live_logp: jax.Array  # (N, K) their summed log-probabilities (-inf: empty slot)
    live_state: Any  # decoder state, leaves (N * K, H)
    fin_tokens: jax.Array  # (N, K, L) finished hypotheses (END written), best first
    fin_scores: jax.Array  # (N, K) their (length-penalized) scores, -inf: empty slot


def length_penalty_factor(length, alpha: float):
    """GNMT's length normalization ((5 + length) / 6) ** alpha (1 when alpha = 0)."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(model, variables, features, beam_size: int = 5, max_length: int = 30,
                start_idx: int = 1, end_idx: int = 2, null_idx: int = 0, length_penalty: float = 0.0,
                *, early_stop: bool = True, return_steps: bool = False):
    """Beam search for the most probable caption of each image.

    Every step extends each of the K live beams by every word (one recurrent step for all
    N*K beams), ranks the N x K*V candidates and takes the best 2K. A candidate ending in
    `<END>` is finished if it ranks within the top K (so `beam_size=1` is exactly greedy
    decoding); the best K that do not end in `<END>` stay live. At `max_length` the live
    beams are finished as they are. A finished hypothesis of L words (`<END>` included)
    scores  sum(log p) / ((5 + L) / 6) ** length_penalty.

    Early termination: a live beam's log-probability can only fall as it grows (every
    log-probability is <= 0), so with no length penalty no extension of it can score
    above its current log-probability; once the best finished score of a row is >= that
    of every live beam, the row's answer is final. With length_penalty = alpha >= 0 the
    bound is logp / ((5 + max_length) / 6) ** alpha, the largest the normalized score of
    any extension can get. The loop stops when the bound holds for every row (or at
    max_length); `early_stop=False` always runs max_length steps and returns the same.

    Inputs: model, variables, features (N, D); length_penalty alpha >= 0.
    Returns: (captions (N, max_length) int32, scores (N,) float) — with length_penalty 0,
      scores is the sum of the log-probabilities of the returned words up to and including
      `<END>`. With return_steps=True a third value, the number of steps run, () int32.
    """
    features = _check_args(model, features, max_length, start_idx=start_idx, end_idx=end_idx,
                           null_idx=null_idx)
    check_positive_int("beam_size", beam_size)
    if not length_penalty >= 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    captions, scores, steps = _beam_search(model, variables, features, max_length, start_idx, end_idx,
                                           null_idx, beam_size, jnp.float32(length_penalty), bool(early_stop))
    return (captions, scores, steps) if return_steps else (captions, scores)


def _take_beams(values, beam):
    """values (N, K, ...) gathered along the beam axis by beam (N, M) -> (N, M, ...)."""
    index = beam.reshape(beam.shape + (1,) * (values.ndim - 2))
    return jnp.take_along_axis(values, index, axis=1)


@partial(jax.jit, static_argnames=_STATIC + ("beam_size", "early_stop"))
def _beam_search(model, variables, features, max_length, start_idx, end_idx, null_idx,
                 beam_size, length_penalty, early_stop):
    N, K, L, V = features.shape[0], beam_size, max_length, model.vocab_size
    num_candidates = min(2 * K, K * V)
    state = model.apply(variables, features, method="decode_init")
    score_dtype = jnp.promote_types(state[0].dtype, jnp.float32)
    neg_inf = jnp.array(-jnp.inf, score_dtype)
    final_penalty = length_penalty_factor(jnp.array(L, score_dtype), length_penalty)

    def body(beams: _Beams) -> _Beams:
        t = beams.t
        words = jnp.where(t == 0, start_idx, beams.live_tokens[:, :, jnp.maximum(t - 1, 0)])
        scores, state = model.apply(variables, words.reshape(N * K), beams.live_state, method="decode_step")
        logp = jax.nn.log_softmax(scores.astype(score_dtype), axis=-1).reshape(N, K, V)
        candidates = (beams.live_logp[:, :, None] + logp).reshape(N, K * V)
        top_logp, top_index = lax.top_k(candidates, num_candidates)  # (N, 2K), best first
        top_beam, top_word = top_index // V, top_index % V
        top_tokens = _take_beams(beams.live_tokens, top_beam).at[:, :, t].set(top_word)
        is_end = top_word == end_idx

        # Finished now: <END> within the top K ranks.
        in_top_k = jnp.arange(num_candidates) < K
        penalty = length_penalty_factor((t + 1).astype(score_dtype), length_penalty)
        end_scores = jnp.where(is_end & in_top_k, top_logp / penalty, neg_inf)

        # Live: the best K that did not end.
        live_logp, pick = lax.top_k(jnp.where(is_end, neg_inf, top_logp), K)
        live_tokens = _take_beams(top_tokens, pick)
        parent = jnp.take_along_axis(top_beam, pick, axis=1)
        live_state = jax.tree.map(
            lambda leaf: _take_beams(leaf.reshape((N, K) + leaf.shape[1:]), parent).reshape(leaf.shape),
            state)

        # At max_length the live beams are finished as they stand.
        truncated = jnp.where(t + 1 == L, live_logp / final_penalty, neg_inf)
        pool_scores = jnp.concatenate([beams.fin_scores, end_scores, truncated], axis=1)
        pool_tokens = jnp.concatenate([beams.fin_tokens, top_tokens, live_tokens], axis=1)
        fin_scores, best = lax.top_k(pool_scores, K)  # ties keep the earlier (older) entry
        return _Beams(t + 1, live_tokens, live_logp, live_state, _take_beams(pool_tokens, best), fin_scores)

    def cond(beams: _Beams):
        running = beams.t < L
        if not early_stop:
            return running
        bound = jnp.max(beams.live_logp, axis=1) / final_penalty
        return running & jnp.any(bound > beams.fin_scores[:, 0])

    live_logp = jnp.full((N, K), neg_inf).at[:, 0].set(0.0)  # one live beam at the start
    init = _Beams(
        t=jnp.int32(0),
        live_tokens=jnp.full((N, K, L), null_idx, jnp.int32),
        live_logp=live_logp,
        live_state=jax.tree.map(lambda leaf: jnp.repeat(leaf, K, axis=0), state),
        fin_tokens=jnp.full((N, K, L), null_idx, jnp.int32),
        fin_scores=jnp.full((N, K), neg_inf),
    )
    beams = lax.while_loop(cond, body, init)
    return beams.fin_tokens[:, 0], beams.fin_scores[:, 0], beams.t
