# %% [markdown]
# # Sentence classification with a Transformer
#
# The course's last model: one Transformer encoder layer that reads a sentence and decides
# whether it is acceptable English. The data is CoLA, the Corpus of Linguistic
# Acceptability (Warstadt et al., 2018): sentences from linguistics publications, each
# labelled 1 (acceptable) or 0 (unacceptable), e.g. *"the more books i ask to whom he will
# give, the more he reads"* (0).
#
# We explore the data, check the model's stages (embedding, multi-head attention,
# feed-forward, read-out) piece by piece against the formulas, train it with per-epoch
# loss, accuracy and Matthews correlation, look at its attention, and try it on sentences
# of our own.
#
# `FULL = False` keeps the run to about a minute on a laptop CPU; `FULL = True` trains for
# more epochs.

# %%
FULL = False

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from jaxseq.data import Vocabulary, bracket_nesting_task, load_cola, tokenize
from jaxseq.data.cola import cola_dir_candidates, default_cola_dir
from jaxseq.metrics import accuracy, matthews_corrcoef
from jaxseq.models import ClassificationTransformer
from jaxseq.inference import evaluate_classifier, predict_probabilities
from jaxseq.train import ClassifierTrainConfig, train_classifier

print("jax", jax.__version__, "on", jax.devices()[0].platform)

# %% [markdown]
# ## The data
#
# jaxseq looks for CoLA in `$JAXSEQ_DATA/cola`, then `~/.cache/jaxseq/cola` (where
# `jaxseq data download cola` puts it), then `../shared/data/cola`. It uses the course's split: the 8,551 in-domain training sentences are split (seeded) into 7,000
# train and 1,551 validation sentences, and the out-of-domain dev set (sentences from
# publications not seen in training) is the held-out test set.
#
# Without CoLA the notebook uses jaxseq's built-in acceptability task instead: sequences of
# brackets `( ) [ ]`, acceptable when well nested, unacceptable when one bracket was
# replaced, deleted, inserted or swapped. Same interfaces, no download.

# %% tags=data
cola_dir = default_cola_dir()
if cola_dir is not None:
    splits = load_cola(cola_dir)
    source, min_count, max_length = "CoLA", 5, 43
    print(f"CoLA from {cola_dir}")
else:
    print("CoLA not found (looked in " + ", ".join(map(str, cola_dir_candidates())) + "):\n"
          "using the built-in acceptability task (bracket sequences) instead")
    splits = bracket_nesting_task(num_train=4000, num_val=1000, num_test=1000, max_pairs=10)
    source, min_count, max_length = "brackets", 1, 22

names = ("train", "val", "test")
for name in names:
    split = getattr(splits, name)
    print(f"{name:<5} {len(split):>5} sentences, {np.mean(split.labels):.1%} acceptable")
for label in (1, 0):
    examples = [s for s, y in zip(splits.train.sentences, splits.train.labels) if y == label][:3]
    print(f"\nlabel {label}:")
    for sentence in examples:
        print("   ", " ".join(sentence))

# %% [markdown]
# The classes are unbalanced: answering "acceptable" for everything already gets the
# majority fraction right. That is why the headline metric is the **Matthews correlation
# coefficient**, which is 0 for any constant answer and for random guessing, 1 for perfect
# predictions:
#
# $$\mathrm{MCC} = \frac{TP \cdot TN - FP \cdot FN}
# {\sqrt{(TP+FP)(TP+FN)(TN+FP)(TN+FN)}}.$$
#
# Sentence lengths decide the model's input size T (the `[CLS]` token included):

# %%
majority = np.ones_like(splits.val.labels)
print(f"always 'acceptable' on val: accuracy {accuracy(splits.val.labels, majority):.3f}, "
      f"MCC {matthews_corrcoef(splits.val.labels, majority):.3f}")

lengths = np.array([len(s) for s in splits.train.sentences])
labels = np.asarray(splits.train.labels)
bins = np.arange(0, lengths.max() + 2)
plt.hist([lengths[labels == 1], lengths[labels == 0]], bins=bins, stacked=True,
         label=["acceptable (1)", "unacceptable (0)"])
