"""The built-in bracket acceptability task, ready for the classifier tests: encoded splits
with a tiny model, or TSV files for the command line; and TSV files with a vocabulary as wide
as a real one (`write_wide_tsv`), for models at their default sizes."""

from __future__ import annotations

import random

from jaxseq.data.bracket_nesting import bracket_nesting_task, bracket_sentences
from jaxseq.data.vocabulary import Vocabulary
from jaxseq.models.classifiers import build_classifier

TINY = dict(hidden_dim=16, num_heads=2, dim_k=8, dim_q=8, dim_v=8, dim_feedforward=32)
TINY_RECURRENT = dict(embed_dim=16, hidden_size=16)
MAX_LENGTH = 14


def tiny_fields(architecture: str) -> dict:
    """The tiny sizes of a "transformer" (TINY) or an "lstm" / "gru" (TINY_RECURRENT)."""
    return TINY if architecture == "transformer" else TINY_RECURRENT


def encoded_task(num_train: int, num_val: int, seed: int, architecture: str = "transformer", **model_fields):
    """(model, train, val): a tiny classifier `architecture` (a ClassificationTransformer of
    TINY, or a RecurrentClassifier of TINY_RECURRENT, updated by `model_fields`) over the
    vocabulary of the training sentences, and both splits encoded to MAX_LENGTH."""
    splits = bracket_nesting_task(num_train, num_val, 10, seed=seed, max_pairs=6)
    vocab = Vocabulary.build(splits.train.sentences)
    train, _ = vocab.encode_labelled(splits.train, MAX_LENGTH)
    val, _ = vocab.encode_labelled(splits.val, MAX_LENGTH)
    model = build_classifier(architecture, len(vocab), MAX_LENGTH, **{**tiny_fields(architecture), **model_fields})
    return model, train, val


def write_tsv(path, n: int, seed: int):
    """`n` bracket sentences as `sentence<TAB>label` lines in `path`; returns the path."""
    data = bracket_sentences(n, seed=seed, max_pairs=6)
    path.write_text("".join(f"{' '.join(s)}\t{y}\n" for s, y in zip(data.sentences, data.labels)), encoding="utf-8")
    return path


WIDE_VOCABULARY = 3000  # distinct words of the classifier data: an embedding table of a real size


def write_wide_tsv(path, n: int, seed: int):
    """`n` sentences of 4..12 words drawn from WIDE_VOCABULARY made-up words, labelled by whether
    their first word's number is even: a file whose vocabulary is as wide as a real one."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.randrange(WIDE_VOCABULARY) for _ in range(rng.randint(4, 12))]
        lines.append(" ".join(f"w{word}" for word in words) + f"\t{int(words[0] % 2 == 0)}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path
