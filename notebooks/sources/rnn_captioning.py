# %% [markdown]
# # Image captioning with a vanilla RNN
#
# This notebook follows the course's RNN captioning assignment with jaxseq. Every layer is
# a pair of pure functions: `<name>_forward(...) -> (out, cache)` and
# `<name>_backward(dout, cache) -> grads`, the backward pass derived by hand from the
# equations. A third name, `<name>(...)`, is a `jax.custom_vjp` function whose rule is that
# pair, so `jax.grad` of your code runs the hand-written backward.
#
# We check each backward pass three ways, in float64:
#
# - against **numerical** gradients (central differences, the course's
#   `eval_numerical_gradient_array`),
# - against **autodiff**: `jax.grad` (or `jax.vjp`) of the same forward written in plain JAX,
# - through the `custom_vjp` function.
#
# Then we assemble the layers into the course's captioning model, check its loss against
# the course's value, overfit a small set, sample captions and score them.
#
# `FULL = False` keeps the run to about a minute on a laptop CPU; `FULL = True` trains at
# the course's sizes.

# %%
FULL = False

import jax

jax.config.update("jax_enable_x64", True)  # float64 for the checks, as the course used NumPy float64

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxseq import layers as L
from jaxseq.data import decode_captions, load_coco_data, load_scene_captions, sample_coco_minibatch
from jaxseq.gradcheck import (check_layer, eval_numerical_gradient, eval_numerical_gradient_array,
                              format_results, rel_error)
from jaxseq.models import CaptioningRNN, sample
from jaxseq.train import CaptioningSolver


def linspace(low, high, *shape):
    """The course's deterministic test inputs: np.linspace reshaped."""
    return np.linspace(low, high, num=int(np.prod(shape))).reshape(shape)


print("jax", jax.__version__, "on", jax.devices()[0].platform)

# %% [markdown]
# ## The data
#
# jaxseq reads the course's COCO captioning files (`jaxseq data download coco` fetches them
# into `$JAXSEQ_DATA/coco_captioning`, else `~/.cache/jaxseq/coco_captioning`). Each image is a feature vector (VGG-16 fc7, reduced
# to 512 dimensions with PCA) and each caption a row of word ids
# `<START> w1 ... wk <END> <NULL> ...`; ids 0..3 are `<NULL>`, `<START>`, `<END>`, `<UNK>`.
#
# Without the files the notebook uses jaxseq's built-in scene captions: generated scenes
# ("two large red squares above a small blue circle") whose "image features" are a noisy
# random projection of the scene's attributes. Same dict layout, no download. For this
# notebook we only need a small set to overfit: 50 training captions.

# %%
try:
    small_data = load_coco_data(max_train=50)
    print(f"loaded COCO ({small_data['train_captions'].shape[0]} training captions)")
except FileNotFoundError as missing:
    print(f"COCO not found ({missing}):\nusing the built-in scene captions instead")
    small_data = load_scene_captions(num_train=50, num_val=50)

for key, value in small_data.items():
    if isinstance(value, np.ndarray):
        print(f"  {key:<18} {str(value.dtype):<8} {value.shape}")
    else:
        print(f"  {key:<18} {type(value).__name__} of {len(value)} words")

# %% [markdown]
# A minibatch, drawn as the course drew it (with replacement), decoded back to words:

# %%
captions, features, urls = sample_coco_minibatch(small_data, batch_size=3, rng=0)
for caption, url in zip(decode_captions(captions, small_data["idx_to_word"]), urls):
    print(url, "\n   ", caption)

# %% [markdown]
# ## Vanilla RNN: one step
#
# With input $x_t$ (N, D), previous hidden state $h_{t-1}$ (N, H) and parameters
# $W_x$ (D, H), $W_h$ (H, H), $b$ (H,):
#
# $$h_t = \tanh(x_t W_x + h_{t-1} W_h + b).$$
#
# `rnn_step_forward` returns $h_t$ and a cache holding what the backward pass needs. The
# course printed its expected values with 8 decimals, so the error against them is about
# 1e-8 (never above 1e-6).

