"""The sentence tokenizer of the classifiers: lowercase, nltk's `TreebankWordTokenizer` (rules
only, no nltk data download), and the `.` tokens dropped (the tokenized CoLA files carry no
periods), so raw and pre-tokenized CoLA give the same tokens."""

from __future__ import annotations

DROPPED_TOKENS = frozenset({"."})

_tokenizer = None


def tokenize(text: str) -> list[str]:
    """Lowercase, Treebank-tokenize and drop `.` tokens: "Won't it?" -> ["wo", "n't", "it", "?"]."""
    global _tokenizer
    if _tokenizer is None:
        from nltk.tokenize import TreebankWordTokenizer

        _tokenizer = TreebankWordTokenizer()
    return [token for token in _tokenizer.tokenize(text.lower()) if token not in DROPPED_TOKENS]
