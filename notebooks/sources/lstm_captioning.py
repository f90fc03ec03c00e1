# %% [markdown]
# # Image captioning with an LSTM
#
# The vanilla RNN of `RNN_Captioning.ipynb` multiplies the gradient by $W_h^\top$ and a
# $\tanh'$ factor at every step back in time, so over long sequences it vanishes or
# explodes. The LSTM adds a *cell state* updated additively, which lets gradients flow
# through many steps. This notebook builds the LSTM layers the same way — forward and
# hand-derived backward, checked against numerical gradients and autodiff in float64 —
# then trains a captioner that describes images it has not seen, decodes with greedy
# search and beam search, and scores both with the course's BLEU-1 and with the COCO
# caption evaluation that papers report.
#
# `FULL = False` keeps the run to about a minute on a laptop CPU; `FULL = True` trains
# longer and on more data.

# %%
FULL = False

import time

import jax

jax.config.update("jax_enable_x64", True)  # float64 for the checks; the captioner trains in float32

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxseq import layers as L
from jaxseq.data import decode_captions, load_coco_data, load_scene_captions, sample_coco_minibatch
from jaxseq.gradcheck import check_layer, eval_numerical_gradient, format_results, rel_error
from jaxseq.inference import evaluate_captions
from jaxseq.metrics import bleu1
from jaxseq.models import CaptioningRNN, beam_search, sample
from jaxseq.train import CaptioningSolver


def linspace(low, high, *shape):
    """The course's deterministic test inputs: np.linspace reshaped."""
    return np.linspace(low, high, num=int(np.prod(shape))).reshape(shape)


def numerical_grads(forward, args, douts):
    """Central-difference gradients of sum_k <forward(*args)[k], douts[k]> w.r.t. each argument."""
    forward = jax.jit(forward)
    grads = []
    for i in range(len(args)):
        def f(value, i=i):
            outs = forward(*args[:i], value, *args[i + 1:])
            return sum(jnp.sum(out * dout) for out, dout in zip(outs, douts))
        grads.append(eval_numerical_gradient(f, np.array(args[i])))
    return grads


def compare(names, hand, numerical, autodiff):
    for name, h, n, a in zip(names, hand, numerical, autodiff):
        print(f"d{name:<7} hand vs numerical: {rel_error(h, n):.2e}   hand vs jax.vjp: {rel_error(h, a):.2e}")

# %% [markdown]
# ## The data
#
# The course's COCO files when `load_coco_data` finds them (`jaxseq data download coco`),
# otherwise jaxseq's built-in scene captions: generated scenes such as "two large red
# squares above a small blue circle", each with a feature vector that is a noisy random
# projection of its attributes. Train and val hold *different* scenes, so describing val
# scenes correctly means the model learned the attributes, not the captions.

# %%
try:
    data = load_coco_data(max_train=None if FULL else 20_000)
    source = "COCO"
except FileNotFoundError as missing:
    print(f"COCO not found ({missing}):\nusing the built-in scene captions instead")
    data = load_scene_captions(num_train=8000 if FULL else 4000, num_val=500)
    source = "built-in scenes"

idx_to_word = data["idx_to_word"]
print(f"{source}: {data['train_captions'].shape[0]} train and {data['val_captions'].shape[0]} val captions, "
      f"{len(idx_to_word)} words, features D={data['train_features'].shape[1]}")
captions, _, urls = sample_coco_minibatch(data, batch_size=3, rng=0)
for caption, url in zip(decode_captions(captions, idx_to_word), urls):
    print(url, "\n   ", caption)

# %% [markdown]
# ## LSTM: one step
#
# With input $x_t$ (N, D), previous hidden and cell states $h_{t-1}, c_{t-1}$ (N, H) and
# parameters $W_x$ (D, 4H), $W_h$ (H, 4H), $b$ (4H,), one step computes the
# pre-activations $a = x_t W_x + h_{t-1} W_h + b$ (N, 4H), splits them in four blocks of
# H in the course's order **i, f, o, g**, and
#
# $$i = \sigma(a_i),\quad f = \sigma(a_f),\quad o = \sigma(a_o),\quad g = \tanh(a_g),$$
# $$c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t).$$
#
# The input gate $i$ decides how much of the candidate $g$ to write, the forget gate $f$
# how much of the old cell to keep, the output gate $o$ how much of the cell to show.
# Errors against the course's printed values (8 decimals) are about 1e-8.

