"""TensorBoard event files, written without TensorBoard, TensorFlow or tensorboardX.

An event file is a sequence of TFRecord records, each

    length (uint64, little-endian) | masked CRC-32C of those 8 bytes (uint32) | data | masked CRC-32C of data

and each record's data one serialized `Event` protocol buffer. A run log needs four of its
fields, encoded here by hand (field numbers from TensorBoard's `event.proto` and
`summary.proto`; proto3's canonical encoding, so the bytes equal the protobuf library's):

    Event       wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
                summary = 5 (Summary), session_log = 7 (SessionLog)
    Summary     value = 1 (repeated Summary.Value)
    Value       tag = 1 (string), simple_value = 2 (float, in a oneof: always written)
    SessionLog  status = 1 (enum; START = 1)

tensorboardX wrote them before: importing it costs ~2 s, as it imports PyTorch whenever PyTorch
is installed, which every trainer's command line paid at start. The tests compare these bytes
with the protobuf library's serialization and whole files with tensorboardX's writer.
"""

from __future__ import annotations

import math
import struct
from typing import BinaryIO, Iterable

FILE_VERSION = "brain.Event:2"  # the first event of every file names the format
SESSION_START = 1  # SessionLog.START: TensorBoard drops the older events at steps >= this event's step


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, as TFRecord checksums it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked checksum: the CRC rotated right by 15 bits plus 0xA282EAD8 (mod 2**32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """`data` framed as one TFRecord record."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def _varint(value: int) -> bytes:
    """A non-negative integer as a protobuf varint (7 bits a byte, low first)."""
    if value < 0:
        raise ValueError(f"a varint must be >= 0, got {value}")
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    """`value` as a little-endian float32, as C casts it (beyond float32's range: infinity)."""
    try:
        return struct.pack("<f", value)
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, value))


def _scalar_value(tag: str, value: float) -> bytes:
    """One Summary.Value: tag (proto3 leaves out an empty one) and simple_value (a float32, as
    TensorBoard stores scalars; a oneof member, so written even when 0)."""
    tag_field = _length_delimited(1, tag.encode("utf-8")) if tag else b""
    return tag_field + bytes([2 << 3 | 5]) + _float32(value)


def encode_event(*, wall_time: float, step: int, file_version: str | None = None,
                 scalars: Iterable[tuple[str, float]] = (), session_start: bool = False) -> bytes:
    """One serialized Event: at `step` and `wall_time` (seconds since the epoch), with a
    file version, scalars (tag, value) as one Summary, or a SessionLog START (purge step)."""
    out = b""
    if struct.pack("<d", wall_time) != bytes(8):
        out += struct.pack("<Bd", 1 << 3 | 1, wall_time)
    if step != 0:
        out += _varint(2 << 3 | 0) + _varint(step)
    if file_version is not None:
        out += _length_delimited(3, file_version.encode("utf-8"))
    values = b"".join(_length_delimited(1, _scalar_value(tag, value)) for tag, value in scalars)
    if values:
        out += _length_delimited(5, values)
    if session_start:
        out += _length_delimited(7, _varint(1 << 3 | 0) + _varint(SESSION_START))
    return out


class EventFileWriter:
    """Appends events to the event file `path` (created; an existing file is an error):
    `write(event_bytes)`, `flush()`, `close()`. Synchronous: no thread or queue."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "xb")

    def write(self, event: bytes) -> None:
        self._file.write(record(event))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
