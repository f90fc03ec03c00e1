# %% [markdown]
# # Language modeling: a char-RNN on Tiny Shakespeare
#
# A language model reads text one token at a time and predicts the next. Here the tokens
# are characters (Karpathy's char-rnn) and the text is Tiny Shakespeare. We lay the text out
# as parallel streams, cut them into segments for truncated backpropagation through time
# (TBPTT), check that `jax.grad` of the model's loss runs jaxseq's hand-written backward
# passes and equals autodiff, train with `jaxseq.train.train_language_model`, and sample
# text at several temperatures.
#
# Shapes: N streams, L stream length, T = bptt steps per segment, V vocabulary, E embedding
# size, H hidden size, S layers.
#
# `FULL = False` trains a small model on part of the text: the whole notebook runs in under
# a minute on a laptop CPU. `FULL = True` trains char-rnn's recipe on the whole text
# (50 epochs: long on a CPU).

# %%
FULL = False

import dataclasses
import re
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax import lax

from jaxseq.data import (batchify, get_batch, load_builtin_text, load_tiny_shakespeare, segment_starts,
                         tiny_shakespeare_file)
from jaxseq.gradcheck import rel_error
from jaxseq.inference.language_model import generate_text
from jaxseq.lm_recipes import LM_RECIPES
from jaxseq.models import LanguageModel, lm_loss, token_losses
from jaxseq.train.language_model import LMTrainConfig, evaluate_language_model, train_language_model
from jaxseq.train.run_log import read_metrics

print("jax", jax.__version__, "on", jax.devices()[0].platform)

# %% [markdown]
# ## The text and its vocabulary
#
# jaxseq looks for Tiny Shakespeare (1,115,394 characters of the plays) in
# `$JAXSEQ_DATA/tinyshakespeare/input.txt`, then in `../shared/data/tinyshakespeare/`, and
# splits it as nanoGPT does: the first 90% of the characters train, the rest validate. The
# vocabulary is the sorted set of the training split's characters (V = 65, nanoGPT's ids).
#
# Without the file the notebook uses jaxseq's built-in text instead: generated sentences
# whose verbs agree with nouns a nested clause back ("the girl that the farmers follow
# waits ."), V = 23. Same interfaces, no download.

# %% tags=data
path = tiny_shakespeare_file()
if path is not None:
    corpus = load_tiny_shakespeare(path)
    print(f"Tiny Shakespeare from {path}")
else:
    print("Tiny Shakespeare not found (looked in $JAXSEQ_DATA/tinyshakespeare and ../shared/data/tinyshakespeare):\n"
          "using the built-in text (sentences with nested agreement) instead")
    corpus = load_builtin_text(num_train_chars=400_000, num_val_chars=40_000)
vocab = corpus.vocab
V = len(vocab)
print(corpus.summary())
print("vocabulary:", repr("".join(vocab.tokens)))
print("ids of 'the':", vocab.encode("the").ids)
print("\n" + vocab.decode(corpus.train[:250]))

# %% [markdown]
# ## Streams and segments
#
# The training text is one stream of L_total ids. `batchify(ids, N)` cuts it into N equal
# streams, the rows of an (N, L) array (L = L_total // N; the last L_total % N ids are
# dropped): stream n is the text's n-th piece. `get_batch(streams, i, T)` is the segment
# at step i: inputs x = streams[:, i:i+T] and targets y = streams[:, i+1:i+1+T], the next
# character of each input. An epoch visits i = 0, T, 2T, ... (`segment_starts`); the last
# segment is shorter when T does not divide L - 1. This is PyTorch's `word_language_model`
# example, batch-major. On 26 ids, N = 3, T = 3:

# %% tags=streams
toy = batchify(np.arange(26), 3)
print("batchify(np.arange(26), 3) =\n", toy)
for i in segment_starts(toy.shape[1], 3):
    x, y = get_batch(toy, i, 3)
    print(f"i = {i}: x = {x.tolist()}  y = {y.tolist()}")

# %% [markdown]
# The same on the text, with N = 64 streams and segments of T = 32 characters:

# %% tags=streams
N, T = 64, 32
streams = batchify(corpus.train, N)
x, y = get_batch(streams, 0, T)
starts = segment_starts(streams.shape[1], T)
print(f"streams {streams.shape} = (N, L);  x {x.shape}, y {y.shape} = (N, T);  {len(starts)} segments per epoch, "
      f"the last of {streams.shape[1] - 1 - starts[-1]} steps")
