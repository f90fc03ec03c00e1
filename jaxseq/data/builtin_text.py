"""Built-in text for language models: English-like sentences with nested agreement, from a seed.

Each line is one sentence of a small grammar with centre-embedded relative clauses:

    the dog runs .
    the kings that the bird sees sleep .
    the girl that the farmers that the cat likes follow waits .

A noun is singular or plural (`dog` / `dogs`), and each verb agrees in number with its own
subject: the main verb with the first noun, the verb of each relative clause with the noun
that opens it. Clauses nest (up to `MAX_DEPTH` deep), so the verbs come in the reverse order
of their subjects, like closing brackets: `the girl that the farmers that the cat likes
follow waits` closes `cat` (likes), then `farmers` (follow), then `girl` (waits). What is
left to chance is only which noun, which number, whether a clause opens and which verb.

What an n-gram model cannot predict: whether a verb takes its `s`, and whether a
transitive (`sees`) or an intransitive verb (`runs`) comes next, both depend on a noun and on
a nesting depth an unbounded distance back (a whole clause, 20 to 80 characters, lies
between `girl` and `waits` above). A character bigram sees only `w`; even a 10-gram sees
`likes follow w`. An LSTM can keep a stack of numbers in its state, as it must to close
brackets, and predict both exactly. `BuiltinText.nats` is the text's true information content
(minus the log-probability of the choices that made it), so a model's loss on it can be
compared with the best possible; see `agreement_sentences` and the tests, which measure a bigram
model far above it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from jaxseq.checks import check_positive_int
from jaxseq.data.text_corpus import TextCorpus, text_corpus_from_strings
from jaxseq.data.token_vocabulary import check_level

NOUNS = ("dog", "cat", "bird", "horse", "farmer", "teacher", "king", "girl")
TRANSITIVE = ("see", "chase", "like", "follow", "help")  # verbs of a relative clause
INTRANSITIVE = ("run", "sleep", "sing", "wait", "laugh")  # the main verb
MAX_DEPTH = 4  # relative clauses nested at most this deep
OPEN_CLAUSE = (0.5, 0.4, 0.3, 0.2)  # probability of a relative clause after a noun at depth 0, 1, ...
MAX_BUILTIN_CHARS = 10_000_000  # characters per split


class BuiltinText(NamedTuple):
    """Generated text and its information content.

    text: whole sentences, one per line ("\\n" after each), at least the asked characters.
    nats: -log P(text) under the grammar (natural log); nats / len(text) is the entropy per
    character that a perfect model reaches (at word level, divide by the number of tokens).
    """

    text: str
    nats: float


def _noun_phrase(rng: np.random.Generator, depth: int, words: list[str]) -> tuple[float, bool]:
    """Append `the NOUN[s] [that NP VERB[s]]` to `words`, the clause's verb agreeing with the
    clause's own subject; returns (its log-probability, whether its head noun is plural)."""
    noun, plural = int(rng.integers(len(NOUNS))), bool(rng.integers(2))
    words += ["the", NOUNS[noun] + ("s" if plural else "")]
    log_p = -math.log(len(NOUNS)) - math.log(2)
    if depth < MAX_DEPTH:
        p_open = OPEN_CLAUSE[depth]
        opens = bool(rng.random() < p_open)
        log_p += math.log(p_open if opens else 1 - p_open)
        if opens:
            words.append("that")
            clause_log_p, clause_plural = _noun_phrase(rng, depth + 1, words)
            log_p += clause_log_p + _verb(rng, TRANSITIVE, words, clause_plural)
    return log_p, plural


def _verb(rng: np.random.Generator, verbs: tuple[str, ...], words: list[str], plural: bool) -> float:
    words.append(verbs[int(rng.integers(len(verbs)))] + ("" if plural else "s"))
    return -math.log(len(verbs))


def _sentences(num_chars: int, seed: int) -> BuiltinText:
    rng = np.random.default_rng(seed)
    lines, size, nats = [], 0, 0.0
    while size < num_chars:
        words: list[str] = []
        log_p, plural = _noun_phrase(rng, 0, words)
        nats -= log_p + _verb(rng, INTRANSITIVE, words, plural)
        line = " ".join(words) + " .\n"
        lines.append(line)
        size += len(line)
    return BuiltinText("".join(lines), nats)


def agreement_sentences(num_chars: int = 200_000, *, seed: int = 0) -> BuiltinText:
    """Whole sentences of the grammar above, from `seed`, until at least `num_chars` characters.

    >>> agreement_sentences(60, seed=0).text.count("\\n") >= 1
    True
    """
    check_positive_int("num_chars", num_chars)
    if num_chars > MAX_BUILTIN_CHARS:
        raise ValueError(f"num_chars must be at most {MAX_BUILTIN_CHARS:,}, got {num_chars:,}")
    return _sentences(num_chars, seed)


def load_builtin_text(*, level: str = "char", num_train_chars: int = 200_000, num_val_chars: int = 20_000,
                      seed: int = 0) -> TextCorpus:
    """The built-in corpus: training and validation text from independent streams of `seed`
    (about 220 KB by default). Returns: TextCorpus (V = 23 characters at char level: the
    20 letters used, space, `.` and the line break; V = 41 at word level: 36 nouns and
    verbs, `the`, `that`, `.`, `<eos>` and `<unk>`).
    """
    check_level(level)
    for name, value in (("num_train_chars", num_train_chars), ("num_val_chars", num_val_chars)):
        check_positive_int(name, value)
    train_seed, val_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    train = agreement_sentences(num_train_chars, seed=train_seed)
    val = agreement_sentences(num_val_chars, seed=val_seed)
    return text_corpus_from_strings(train.text, val.text, level=level, source=f"builtin text (seed {seed})")
