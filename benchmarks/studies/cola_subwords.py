"""Study: do character n-gram (fastText-style subword) features on the word embeddings lift
the recurrent CoLA classifier's validation MCC? A prototype, not part of the library.

Every setting is `RECURRENT_COLA_RECIPE`'s (vocabulary of every training word, bidirectional
LSTM/GRU, max pooling, word dropout 0.2, AdamW 1e-3, 10 epochs, checkpoint = the epoch with the
best validation MCC); only the token embedding changes:

    x_t = word_embedding(w_t) + combine_k(ngram_embedding(g_{t,k}))     (N, T, E)

g_{t,k} are the hashed character n-grams (n = n_min..n_max) of "<" + token + ">" (FNV-1a
32-bit, like fastText, into `buckets` buckets; bucket 0 is the null n-gram, masked out),
deduplicated, at most K per token. combine: "sum" or "mean" over the token's n-grams.

How the raw token text reaches the model through the library's unchanged trainer (which only
takes (N, T) ids): the splits are encoded with an *extended* id space, the training
vocabulary (ids [0, V)) followed by every validation/dev word type that is not in it (ids
[V, V_ext)). A constant (V_ext, K) n-gram table (not a parameter) maps each id to its token's
n-grams; the word embedding has V rows and maps every id >= V to `[UNK]`, so the word part is
exactly the baseline's. Labels of validation/dev are never used for this; computing the
n-grams of a token seen at test time from its text is what a fastText model does at inference.

    source "oov" (variant b): every token gets its n-grams from its text, unseen words included.
    source "vocab" (variant a): only the training vocabulary's words have n-grams; ids >= V
        (the words that are `[UNK]` for the baseline) have none, so `[UNK]` stays opaque.
    source "none": no n-grams (the baseline, through this script: a check that it reproduces
        `benchmarks/results/cola_quality.md`).

Word dropout replaces the word part by `[UNK]`; with `--drop-ngrams keep` (the default) the
dropped word keeps its n-grams (the model then trains on what an unseen word looks like at
test time: `[UNK]` + its n-grams), with `--drop-ngrams drop` they go too (the dropped token is
a bare `[UNK]`, as in the baseline).

    taskset -c 1 .venv/bin/python benchmarks/studies/cola_subwords.py --cell lstm --seeds 0 \
        --source oov --combine sum --buckets 32768 --name oov-sum-32k --json runs.jsonl

Prints one line per seed (val/dev MCC and accuracy, best epoch, minutes) and the mean/sd.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxseq.cola_recipes import RECURRENT_COLA_RECIPE  # noqa: E402
from jaxseq.data.cola import default_cola_dir, load_cola  # noqa: E402
from jaxseq.data.vocabulary import SPECIAL_TOKENS, UNK_ID, Vocabulary  # noqa: E402
from jaxseq.models.recurrent_classifier import CELLS, RecurrentClassifier  # noqa: E402
from jaxseq.models.sentence_inputs import check_token_inputs, lengths_from_padding  # noqa: E402
from jaxseq.models.word_dropout import drop_words  # noqa: E402
from jaxseq.train import ClassifierTrainConfig  # noqa: E402
from jaxseq.train.classifier import evaluate_classifier, train_classifier  # noqa: E402

MAX_LENGTH = 43


def fnv1a(text: str) -> int:
    """FNV-1a 32-bit hash of the UTF-8 bytes (fastText's n-gram hash): stable across processes."""
    h = 2166136261
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def char_ngrams(word: str, n_min: int, n_max: int) -> list[str]:
    """The distinct n-grams (n_min..n_max) of "<word>", in order of first occurrence."""
    marked = f"<{word}>"
    seen = dict.fromkeys(marked[i:i + n] for n in range(n_min, n_max + 1) for i in range(len(marked) - n + 1))
    return list(seen)


def ngram_table(tokens: list[str], with_ngrams: int, n_min: int, n_max: int, buckets: int,
                max_ngrams: int) -> np.ndarray:
    """(V_ext, K) int32: row i = the bucket ids (1..buckets) of token i's n-grams, 0 = none.
    Rows of the special tokens and rows >= `with_ngrams` are all 0."""
    rows = []
    for i, token in enumerate(tokens):
        if token in SPECIAL_TOKENS or i >= with_ngrams:
            rows.append([])
        else:
            rows.append(sorted({1 + fnv1a(g) % buckets for g in char_ngrams(token, n_min, n_max)})[:max_ngrams])
    width = max(1, max(len(r) for r in rows))
    table = np.zeros((len(tokens), width), np.int32)
    for i, r in enumerate(rows):
        table[i, :len(r)] = r
    return table


class Constant:
    """A NumPy array as a hashable module field (hashed by identity), so the model stays a
    plain linen dataclass; the table is a constant of the computation, not a parameter."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other


class SubwordRecurrentClassifier(RecurrentClassifier):
    """`RecurrentClassifier` whose token embedding adds hashed character n-gram embeddings.

    Extra fields: word_vocab_size V (rows of `token_embeddings`; ids >= V embed as `[UNK]`);
    ngrams: Constant of the (vocab_size, K) n-gram table; buckets; combine "sum" | "mean";
    keep_ngrams_on_drop; use_word: False drops the word embedding (n-grams only).
    `vocab_size` is V_ext, the extended id space the inputs use.
    """

    word_vocab_size: int = 0
    ngrams: Constant | None = None
    buckets: int = 1
    combine: str = "sum"
    keep_ngrams_on_drop: bool = True
    use_word: bool = True

    def setup(self):
        # RecurrentClassifier.setup with V word rows; the same names, so the baseline's
        # parameter tree (and its init draws, which flax derives from the names) are unchanged.
        self.token_embeddings = nn.Embed(self.word_vocab_size, self.embed_dim, param_dtype=self.param_dtype)
        between = self.dropout if self.num_layers > 1 else 0.0
        self.encoder = CELLS[self.cell](hidden_size=self.hidden_size, num_layers=self.num_layers,
                                        bidirectional=True, dropout=between, param_dtype=self.param_dtype)
        self.final_dense = nn.Dense(1, param_dtype=self.param_dtype)
        self.drop = nn.Dropout(self.dropout)
        self.embed_drop = nn.Dropout(self.embed_dropout)
        if self.ngrams is not None:
            self.ngram_embeddings = nn.Embed(self.buckets + 1, self.embed_dim, param_dtype=self.param_dtype)

    def embed(self, ids, dropped_ids):
        word_ids = jnp.where(dropped_ids < self.word_vocab_size, dropped_ids, UNK_ID)
        x = self.token_embeddings(word_ids)
        if not self.use_word:
            x = jnp.zeros_like(x)
        if self.ngrams is None:
            return x
        grams = jnp.asarray(self.ngrams.array)[ids if self.keep_ngrams_on_drop else dropped_ids]  # (N, T, K)
        mask = (grams > 0)[..., None].astype(x.dtype)
        summed = jnp.sum(self.ngram_embeddings(grams) * mask, axis=2)  # (N, T, E)
        if self.combine == "mean":
            summed = summed / jnp.maximum(jnp.sum(mask, axis=2), 1.0)
        return x + summed

    def features(self, inputs, pad_mask=None, deterministic: bool = True):
        # RecurrentClassifier.features with `embed` in place of the token embedding.
        check_token_inputs(inputs, pad_mask, self.max_length)
        lengths = lengths_from_padding(inputs, pad_mask, self.pad_id)
        dropped = inputs
        if not (deterministic or self.word_dropout == 0.0 or not self.has_rng("dropout")):
            position = jnp.arange(inputs.shape[1])[None, :]
            words = (position > 0) & (position < lengths[:, None])
            dropped = drop_words(self.make_rng("dropout"), inputs, words, self.word_dropout, self.unk_id)
        x = self.embed(inputs, dropped)
        if not (deterministic or self.embed_dropout == 0.0 or not self.has_rng("dropout")):
            x = self.embed_drop(x, deterministic=False)
        out, final = self.encoder(x, lengths, deterministic=deterministic)
        assert self.pooling == "max", "the study keeps the recipe's max pooling"
        valid = jnp.arange(inputs.shape[1])[None, :, None] < lengths[:, None, None]
        pooled = jnp.max(jnp.where(valid, out, -jnp.inf), axis=1)
        return jnp.where(lengths[:, None] > 0, pooled, 0.0)


def run(splits, args, seed: int) -> dict:
    start = time.perf_counter()
    recipe = RECURRENT_COLA_RECIPE
    vocab = Vocabulary.build(splits.train.sentences, recipe["min_count"])
    V = len(vocab)
    unseen = sorted({w for part in (splits.val, splits.test) for s in part.sentences for w in s} - set(vocab.tokens))
    extended = Vocabulary(vocab.tokens + tuple(unseen), vocab.min_count)
    encoded = {name: extended.encode_labelled(getattr(splits, name), MAX_LENGTH)[0]
               for name in ("train", "val", "test")}
    table = None
    if args.source != "none":
        table = Constant(ngram_table(list(extended.tokens), len(extended) if args.source == "oov" else V,
                                     args.n_min, args.n_max, args.buckets, args.max_ngrams))
    model_fields = dict(recipe["model"])
    model = SubwordRecurrentClassifier(
        len(extended), cell=args.cell, max_length=MAX_LENGTH, word_vocab_size=V, ngrams=table,
        buckets=args.buckets, combine=args.combine, keep_ngrams_on_drop=args.drop_ngrams == "keep",
        use_word=not args.no_word, **model_fields)
    config = ClassifierTrainConfig(seed=seed, eval_batch_size=256, **recipe["train"])
    result = train_classifier(model, encoded["train"], encoded["val"], config, progress=False, log=None)
    scores = {name: evaluate_classifier(model, result.params, encoded[name], batch_size=256, name=name)
              for name in ("val", "test")}
    oov_tokens = {name: int(np.sum((encoded[name].ids >= V))) for name in ("val", "test")}
    row = {"name": args.name, "cell": args.cell, "seed": seed, "source": args.source, "combine": args.combine,
           "buckets": args.buckets, "n": [args.n_min, args.n_max], "max_ngrams": args.max_ngrams,
           "K": None if table is None else int(table.array.shape[1]), "drop_ngrams": args.drop_ngrams,
           "use_word": not args.no_word, "vocab": V, "extended_vocab": len(extended), "oov_tokens": oov_tokens,
           "best_epoch": result.best_epoch, "epochs_run": len(result.history),
           "val_mcc": scores["val"]["mcc"], "val_accuracy": scores["val"]["accuracy"],
           "dev_mcc": scores["test"]["mcc"], "dev_accuracy": scores["test"]["accuracy"],
           "val_confusion": np.asarray(scores["val"]["confusion"]).tolist(),
           "dev_confusion": np.asarray(scores["test"]["confusion"]).tolist(),
           "minutes": (time.perf_counter() - start) / 60,
           "history": [{k: h[k] for k in ("epoch", "train_loss", "val_loss", "val_mcc", "seconds")}
                       for h in result.history]}
    print(f"{args.name} {args.cell} seed {seed}: best epoch {row['best_epoch']}/{row['epochs_run']}  "
          f"val MCC {row['val_mcc']:+.4f} acc {row['val_accuracy']:.4f}  "
          f"dev MCC {row['dev_mcc']:+.4f} acc {row['dev_accuracy']:.4f}  {row['minutes']:.1f} min  "
          f"(V {V}, V_ext {len(extended)}, K {row['K']}, OOV tokens val/dev {oov_tokens['val']}/{oov_tokens['test']})",
          flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--source", choices=("oov", "vocab", "none"), default="oov")
    parser.add_argument("--combine", choices=("sum", "mean"), default="sum")
    parser.add_argument("--buckets", type=int, default=2**15)
    parser.add_argument("--n-min", type=int, default=3)
    parser.add_argument("--n-max", type=int, default=5)
    parser.add_argument("--max-ngrams", type=int, default=64, help="K cap (n-grams kept per token)")
    parser.add_argument("--drop-ngrams", choices=("keep", "drop"), default="keep",
                        help="what word dropout does to the dropped word's n-grams")
    parser.add_argument("--no-word", action="store_true", help="n-grams only, no word embedding")
    parser.add_argument("--name", default="run")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="append one JSON line per run")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_cola_dir()
    if data_dir is None:
        print("CoLA not found: pass --data-dir or set JAXSEQ_DATA", file=sys.stderr)
        return 2
    splits = load_cola(data_dir)
    rows = []
    for seed in args.seeds:
        rows.append(run(splits, args, seed))
        if args.json is not None:
            with args.json.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    if len(rows) > 1:
        for key in ("val_mcc", "dev_mcc", "val_accuracy", "dev_accuracy"):
            values = [r[key] for r in rows]
            print(f"  {key}: {statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
