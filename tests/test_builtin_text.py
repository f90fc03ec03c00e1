"""The built-in language-model text: deterministic from its seed, every sentence in the
grammar with every verb agreeing with its own subject (checked by a parser written here,
which also recomputes the text's information content), and structure beyond n-grams: a
bigram model's cross-entropy is far above the grammar's true entropy, and even an 8-gram's
stays above it (the agreement across a clause is out of its reach)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from jaxseq.data import agreement_sentences, load_builtin_text
from jaxseq.data.builtin_text import INTRANSITIVE, MAX_DEPTH, NOUNS, OPEN_CLAUSE, TRANSITIVE
from jaxseq.data.token_vocabulary import EOS, UNK


def parse_noun_phrase(words: list[str], at: int, depth: int) -> tuple[int, bool, float]:
    """`the NOUN[s] [that NP VERB[s]]` from words[at]: (next position, plural head, log-probability)."""
    assert words[at] == "the", (words, at)
    noun = words[at + 1]
    plural = noun.endswith("s") and noun[:-1] in NOUNS
    assert plural or noun in NOUNS, noun
    log_p, at = -math.log(len(NOUNS)) - math.log(2), at + 2
    if depth == MAX_DEPTH:
        return at, plural, log_p
    if words[at] != "that":
        return at, plural, log_p + math.log(1 - OPEN_CLAUSE[depth])
    at, clause_plural, clause_log_p = parse_noun_phrase(words, at + 1, depth + 1)
    verb = words[at]
    assert verb in (TRANSITIVE if clause_plural else tuple(v + "s" for v in TRANSITIVE)), (words, verb)  # agreement
    return at + 1, plural, log_p + math.log(OPEN_CLAUSE[depth]) + clause_log_p - math.log(len(TRANSITIVE))


def parse(text: str) -> float:
    """-log P(text) under the grammar; AssertionError at a sentence outside it."""
    nats = 0.0
    assert text.endswith("\n")
    for line in text.splitlines():
        words = line.split(" ")
        at, plural, log_p = parse_noun_phrase(words, 0, 0)
        assert words[at] in (INTRANSITIVE if plural else tuple(v + "s" for v in INTRANSITIVE)), line
        assert words[at + 1:] == ["."], line
        nats -= log_p - math.log(len(INTRANSITIVE))
    return nats


def ngram_cross_entropy(train: str, test: str, n: int, alpha: float = 0.01) -> float:
    """Nats per character on `test` of an n-gram character model fitted on `train` (add-alpha)."""
    size = len(set(train) | set(test))
    contexts, grams = Counter(), Counter()
    for i in range(n - 1, len(train)):
        contexts[train[i - n + 1:i]] += 1
        grams[train[i - n + 1:i + 1]] += 1
    total = sum(math.log((grams[test[i - n + 1:i + 1]] + alpha) / (contexts[test[i - n + 1:i]] + alpha * size))
                for i in range(n - 1, len(test)))
    return -total / (len(test) - n + 1)


def test_deterministic_from_the_seed_and_whole_sentences():
    text = agreement_sentences(5_000, seed=3)
    assert text == agreement_sentences(5_000, seed=3) and text.text != agreement_sentences(5_000, seed=4).text
    assert 5_000 <= len(text.text) < 5_000 + 200 and text.text.endswith(" .\n")
    assert agreement_sentences(20_000, seed=3).text.startswith(text.text)  # more text is the same text continued


def test_every_sentence_is_in_the_grammar_and_the_information_content_is_right():
    sample = agreement_sentences(30_000, seed=1)
    assert parse(sample.text) == pytest.approx(sample.nats, rel=1e-12)
    depths = Counter(line.count(" that ") for line in sample.text.splitlines())
    assert set(depths) == set(range(MAX_DEPTH + 1))  # every depth occurs
    wrong = sample.text.replace(" sees ", " see ", 1)  # one verb that no longer agrees
    with pytest.raises(AssertionError):
        parse(wrong)


def test_structure_beyond_ngrams_a_bigram_is_far_above_the_true_entropy():
    train, val = agreement_sentences(100_000, seed=1), agreement_sentences(20_000, seed=2)
    truth = val.nats / len(val.text)  # nats per character a perfect model reaches
    bigram = ngram_cross_entropy(train.text, val.text, 2)
    eight_gram = ngram_cross_entropy(train.text, val.text, 8)
    assert 0.2 < truth < 0.35, truth
    assert bigram > 3 * truth, (bigram, truth)  # about 1.3 against 0.27
    assert eight_gram > truth + 0.03, (eight_gram, truth)  # the number of a noun a clause away


@pytest.mark.parametrize("level, size", [("char", 23), ("word", 41)])
def test_load_builtin_text(level, size):
    corpus = load_builtin_text(level=level, num_train_chars=20_000, num_val_chars=3_000, seed=5)
    assert len(corpus.vocab) == size and corpus.num_unknown == {"val": 0} and corpus.test is None
    text = corpus.vocab.decode(corpus.train)
    parse(text)  # the corpus is the generated text, line breaks and all
    assert (len(text) >= 20_000) if level == "char" else (EOS in corpus.vocab.tokens and UNK in corpus.vocab.tokens)
    again = load_builtin_text(level=level, num_train_chars=20_000, num_val_chars=3_000, seed=5)
    assert again.train.tolist() == corpus.train.tolist() and again.val.tolist() == corpus.val.tolist()
    assert corpus.val.tolist() != corpus.train[:len(corpus.val)].tolist()  # independent streams


@pytest.mark.parametrize("call, message", [
    (lambda: agreement_sentences(0), "num_chars must be a positive int, got 0"),
    (lambda: agreement_sentences(10_000_001), "num_chars must be at most 10,000,000, got 10,000,001"),
    (lambda: load_builtin_text(num_val_chars=True), "num_val_chars must be a positive int, got True"),
    (lambda: load_builtin_text(level="byte"), "level must be 'char' or 'word', got 'byte'"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert str(error.value) == message
