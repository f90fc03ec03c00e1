"""The vocabulary of a language model: characters or words <-> ids, saved as JSON in a run folder.

Two levels:

- "char": every character is a token. A corpus's vocabulary is the sorted set of the
  characters of its training split (nanoGPT's and char-rnn's order), so Tiny Shakespeare gives
  nanoGPT's 65 tokens with nanoGPT's ids. `<unk>` is added, as the last token, only when
  another split holds characters the training split lacks (their count is reported): then it
  stands for those characters and decodes as U+FFFD, the replacement character. A prompt
  with an unknown character is refused (`encode` raises a ValueError naming the characters):
  a character model has nothing to say about a character it never saw.
- "word": PyTorch's word_language_model `Corpus`: each line split on whitespace and `<eos>`
  appended at each line end; ids in order of first appearance in the training split (as
  PyTorch's `Dictionary`), then `<eos>` and `<unk>` if the training split lacks them. Words of
  other splits or of a prompt outside the vocabulary become `<unk>`, and are counted.

Saved as `{"level": "char" | "word", "tokens": [...]}` and loaded back with its checks: the file
may hold at most `MAX_FILE_BYTES` bytes (read through `jaxseq.data.json_file`), the tokens
are strings without duplicates, at most `jaxseq.limits.MAX_VOCAB_SIZE` of them
(`MAX_CHAR_VOCAB_SIZE` characters at character level) and `MAX_VOCAB_CHARS` characters in
all, so that every vocabulary a corpus gives can be saved and loaded again.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from jaxseq.data.json_fields import check_fields, choice, fields, list_of, string
from jaxseq.data.json_file import read_json_file
from jaxseq.limits import MAX_CHAR_VOCAB_SIZE, MAX_VOCAB_SIZE

LEVELS = ("char", "word")
UNK, EOS = "<unk>", "<eos>"
UNK_CHAR = "\ufffd"  # what `<unk>` decodes to at character level
MAX_VOCAB_CHARS = 8 * 2**20  # characters of all tokens together: the JSON file stays < MAX_FILE_BYTES
MAX_FILE_BYTES = 64 * 2**20  # 6 bytes per character at most (a JSON escape), 4 per token around it

FILE_FIELDS = fields(required={"level": choice(*LEVELS), "tokens": list_of(string(), max_items=MAX_VOCAB_SIZE)},
                     unknown=False)


def check_level(level: object) -> None:
    """ValueError unless `level` is "char" or "word"."""
    if not isinstance(level, str) or level not in LEVELS:
        raise ValueError(f"level must be 'char' or 'word', got {level!r}")


class EncodedText(NamedTuple):
    """A text as token ids.

    ids: (T,) int32. num_unknown: how many tokens were not in the vocabulary and became
    `<unk>` (always 0 at character level, where an unknown character is an error).
    """

    ids: np.ndarray
    num_unknown: int


def word_tokens(text: str) -> list[str]:
    """The words of `text` as a prompt is read at word level: each line split on whitespace,
    `<eos>` at each line break (none after a last line without one).

    >>> word_tokens("the cat\\nsat down")
    ['the', 'cat', '<eos>', 'sat', 'down']
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    tokens = []
    for line in lines[:-1]:
        tokens += line.split()
        tokens.append(EOS)
    return tokens + lines[-1].split()