plt.axvline(max_length - 1, color="k", linestyle="--", label=f"max_length - 1 = {max_length - 1}")
plt.xlabel("tokens per sentence")
plt.ylabel("sentences")
plt.title(f"{source}: training sentence lengths")
plt.legend()
plt.show()
print(f"longest {lengths.max()} tokens, median {np.median(lengths):.0f}; "
      f"{np.sum(lengths > max_length - 1)} training sentences will be truncated")

# %% [markdown]
# ## Vocabulary and encoding
#
# Words seen at least `min_count` times in training get an id; rarer words map to
# `[UNK]`. Every sentence becomes `[CLS] w1 ... wk [PAD] ... [PAD]`, T = `max_length`
# ids, with a pad mask that is True at real tokens. The model classifies from the `[CLS]`
# position, which attends to every word.

# %%
vocab = Vocabulary.build(splits.train.sentences, min_count=min_count)
encoded = {name: vocab.encode_labelled(getattr(splits, name), max_length)[0] for name in names}
print(f"vocabulary: {len(vocab)} tokens; specials {vocab.tokens[:3]}; most frequent words {vocab.tokens[3:11]}")
example = encoded["train"].ids[0]
print("ids:    ", example)
print("tokens: ", vocab.decode(example))
print("shapes: ", {name: data.ids.shape for name, data in encoded.items()})

# %% [markdown]
# ## The model, stage by stage
#
# `ClassificationTransformer` has the course's stages as methods, for N sentences of T
# tokens and model width H:
#
# 1. `embed`: token embedding plus a learned position embedding, $X = E_{tok}[ids] + E_{pos}[0..T-1]$ (N, T, H).
# 2. `multi_head_attention`: for each head j, $Q_j = X W^Q_j$, $K_j = X W^K_j$, $V_j = X W^V_j$ and
#    $$\mathrm{head}_j = \mathrm{softmax}\!\left(\frac{Q_j K_j^\top}{\sqrt{d_k}}\right) V_j ,$$
#    then $\mathrm{LayerNorm}(X + [\mathrm{head}_1, \dots, \mathrm{head}_h]\, W^O)$ (N, T, H). Padded keys get no attention.
# 3. `feedforward_layer`: $\mathrm{LayerNorm}(X + W_2\, \mathrm{relu}(W_1 X))$ (N, T, H).
# 4. `final_layer`: $\sigma(w^\top X_{[CLS]} + b)$, the probability of "acceptable" (N, 1).
#
# The course's sizes: H = 128, 2 heads with $d_k = d_v = 96$, feed-forward width 2048.

# %%
model = ClassificationTransformer(vocab_size=len(vocab), hidden_dim=128, num_heads=2, dim_k=96, dim_q=96,
                                  dim_v=96, dim_feedforward=2048, max_length=max_length)
ids = jnp.asarray(encoded["val"].ids[:4])
mask = ids != 0  # [PAD] is id 0
variables = model.init(jax.random.key(0), ids, mask)
params = variables["params"]
for name, leaves in params.items():
    print(f"  {name:<26}", {key: value.shape for key, value in leaves.items()})

# %% [markdown]
# Each stage, computed by the model and by hand from the parameters (Flax's `Dense`
# stores `kernel` (in, out) and `bias`; `LayerNorm` stores `scale` and `bias` and uses
# $\epsilon = 10^{-5}$). The differences are float32 rounding:

# %% tags=stages
def dense(x, layer):
    return x @ layer["kernel"] + layer["bias"]


def layer_norm(x, layer, eps=1e-5):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * layer["scale"] + layer["bias"]


def attention_weights(params, x, mask):
    """softmax(Q K^T / sqrt(d_k)) per head, padded keys masked out: (N, heads, T, T)."""
    N, T, _ = x.shape
    q = dense(x, params["q_proj"]).reshape(N, T, model.num_heads, model.dim_k)
    k = dense(x, params["k_proj"]).reshape(N, T, model.num_heads, model.dim_k)
    scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(model.dim_k)
    scores = jnp.where(mask[:, None, None, :], scores, -jnp.inf)
    return jax.nn.softmax(scores, axis=-1)


