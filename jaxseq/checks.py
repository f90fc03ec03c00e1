"""Argument checks shared by the layers, models and trainers: one rule, one message.

Importable without JAX or NumPy.
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_positive_int", "check_rate"]


def _prefix(owner: str | None) -> str:
    return f"{owner}: " if owner else ""


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
        alternative = " or None" if allow_none else ""
        raise ValueError(f"{_prefix(owner)}{name} must be a positive int{alternative}, got {value!r}")


def check_rate(name: str, value: Any, *, owner: str | None = None, one_allowed: bool = False) -> None:
    """ValueError unless `value` is a real number in [0, 1) (a dropout rate, a probability of
    replacing a word, label smoothing), or in [0, 1] where `one_allowed` (PyTorch's RNN dropout).

    Only Python ints and floats pass (and float subclasses such as NumPy's float64): not
    bools, strings or NaN, and not other NumPy scalars (float32), which a checkpoint's JSON
    metadata could not hold after training; their message says so. Otherwise the message is
    the one checkpoint metadata gives for a rate (`jaxseq.data.json_fields`): "owner: name must
    be a number in [0, 1), got 1.0".
    """
    python_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if python_number and _in_unit_interval(value, one_allowed):
        return
    interval = "[0, 1]" if one_allowed else "[0, 1)"
    message = f"{_prefix(owner)}{name} must be a number in {interval}, got {value!r}"
    if not python_number and isinstance(value, numbers.Real) and not isinstance(value, bool):
        message += f" (a {type(value).__name__}: pass a Python float, which a checkpoint's metadata can hold)"
    raise ValueError(message)


def _in_unit_interval(value: float, one_allowed: bool) -> bool:
    """0 <= value < 1, or <= 1 where `one_allowed`; False for NaN."""
    return 0 <= value <= 1 if one_allowed else 0 <= value < 1
