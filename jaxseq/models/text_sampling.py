"""Text generation from a `jaxseq.models.LanguageModel`: logit filtering (temperature, top-k,
nucleus/top-p) and a jitted sampling loop that produces its output in chunks.

Shapes: N streams (prompts), P prompt length, L tokens generated, V vocabulary.

    sampler = start_sampling(model, variables, prompt (N, P), key)   # one forward pass
    tokens, sampler = sample_tokens(model, variables, sampler, 100, temperature=0.8, top_k=40)
    tokens, sampler = sample_tokens(model, variables, sampler, 100, ...)  # the next 100

`start_sampling` reads prompt[:, :P-1] in one forward pass and leaves the last prompt token
unread in the carry `SamplerState(state, token, key)`; each loop step reads the carried token,
samples the next one from the filtered logits and carries it on. The loop is a `lax.scan`
inside one jitted call (no Python loop per token), compiled once per model, N and chunk
length: temperature, top_k and top_p are traced, so changing them does not compile again.
A step is `jaxseq.models.generation_step.fast_step`, on weights converted once per call
(`prepare_step`: no transposes inside the loop, the embedding folded into layer 0's input
side); it gives the text the model's own `apply` per token gives (`model_step`; tested).
A key is split once per step, so the
tokens depend only on the starting key and the step number: sampling 500 tokens at once or
as 100 + 100 + ... gives the same text (`generate` and `generate_chunks` do both).

Filtering (`filter_logits`), in this order: divide by the temperature (0: keep only the
argmax, greedy); keep the `top_k` largest; keep the smallest set of the most probable
tokens whose probability (after top-k, renormalised) reaches `top_p`. Dropped tokens get
-inf, so a softmax of the result renormalises over the kept set.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Iterator, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxseq.checks import check_positive_int
from jaxseq.layers._validation import as_int_array
from jaxseq.models.generation_step import fast_step, prepare_step

Array = jax.Array

__all__ = ["SamplerState", "check_sampling_options", "filter_logits", "generate", "generate_chunks",
           "sample_tokens", "start_sampling"]


class SamplerState(NamedTuple):
    """What the sampling loop carries from one chunk to the next.

    state: the model's recurrent state (S, N, H), or (h, c) for the LSTM;
    token: (N,) int32, the last token, not yet read by the model;
    key: the PRNG key the next step splits.
    """

    state: Any
    token: Array
    key: Array


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_sampling_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """One-line ValueErrors naming the argument: temperature a finite number >= 0, top_k
    None or an int >= 1, top_p None or a number in (0, 1]."""
    if not _is_number(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    check_positive_int("top_k", top_k, allow_none=True)
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1] or None, got {top_p!r}")


def _options(temperature: float, top_k: int | None, top_p: float | None, V: int) -> tuple[Array, Array, Array]:
    """The checked options as arrays, so that one compiled loop serves every setting: temperature
    () float32; top_k () int32, V when off; top_p () float32, 1 when off."""
    return (jnp.float32(temperature), jnp.int32(V if top_k is None else min(top_k, V)),
            jnp.float32(1.0 if top_p is None else top_p))


def _truncate(scaled: Array, top_k: Array, top_p: Array) -> Array:
    """-inf outside the top_k most probable, then outside the nucleus of mass top_p."""
    order = jnp.argsort(-scaled, axis=-1, stable=True)  # most probable first, ties by id
    rank = jnp.argsort(order, axis=-1)  # rank[v]: position of token v in that order
    scaled = jnp.where(rank < top_k, scaled, -jnp.inf)
    sorted_probs = jnp.take_along_axis(jax.nn.softmax(scaled, axis=-1), order, axis=-1)
    before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs  # mass of the tokens ranked above
    keep_sorted = (before < top_p) | (top_p >= 1)  # the first token is always kept
    return jnp.where(jnp.take_along_axis(keep_sorted, rank, axis=-1), scaled, -jnp.inf)


def _filter(logits: Array, temperature: Array, top_k: Array, top_p: Array) -> Array:
    """`filter_logits` without the checks, on the options of `_options` (arrays, traceable)."""
    V = logits.shape[-1]
    greedy = temperature == 0
    scaled = logits / jnp.where(greedy, 1.0, temperature).astype(logits.dtype)
    # sorting only where a filter is on (a real branch on CPU and GPU: V can be 10^4 words)
    scaled = lax.cond(((top_k < V) | (top_p < 1)) & ~greedy, _truncate, lambda s, *_: s, scaled, top_k, top_p)
    best = jnp.argmax(logits, axis=-1)[..., None]
    return jnp.where(greedy, jnp.where(jnp.arange(V) == best, logits, -jnp.inf), scaled)


_filter_compiled = jax.jit(_filter)  # once per shape: the options are traced


def filter_logits(logits: Array, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Array:
    """Logits to sample the next token from, with temperature, top-k and top-p applied.

    Inputs: logits (..., V); temperature >= 0 (0: greedy, only the argmax is kept, the first
      among ties); top_k: keep the k most probable (ties broken by the lower id) or None;
      top_p in (0, 1]: then keep the smallest set of most probable tokens whose renormalised
      probability reaches top_p (the most probable always) or None.
    Returns: (..., V), logits / temperature with -inf at the dropped tokens;
      `jax.random.categorical` of it samples softmax(logits / T) restricted to the kept set.
    """
    check_sampling_options(temperature, top_k, top_p)
    logits = jnp.asarray(logits)
    if logits.ndim < 1 or not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"logits must be a floating array of shape (..., V), got {logits.dtype}{logits.shape}")
    return _filter_compiled(logits, *_options(temperature, top_k, top_p, logits.shape[-1]))


def _check_prompt(model, prompt) -> Array:
    prompt = as_int_array("prompt", prompt, 2)
    if prompt.shape[0] < 1 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must have shape (N, P) with N >= 1 and P >= 1, got {tuple(prompt.shape)}")
    return as_int_array("prompt", prompt, 2, size=model.vocab_size, what="token id").astype(jnp.int32)


def start_sampling(model, variables, prompt, key: Array, state=None) -> SamplerState:
    """Read the prompt in one forward pass (all but its last token) and return the carry.

    Inputs: model: a `LanguageModel`; variables: its {"params": ...}; prompt (N, P) int ids,
      P >= 1; key: a PRNG key; state: the state before the prompt, or None (zeros).
    Returns: SamplerState(state after prompt[:, :P-1], prompt[:, P-1] (N,), key).
    """
    prompt = _check_prompt(model, prompt)
    if state is None:
        state = model.initial_state(prompt.shape[0])
    return _start(model, variables, prompt, key, state)


@partial(jax.jit, static_argnames="model")
def _start(model, variables, prompt, key, state):
    if prompt.shape[1] > 1:
        _, state = model.apply(variables, prompt[:, :-1], state)
    return SamplerState(state, prompt[:, -1], key)


def sample_tokens(model, variables, sampler: SamplerState, length: int, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None) -> tuple[Array, SamplerState]:
    """Sample `length` tokens, one model step each, in one jitted `lax.scan`.

    Inputs: model, variables; sampler from `start_sampling` or the previous call; length
      L >= 1; temperature, top_k, top_p as in `filter_logits`.
    Returns: (tokens (N, L) int32, the SamplerState to continue from).
    """
    check_positive_int("length", length)
    check_sampling_options(temperature, top_k, top_p)
    return _prepare_and_sample(model, variables, sampler, length, _options(temperature, top_k, top_p, model.vocab_size))


_prepare = jax.jit(prepare_step, static_argnums=0)


@partial(jax.jit, static_argnames=("model", "length"))
def _prepare_and_sample(model, variables, sampler, length, options):
    """`prepare_step` and the loop on its weights in one call (one dispatch, the conversion
    computed once, before the loop)."""
    return _sample(fast_step, model, prepare_step(model, variables), sampler, length, options)


@partial(jax.jit, static_argnames=("step", "model", "length"))
def _sample(step, model, weights, sampler, length, options):
    """`length` steps of the loop, each `step(model, weights, token, state)`: `fast_step` on
    `prepare_step`'s weights, or `model_step` on the variables (the readable path, for tests);
    options from `_options` (traced: one compilation for every temperature, top_k and top_p)."""

    def body(carry: SamplerState, _):
        logits, state = step(model, weights, carry.token, carry.state)
        key, sub = jax.random.split(carry.key)
        token = jax.random.categorical(sub, _filter(logits, *options)).astype(jnp.int32)
        return SamplerState(state, token, key), token

    sampler, tokens = lax.scan(body, sampler, length=length)
    return jnp.swapaxes(tokens, 0, 1), sampler


def generate(model, variables, prompt, length: int, key: Array, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, state=None) -> Array:
    """`length` tokens after the prompt, in one jitted loop.

    Inputs: as `start_sampling` and `sample_tokens`.
    Returns: tokens (N, L) int32 (the prompt not included).
    """
    check_positive_int("length", length)
    check_sampling_options(temperature, top_k, top_p)
    sampler = start_sampling(model, variables, prompt, key, state)
    options = _options(temperature, top_k, top_p, model.vocab_size)
    return _prepare_and_sample(model, variables, sampler, length, options)[0]


def generate_chunks(model, variables, prompt, length: int, key: Array, chunk: int = 100,
                    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                    state=None) -> Iterator[Array]:
    """The tokens of `generate` as they are produced, `chunk` at a time (the last chunk
    shorter), for a command line that prints as it goes; concatenated, they equal `generate`'s
    output for the same key.

    Inputs: as `generate`, and chunk >= 1.
    Yields: tokens (N, min(chunk, what is left)) int32.
    """
    check_positive_int("length", length)
    check_positive_int("chunk", chunk)
    check_sampling_options(temperature, top_k, top_p)
    sampler = start_sampling(model, variables, prompt, key, state)  # checked now, not at the first next()
    weights = _prepare(model, variables)  # once for all the chunks
    return _chunks(model, weights, sampler, length, chunk, _options(temperature, top_k, top_p, model.vocab_size))


def _chunks(model, weights, sampler, length, chunk, options):
    done = 0
    while done < length:
        size = min(chunk, length - done)
        tokens, sampler = _sample(fast_step, model, weights, sampler, size, options)
        done += size
        yield tokens
