"""jaxseq.train.event_file against the reference implementations: its Event bytes equal the
protobuf library's serialization of TensorBoard's messages (tensorboardX's copies of the
.proto files), and a whole file equals what tensorboardX's own writer makes of the same
events; the checksum is CRC-32C's published check value."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseq.train.event_file import FILE_VERSION, EventFileWriter, crc32c, encode_event, masked_crc32c

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2", reason="tensorboardX is in the dev extra")
summary_pb2 = pytest.importorskip("tensorboardX.proto.summary_pb2")
Event, SessionLog, Summary = event_pb2.Event, event_pb2.SessionLog, summary_pb2.Summary


def test_crc32c_check_value_and_mask():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue's check value
    assert crc32c(b"") == 0
    from tensorboardX.crc32c import crc32c as reference_crc
    from tensorboardX.record_writer import masked_crc32c as reference_mask
    for data in (b"", b"a", bytes(range(256)), b"\xff" * 33):
        assert crc32c(data) == reference_crc(data) and masked_crc32c(data) == reference_mask(data)


steps = st.integers(0, 2**63 - 1)
times = st.floats(allow_nan=False, allow_infinity=False, width=64)
values = st.floats(width=64, allow_nan=False)  # +-0.0, float32 overflow and infinities included
tags = st.text(max_size=20)


@settings(max_examples=200, deadline=None)
@given(steps, times, st.lists(st.tuples(tags, values), max_size=3))
def test_scalar_events_equal_the_protobuf_serialization(step, wall_time, scalars):
    summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in scalars])
    expected = Event(step=step, wall_time=wall_time, summary=summary if scalars else None).SerializeToString()
    assert encode_event(wall_time=wall_time, step=step, scalars=scalars) == expected


@settings(max_examples=50, deadline=None)
@given(steps, times)
def test_file_version_and_session_start_equal_the_protobuf_serialization(step, wall_time):
    version = Event(step=step, wall_time=wall_time, file_version=FILE_VERSION).SerializeToString()
    assert encode_event(wall_time=wall_time, step=step, file_version=FILE_VERSION) == version
    start = Event(step=step, wall_time=wall_time, session_log=SessionLog(status=SessionLog.START))
    assert encode_event(wall_time=wall_time, step=step, session_start=True) == start.SerializeToString()


def test_float32_overflow_is_infinity_as_protobuf_makes_it():
    for value in (1e39, -1e300, math.inf, 3.4028235e38):
        decoded = Event.FromString(encode_event(wall_time=1.0, step=1, scalars=[("x", value)]))
        assert decoded.summary.value[0].simple_value == Summary.Value(simple_value=value).simple_value


def test_a_file_equals_tensorboardx_writers(tmp_path):
    from tensorboardX.record_writer import RecordWriter

    events = [encode_event(wall_time=1.5e9, step=7, file_version=FILE_VERSION),
              encode_event(wall_time=1.5e9 + 1, step=7, session_start=True),
              encode_event(wall_time=1.5e9 + 2, step=9, scalars=[("train/loss", 0.25), ("val/loss", 2.5)])]
    ours = EventFileWriter(str(tmp_path / "ours"))
    reference = RecordWriter(str(tmp_path / "reference"))
    for event in events:
        ours.write(event)
        reference.write(event)
    ours.close()
    reference.close()
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "reference").read_bytes()
    with pytest.raises(FileExistsError):  # a run's event file is never overwritten
        EventFileWriter(str(tmp_path / "ours"))


def test_writing_a_run_log_imports_neither_tensorboardx_nor_torch(tmp_path):
    code = ("import sys; from jaxseq.train.run_log import RunLog\n"
            f"with RunLog({str(tmp_path)!r}, log=None) as log:\n"
            "    assert log.enabled; log.scalars(1, 1, {'train/loss': 0.5}); log.flush()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorboardX')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
