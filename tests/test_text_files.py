"""Reading text files that may lie: the size bound, binary files, non-UTF-8 bytes named by
offset, byte order marks, line ends, and chunk boundaries that cut a character or a `\\r\\n`."""

from __future__ import annotations

import os

import pytest

from jaxseq.data import text_files
from jaxseq.data.text_files import read_text_chunks, text_chunks
from jaxseq.limits import MAX_TEXT_BYTES


def read(path, **kwargs) -> str:
    return "".join(read_text_chunks(path, **kwargs))


def one_line_error(error) -> str:
    message = str(error.value)
    assert "\n" not in message and message, message
    return message


def test_reads_utf8_drops_a_byte_order_mark_and_translates_line_ends(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9\r\nna\xc3\xafve\rend\n\xe2\x82\xac")
    assert read(path) == "café\nnaïve\nend\n€"


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_chunk_boundaries_inside_a_character_or_a_line_end_change_nothing(tmp_path, monkeypatch, chunk):
    text = "a\r\nb€\r\r\n😀 é\r"
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    monkeypatch.setattr(text_files, "CHUNK_BYTES", chunk)
    chunks = list(read_text_chunks(path))
    assert "".join(chunks) == "a\nb€\n\n😀 é\n"
    assert max(map(len, chunks)) <= chunk + 1  # a held-back "\r" rides with the next chunk
    assert "".join(text_chunks(text, chunk)) == "a\nb€\n\n😀 é\n"


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_text_chunks(tmp_path / "missing.txt")


def test_a_folder_or_a_device_is_not_a_text_file(tmp_path):
    with pytest.raises(ValueError, match="not a regular file") as error:
        read_text_chunks(tmp_path)
    assert str(tmp_path) in one_line_error(error)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ValueError, match="/dev/zero: not a regular file"):
            read_text_chunks("/dev/zero")


def test_a_file_over_the_size_bound_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as handle:  # sparse: nothing is written
        handle.truncate(MAX_TEXT_BYTES + 1)
    with pytest.raises(ValueError, match="MAX_TEXT_BYTES") as error:
        read_text_chunks(path)
    assert one_line_error(error).startswith(f"text file {path}: {MAX_TEXT_BYTES + 1:,} bytes")


def test_a_file_that_grows_past_the_bound_while_read_is_refused(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("abc")
    chunks = read_text_chunks(path, max_bytes=10)
    path.write_text("a" * 11)
    with pytest.raises(ValueError, match="grew while being read"):
        list(chunks)


@pytest.mark.parametrize("chunk", [4, 3 * 2**20])
@pytest.mark.parametrize("content, offset", [
    (b"hello\x00world", 5),
    ("UTF-16 text".encode("utf-16"), 3),
])
def test_binary_files_name_the_first_nul_byte(tmp_path, monkeypatch, chunk, content, offset):
    monkeypatch.setattr(text_files, "CHUNK_BYTES", chunk)
    path = tmp_path / "a.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        read(path, label="training text")
    assert one_line_error(error) == (f"training text {path}: a NUL byte at byte offset {offset}: this is a binary "
                                     "file (or UTF-16 text), expected UTF-8 text")


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 4 * 2**20])
@pytest.mark.parametrize("content, offset, reason", [
    (b"abc\xffdef", 3, "invalid start byte"),
    (b"\xef\xbb\xbfab\xe9t\xc3\xa9", 5, "invalid continuation byte"),  # after a BOM; Latin-1 'é'
    ("€€".encode() + b"x\xe2\x82", 7, "unexpected end of data"),  # a character cut at the end
    ("aé".encode() + b"\xc3\xc3", 3, "invalid continuation byte"),
])
def test_non_utf8_names_the_byte_offset_across_chunk_boundaries(tmp_path, monkeypatch, chunk, content, offset, reason):
    monkeypatch.setattr(text_files, "CHUNK_BYTES", chunk)
    path = tmp_path / "latin1.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        read(path)
    assert one_line_error(error) == f"text file {path}: not UTF-8 text ({reason}) at byte offset {offset}"