def attention_by_hand(params, x, mask):
    N, T, _ = x.shape
    v = dense(x, params["v_proj"]).reshape(N, T, model.num_heads, model.dim_v)
    heads = jnp.einsum("nhqk,nkhd->nqhd", attention_weights(params, x, mask), v).reshape(N, T, -1)
    return layer_norm(x + dense(heads, params["attention_head_projection"]), params["norm_mh"])


def check(stage, ours, by_hand):
    print(f"{stage:<22} shape {str(ours.shape):<14} max |model - by hand| = {float(jnp.max(jnp.abs(ours - by_hand))):.1e}")


x0 = model.apply(variables, ids, method="embed")
check("embed", x0, params["token_embeddings"]["embedding"][ids]
      + params["position_embeddings"]["embedding"][None, :ids.shape[1]])
x1 = model.apply(variables, x0, mask, method="multi_head_attention")
check("multi_head_attention", x1, attention_by_hand(params, x0, mask))
x2 = model.apply(variables, x1, method="feedforward_layer")
check("feedforward_layer", x2, layer_norm(x1 + dense(jax.nn.relu(dense(x1, params["W1"])), params["W2"]),
                                          params["norm_ffn"]))
probs = model.apply(variables, x2, method="final_layer")
check("final_layer", probs, jax.nn.sigmoid(dense(x2[:, 0], params["final_dense"])))

# %% [markdown]
# ### Only `[CLS]` is needed
#
# The read-out uses only the `[CLS]` row, and in a one-layer model nothing else depends on
# the other rows' attention output or feed-forward. So the model's `__call__` (and
# `logits`, what training uses) computes the query, attention and feed-forward for the
# `[CLS]` row alone — keys and values still for every token — about T times less work in
# those stages. It must agree with the full staged computation:

# %% tags=stages
fast = model.apply(variables, ids, mask)
print("[CLS]-only path:       ", np.asarray(fast[:, 0]).round(4))
print("full staged computation:", np.asarray(probs[:, 0]).round(4))
print(f"max |difference| = {float(jnp.max(jnp.abs(fast - probs))):.1e}")

# %% [markdown]
# ## Training
#
# `train_classifier` runs one compiled step per batch (batch gathered on the device, the
# `[CLS]`-only forward, binary cross-entropy on the logits, backward, Adam update). After
# every epoch it scores the validation set and keeps the parameters with the best
# validation MCC (accuracy would favour epochs that answer "acceptable" for everything).
# The learning rate warms up linearly over the first epoch, then follows a cosine decay.
# `fit_sentence_classifier` does vocabulary, encoding, training and test scoring in one
# call; here we use the pieces built above.

# %%
epochs = (10 if FULL else 4) if source == "CoLA" else (20 if FULL else 8)
config = ClassifierTrainConfig(epochs=epochs, batch_size=64, learning_rate=1e-3, schedule="cosine",
                               warmup_epochs=1, seed=0)
result = train_classifier(model, encoded["train"], encoded["val"], config, progress=False)
trained = result.params
print(f"best epoch {result.best_epoch}: val MCC {result.best_val_mcc:+.4f}")

# %%
history = result.history
epochs = [h["epoch"] for h in history]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
axes[0].plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
axes[0].plot(epochs, [h["val_loss"] for h in history], "o-", label="val")
axes[0].set_title("loss (binary cross-entropy)")
axes[0].legend()
axes[1].plot(epochs, [h["val_accuracy"] for h in history], "o-", label="val")
axes[1].axhline(accuracy(splits.val.labels, majority), color="k", linestyle="--", label="always 'acceptable'")
axes[1].set_title("accuracy")
axes[1].legend()
axes[2].plot(epochs, [h["val_mcc"] for h in history], "o-", label="val")
axes[2].axhline(0, color="k", linestyle="--")
axes[2].set_title("Matthews correlation")
for ax in axes:
    ax.set_xlabel("epoch")