# %% tags=reference
N, D, H = 3, 10, 4
x = linspace(-0.4, 0.7, N, D)
prev_h = linspace(-0.2, 0.5, N, H)
Wx = linspace(-0.1, 0.9, D, H)
Wh = linspace(-0.3, 0.7, H, H)
b = np.linspace(-0.2, 0.4, num=H)

next_h, _ = L.rnn_step_forward(x, prev_h, Wx, Wh, b)
expected_next_h = np.asarray([
    [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
    [0.66854692, 0.79562378, 0.87755553, 0.92795967],
    [0.97934501, 0.99144213, 0.99646691, 0.99854353]])
print("next_h error:", rel_error(next_h, expected_next_h))

# %% [markdown]
# ### Backward
#
# Write $a = x W_x + h_{t-1} W_h + b$. Since $\tanh'(a) = 1 - \tanh^2(a)$, the upstream
# gradient $dh_t$ gives
#
# $$da = dh_t \odot (1 - h_t^2), \qquad dx = da\, W_x^\top, \qquad dh_{t-1} = da\, W_h^\top,$$
# $$dW_x = x^\top da, \qquad dW_h = h_{t-1}^\top da, \qquad db = \textstyle\sum_n da_n .$$
#
# `rnn_step_backward` is exactly these lines. We compare it with central differences of
# $\langle h_t, dh_t\rangle$ and with `jax.vjp` of the forward written in plain JAX. Against
# central differences, which carry their own truncation and rounding error, the relative
# errors should be about 1e-7 or less; hand and autodiff agree to rounding (~1e-14).

# %% tags=gradcheck
def numerical_grads(forward, args, dout):
    """Central-difference gradients of <forward(*args)[0], dout> w.r.t. each argument."""
    forward = jax.jit(forward)  # compiled once, then called twice per entry
    grads = []
    for i in range(len(args)):
        def f(value, i=i):
            return forward(*args[:i], value, *args[i + 1:])[0]
        grads.append(eval_numerical_gradient_array(f, np.array(args[i]), dout))
    return grads


def compare(names, hand, numerical, autodiff):
    for name, h, n, a in zip(names, hand, numerical, autodiff):
        print(f"d{name:<7} hand vs numerical: {rel_error(h, n):.2e}   hand vs jax.vjp: {rel_error(h, a):.2e}")


rng = np.random.default_rng(231)
N, D, H = 4, 5, 6
args = (rng.standard_normal((N, D)), rng.standard_normal((N, H)),
        rng.standard_normal((D, H)), rng.standard_normal((H, H)), rng.standard_normal(H))
next_h, cache = L.rnn_step_forward(*args)
dnext_h = rng.standard_normal(next_h.shape)

hand = L.rnn_step_backward(dnext_h, cache)
numerical = numerical_grads(L.rnn_step_forward, args, dnext_h)
plain_step = lambda x, prev_h, Wx, Wh, b: jnp.tanh(x @ Wx + prev_h @ Wh + b)
autodiff = jax.vjp(plain_step, *args)[1](dnext_h)
compare(["x", "prev_h", "Wx", "Wh", "b"], hand, numerical, autodiff)

# %% [markdown]
# ## Vanilla RNN: a sequence
#
# `rnn_forward` runs the step over T time steps from $h_0$: x (N, T, D) -> h (N, T, H).
# It follows jaxseq's performance rule: the input projection $x W_x$ for all time steps is
# one matmul before a `lax.scan` over the recurrence alone.

# %% tags=reference
N, T, D, H = 2, 3, 4, 5
x = linspace(-0.1, 0.3, N, T, D)
h0 = linspace(-0.3, 0.1, N, H)
Wx = linspace(-0.2, 0.4, D, H)
Wh = linspace(-0.4, 0.1, H, H)
b = np.linspace(-0.7, 0.1, num=H)

h, _ = L.rnn_forward(x, h0, Wx, Wh, b)
expected_h = np.asarray([
    [[-0.42070749, -0.27279261, -0.11074945, 0.05740409, 0.22236251],
     [-0.39525808, -0.22554661, -0.0409454, 0.14649412, 0.32397316],
     [-0.42305111, -0.24223728, -0.04287027, 0.15997045, 0.35014525]],
    [[-0.55857474, -0.39065825, -0.19198182, 0.02378408, 0.23735671],
     [-0.27150199, -0.07088804, 0.13562939, 0.33099728, 0.50158768],
     [-0.51014825, -0.30524429, -0.06755202, 0.17806392, 0.40333043]]])
print("h error:", rel_error(h, expected_h))

# %% [markdown]
# ### Backward through time
#
# The gradient reaching $h_t$ is the upstream $dh_t$ plus what flows back from step
# $t+1$: walking backward, $dh_{t-1}$ of one step is added to the next step's input.
# `rnn_backward` scans backward to get every step's $da_t$, then computes
# $dx = da\,W_x^\top$, $dW_x$, $dW_h$ and $db$ as one batched matmul or sum each. The
# autodiff reference below is an independent Python loop over time.

# %% tags=gradcheck
def plain_rnn(x, h0, Wx, Wh, b):
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = jnp.tanh(x[:, t] @ Wx + h @ Wh + b)
        hs.append(h)
    return jnp.stack(hs, axis=1)


rng = np.random.default_rng(231)
N, D, T, H = 2, 3, 10, 5
args = (rng.standard_normal((N, T, D)), rng.standard_normal((N, H)),
        rng.standard_normal((D, H)), rng.standard_normal((H, H)), rng.standard_normal(H))
h, cache = L.rnn_forward(*args)
dh = rng.standard_normal(h.shape)

hand = L.rnn_backward(dh, cache)
numerical = numerical_grads(L.rnn_forward, args, dh)
autodiff = jax.vjp(plain_rnn, *args)[1](dh)
compare(["x", "h0", "Wx", "Wh", "b"], hand, numerical, autodiff)

# %% [markdown]
# ## `jax.grad` runs the hand-written backward
#
# `L.rnn` is the `custom_vjp` function built from the pair, so differentiating any code
# that calls it uses `rnn_backward`: the gradients below are the hand-written ones exactly
# (error 0), not autodiff's.
#
# `jaxseq.gradcheck.check_layer` runs all three comparisons for any forward/backward pair
# that follows the layer contract — use it for your own layers. Its table for the two RNN
# layers:

# %% tags=gradcheck
through_grad = jax.grad(lambda *a: jnp.sum(L.rnn(*a) * dh), argnums=(0, 1, 2, 3, 4))(*args)
for name, g, h_ in zip(["x", "h0", "Wx", "Wh", "b"], through_grad, hand):
    print(f"d{name:<3} jax.grad of L.rnn vs rnn_backward: {rel_error(g, h_):.2e}")

rng = np.random.default_rng(0)
N, T, D, H = 3, 4, 5, 6
inputs = dict(x=rng.standard_normal((N, T, D)), h0=rng.standard_normal((N, H)),
              Wx=0.5 * rng.standard_normal((D, H)), Wh=0.5 * rng.standard_normal((H, H)),
              b=rng.standard_normal(H))
step_inputs = dict(x=inputs["x"][:, 0], prev_h=inputs["h0"], Wx=inputs["Wx"], Wh=inputs["Wh"], b=inputs["b"])
results = check_layer("rnn_step", L.rnn_step_forward, L.rnn_step_backward, step_inputs, list(step_inputs),
                      differentiable=L.rnn_step)
results += check_layer("rnn", L.rnn_forward, L.rnn_backward, inputs, list(inputs), differentiable=L.rnn)
print()
print(format_results(results))

# %% [markdown]
# ## Word embedding
#
# Words enter the network as vectors: with a table $W$ (V, D), `word_embedding_forward`
# maps ids x (N, T) to $W[x]$ (N, T, D). Its backward is a scatter-add, because a word
# that appears several times collects the gradient of every occurrence:
#
# $$dW_v = \sum_{(n, t):\, x_{nt} = v} dout_{nt}.$$
#
# (jaxseq writes it as `jnp.zeros_like(W).at[x].add(dout)`; the ids themselves get no
# gradient.)

# %% tags=reference
V, D = 5, 3
x = np.asarray([[0, 3, 1, 2], [2, 1, 0, 3]])
W = linspace(0, 1, V, D)
out, _ = L.word_embedding_forward(x, W)
expected_out = np.asarray([
    [[0.0, 0.07142857, 0.14285714], [0.64285714, 0.71428571, 0.78571429],
     [0.21428571, 0.28571429, 0.35714286], [0.42857143, 0.5, 0.57142857]],
    [[0.42857143, 0.5, 0.57142857], [0.21428571, 0.28571429, 0.35714286],
     [0.0, 0.07142857, 0.14285714], [0.64285714, 0.71428571, 0.78571429]]])
print("out error:", rel_error(out, expected_out))

# %% tags=gradcheck
rng = np.random.default_rng(231)
N, T, V, D = 50, 3, 5, 6
x = rng.integers(V, size=(N, T))
W = rng.standard_normal((V, D))
out, cache = L.word_embedding_forward(x, W)
dout = rng.standard_normal(out.shape)
dW = L.word_embedding_backward(dout, cache)
dW_num = eval_numerical_gradient_array(lambda W_: L.word_embedding_forward(x, W_)[0], W.copy(), dout)
dW_autodiff = jax.vjp(lambda W_: W_[x], W)[1](dout)[0]
compare(["W"], [dW], [dW_num], [dW_autodiff])

# %% [markdown]
# ## Temporal affine
#
# At every time step the hidden state is mapped to scores over the vocabulary with the
# same affine map: x (N, T, D), w (D, M), b (M,) -> $x w + b$ (N, T, M). The backward is
# the affine layer's, with N·T rows: $dx = dout\, w^\top$, $dw = x^\top dout$,
# $db = \sum dout$ over the N·T rows.

# %% tags=gradcheck
rng = np.random.default_rng(231)
N, T, D, M = 2, 3, 4, 5
args = (rng.standard_normal((N, T, D)), rng.standard_normal((D, M)), rng.standard_normal(M))
out, cache = L.temporal_affine_forward(*args)
dout = rng.standard_normal(out.shape)
hand = L.temporal_affine_backward(dout, cache)
numerical = numerical_grads(L.temporal_affine_forward, args, dout)
autodiff = jax.vjp(lambda x, w, b: x @ w + b, *args)[1](dout)
compare(["x", "w", "b"], hand, numerical, autodiff)

# %% [markdown]
# ## Temporal softmax loss
#
# At each time step the model scores every word; the loss is the softmax cross-entropy of
# the true next word, summed over time and averaged over the batch, with a mask $m$ that
# drops the `<NULL>` padding:
#
# $$\mathcal{L} = -\frac{1}{N} \sum_{n, t} m_{nt} \log \frac{e^{x_{nt, y_{nt}}}}{\sum_v e^{x_{nt, v}}},
# \qquad dx_{nt} = \frac{m_{nt}}{N}\left(\mathrm{softmax}(x_{nt}) - \mathrm{onehot}(y_{nt})\right).$$
#
# Sanity check: with near-zero scores every word has probability 1/V, so the loss is about
# $T \cdot p \cdot \log V$ where p is the fraction of unmasked positions: 2.3, 23 and 2.3
# below.

# %%
def check_loss(N, T, V, p, seed=0):
    rng = np.random.default_rng(seed)
    x = 0.001 * rng.standard_normal((N, T, V))
    y = rng.integers(V, size=(N, T))
    mask = rng.random((N, T)) <= p
    return float(L.temporal_softmax_loss_forward(x, y, mask)[0])


print(check_loss(100, 1, 10, 1.0))   # should be about 2.3
print(check_loss(100, 10, 10, 1.0))  # should be about 23
print(check_loss(5000, 10, 10, 0.1))  # should be about 2.3

# %% tags=gradcheck
rng = np.random.default_rng(231)
N, T, V = 7, 8, 9
x = 0.001 * rng.standard_normal((N, T, V))
y = rng.integers(V, size=(N, T))
mask = rng.random((N, T)) > 0.5
loss, cache = L.temporal_softmax_loss_forward(x, y, mask)
dx = L.temporal_softmax_loss_backward(1.0, cache)
dx_num = eval_numerical_gradient(lambda x_: L.temporal_softmax_loss_forward(x_, y, mask)[0], x.copy())


def plain_loss(x):
    log_probs = jax.nn.log_softmax(x, axis=-1)
    return -jnp.sum(mask * jnp.take_along_axis(log_probs, y[..., None], -1)[..., 0]) / N


compare(["x"], [dx], [dx_num], [jax.grad(plain_loss)(x)])

# %% [markdown]
# ## The captioning model
#
# `jaxseq.models.CaptioningRNN` is a Flax linen module built from these layers, with the
# course's parameter names:
#
# $$h_0 = \text{features}\, W_{proj} + b_{proj}, \qquad
# x = W_{embed}[\text{captions}_{in}], \qquad h = \mathrm{rnn}(x, h_0, W_x, W_h, b),$$
# $$\text{scores} = h\, W_{vocab} + b_{vocab}, \qquad
# \mathcal{L} = \text{temporal\_softmax\_loss}(\text{scores}, \text{captions}_{out},
# \text{captions}_{out} \neq \texttt{<NULL>}).$$
#
# Teacher forcing: `captions_in` is the caption without its last word and `captions_out`
# the caption without `<START>`, so at step t the model sees the true word t and predicts
# word t+1. The course set every parameter and input with `np.linspace` and printed the
# loss, 9.83235591003; jaxseq matches it to about 1e-12.

# %% tags=reference
N, D, W, H, V, T = 10, 20, 30, 40, 3, 13
model = CaptioningRNN(vocab_size=V, wordvec_dim=W, hidden_dim=H, cell_type="rnn",
                      dtype=jnp.float64, param_dtype=jnp.float64)
features = linspace(-1.5, 0.3, N, D)
captions = (np.arange(N * T) % V).reshape(N, T)

shapes = jax.eval_shape(model.init, jax.random.key(0), features, captions[:, :-1])["params"]
params = {name: jnp.asarray(linspace(-1.4, 1.3, *s.shape)) for name, s in shapes.items()}
for name, value in params.items():
    print(f"  {name:<8} {value.shape}")

loss = model.apply({"params": params}, features, captions, method="loss")
expected_loss = 9.83235591003
print("loss:         ", float(loss))
print("expected loss:", expected_loss)
print("difference:   ", abs(float(loss) - expected_loss))

# %% [markdown]
# ### Gradient check of the whole model
#
# `jax.grad` of the model's loss runs the hand-written backward of every layer (each is a
# `custom_vjp` function). We compare it with numerical gradients of the loss for every
# parameter, on a tiny model (the course's sizes: N=2, T=3, V=3) with weights of order 1
# (the initial ones are tiny, and so would be many gradient entries).
#
# Expect relative errors of about 1e-7 or less. The course's `rel_error` is elementwise,
# $\max |a - b| / \max(10^{-8}, |a| + |b|)$: where a gradient entry is tiny (say 1e-7,
# through a saturated unit) it divides the central difference's absolute error, ~1e-11,
# by that entry and can show 1e-5 although the backward pass is exact. So we also print
# the *scaled* error $\max |a - b| / \max |b|$, the difference on the scale of the
# gradient itself.

# %% tags=gradcheck-model
rng = np.random.default_rng(231)
N, T, D, W, H, V = 2, 3, 4, 5, 6, 3
model = CaptioningRNN(vocab_size=V, wordvec_dim=W, hidden_dim=H, cell_type="rnn",
                      dtype=jnp.float64, param_dtype=jnp.float64)
captions = rng.integers(V, size=(N, T))
features = rng.standard_normal((N, D))
shapes = jax.eval_shape(model.init, jax.random.key(0), features, captions[:, :-1])["params"]
params = {name: 0.5 * rng.standard_normal(s.shape) for name, s in shapes.items()}

loss_fn = jax.jit(lambda p: model.apply({"params": p}, features, captions, method="loss"))
grads = jax.grad(loss_fn)(params)
for name in sorted(params):
    numerical = eval_numerical_gradient(lambda v, name=name: loss_fn({**params, name: v}),
                                        np.array(params[name]))
    scaled = np.max(np.abs(numerical - grads[name])) / np.max(np.abs(grads[name]))
    print(f"{name:<8} relative error: {rel_error(numerical, grads[name]):.2e}   scaled error: {scaled:.2e}")

# %% [markdown]
# ## Overfit a small set
#
# `jaxseq.train.CaptioningSolver` is the course's solver on optax: every step (minibatch
# drawn on the device, forward, loss, hand-written backward, Adam update) is one compiled
# call. A model that can learn should drive the loss on 50 captions close to zero. (The
# course decayed the learning rate by 0.95 per epoch; with 2 steps per epoch a constant
# rate gets there sooner.)
#
# Watch the val loss meanwhile: it climbs, because the model memorizes these 50 captions
# rather than learning to describe images.

# %%
model = CaptioningRNN(vocab_size=len(small_data["idx_to_word"]), cell_type="rnn",
                      wordvec_dim=256 if FULL else 128, hidden_dim=512 if FULL else 256)
solver = CaptioningSolver(model, small_data, update_rule="adam",
                          optim_config={"learning_rate": 5e-3}, lr_decay=1.0,
                          num_epochs=50, batch_size=25, verbose=False)
solver.train()
for epoch in range(0, solver.num_epochs, 10):
    print(f"epoch {epoch + 1:>2}: train loss {solver.loss_history[(epoch + 1) * solver.iterations_per_epoch - 1]:.4f}"
          f"   val loss {solver.val_loss_history[epoch]:.4f}")
print(f"final training loss: {solver.loss_history[-1]:.4f}, {solver.steps_per_second:.0f} steps/s")

plt.plot(solver.loss_history)
plt.xlabel("iteration")
plt.ylabel("loss")
plt.title("Training loss history")
plt.show()

# %% [markdown]
# ## Greedy sampling
#
# At test time there is no true previous word to feed. `jaxseq.models.sample` feeds
# `<START>`, then at every step the most probable word, until `<END>` — one recurrent step
# for the whole batch per word, in a compiled `lax.while_loop`. On the training captions
# the overfit model should reproduce them; on val captions it has learned too little from
# 50 examples to be right.

# %%
variables = {"params": solver.params}
idx_to_word = small_data["idx_to_word"]
for split in ("train", "val"):
    captions, features, urls = sample_coco_minibatch(small_data, batch_size=3, split=split, rng=1)
    generated = sample(model, variables, features, max_length=captions.shape[1] - 1)
    print(f"--- {split} ---")
    for url, truth, guess in zip(urls, decode_captions(captions, idx_to_word),
                                 decode_captions(np.asarray(generated), idx_to_word)):
        print(url)
        print("  generated:", guess)
        print("  true:     ", truth)

# %% [markdown]
# ## Scoring the captions
#
# The course scored a generated caption with BLEU-1 against the one caption its image was
# drawn with (`evaluate_captions`: clipped unigram precision times a brevity penalty,
# averaged over captions). Papers report the COCO caption evaluation instead
# (`evaluate_coco_metrics`, with `pycocoevalcap`: `pip install 'jaxseq[coco-eval]'`): one
# caption per image against all of the image's references, corpus BLEU-1..4, METEOR (where
# Java is installed), ROUGE-L and CIDEr-D (at most 10). The overfit model scores high on
# the captions it memorized and low on val.

# %% tags=coco
from jaxseq.inference import evaluate_captions, evaluate_coco_metrics
from jaxseq.metrics import MissingPackageError

for split in ("train", "val"):
    print(f"{split:<5} BLEU-1 (the course's): {evaluate_captions(model, variables, small_data, split):.4f}")
try:
    for split in ("train", "val"):
        result = evaluate_coco_metrics(model, variables, small_data, split)
        print(f"{split:<5} COCO metrics ({result['images']} images, {result['references']} references): "
              + "  ".join(f"{name} {value:.4f}" for name, value in result["scores"].items()))
    for name, reason in result["skipped"].items():
        print(f"{name} skipped: {reason}")
except MissingPackageError as error:
    print(error)
