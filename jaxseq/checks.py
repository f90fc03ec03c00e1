"""Argument checks shared by the layers, models and trainers: one rule, one message.

Importable without JAX or NumPy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_positive_int"]


def check_positive_int(name: str, value: Any, *, owner: str | None = None, allow_none: bool = False) -> None:
    """ValueError unless `value` is an integer >= 1 (or None where `allow_none`).

    Only Python ints pass: not bools (True is not a count) and not NumPy integers, which a
    checkpoint's JSON metadata could not hold after training. The message names the
    argument, and `owner` (a class name) when given: "owner: name must be a positive int,
    got 0".
    """
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        prefix = f"{owner}: " if owner else ""
        alternative = " or None" if allow_none else ""
        raise ValueError(f"{prefix}{name} must be a positive int{alternative}, got {value!r}")
