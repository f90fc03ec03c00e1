"""Reading a text file that may lie, in bounded chunks: the language-model corpora's reader.

`read_text_chunks(path)` yields the text of a file as strings of at most `CHUNK_BYTES`
characters each, so a 100 MB file of one single line is read in linear time and never held
twice as Python text. Before and while reading:

- the path must be a regular file (not a folder, a FIFO or /dev/zero) of at most
  `max_bytes` bytes (`jaxseq.limits.MAX_TEXT_BYTES` by default), checked on its size before
  reading and again on the bytes read (a file growing meanwhile);
- it must hold no NUL byte (a binary file, or UTF-16 text) and be UTF-8: the error names the
  byte offset of the first bad byte;
- a UTF-8 byte order mark opening the file is dropped (Notepad and Excel write one);
- line ends `\\r\\n` and `\\r` are read as `\\n`, as Python's text files read them (and so as
  nanoGPT's `open(...).read()` and PyTorch's word_language_model read their corpora).

Every failure is a one-line `ValueError` starting with the file's name (FileNotFoundError
when there is no such file). `text_chunks(text)` gives the same chunks of a string already in
memory, line ends translated the same way.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Iterable, Iterator

from jaxseq.limits import MAX_TEXT_BYTES

CHUNK_BYTES = 4 * 2**20
BOM = codecs.BOM_UTF8.decode("utf-8")


def _translate_line_ends(chunks: Iterable[str]) -> Iterator[str]:
    """`\\r\\n` and a lone `\\r` become `\\n`; a `\\r` ending a chunk waits for the next one."""
    pending = ""
    for chunk in chunks:
        text = pending + chunk
        pending = ""
        if text.endswith("\r"):
            text, pending = text[:-1], "\r"
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if text:
            yield text
    if pending:
        yield "\n"


def text_chunks(text: str, chunk_chars: int = CHUNK_BYTES) -> Iterator[str]:
    """The string `text` in pieces of at most `chunk_chars` characters, line ends translated
    as `read_text_chunks` translates a file's."""
    return _translate_line_ends(text[start:start + chunk_chars] for start in range(0, len(text), chunk_chars))


def _decoded_chunks(path: Path, name: str, max_bytes: int) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes of the file read before the current chunk
    first = True  # no text yielded yet: a byte order mark would open it
    with open(path, "rb") as handle:
        while True:
            raw = handle.read(CHUNK_BYTES)
            final = not raw
            if offset + len(raw) > max_bytes:
                raise ValueError(f"{name}: more than the {max_bytes:,} bytes allowed for a text file "
                                 "(it grew while being read)")
            nul = raw.find(b"\x00")
            if nul >= 0:
                raise ValueError(f"{name}: a NUL byte at byte offset {offset + nul:,}: this is a binary file "
                                 "(or UTF-16 text), expected UTF-8 text")
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as error:
                held_back = len(error.object) - len(raw)  # bytes of the previous chunk the decoder kept
                start = offset - held_back + error.start
                raise ValueError(f"{name}: not UTF-8 text ({error.reason}) at byte offset {start:,}") from None
            if first and text:
                text, first = text.removeprefix(BOM), False
            if text:
                yield text
            if final:
                return
            offset += len(raw)


def read_text_chunks(path: str | os.PathLike, *, label: str = "text file",
                     max_bytes: int = MAX_TEXT_BYTES) -> Iterator[str]:
    """The text of the file `path`, in chunks of at most `CHUNK_BYTES` characters, read within
    the bounds above.

    label: what the file is, for the messages ("training text" gives "training text <path>: ...").
    The size and the kind of file are checked when this is called; the content as the chunks
    are read. Raises FileNotFoundError if there is no such file, ValueError (one line, naming
    the file) for everything else.
    """
    path = Path(path)
    name = f"{label} {path}" if label else str(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} not found") from None
    except OSError as error:
        raise ValueError(f"{name}: cannot be read ({error.strerror or error})") from None
    if not path.is_file():
        raise ValueError(f"{name}: not a regular file; expected a UTF-8 text file")
    if status.st_size > max_bytes:
        raise ValueError(f"{name}: {status.st_size:,} bytes, more than the {max_bytes:,} bytes allowed "
                         "for a text file (jaxseq.limits.MAX_TEXT_BYTES)")
    return _translate_line_ends(_read_or_name(path, name, max_bytes))


def _read_or_name(path: Path, name: str, max_bytes: int) -> Iterator[str]:
    try:
        yield from _decoded_chunks(path, name, max_bytes)
    except OSError as error:
        raise ValueError(f"{name}: cannot be read ({error.strerror or error})") from None