@dataclass(frozen=True)
class TokenVocabulary:
    """Index <-> token mapping of a language model; `tokens[i]` is the token of id i (V tokens).

    >>> vocab = TokenVocabulary("char", ("a", "b", "c"))
    >>> vocab.encode("cab").ids.tolist(), vocab.decode([2, 0, 1])
    ([2, 0, 1], 'cab')
    """

    level: str
    tokens: tuple[str, ...]
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        check_level(self.level)
        if not isinstance(self.tokens, tuple) or not all(isinstance(token, str) for token in self.tokens):
            raise ValueError(f"tokens must be a tuple of strings, got {type(self.tokens).__name__}")
        limit = MAX_CHAR_VOCAB_SIZE if self.level == "char" else MAX_VOCAB_SIZE
        if not 1 <= len(self.tokens) <= limit:
            raise ValueError(f"a {self.level}-level vocabulary holds 1 to {limit:,} tokens, got {len(self.tokens):,}")
        total = sum(map(len, self.tokens))
        if total > MAX_VOCAB_CHARS:
            raise ValueError(f"the tokens of a vocabulary may hold at most {MAX_VOCAB_CHARS:,} characters "
                             f"together, got {total:,}")
        index = {token: i for i, token in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            duplicate = next(token for token, count in Counter(self.tokens).items() if count > 1)
            raise ValueError(f"the vocabulary holds the token {duplicate[:40]!r} more than once")
        if self.level == "char":
            bad = next((i for i, token in enumerate(self.tokens)
                        if len(token) != 1 and not (token == UNK and i == len(self.tokens) - 1)), None)
            if bad is not None:
                raise ValueError(f"token {bad} of a char-level vocabulary is {self.tokens[bad][:40]!r}: expected "
                                 f"one character (or {UNK!r}, last)")
        else:
            bad = next((i for i, token in enumerate(self.tokens) if token.split() != [token]), None)
            if bad is not None:
                raise ValueError(f"token {bad} of a word-level vocabulary is {self.tokens[bad][:40]!r}: expected "
                                 "a word (no whitespace, not empty)")
            missing = [token for token in (EOS, UNK) if token not in index]
            if missing:
                raise ValueError(f"a word-level vocabulary must hold {' and '.join(missing)}")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int | None:
        """The id of `<unk>`, None for a character vocabulary without it."""
        return self._index.get(UNK) if self.level == "word" or self.tokens[-1] == UNK else None

    @property
    def eos_id(self) -> int | None:
        """The id of `<eos>` (word level), None at character level."""
        return self._index[EOS] if self.level == "word" else None

    def encode(self, text: str, name: str = "prompt") -> EncodedText:
        """The ids of `text` (a prompt): every character, or the words of `word_tokens(text)`.

        Inputs: text; name: what it is, for the message. Returns: EncodedText, ids (T,) int32.
        At character level a character outside the vocabulary is a ValueError naming `name`
        and the unknown characters; at word level an unknown word becomes `<unk>` and is counted.
        """
        if not isinstance(text, str):
            raise ValueError(f"{name} must be a string, got {type(text).__name__}")
        if self.level == "char":
            unknown = sorted(set(text) - self._index.keys())  # `<unk>` is no character
            if unknown:
                shown = ", ".join(repr(char) for char in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
                raise ValueError(f"{name} holds {len(unknown)} character{'s' if len(unknown) > 1 else ''} outside "
                                 f"the model's vocabulary of {len(self):,}: {shown}")
            return EncodedText(np.fromiter((self._index[char] for char in text), np.int32, len(text)), 0)
        words = word_tokens(text)
        ids = np.fromiter((self._index.get(word, -1) for word in words), np.int32, len(words))
        unknown_words = ids < 0
        ids[unknown_words] = self._index[UNK]  # a word vocabulary always holds <unk>
        return EncodedText(ids, int(unknown_words.sum()))

    def _checked_ids(self, ids: Iterable[int]) -> np.ndarray:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"token ids must be integers, got dtype {ids.dtype}")
        bad = np.flatnonzero((ids < 0) | (ids >= len(self)))
        if bad.size:
            raise ValueError(f"token id {ids[bad[0]]} at position {bad[0]} is outside the vocabulary [0, {len(self)})")
        return ids

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        """The tokens of `ids` ((T,) integers in [0, V)); ValueError naming the first id outside."""
        return [self.tokens[i] for i in self._checked_ids(ids).tolist()]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids` ((T,) integers in [0, V)): characters joined (`<unk>` as U+FFFD),
        or words joined by spaces with a line break for each `<eos>`."""
        tokens = self.decode_tokens(ids)
        if self.level == "char":
            return "".join(UNK_CHAR if token == UNK else token for token in tokens)
        lines: list[str] = []
        words: list[str] = []
        for token in tokens:
            if token == EOS:
                lines.append(" ".join(words))
                words = []
            else:
                words.append(token)
        return "\n".join(lines + [" ".join(words)])

    def to_json(self) -> dict:
        """{"level": ..., "tokens": [...]}, what `save` writes."""
        return {"level": self.level, "tokens": list(self.tokens)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON (atomically: temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")
        os.replace(temp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenVocabulary":
        """Read a vocabulary written by `save`; ValueError (one line) naming the file if it is not one."""
        path = Path(path)
        data = read_json_file(path, label="vocabulary file", max_bytes=MAX_FILE_BYTES)
        source = f"vocabulary file {path}"
        check_fields(data, FILE_FIELDS, source)
        try:
            return cls(data["level"], tuple(data["tokens"]))
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None