# %% tags=reference
N, D, H = 3, 4, 5
x = linspace(-0.4, 1.2, N, D)
prev_h = linspace(-0.3, 0.7, N, H)
prev_c = linspace(-0.4, 0.9, N, H)
Wx = linspace(-2.1, 1.3, D, 4 * H)
Wh = linspace(-0.7, 2.2, H, 4 * H)
b = np.linspace(0.3, 0.7, num=4 * H)

next_h, next_c, _ = L.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
expected_next_h = np.asarray([
    [0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
    [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
    [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299]])
expected_next_c = np.asarray([
    [0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
    [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
    [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676]])
print("next_h error:", rel_error(next_h, expected_next_h))
print("next_c error:", rel_error(next_c, expected_next_c))

# %% [markdown]
# ### Backward
#
# Gradients reach the step through both outputs, $dh_t$ and $dc_t$. The cell's total
# gradient collects both paths, then the chain rule runs through each gate
# ($\sigma' = \sigma(1-\sigma)$, $\tanh' = 1 - \tanh^2$):
#
# $$dc = dc_t + dh_t \odot o \odot (1 - \tanh^2 c_t), \qquad dc_{t-1} = dc \odot f,$$
# $$da_i = dc \odot g \odot i(1-i),\quad da_f = dc \odot c_{t-1} \odot f(1-f),\quad
# da_o = dh_t \odot \tanh c_t \odot o(1-o),\quad da_g = dc \odot i \odot (1-g^2),$$
#
# and from $da = [da_i, da_f, da_o, da_g]$ the same matrix products as the RNN:
# $dx = da\,W_x^\top$, $dh_{t-1} = da\,W_h^\top$, $dW_x = x^\top da$, $dW_h = h_{t-1}^\top da$,
# $db = \sum_n da$. Note $dc_{t-1} = dc \odot f$: no matrix product, no squashing
# derivative — that is the LSTM's gradient highway.
#
# As for the RNN: errors against numerical gradients about 1e-7 or less, against
# autodiff about 1e-14.

# %% tags=gradcheck
def plain_lstm_step(x, prev_h, prev_c, Wx, Wh, b):
    a_i, a_f, a_o, a_g = jnp.split(x @ Wx + prev_h @ Wh + b, 4, axis=-1)
    next_c = jax.nn.sigmoid(a_f) * prev_c + jax.nn.sigmoid(a_i) * jnp.tanh(a_g)
    return jax.nn.sigmoid(a_o) * jnp.tanh(next_c), next_c


rng = np.random.default_rng(231)
N, D, H = 4, 5, 6
args = (rng.standard_normal((N, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H)),
        rng.standard_normal((D, 4 * H)), rng.standard_normal((H, 4 * H)), rng.standard_normal(4 * H))
next_h, next_c, cache = L.lstm_step_forward(*args)
dnext_h, dnext_c = rng.standard_normal(next_h.shape), rng.standard_normal(next_c.shape)

hand = L.lstm_step_backward(dnext_h, dnext_c, cache)
numerical = numerical_grads(L.lstm_step_forward, args, (dnext_h, dnext_c))
autodiff = jax.vjp(plain_lstm_step, *args)[1]((dnext_h, dnext_c))
compare(["x", "prev_h", "prev_c", "Wx", "Wh", "b"], hand, numerical, autodiff)

# %% [markdown]
# ## LSTM: a sequence
#
# `lstm_forward` runs the step over T time steps from $h_0$ and $c_0 = 0$:
# x (N, T, D) -> h (N, T, H). As for the RNN, $x W_x$ for all steps is one matmul before
# the `lax.scan`, and the weight gradients are one matmul each after the backward scan.

# %% tags=reference
N, D, H, T = 2, 5, 4, 3
x = linspace(-0.4, 0.6, N, T, D)
h0 = linspace(-0.4, 0.8, N, H)
Wx = linspace(-0.2, 0.9, D, 4 * H)
Wh = linspace(-0.3, 0.6, H, 4 * H)
b = np.linspace(0.2, 0.7, num=4 * H)

h, _ = L.lstm_forward(x, h0, Wx, Wh, b)
expected_h = np.asarray([
    [[0.01764008, 0.01823233, 0.01882671, 0.0194232],
     [0.11287491, 0.12146228, 0.13018446, 0.13902939],
     [0.31358768, 0.33338627, 0.35304453, 0.37250975]],
    [[0.45767879, 0.4761092, 0.4936887, 0.51041945],
     [0.6704845, 0.69350089, 0.71486014, 0.7346449],
     [0.81733511, 0.83677871, 0.85403753, 0.86935314]]])
print("h error:", rel_error(h, expected_h))

# %% tags=gradcheck
def plain_lstm(x, h0, Wx, Wh, b):
    h, c, hs = h0, jnp.zeros_like(h0), []
    for t in range(x.shape[1]):
        h, c = plain_lstm_step(x[:, t], h, c, Wx, Wh, b)
        hs.append(h)
    return jnp.stack(hs, axis=1)


rng = np.random.default_rng(231)
N, D, T, H = 2, 3, 10, 6
args = (rng.standard_normal((N, T, D)), rng.standard_normal((N, H)),
        rng.standard_normal((D, 4 * H)), rng.standard_normal((H, 4 * H)), rng.standard_normal(4 * H))
h, cache = L.lstm_forward(*args)
dh = rng.standard_normal(h.shape)

hand = L.lstm_backward(dh, cache)
numerical = numerical_grads(L.lstm_forward, args, (dh,))
autodiff = jax.vjp(plain_lstm, *args)[1](dh)
compare(["x", "h0", "Wx", "Wh", "b"], hand, numerical, autodiff)

# %% [markdown]
# `L.lstm_step` and `L.lstm` are the `custom_vjp` functions, so `jax.grad` of code that
# calls them runs the hand-written backward. `check_layer` puts the three comparisons in
# one table (last column: `jax.grad` through the `custom_vjp` function vs the hand
# backward, which must be 0):

# %% tags=gradcheck
rng = np.random.default_rng(0)
N, T, D, H = 3, 4, 5, 6
inputs = dict(x=rng.standard_normal((N, T, D)), h0=rng.standard_normal((N, H)),
              Wx=0.5 * rng.standard_normal((D, 4 * H)), Wh=0.5 * rng.standard_normal((H, 4 * H)),
              b=rng.standard_normal(4 * H))
step_inputs = dict(x=inputs["x"][:, 0], prev_h=inputs["h0"], prev_c=rng.standard_normal((N, H)),
                   Wx=inputs["Wx"], Wh=inputs["Wh"], b=inputs["b"])
results = check_layer("lstm_step", L.lstm_step_forward, L.lstm_step_backward, step_inputs,
                      list(step_inputs), differentiable=L.lstm_step)
results += check_layer("lstm", L.lstm_forward, L.lstm_backward, inputs, list(inputs), differentiable=L.lstm)
print(format_results(results))

# %% [markdown]
# ## The LSTM captioning model
#
# `CaptioningRNN(cell_type="lstm")` is the RNN captioner with `lstm` in place of `rnn`
# ($W_x$, $W_h$, $b$ are 4H wide). The course's loss check with `np.linspace` parameters
# gives 9.82445935443:

# %% tags=reference
N, D, W, H, V, T = 10, 20, 30, 40, 3, 13
model = CaptioningRNN(vocab_size=V, wordvec_dim=W, hidden_dim=H, cell_type="lstm",
                      dtype=jnp.float64, param_dtype=jnp.float64)
features = linspace(-0.5, 1.7, N, D)
captions = (np.arange(N * T) % V).reshape(N, T)
shapes = jax.eval_shape(model.init, jax.random.key(0), features, captions[:, :-1])["params"]
params = {name: jnp.asarray(linspace(-1.4, 1.3, *s.shape)) for name, s in shapes.items()}

loss = model.apply({"params": params}, features, captions, method="loss")
expected_loss = 9.82445935443
print("loss:         ", float(loss))
print("expected loss:", expected_loss)
print("difference:   ", abs(float(loss) - expected_loss))

# %% [markdown]
# ### Gradient check of the whole model
#
# `jax.grad` of the loss (the hand-written backward of every layer) against numerical
# gradients, on a tiny model with weights of order 1. As explained in the RNN notebook,
# the course's elementwise `rel_error` divides the central difference's absolute error
# (~1e-11) by each entry, so a tiny entry (one of Wx's is about 5e-7 here) shows 1e-5
# although the backward is exact. The scaled error $\max |a - b| / \max |b|$ is the
# clearer measure.

# %% tags=gradcheck-model
rng = np.random.default_rng(231)
N, T, D, W, H, V = 2, 3, 4, 5, 6, 3
model = CaptioningRNN(vocab_size=V, wordvec_dim=W, hidden_dim=H, cell_type="lstm",
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
# As with the RNN: 50 training captions, and the loss should approach zero.

# %%
def first_captions(data, count):
    """The same data with only the first `count` captions of each split."""
    return {**data, **{f"{split}_{key}": data[f"{split}_{key}"][:count]
                       for split in ("train", "val") for key in ("captions", "image_idxs")}}


small_data = first_captions(data, 50)
small_model = CaptioningRNN(vocab_size=len(idx_to_word), cell_type="lstm",
                            wordvec_dim=256 if FULL else 128, hidden_dim=512 if FULL else 256)
small_solver = CaptioningSolver(small_model, small_data, update_rule="adam",
                                optim_config={"learning_rate": 5e-3}, lr_decay=1.0,
                                num_epochs=50, batch_size=25, verbose=False)
small_solver.train()
print(f"overfit loss: {small_solver.loss_history[-1]:.4f}")

plt.plot(small_solver.loss_history)
plt.xlabel("iteration")
plt.ylabel("loss")
plt.title("LSTM, 50 captions: training loss")
plt.show()

# %% tags=samples-overfit
small_variables = {"params": small_solver.params}
captions, features, urls = sample_coco_minibatch(small_data, batch_size=3, split="train", rng=1)
generated = sample(small_model, small_variables, features, max_length=captions.shape[1] - 1)
for url, truth, guess in zip(urls, decode_captions(captions, idx_to_word),
                             decode_captions(np.asarray(generated), idx_to_word)):
    print(url)
    print("  generated:", guess)
    print("  true:     ", truth)

# %% [markdown]
# ## Train a good captioner
#
# Now the whole training set, batches of 100, Adam with the learning rate decayed by 0.95
# after every epoch. The solver records the training loss at every step and the loss on a
# fixed subset of val captions after every epoch; val loss falling with train loss means
# the model generalizes.

# %%
model = CaptioningRNN(vocab_size=len(idx_to_word), cell_type="lstm",
                      wordvec_dim=256 if source == "COCO" else 128,
                      hidden_dim=512 if source == "COCO" else 128)
num_epochs = (20 if FULL else 4) if source == "COCO" else (20 if FULL else 8)
solver = CaptioningSolver(model, data, update_rule="adam", optim_config={"learning_rate": 5e-3},
                          lr_decay=0.95, num_epochs=num_epochs, batch_size=100, verbose=False)
start = time.perf_counter()
solver.train()
print(f"{len(solver.loss_history)} steps ({num_epochs} epochs) in {time.perf_counter() - start:.1f} s, "
      f"{solver.steps_per_second:.0f} steps/s after compilation")
print(f"final train loss {solver.loss_history[-1]:.3f}, val loss {solver.val_loss_history[-1]:.3f}")

steps_per_epoch = solver.iterations_per_epoch
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(np.arange(1, len(solver.loss_history) + 1) / steps_per_epoch, solver.loss_history,
        alpha=0.5, label="train (per step)")
ax.plot(np.arange(1, num_epochs + 1), solver.val_loss_history, "o-", label="val (per epoch)")
ax.set_xlabel("epoch")
ax.set_ylabel("loss")
ax.set_title(f"LSTM captioner on {source}")
ax.legend()
plt.show()

# %% [markdown]
# ## Greedy search and beam search
#
# Greedy decoding (`sample`) takes the most probable word at every step. It can commit
# early to a word that leads to a poor caption. **Beam search** (`beam_search`) keeps the
# K most probable partial captions: at every step it extends each of them by every word,
# scores each candidate by its summed log-probability $\sum_t \log p(w_t \mid w_{<t},
# \text{image})$, and keeps the best K; a candidate that ends with `<END>` is finished.
# jaxseq runs all N·K beams as one batched recurrent step inside one compiled
# `lax.while_loop`, and stops as soon as no live beam can beat the best finished caption
# (log-probabilities only fall as a caption grows). With K = 1 it is exactly greedy.

# %% tags=samples
variables = {"params": solver.params}
max_length = data["train_captions"].shape[1] - 1
for split in ("train", "val"):
    captions, features, urls = sample_coco_minibatch(data, batch_size=3, split=split, rng=2)
    greedy = sample(model, variables, features, max_length=max_length)
    beam, scores = beam_search(model, variables, features, beam_size=5, max_length=max_length)
    print(f"--- {split} ---")
    for url, truth, by_greedy, by_beam, score in zip(
            urls, decode_captions(captions, idx_to_word), decode_captions(np.asarray(greedy), idx_to_word),
            decode_captions(np.asarray(beam), idx_to_word), np.asarray(scores)):
        print(url)
        print(f"  greedy: {by_greedy}")
        print(f"  beam:   {by_beam}   (log p = {score:.2f})")
        print(f"  true:   {truth}")

# %% [markdown]
# ## BLEU-1
#
# The course scored captions with unigram BLEU: the fraction of generated words that
# appear in the reference (each reference word counted at most as often as it occurs
# there), times a brevity penalty $\min(1, e^{1 - r/c})$ for a generated caption of c words
# shorter than the reference's r. `<START>`, `<END>` and `<UNK>` are ignored. For example:

# %%
print(bleu1("<START> a large red circle <END>", "a large red circle <END>"))   # 1.0
print(bleu1("<START> a large red circle <END>", "a small red circle <END>"))   # 0.75
print(bleu1("<START> a large red circle <END>", "a red circle <END>"))         # brevity penalty

# %% [markdown]
# `evaluate_captions` decodes up to `num_samples` captions of a split and averages their
# BLEU-1 against the caption each image was drawn with. On the built-in scenes a good
# model scores above 0.9 on val, scenes it never saw. (On COCO, where an image has five
# different human captions and only one is the reference, the course's target was 0.3.)

# %% tags=bleu
num_samples = 1000 if FULL else 300
for split in ("train", "val"):
    greedy = evaluate_captions(model, variables, data, split, num_samples=num_samples, decode="greedy")
    beam = evaluate_captions(model, variables, data, split, num_samples=num_samples, decode="beam", beam_size=5)
    print(f"{split:<5} BLEU-1: greedy {greedy:.4f}   beam search {beam:.4f}")

# %% [markdown]
# ## The COCO caption evaluation
#
# Captioning papers and leaderboards report the COCO caption evaluation instead
# (`pycocoevalcap`, the packaged coco-caption code; `pip install 'jaxseq[coco-eval]'`): one
# caption per *image*, scored against *all* of the image's references (COCO has about five)
# with corpus BLEU-1..4 (n-gram counts summed over the whole set before dividing, one
# brevity penalty), METEOR (where Java is installed), ROUGE-L (longest common subsequence)
# and CIDEr-D (tf-idf weighted n-gram similarity, its document frequencies taken from the
# references of the images scored; 10 is the most). `evaluate_coco_metrics` groups a
# split's captions by image, decodes each image once and returns the scores. A built-in
# scene has one reference and a small vocabulary, so its scores are far higher than COCO's
# (Show and Tell: BLEU-4 0.277, CIDEr 0.855) and not comparable with them.

# %% tags=coco
from jaxseq.inference import evaluate_coco_metrics
from jaxseq.metrics import MissingPackageError

try:
    for decode in ("greedy", "beam"):
        result = evaluate_coco_metrics(model, variables, data, "val", decode, beam_size=5, max_images=num_samples)
        print(f"val {decode:<6} COCO metrics ({result['images']} images, {result['references']} references): "
              + "  ".join(f"{name} {value:.4f}" for name, value in result["scores"].items()))
    for name, reason in result["skipped"].items():
        print(f"{name} skipped: {reason}")
except MissingPackageError as error:
    print(error)