plt.tight_layout()
plt.show()

# %% [markdown]
# The held-out test set, scored once with the best parameters. `evaluate_classifier`
# thresholds the probability at 0.5; `accuracy` and `matthews_corrcoef` from
# `jaxseq.metrics` give the same numbers from the predictions. (On CoLA a one-layer model
# trained from scratch is weak — the course's reference model reaches a validation MCC of
# about 0.1; pretrained BERT reaches about 0.55.)

# %% tags=test-scores
scores = evaluate_classifier(model, trained, encoded["test"], name="test")
test_probs = predict_probabilities(model, trained, vocab, splits.test.sentences)
predictions = (test_probs >= 0.5).astype(int)
print(f"test accuracy {scores['accuracy']:.4f}  MCC {scores['mcc']:+.4f}  "
      f"confusion [[tn, fp], [fn, tp]] = {scores['confusion']}")
print(f"from the predictions: accuracy {accuracy(splits.test.labels, predictions):.4f}  "
      f"MCC {matthews_corrcoef(splits.test.labels, predictions):+.4f}")

# %% [markdown]
# ## Attention maps
#
# Row i of a head's map is the distribution $\mathrm{softmax}(q_i K^\top / \sqrt{d_k})$
# over the tokens that token i attends to, computed from the trained `q_proj` and
# `k_proj` parameters. The first row, `[CLS]`, is the one that feeds the classifier.

# %% tags=attention
chosen = [int(i) for i in np.argsort([len(s) for s in splits.val.sentences[:40]])[-3:]]
batch = vocab.encode([splits.val.sentences[i] for i in chosen], max_length)
batch_ids, batch_mask = jnp.asarray(batch.ids), jnp.asarray(batch.pad_mask)
x = model.apply({"params": trained}, batch_ids, method="embed")
weights = np.asarray(attention_weights(trained, x, batch_mask))  # (3, heads, T, T)

fig, axes = plt.subplots(len(chosen), model.num_heads, figsize=(5.5 * model.num_heads, 5 * len(chosen)))
for row, (i, length) in enumerate(zip(chosen, batch.lengths)):
    tokens = vocab.decode(batch.ids[row])
    for head in range(model.num_heads):
        ax = axes[row, head]
        ax.imshow(weights[row, head, :length, :length], cmap="viridis", vmin=0)
        ax.set_xticks(range(length), tokens, rotation=90)
        ax.set_yticks(range(length), tokens)
        ax.set_title(f"val sentence {i} (label {splits.val.labels[i]}), head {head}")
plt.tight_layout()
plt.show()
print("rows sum to", np.round(weights.sum(-1)[0, 0, :3], 6))

# %% [markdown]
# ## Sentences of our own
#
# `predict_probabilities` encodes tokenized sentences with the vocabulary and returns the
# probability of "acceptable". Raw text goes through `jaxseq.data.tokenize`, the tokenizer
# that matches CoLA's (lowercase, punctuation and clitics split off). Judge the answers by
# the scores above: on CoLA this small model from scratch is right little more often than
# the majority answer, so expect it to accept some word salad; on the bracket task it is
# right about nine times in ten.

# %% tags=predictions
if source == "CoLA":
    mine = ["The cat sat on the mat.", "The cat sat on mat the.",
            "She has eaten the apple.", "She have eaten apple the.",
            "Which book did you read?", "John seems that is happy.",
            "The more you read, the more you learn.", "Read more you the learn you more the."]
    sentences = [tokenize(text) for text in mine]
else:
    mine = ["( [ ] )", "( [ ) ]", "[ ( ) ( [ ] ) ]", "[ ( ) ( [ ] ) ] )", "( ( ( ) ) )", "( ( ( ) ) ] )"]
    sentences = [text.split() for text in mine]
for text, probability in zip(mine, predict_probabilities(model, trained, vocab, sentences)):
    verdict = "acceptable" if probability >= 0.5 else "unacceptable"
    print(f"{probability:.3f}  {verdict:<12}  {text}")