print("x[1]:", repr(vocab.decode(x[1])))
print("y[1]:", repr(vocab.decode(y[1])))

# %% [markdown]
# ## The model and its carried state
#
# `LanguageModel` is PyTorch's example's model: an embedding (V, E), a stack of S recurrent
# layers (here LSTMs of H units), and a decoder to logits over the vocabulary:
#
#     tokens (N, T) -> embedding (N, T, E) -> S LSTM layers (N, T, H) -> logits (N, T, V)
#
# It takes a state and returns the state after the segment, (h, c) each (S, N, H) for the
# LSTM. Carried from one segment to the next, the state continues each stream exactly: the
# per-step losses of two segments read one after the other equal those of one forward over
# both (float32 rounding apart).

# %% tags=carry
E, H, S = 16, 64, 2
model = LanguageModel(vocab_size=V, cell="lstm", embed_size=E, hidden_size=H, num_layers=S)
params = jax.jit(model.init)(jax.random.key(0), x)["params"]
print("parameters:", {f"{group}.{name}": value.shape for group, leaves in params.items()
                      for name, value in leaves.items()})

apply = jax.jit(lambda params, tokens, state: model.apply({"params": params}, tokens, state))
state0 = model.initial_state(N)
logits, state1 = apply(params, x, state0)
print(f"logits {logits.shape} = (N, T, V);  state h {state1[0].shape}, c {state1[1].shape} = (S, N, H)")

x2, y2 = get_batch(streams, T, T)
logits2, state2 = apply(params, x2, state1)
pieces = np.concatenate([token_losses(logits, y), token_losses(logits2, y2)], axis=1)  # (N, 2T)
whole_logits, whole_state = apply(params, streams[:, :2 * T], state0)
whole = token_losses(whole_logits, streams[:, 1:2 * T + 1])
state_difference = max(float(np.abs(a - b).max()) for a, b in zip(state2, whole_state))
print(f"two carried segments vs one forward over 2T steps: max |loss difference| = "
      f"{np.abs(pieces - whole).max():.1e}, max |state difference| = {state_difference:.1e}")

# %% [markdown]
# ## Truncated BPTT: no gradient crosses a segment boundary
#
# A training step takes the carried state as an **input**. To `jax.grad` it is then a
# constant: the gradient of segment 2's loss stops at segment 2's first step and never flows
# back into segment 1, so a step backpropagates through T steps however long the text
# (truncated BPTT), while the forward state still runs on exactly.
#
# Below, two segments of 5 steps from a random state: segment 2's loss as a function of the
# parameters and of the state that entered segment 1, with the state carried between them
# either differentiated through (full BPTT over both segments) or a constant
# (`lax.stop_gradient`, which is what a step taking it as an argument amounts to).
# Truncated, the gradient with respect to the state entering segment 1 is exactly 0, and
# the parameters' gradient equals that of segment 2 alone, entered with the carried state.

# %% tags=tbptt
xa, xb, yb = streams[:, 0:5], streams[:, 5:10], streams[:, 6:11]  # segment 1, segment 2 and its targets


def segment_2_loss(params, state0, truncate):
    _, carried = model.apply({"params": params}, xa, state0)  # segment 1: only its final state is used
    if truncate:
        carried = lax.stop_gradient(carried)
    logits_b, _ = model.apply({"params": params}, xb, carried)  # segment 2
    return lm_loss(logits_b, yb)


random_state = tuple(0.5 * jax.random.normal(k, (S, N, H)) for k in jax.random.split(jax.random.key(1)))
gradient = jax.jit(jax.grad(segment_2_loss, argnums=(0, 1)), static_argnums=2)  # d/d params, d/d state0
gradients = {}
for truncate in (False, True):
    gradients[truncate] = gradient(params, random_state, truncate)
    print(f"{'truncated' if truncate else 'full BPTT'}: max |d loss_2 / d state entering segment 1| = "
          f"{max(float(jnp.abs(d).max()) for d in gradients[truncate][1]):.2e}")

carried = apply(params, xa, random_state)[1]
alone = jax.jit(jax.grad(lambda p: lm_loss(model.apply({"params": p}, xb, carried)[0], yb)))(params)
difference = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(gradients[True][0]),
                                                              jax.tree.leaves(alone)))
