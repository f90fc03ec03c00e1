"""A token stream as N parallel streams cut into segments of `bptt` steps (truncated BPTT).

PyTorch's word_language_model example, batch-major (jaxseq's convention; PyTorch is
time-major, and each array here is the transpose of its):

- `batchify(ids, N)` drops the last `len(ids) % N` tokens and lays the rest out as N streams
  side by side: stream n is `ids[n * L:(n + 1) * L]`, L = len(ids) // N. Row n of the
  (N, L) result is column n of PyTorch's (L, N).
- `get_batch(streams, i, bptt)` is the segment starting at step i: inputs x = streams[:, i:i+T]
  and targets y = streams[:, i+1:i+1+T] (the next token), T = min(bptt, L - 1 - i). An epoch
  visits i = 0, bptt, 2 bptt, ... < L - 1 (`segment_starts`), so every token but the first
  of each stream is a target exactly once, and the last segment is shorter when bptt does
  not divide L - 1.

A hidden state carried from one segment to the next continues each stream exactly: row n
of segment s + 1 starts where row n of segment s ended.

For a jitted training step, `segments` gives a whole epoch as one array of fixed T = bptt
(or L - 1 where bptt is larger): (S, N, T) inputs and targets. The ragged last segment is
either dropped (`drop_last=True`: S = (L - 1) // bptt, its targets are not trained on in that
epoch) or padded to T with token 0 and its real length given in `lengths` (`drop_last=False`,
PyTorch's epoch: S = ceil((L - 1) / bptt)); a step then stops the state at `lengths[s]`
(jaxseq.nn's lengths) and weighs only the first `lengths[s]` targets (`Segments.mask`).
PyTorch's evaluation averages over every target of the split, `sum of losses / (N * (L - 1))`:
weigh the segments by their lengths, not equally.

NumPy only; shapes: N streams, L stream length, T = bptt, S segments.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxseq.checks import check_positive_int
from jaxseq.limits import MAX_BATCH_SIZE, MAX_COUNT


def _check_ids(ids: np.ndarray, name: str, ndim: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != ndim:
        shape = "(L,)" if ndim == 1 else "(N, L)"
        raise ValueError(f"{name} must be a {shape} array of token ids, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    return ids


def _check_bptt(bptt: int) -> None:
    check_positive_int("bptt", bptt)
    if bptt > MAX_COUNT:
        raise ValueError(f"bptt must be at most {MAX_COUNT:,}, got {bptt:,}")


def batchify(ids: np.ndarray, num_streams: int) -> np.ndarray:
    """The token stream `ids` (L_total,) as `num_streams` parallel streams (N, L), L = L_total // N;
    the last L_total % N tokens are dropped (PyTorch's `batchify`, transposed).

    ValueError unless N is a positive int and each stream gets at least 2 tokens (an input
    and its target).

    >>> batchify(np.arange(10), 3).tolist()
    [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    """
    ids = _check_ids(ids, "ids", 1)
    check_positive_int("num_streams", num_streams)
    if num_streams > MAX_BATCH_SIZE:
        raise ValueError(f"num_streams must be at most {MAX_BATCH_SIZE:,}, got {num_streams:,}")
    length = len(ids) // num_streams
    if length < 2:
        raise ValueError(f"{len(ids):,} tokens are too few for num_streams={num_streams:,}: each stream would "
                         f"hold {length} token{'' if length == 1 else 's'}, at least 2 are needed")
    return ids[:num_streams * length].reshape(num_streams, length)


def segment_starts(stream_length: int, bptt: int) -> range:
    """The steps i where the segments of an epoch start: 0, bptt, 2 bptt, ... < L - 1
    (PyTorch's `range(0, train_data.size(0) - 1, args.bptt)`)."""
    _check_bptt(bptt)
    return range(0, stream_length - 1, bptt)


def num_segments(stream_length: int, bptt: int, *, drop_last: bool = False) -> int:
    """S, the segments of an epoch over streams of length L: ceil((L - 1) / bptt), or
    (L - 1) // bptt with `drop_last` (only the segments of full length bptt)."""
    _check_bptt(bptt)
    targets = max(stream_length - 1, 0)
    return targets // bptt if drop_last else -(-targets // bptt)


def get_batch(streams: np.ndarray, i: int, bptt: int) -> tuple[np.ndarray, np.ndarray]:
    """The segment of `streams` (N, L) starting at step i: (x (N, T), y (N, T)), y the tokens
    after x's, T = min(bptt, L - 1 - i) (PyTorch's `get_batch`, batch-major; its target is
    y's transpose flattened).

    >>> x, y = get_batch(np.arange(12).reshape(2, 6), 4, 3)
    >>> x.tolist(), y.tolist()
    ([[4], [10]], [[5], [11]])
    """
    streams = _check_ids(streams, "streams", 2)
    _check_bptt(bptt)
    length = streams.shape[1]
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < length - 1:
        raise ValueError(f"i must be a step in [0, {length - 1}) (L - 1, for streams of length L = {length}), "
                         f"got {i!r}")
    steps = min(bptt, length - 1 - int(i))
    return streams[:, i:i + steps], streams[:, i + 1:i + 1 + steps]


class Segments(NamedTuple):
    """An epoch of segments, fixed T (= min(bptt, L - 1)).

    x, y: (S, N, T) int32 inputs and targets (y the next tokens); segment s is
    `get_batch(streams, s * T, T)`, padded with token 0 to T where it is shorter.
    lengths: (S,) int32, the real steps of each segment (T except maybe the last).
    """

    x: np.ndarray
    y: np.ndarray
    lengths: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(S, T) bool, True at the real steps."""
        return np.arange(self.x.shape[2])[None, :] < self.lengths[:, None]

    @property
    def num_targets(self) -> int:
        """N * sum(lengths): the targets an epoch trains on (the divisor of a mean loss)."""
        return int(self.x.shape[1] * self.lengths.sum())


def segments(streams: np.ndarray, bptt: int, *, drop_last: bool = False) -> Segments:
    """All segments of an epoch over `streams` (N, L) as arrays of fixed T = min(bptt, L - 1)
    (a bptt beyond the stream gives one segment of the whole stream, as `get_batch` does).

    Returns: Segments, x and y (S, N, T) int32 with S = `num_segments(L, bptt, drop_last=...)`
    and lengths (S,). `drop_last=True` leaves out a last segment shorter than bptt; with
    False it is padded (token 0, masked by `lengths`). ValueError if no segment is left
    (drop_last with bptt > L - 1).

    >>> epoch = segments(np.arange(12).reshape(2, 6), 3)
    >>> epoch.x.shape, epoch.lengths.tolist(), epoch.y[1].tolist()
    ((2, 2, 3), [3, 2], [[4, 5, 0], [10, 11, 0]])
    """
    streams = _check_ids(streams, "streams", 2)
    _check_bptt(bptt)
    count, length = streams.shape
    if length < 2:
        raise ValueError(f"streams must hold at least 2 steps (an input and its target), got L = {length}")
    if streams.min() < 0 or streams.max() > np.iinfo(np.int32).max:
        bad = streams.min() if streams.min() < 0 else streams.max()
        raise ValueError(f"streams must hold token ids in [0, 2**31) (they become int32), found {bad}")
    total = num_segments(length, bptt, drop_last=drop_last)
    if total == 0:
        raise ValueError(f"bptt={bptt:,} with drop_last leaves no segment: streams of length L = {length:,} "
                         f"have only {length - 1:,} targets each")
    steps = min(bptt, length - 1)  # T: a bptt beyond the stream is one segment of the whole stream
    span, real = total * steps, min(total * steps, length - 1)  # steps covered, padding included / not
    x, y = np.zeros((2, count, span), np.int32)
    x[:, :real], y[:, :real] = streams[:, :real], streams[:, 1:real + 1]
    x = x.reshape(count, total, steps).transpose(1, 0, 2)
    y = y.reshape(count, total, steps).transpose(1, 0, 2)
    lengths = np.minimum(steps, length - 1 - steps * np.arange(total)).astype(np.int32)
    return Segments(np.ascontiguousarray(x), np.ascontiguousarray(y), lengths)
