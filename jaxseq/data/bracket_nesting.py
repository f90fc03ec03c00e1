"""A built-in acceptability task: well-formed vs corrupted bracket sequences, from a seed.

A "sentence" is a sequence of the tokens `(`, `)`, `[`, `]`. Acceptable (label 1) sequences
are well nested (every opener closed by its own kind, in order). Unacceptable ones (label 0)
are well-nested sequences with one corruption: a bracket replaced by another, one deleted,
one inserted, or two brackets swapped (re-drawn until the result is not well nested). The
swaps keep every bracket count, so counting alone does not solve the task. It stands in for CoLA when
the real data is absent, so every classifier command runs without a download.
"""

from __future__ import annotations

import numpy as np

from jaxseq.data.sentences import LabelledSentences, SentenceSplits

OPEN, CLOSE = ("(", "["), (")", "]")
TOKENS = OPEN + CLOSE


def is_well_nested(tokens: list[str]) -> bool:
    """True if every bracket is closed by its own kind, in order."""
    stack = []
    for token in tokens:
        if token in OPEN:
            stack.append(CLOSE[OPEN.index(token)])
        elif not stack or stack.pop() != token:
            return False
    return not stack


def _well_nested(rng: np.random.Generator, pairs: int) -> list[str]:
    tokens: list[str] = []
    stack: list[str] = []
    opened = 0
    while opened < pairs or stack:
        if opened < pairs and (not stack or rng.random() < 0.5):
            kind = int(rng.integers(2))
            tokens.append(OPEN[kind])
            stack.append(CLOSE[kind])
            opened += 1
        else:
            tokens.append(stack.pop())
    return tokens


def _corrupt(rng: np.random.Generator, tokens: list[str]) -> list[str]:
    while True:
        out = list(tokens)
        where = int(rng.integers(len(out)))
        kind = rng.integers(4)
        if kind == 0:
            out[where] = TOKENS[int(rng.integers(len(TOKENS)))]
        elif kind == 1 and len(out) > 1:
            del out[where]
        elif kind == 2:
            out.insert(int(rng.integers(len(out) + 1)), TOKENS[int(rng.integers(len(TOKENS)))])
        else:
            other = int(rng.integers(len(out)))
            out[where], out[other] = out[other], out[where]
        if not is_well_nested(out):
            return out


def bracket_sentences(num_examples: int, seed: int, *, max_pairs: int = 10) -> LabelledSentences:
    """`num_examples` sequences of 1..`max_pairs` bracket pairs, half of them corrupted.

    Returns: LabelledSentences; sentences hold at most 2 * max_pairs + 1 tokens.
    """
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    rng = np.random.default_rng(seed)
    labels = (rng.permutation(num_examples) % 2).astype(np.int32)
    sentences = []
    for label in labels:
        tokens = _well_nested(rng, int(rng.integers(1, max_pairs + 1)))
        sentences.append(tokens if label == 1 else _corrupt(rng, tokens))
    return LabelledSentences(sentences, labels)


def bracket_nesting_task(
    num_train: int = 4000, num_val: int = 1000, num_test: int = 1000, *, seed: int = 0, max_pairs: int = 10
) -> SentenceSplits:
    """Train/validation/test bracket sets drawn from independent streams of one seed."""
    streams = np.random.SeedSequence(seed).spawn(3)
    make = lambda n, s: bracket_sentences(n, int(s.generate_state(1)[0]), max_pairs=max_pairs)
    return SentenceSplits(make(num_train, streams[0]), make(num_val, streams[1]), make(num_test, streams[2]))