print(f"truncated parameter gradient vs segment 2 alone from the carried state: max |difference| = {difference:.1e}")

# %% [markdown]
# ## The hand-written backward passes at work
#
# The model's loss is built from jaxseq's `custom_vjp` layers: each LSTM layer's loop,
# `temporal_affine` and `temporal_softmax_loss`. The first layer reads the tokens themselves:
# its input side x_t Wx + b depends on the token alone, so with a vocabulary smaller than a
# batch's token count (65 characters here) it is a row of a (V, 4H) table, the embedding times
# Wx plus b made by `temporal_affine` (`jaxseq.layers.lstm_lookup`; with input dropout, or a word
# vocabulary, the model runs `word_embedding` and projects instead). So `jax.grad` of the loss
# runs their hand-derived backward passes, never autodiff of the forward; the traced program
# names them:

# %% tags=layers
jaxpr = str(jax.make_jaxpr(lambda p: lm_loss(model.apply({"params": p}, x, state0)[0], y))(params))
print("custom_vjp layers in jax.grad's program:", sorted(set(re.findall(r"fwd=(\w+)", jaxpr))))
print("LSTM loops, one per layer:", re.findall(r"name=(_run_lstm\w*)", jaxpr))

# %% [markdown]
# The check: in float64, the gradient of the loss of one segment entered with a random
# state, against `jax.grad` of a plain-JAX model with the same parameters (a lookup, one
# `lax.scan` of PyTorch's LSTM equations per layer, an affine map, `log_softmax`), which JAX
# differentiates itself. Sizes are tiny (N = 2, T = 5, E = 4, H = 6, S = 2), so it is cheap.
# Every parameter's course-style relative error is at the level of float64 rounding:

# %% tags=gradcheck-model
def plain_loss(params, tokens, targets, state):
    """The same model in plain JAX: no custom_vjp, autodiff of every operation."""
    layer_input = params["encoder"]["weight"][tokens]
    for layer in range(S):
        w = {kind: params["rnn"][f"{kind}_l{layer}"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}

        def step(carry, x_t, w=w):
            h, c = carry
            gates = x_t @ w["weight_ih"].T + w["bias_ih"] + h @ w["weight_hh"].T + w["bias_hh"]
            i, f, g, o = jnp.split(gates, 4, axis=-1)  # PyTorch's gate order
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        _, out = lax.scan(step, (state[0][layer], state[1][layer]), jnp.swapaxes(layer_input, 0, 1))
        layer_input = jnp.swapaxes(out, 0, 1)
    logits = layer_input @ params["decoder"]["weight"].T + params["decoder"]["bias"]
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], axis=-1))


with jax.enable_x64(True):
    small = LanguageModel(vocab_size=V, embed_size=4, hidden_size=6, num_layers=S, param_dtype=jnp.float64)
    rng = np.random.default_rng(0)
    tokens, targets = rng.integers(0, V, (2, 2, 5))
    state = tuple(0.5 * rng.standard_normal((S, 2, 6)) for _ in range(2))
    small_params = jax.jit(small.init)(jax.random.key(0), tokens)["params"]
    loss, grads = jax.jit(jax.value_and_grad(lambda p: small.apply({"params": p}, tokens, targets, state,
                                                                   method="loss")[0]))(small_params)
    ref_loss, ref_grads = jax.jit(jax.value_and_grad(plain_loss))(small_params, tokens, targets, state)
    print(f"loss {float(loss):.12f}, plain JAX {float(ref_loss):.12f}: difference {abs(float(loss - ref_loss)):.1e}")
    for group in grads:
        for name in grads[group]:
            print(f"{'d' + group + '.' + name:<20} {str(grads[group][name].shape):<8} "
                  f"relative error vs autodiff: {rel_error(grads[group][name], ref_grads[group][name]):.1e}")

# %% [markdown]
# ## Training
#
# `train_language_model` runs the loop of the other trainers: each step is one compiled call
# (the segment sliced from the streams on the device, the forward from the carried state, the
# mean cross-entropy per character, its gradient, clipping by global norm, the optimizer
# update); the state is carried from step to step and reset to zeros at each epoch's start.
# After each epoch it evaluates the validation split with the state carried over the whole
# of it, and keeps the best parameters.
#
# With `FULL = False`: a 1-layer LSTM (E = 32, H = 128) on the first 307,264 training
# characters (N = 64 streams, 150 segments of T = 32), AdamW at 2e-2 with a cosine decay,
# 2 epochs; validation on the first 19,220 characters of the split. With `FULL = True`: the
# `char-rnn` recipe (`jaxseq.lm_recipes`: a 2-layer LSTM of 128 units, E = 128, 50 streams
# of 50 characters, Adam at 2e-3, gradients clipped to 5, 50 epochs) on the whole text.

