"""Checking the fields of a value read from JSON: types, ranges, required and unknown keys.

A *spec* says what one JSON value must be; specs compose into the layout of a whole file:

    MODEL = fields(required={"vocab_size": integer(1, 1000)},
                   optional={"cell_type": choice("rnn", "lstm"), "dropout": number(0, 1, below=True)},
                   unknown=False)
    check_fields(meta["model"], MODEL, "checkpoint runs/x/meta.json", "model")

`check_fields` raises one ValueError, on one line, that names the source, the key's path in
the file and what was expected, e.g. `checkpoint runs/x/meta.json: model.vocab_size must be
an integer in [1, 1000], got a list`. Integers exclude booleans (JSON keeps them apart);
a value is described by its type when it is large, so a message never grows with the file.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from jaxseq.data.json_file import json_type_name


class FieldError(ValueError):
    """One field is not what its spec expects: `key` (its path), `message` (the reason)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key} {message}" if key else message)
        self.key, self.message = key, message


Spec = Callable[[Any, str], None]  # spec(value, key): raises FieldError or returns None


def describe(value: Any) -> str:
    """A short, one-line description of a JSON value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 64:
            return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "... (a string of " + f"{len(value)} characters)"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"an object with {len(value)} key{'' if len(value) == 1 else 's'}"
    return f"a {json_type_name(value)}"


def _fail(key: str, expected: str, value: Any):
    raise FieldError(key, f"must be {expected}, got {describe(value)}")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _interval(low, high, above: bool = False, below: bool = False) -> str:
    if high is None:
        return f"> {low}" if above else f">= {low}"
    return f"in {'(' if above else '['}{low}, {high}{')' if below else ']'}"


def integer(low: int, high: int | None = None) -> Spec:
    """An integer in [low, high] (no upper bound when high is None)."""
    expected = f"an integer {_interval(low, high)}"

    def check(value, key):
        if not _is_integer(value) or value < low or (high is not None and value > high):
            _fail(key, expected, value)

    return check


def number(low: float | None = None, high: float | None = None, *, above: bool = False, below: bool = False,
           finite: bool = True) -> Spec:
    """A number (integer or float) in [low, high]; `above` / `below` exclude the ends;
    `finite=False` also accepts NaN and infinities (which a run may have recorded)."""
    expected = "a number" if low is None else f"a number {_interval(low, high, above, below)}"
    expected = expected if finite or low is not None else "a number (NaN and infinities included)"

    def check(value, key):
        if not _is_number(value):
            _fail(key, expected, value)
        if not math.isfinite(value):
            if finite or low is not None:
                _fail(key, expected, value)
            return
        if low is not None and (value < low or (above and value == low)):
            _fail(key, expected, value)
        if high is not None and (value > high or (below and value == high)):
            _fail(key, expected, value)

    return check


def boolean() -> Spec:
    """true or false."""

    def check(value, key):
        if not isinstance(value, bool):
            _fail(key, "true or false", value)

    return check


def string(max_length: int | None = None) -> Spec:
    """A string of at most `max_length` characters."""
    expected = "a string" if max_length is None else f"a string of at most {max_length} characters"

    def check(value, key):
        if not isinstance(value, str) or (max_length is not None and len(value) > max_length):
            _fail(key, expected, value)

    return check


def choice(*options: str) -> Spec:
    """One of the given strings."""
    expected = "one of " + ", ".join(repr(option) for option in options)

    def check(value, key):
        if not isinstance(value, str) or value not in options:
            _fail(key, expected, value)

    return check


def nullable(spec: Spec) -> Spec:
    """null, or what `spec` accepts."""

    def check(value, key):
        if value is not None:
            try:
                spec(value, key)
            except FieldError as error:
                if error.key != key:  # a field inside the value
                    raise
                raise FieldError(key, error.message.replace("must be ", "must be null or ", 1)) from None

    return check


def list_of(item: Spec, *, max_items: int | None = None) -> Spec:
    """A list of at most `max_items` values, each accepted by `item`."""

    def check(value, key):
        if not isinstance(value, list):
            _fail(key, "a list", value)
        if max_items is not None and len(value) > max_items:
            raise FieldError(key, f"must hold at most {max_items} items, got {len(value)}")
        for index, entry in enumerate(value):
            item(entry, f"{key}[{index}]")

    return check


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def fields(required: Mapping[str, Spec] | None = None, optional: Mapping[str, Spec] | None = None, *,
           unknown: bool = True) -> Spec:
    """An object with the `required` keys and maybe the `optional` ones, each value checked
    by its spec; other keys are allowed only when `unknown` is True."""
    required, optional = dict(required or {}), dict(optional or {})
    known = {**required, **optional}

    def check(value, key):
        if not isinstance(value, dict):
            _fail(key, "an object", value)
        missing = [name for name in required if name not in value]
        if missing:
            raise FieldError(key, f"lacks {', '.join(repr(name) for name in missing)}")
        if not unknown:
            extra = sorted(str(name) for name in value if name not in known)
            if extra:
                shown = ", ".join(repr(name[:40]) for name in extra[:5]) + (", ..." if len(extra) > 5 else "")
                raise FieldError(key, f"has unknown keys {shown}; expected some of {sorted(known)}")
        for name, spec in known.items():
            if name in value:
                spec(value[name], _join(key, name))

    return check


def mapping(value_spec: Spec, *, max_items: int | None = None) -> Spec:
    """An object of at most `max_items` keys whose values `value_spec` accepts."""

    def check(value, key):
        if not isinstance(value, dict):
            _fail(key, "an object", value)
        if max_items is not None and len(value) > max_items:
            raise FieldError(key, f"must hold at most {max_items} keys, got {len(value)}")
        for name, entry in value.items():
            value_spec(entry, _join(key, str(name)[:40]))

    return check


def check_fields(value: Any, spec: Spec, source: str, key: str = "") -> None:
    """ValueError `"<source>: <key> <what is wrong>"` (one line) unless `spec` accepts `value`."""
    try:
        spec(value, key)
    except FieldError as error:
        raise ValueError(f"{source}: {error}") from None
