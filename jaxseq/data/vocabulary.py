"""Word vocabulary for sentence classification: `[PAD]`=0, `[UNK]`=1, `[CLS]`=2, then words.

Words kept are those seen at least `min_count` times in the training sentences, ordered by
count (most frequent first, ties alphabetically), so a vocabulary built twice from the same
data is identical. Saved as JSON next to checkpoints and loaded back with its checks: the
file may hold at most `MAX_FILE_BYTES` bytes (read with `jaxseq.data.json_file`'s bounds), a
vocabulary at most `jaxseq.limits.MAX_VOCAB_SIZE` tokens, `min_count` must be an integer >= 1.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from jaxseq.data.json_fields import check_fields, fields, integer, list_of, string
from jaxseq.data.json_file import read_json_file
from jaxseq.data.sentences import ClassificationData, LabelledSentences
from jaxseq.limits import MAX_COUNT, MAX_VOCAB_SIZE

PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"
SPECIAL_TOKENS = (PAD, UNK, CLS)
PAD_ID, UNK_ID, CLS_ID = 0, 1, 2
MAX_FILE_BYTES = 32 * 2**20  # room for MAX_VOCAB_SIZE words of up to ~30 characters

# The layout of a vocabulary file: {"tokens": [...], "min_count": n}.
FILE_FIELDS = fields(required={"tokens": list_of(string(), max_items=MAX_VOCAB_SIZE)},
                     optional={"min_count": integer(1, MAX_COUNT)})


class EncodedSentences(NamedTuple):
    """Token ids ready for the model.

    ids: (N, T) int32, `[CLS]` first, then word ids, then `[PAD]` (0) up to T = max_length.
    lengths: (N,) int32, number of real tokens per row (`[CLS]` included).
    num_truncated: how many sentences were longer than T and lost their tail.
    """

    ids: np.ndarray
    lengths: np.ndarray
    num_truncated: int

    @property
    def pad_mask(self) -> np.ndarray:
        """(N, T) bool, True at real tokens."""
        return np.arange(self.ids.shape[1])[None, :] < self.lengths[:, None]


@dataclass(frozen=True)
class Vocabulary:
    """Index <-> token mapping; `tokens[i]` is the token of id i, specials first."""

    tokens: tuple[str, ...]
    min_count: int = 1
    _index: dict = field(init=False, repr=False, compare=False)  # token -> id, made by __post_init__

    def __post_init__(self):
        if len(self.tokens) > MAX_VOCAB_SIZE:
            raise ValueError(f"a vocabulary may hold at most {MAX_VOCAB_SIZE} tokens, got {len(self.tokens)} "
                             "(raise min_count)")
        if tuple(self.tokens[:3]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}, got {tuple(self.tokens[:3])}")
        if len(set(self.tokens)) != len(self.tokens):
            duplicate = next(t for t, c in Counter(self.tokens).items() if c > 1)
            raise ValueError(f"vocabulary holds the token {duplicate!r} more than once")
        object.__setattr__(self, "_index", {token: i for i, token in enumerate(self.tokens)})

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1) -> "Vocabulary":
        """Vocabulary of the words occurring at least `min_count` times in `sentences` (token lists)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(word for sentence in sentences for word in sentence)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIAL_TOKENS + tuple(words), min_count)

    def __len__(self) -> int:
        return len(self.tokens)

    def index(self, token: str) -> int:
        """Id of `token`, `[UNK]`'s id if it is not in the vocabulary."""
        return self._index.get(token, UNK_ID)

    def encode(self, sentences: Sequence[Sequence[str]], max_length: int) -> EncodedSentences:
        """`[CLS]` + word ids, padded with `[PAD]` or truncated to `max_length` tokens.

        Inputs: sentences: N token lists. Returns: EncodedSentences with ids (N, max_length).
        """
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for [CLS] and a word), got {max_length}")
        ids = np.full((len(sentences), max_length), PAD_ID, dtype=np.int32)
        lengths = np.empty(len(sentences), dtype=np.int32)
        truncated = 0
        for row, sentence in enumerate(sentences):
            row_ids = [CLS_ID] + [self.index(word) for word in sentence]
            if len(row_ids) > max_length:
                truncated += 1
                row_ids = row_ids[:max_length]
            ids[row, : len(row_ids)] = row_ids
            lengths[row] = len(row_ids)
        return EncodedSentences(ids, lengths, truncated)

    def encode_labelled(self, data: LabelledSentences, max_length: int) -> tuple[ClassificationData, int]:
        """(ClassificationData with ids (N, max_length) and the labels, number truncated)."""
        encoded = self.encode(data.sentences, max_length)
        return ClassificationData(encoded.ids, np.asarray(data.labels, dtype=np.int32)), encoded.num_truncated

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of `ids`, stopping at the first `[PAD]`."""
        out = []
        for i in ids:
            if int(i) == PAD_ID:
                break
            out.append(self.tokens[int(i)])
        return out

    def to_json(self) -> dict:
        return {"tokens": list(self.tokens), "min_count": self.min_count}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON (atomically: temporary file, then rename). ValueError,
        and nothing written, when the file would be larger than `load` reads (MAX_FILE_BYTES:
        long words can make even a vocabulary of allowed size too large): a run whose
        vocabulary could not be read back would train a model nobody can use."""
        path = Path(path)
        payload = json.dumps(self.to_json(), ensure_ascii=False).encode("utf-8")
        if len(payload) > MAX_FILE_BYTES:
            raise ValueError(f"vocabulary file {path}: {len(self)} tokens take {len(payload)} bytes, more than the "
                             f"{MAX_FILE_BYTES} a vocabulary file may hold; not written (raise min_count)")
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(path.name + ".tmp")
        temp.write_bytes(payload)
        os.replace(temp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a vocabulary written by `save`; ValueError naming the file if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file {path} not found")
        data = read_json_file(path, label="vocabulary file", max_bytes=MAX_FILE_BYTES)
        check_fields(data, FILE_FIELDS, f"vocabulary file {path}")
        try:
            return cls(tuple(data["tokens"]), data.get("min_count", 1))
        except ValueError as error:
            raise ValueError(f"vocabulary file {path}: {error}") from None


def check_token_ids(ids: np.ndarray, vocab_size: int, name: str) -> None:
    """ValueError naming `name` and the position of the first token id outside [0, vocab_size)
    (checked before ids reach `jit`: JAX clamps an out-of-range gather silently).

    Inputs: ids (N, T) integers; vocab_size V; name: what `ids` are, for the message.
    """
    ids = np.asarray(ids)
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{name}: token id {ids[row, col]} at row {row}, position {col} is outside the "
                         f"model's vocabulary [0, {vocab_size})")


def check_classification_data(data: ClassificationData, name: str, vocab_size: int, max_length: int) -> None:
    """ValueError naming `name` unless ids are (N, T) integers in [0, vocab_size) with
    T <= max_length and labels are (N,) of 0/1 (JAX would clamp bad ids silently)."""
    ids, labels = np.asarray(data.ids), np.asarray(data.labels)
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} ids must be a non-empty (N, T) array, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} ids must be integers, got dtype {ids.dtype}")
    if ids.shape[1] > max_length:
        raise ValueError(f"{name} ids have T={ids.shape[1]} tokens, more than the model's max_length {max_length}")
    check_token_ids(ids, vocab_size, f"{name} ids")
    if labels.shape != (ids.shape[0],):
        raise ValueError(f"{name} labels must have shape ({ids.shape[0]},), got {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{name} labels must be 0 or 1, found {labels[~np.isin(labels, (0, 1))][0]!r}")
