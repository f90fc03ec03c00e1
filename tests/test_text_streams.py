"""Streams and segments for truncated BPTT: equal to PyTorch's word_language_model
`batchify` / `get_batch` (transposed), every target the next token, the streams covering the
text in order, the ragged last segment dropped or padded and masked; bad arguments one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq.data.text_streams import batchify, get_batch, num_segments, segment_starts, segments
from jaxseq.limits import MAX_BATCH_SIZE, MAX_COUNT


# PyTorch's examples/word_language_model/main.py (device moves left out; args.bptt an argument).
def torch_batchify(data, bsz):
    # Work out how cleanly we can divide the dataset into bsz parts.
    nbatch = data.size(0) // bsz
    # Trim off any extra elements that wouldn't cleanly fit (remainders).
    data = data.narrow(0, 0, nbatch * bsz)
    # Evenly divide the data across the bsz batches.
    data = data.view(bsz, -1).t().contiguous()
    return data


def torch_get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i:i+seq_len]
    target = source[i+1:i+1+seq_len].view(-1)
    return data, target


@pytest.mark.parametrize("length, num_streams, bptt", [(1000, 20, 35), (1003, 7, 35), (64, 4, 15), (30, 3, 100),
                                                        (10, 5, 1), (2, 1, 1)])
def test_equal_to_pytorch_batchify_and_get_batch(length, num_streams, bptt):
    ids = np.random.default_rng(length).integers(0, 50, length).astype(np.int32)
    streams = batchify(ids, num_streams)
    reference = torch_batchify(torch.from_numpy(ids.astype(np.int64)), num_streams)
    np.testing.assert_array_equal(streams, reference.numpy().T)
    starts = list(range(0, reference.size(0) - 1, bptt))  # PyTorch's train() and evaluate() loops
    assert list(segment_starts(streams.shape[1], bptt)) == starts
    assert num_segments(streams.shape[1], bptt) == len(starts)
    epoch = segments(streams, bptt)
    for s, i in enumerate(starts):
        x, y = get_batch(streams, i, bptt)
        data, target = torch_get_batch(reference, i, bptt)
        np.testing.assert_array_equal(x, data.numpy().T)
        np.testing.assert_array_equal(y.T.reshape(-1), target.numpy())  # PyTorch's target: (T, N) flattened
        steps = epoch.lengths[s]
        assert steps == x.shape[1]
        np.testing.assert_array_equal(epoch.x[s, :, :steps], x)
        np.testing.assert_array_equal(epoch.y[s, :, :steps], y)


def test_segments_pad_or_drop_the_ragged_last_segment():
    streams = np.arange(1, 21, dtype=np.int32).reshape(2, 10)  # 9 targets per stream, bptt 4: 4 + 4 + 1
    padded = segments(streams, 4)
    assert padded.x.shape == padded.y.shape == (3, 2, 4) and padded.x.dtype == np.int32
    assert padded.lengths.tolist() == [4, 4, 1] and padded.num_targets == 18 == streams[:, 1:].size
    assert padded.x[2].tolist() == [[9, 0, 0, 0], [19, 0, 0, 0]]
    assert padded.y[2].tolist() == [[10, 0, 0, 0], [20, 0, 0, 0]]
    assert padded.mask.tolist() == [[True] * 4, [True] * 4, [True, False, False, False]]
    dropped = segments(streams, 4, drop_last=True)
    assert dropped.x.shape == (2, 2, 4) and dropped.lengths.tolist() == [4, 4] and dropped.num_targets == 16
    np.testing.assert_array_equal(dropped.x, padded.x[:2])
    np.testing.assert_array_equal(dropped.y, padded.y[:2])
    assert num_segments(10, 4, drop_last=True) == 2 and num_segments(10, 3, drop_last=True) == 3
    exact = segments(streams, 3)  # 9 = 3 * 3: nothing to pad or drop
    assert exact.lengths.tolist() == [3, 3, 3] and segments(streams, 3, drop_last=True).x.shape == exact.x.shape


@settings(max_examples=60, deadline=None)
@given(length=st.integers(2, 300), num_streams=st.integers(1, 12), bptt=st.integers(1, 40), drop_last=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_streams_cover_the_text_in_order_and_every_target_is_the_next_token(length, num_streams, bptt, drop_last,
                                                                            seed):
    ids = np.random.default_rng(seed).integers(0, 1000, length)
    if length // num_streams < 2:
        with pytest.raises(ValueError, match="too few"):
            batchify(ids, num_streams)
        return
    streams = batchify(ids, num_streams)
    count, stream_length = streams.shape
    assert count == num_streams and stream_length == length // num_streams
    np.testing.assert_array_equal(streams.reshape(-1), ids[:count * stream_length])  # in order, remainder dropped
    if drop_last and bptt > stream_length - 1:
        with pytest.raises(ValueError, match="leaves no segment"):
            segments(streams, bptt, drop_last=True)
        return
    epoch = segments(streams, bptt, drop_last=drop_last)
    total = epoch.x.shape[0]
    steps = min(bptt, stream_length - 1)
    assert total == num_segments(stream_length, bptt, drop_last=drop_last) and epoch.x.shape == (total, count, steps)
    mask = epoch.mask
    # Each stream's real input steps, segment after segment, are its tokens in order; targets are one step later.
    real_x = np.concatenate([epoch.x[s][:, mask[s]] for s in range(total)], axis=1)
    real_y = np.concatenate([epoch.y[s][:, mask[s]] for s in range(total)], axis=1)
    steps = real_x.shape[1]
    assert steps == (stream_length - 1 if not drop_last else (stream_length - 1) // bptt * bptt)
    assert (epoch.lengths[:-1] == min(bptt, stream_length - 1)).all()
    np.testing.assert_array_equal(real_x, streams[:, :steps])
    np.testing.assert_array_equal(real_y, streams[:, 1:steps + 1])
    assert epoch.num_targets == count * steps
    assert not epoch.x[~np.broadcast_to(mask[:, None, :], epoch.x.shape)].any()  # padding is token 0
    assert not epoch.y[~np.broadcast_to(mask[:, None, :], epoch.y.shape)].any()
    for s, i in enumerate(segment_starts(stream_length, bptt)):  # get_batch agrees where the segments are real
        if s < total:
            x, y = get_batch(streams, i, bptt)
            np.testing.assert_array_equal(epoch.x[s][:, :x.shape[1]], x)
            np.testing.assert_array_equal(y[:, :-1], x[:, 1:])


def one_line(error) -> str:
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


@pytest.mark.parametrize("call, message", [
    (lambda: batchify(np.arange(10), 0), "num_streams must be a positive int, got 0"),
    (lambda: batchify(np.arange(10), True), "num_streams must be a positive int, got True"),
    (lambda: batchify(np.arange(10), np.int64(2)), "num_streams must be a positive int, got np.int64(2)"),
    (lambda: batchify(np.arange(10), MAX_BATCH_SIZE + 1), "num_streams must be at most 65,536, got 65,537"),
    (lambda: batchify(np.arange(9), 5), "9 tokens are too few for num_streams=5: each stream would hold 1 token, "
                                        "at least 2 are needed"),
    (lambda: batchify(np.arange(12).reshape(3, 4), 2), "ids must be a (L,) array of token ids, got shape (3, 4)"),
    (lambda: batchify(np.linspace(0, 1, 10), 2), "ids must hold integer token ids, got dtype float64"),
    (lambda: get_batch(np.zeros((2, 5), int), 4, 2), "i must be a step in [0, 4) (L - 1, for streams of length "
                                                      "L = 5), got 4"),
    (lambda: get_batch(np.zeros((2, 5), int), -1, 2), "got -1"),
    (lambda: get_batch(np.zeros((2, 5), int), 1.0, 2), "got 1.0"),
    (lambda: get_batch(np.zeros((2, 5), int), 0, 0), "bptt must be a positive int, got 0"),
    (lambda: get_batch(np.zeros(5, int), 0, 2), "streams must be a (N, L) array of token ids, got shape (5,)"),
    (lambda: segments(np.zeros((2, 5), int), -3), "bptt must be a positive int, got -3"),
    (lambda: segments(np.zeros((2, 5), int), MAX_COUNT + 1), "bptt must be at most 2,147,483,647, got 2,147,483,648"),
    (lambda: segments(np.zeros((2, 5), int), 5, drop_last=True), "bptt=5 with drop_last leaves no segment: streams "
                                                                 "of length L = 5 have only 4 targets each"),
    (lambda: segments(np.zeros((2, 1), int), 5), "streams must hold at least 2 steps (an input and its target), "
                                                 "got L = 1"),
    (lambda: num_segments(10, 0), "bptt must be a positive int, got 0"),
    (lambda: segments(np.full((2, 5), 2**31), 2), "streams must hold token ids in [0, 2**31) (they become int32), "
                                                  "found 2147483648"),
    (lambda: segments(-np.ones((2, 5), int), 2), "found -1"),
])
def test_bad_arguments_are_one_line_errors_naming_them(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert one_line(error).endswith(message)


def test_a_huge_bptt_is_one_segment_of_the_whole_stream():
    epoch = segments(np.arange(12).reshape(2, 6), MAX_COUNT)  # T = L - 1, no padding to bptt
    assert epoch.lengths.tolist() == [5] and epoch.x.shape == (1, 2, 5)
    assert epoch.y.tolist() == [[[1, 2, 3, 4, 5], [7, 8, 9, 10, 11]]]
    x, y = get_batch(np.arange(12).reshape(2, 6), 0, MAX_COUNT)
    assert x.tolist() == epoch.x[0].tolist() and y.tolist() == epoch.y[0].tolist()
