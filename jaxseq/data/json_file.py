"""Reading a JSON file that may lie: bounded in size, depth and numbers, with one-line errors.

Every JSON file jaxseq reads (a checkpoint's `meta.json`, a classifier's `vocab.json`, the
COCO `coco2014_vocab.json`) goes through `read_json_file`. Before `json.loads` sees the text:

- the file may hold at most `max_bytes` bytes (checked on its size, before reading it);
- it must be UTF-8;
- arrays and objects may nest at most `max_depth` deep: counted without recursion on the
  brackets outside strings, because Python's parser recurses once per level (200,000
  levels are a RecursionError, or worse with a raised recursion limit);

and while it parses, a number literal may have at most `MAX_NUMBER_LENGTH` characters (Python
refuses to convert integers over 4,300 digits with a ValueError that names no file). The
top-level value must be of the `expect`ed type. Every failure is a `ValueError` whose
one-line message starts with the file's name.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_BYTES = 16 * 2**20
MAX_DEPTH = 64
MAX_NUMBER_LENGTH = 100  # characters of one number literal: far beyond any float's repr

JSON_TYPE_NAMES = {dict: "object", list: "list", str: "string", int: "integer", float: "number",
                   bool: "boolean", type(None): "null"}

_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the character it escapes
_STRING = re.compile(rb'"[^"]*"')  # a string once escapes are gone
_NOT_STRUCTURE = bytes(code for code in range(256) if code not in b'"[]{}')
_OPENING = np.frombuffer(b"[{", np.uint8)
_CHUNK = 1 << 20


class _NumberTooLong(Exception):
    def __init__(self, literal: str):
        super().__init__(len(literal))


def _bounded(parse):
    def convert(literal: str):
        if len(literal) > MAX_NUMBER_LENGTH:
            raise _NumberTooLong(literal)
        return parse(literal)

    return convert


def nesting_depth(raw: bytes, limit: int) -> int:
    """How deep arrays and objects nest in the JSON text `raw` (0 for a bare scalar), found
    without recursion; stops counting once it exceeds `limit`. Brackets inside strings are
    not counted; text that is not valid JSON gets some count, and then json.loads's error."""
    structure = _ESCAPE.sub(b"", raw).translate(None, _NOT_STRUCTURE)  # only "[]{} are left
    structure = _STRING.sub(b"", structure).split(b'"', 1)[0]  # drop strings (an unterminated one too)
    codes = np.frombuffer(structure, np.uint8)
    depth = deepest = 0
    for start in range(0, len(codes), _CHUNK):
        steps = np.where(np.isin(codes[start:start + _CHUNK], _OPENING), 1, -1)
        levels = depth + np.cumsum(steps)
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
        if deepest > limit:
            break
    return deepest


def json_type_name(value: Any) -> str:
    """"object", "list", "string", "integer", "number", "boolean" or "null"."""
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def read_json_file(path: str | os.PathLike, *, label: str = "", max_bytes: int = DEFAULT_MAX_BYTES,
                   max_depth: int = MAX_DEPTH, expect: type | None = dict) -> Any:
    """The JSON value in file `path`, read within the bounds above.

    label: what the file is, for the messages ("checkpoint" gives "checkpoint <path>: ...").
    expect: the type the top-level value must have (dict: a JSON object), or None for any.
    Raises FileNotFoundError if there is no such file, ValueError (one line, naming the file)
    for everything else.
    """
    path = Path(path)
    name = f"{label} {path}" if label else str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ValueError(f"{name}: {size} bytes, more than the {max_bytes} bytes allowed for this file")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} not found") from None
    except OSError as error:
        raise ValueError(f"{name}: cannot be read ({error.strerror or error})") from None
    return parse_json_bytes(raw, name, max_depth=max_depth, expect=expect)


def parse_json_bytes(raw: bytes, name: str, *, max_depth: int = MAX_DEPTH, expect: type | None = dict) -> Any:
    """The JSON value in `raw` (already read within a size bound), checked as `read_json_file`
    checks a file's text: UTF-8, nesting depth, number lengths, the top-level type. `name`
    starts every ValueError's message (a file, or "FILE, line N" for one line of a JSON
    Lines file)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{name}: not valid JSON (not UTF-8 text: {error.reason} at byte {error.start})") from None
    if nesting_depth(raw, max_depth) > max_depth:
        raise ValueError(f"{name}: lists and objects nested more than {max_depth} deep")
    try:
        value = json.loads(text, parse_int=_bounded(int), parse_float=_bounded(float))
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: not valid JSON ({error})") from None
    except _NumberTooLong as error:
        raise ValueError(f"{name}: holds a number {error.args[0]} characters long; "
                         f"at most {MAX_NUMBER_LENGTH} are allowed") from None
    except RecursionError:  # only with a tiny recursion limit: the depth was checked above
        raise ValueError(f"{name}: nested too deeply to parse") from None
    if expect is not None and not isinstance(value, expect):
        raise ValueError(f"{name}: expected a JSON {JSON_TYPE_NAMES.get(expect, expect.__name__)}, "
                         f"got {type(value).__name__}")
    return value