# %%
if FULL:
    recipe = LM_RECIPES["char-rnn"]
    model = LanguageModel(vocab_size=V, **recipe["model"])
    config = LMTrainConfig(**recipe["train"])
    data = corpus
else:
    model = LanguageModel(vocab_size=V, cell="lstm", embed_size=32, hidden_size=128, num_layers=1)
    config = LMTrainConfig(epochs=2, batch_size=N, bptt=T, optimizer="adamw", learning_rate=2e-2,
                           schedule="cosine", warmup_steps=10, clip_norm=1.0, eval_batch_size=20)
    # whole segments (one compiled step): 150 a training epoch; validation: 20 streams of 30 segments
    data = dataclasses.replace(corpus, train=corpus.train[:N * (150 * T + 1)], val=corpus.val[:20 * (30 * T + 1)])

log_dir = Path(tempfile.mkdtemp(prefix="lm-notebook-"))
start = time.perf_counter()
run = train_language_model(model, data, config, progress=False, log_dir=log_dir, log_every=10)
print(f"trained in {time.perf_counter() - start:.0f} s; best epoch {run.best_epoch}: "
      f"val loss {run.best_val_loss:.4f} nats/char")

# %% [markdown]
# The loss curve, from the run log (`metrics.jsonl`: the mean training loss of every 10
# steps) and the validation loss of each epoch. A model that always predicts the characters'
# frequencies (a unigram model) would sit near the dashed line:

# %%
points = read_metrics(log_dir / "metrics.jsonl")
train_curve = [(p.step, p.value) for p in points if p.name == "train/loss"]
val_curve = [(p.step, p.value) for p in points if p.name == "val/loss"]
counts = np.bincount(data.train, minlength=V) / len(data.train)
unigram = -np.sum(counts[counts > 0] * np.log(counts[counts > 0]))
plt.plot(*zip(*train_curve), label="training loss (mean of 10 steps)")
plt.plot(*zip(*val_curve), "o-", label="validation loss (per epoch)")
plt.axhline(unigram, color="k", linestyle="--", label=f"unigram entropy {unigram:.2f}")
plt.xlabel("step")
plt.ylabel("nats per character")
plt.legend()
plt.show()

# %% [markdown]
# ## Validation bits per character
#
# `evaluate_language_model` reads a split as `batch_size` streams with the state carried
# over all of it: every target counted once, as PyTorch's example evaluates. Loss in nats
# per character, perplexity $e^{loss}$ and bits per character $loss / \ln 2$. For scale: on
# Tiny Shakespeare's validation split, nanoGPT's character-level transformer reaches 1.47
# nats (2.12 bits) after training on a GPU.

# %% tags=bpc
scores = evaluate_language_model(model, run.params, data.val, batch_size=config.eval_batch_size, bptt=config.bptt)
print(f"validation ({scores['tokens']:,} characters): loss {scores['loss']:.4f} nats/char, "
      f"perplexity {scores['perplexity']:.2f}, {scores['bits_per_token']:.3f} bits per character")
print(f"unigram model: {unigram / np.log(2):.3f} bits per character")

# %% [markdown]
# ## Samples
#
# `generate_text` reads the prompt in one forward pass, then samples in a jitted loop (no
# Python loop per character). The temperature divides the logits before the softmax: below 1
# sharpens the distribution (safer, more repetitive text), 1 samples the model as it is.
# top-k keeps only the k most probable characters, top-p the smallest set whose
# probability reaches p. The same seed gives the same text.

# %% tags=samples
prompt = "ROMEO:" if "R" in vocab.tokens else "the "
length = 640 if FULL else 256
for temperature, top_k, top_p in ((0.5, None, None), (0.8, None, None), (1.0, None, None), (1.0, 10, None),
                                  (1.0, None, 0.9)):
    text = prompt + "".join(generate_text(model, run.params, vocab, prompt, length, temperature=temperature,
                                          top_k=top_k, top_p=top_p, seed=0))
    print(f"--- temperature {temperature}, top_k {top_k}, top_p {top_p} ---")
    print(text)
