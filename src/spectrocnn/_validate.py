"""Argument checks with one-line errors that name the argument and the bad value.

The one home of "an integer, not a bool" and "a finite number": ``True`` is an ``int`` in
Python and ``np.int64`` is not, so ``isinstance(x, int)`` alone is the wrong test both ways.

>>> check_int("workers", 4, minimum=1)
4
>>> check_int("workers", 0, minimum=1)
Traceback (most recent call last):
...
spectrocnn.errors.ConfigError: workers must be a positive integer, got 0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spectrocnn.errors import ConfigError

__all__ = ["check_int", "check_number", "is_int", "is_number"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (``int`` or a NumPy integer), a bool not counted."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (int, float or NumPy's), a bool not counted."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """The bad value in a message: a number as written (``-1``, not ``np.int64(-1)``),
    anything else as its repr (``'ten'``, ``True``)."""
    if is_int(value):
        return str(int(value))
    if is_number(value):
        return repr(float(value))
    return repr(value)


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    what: str | None = None,
    error: type[Exception] = ConfigError,
) -> int:
    """``value`` as an ``int``, or ``error("{name} must be {what}, got {value}")``.

    Parameters
    ----------
    name : str
        The argument as the user knows it (``"workers"``, ``"image.size"``, ``"--seed"``).
    value : object
        Accepted: ``int`` and NumPy integers; never a bool.
    minimum, maximum : int, optional
        Bounds, both included.
    what : str, optional
        The allowed values in words; default ``"a positive integer"`` (minimum 1),
        ``"an integer >= minimum"``, ``"an integer in [minimum, maximum]"``.
    error : exception class
        Raised with the message (default :class:`~spectrocnn.errors.ConfigError`).

    Returns
    -------
    int

    Raises
    ------
    error
        When ``value`` is not an integer or lies outside the bounds.
    """
    ok = is_int(value)
    if ok and minimum is not None:
        ok = value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        if what is None:
            what = _int_words(minimum, maximum)
        raise error(f"{name} must be {what}, got {_shown(value)}")
    return int(value)


def _int_words(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    if minimum == 1:
        return "a positive integer"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    below: float | None = None,
    what: str | None = None,
    error: type[Exception] = ConfigError,
) -> float:
    """``value`` as a finite ``float``, or ``error("{name} must be {what}, got {value}")``.

    Parameters
    ----------
    name : str
        The argument as the user knows it.
    value : object
        Accepted: int, float and NumPy numbers, finite; never a bool.
    minimum : float, optional
        Smallest allowed value (included).
    below : float, optional
        Exclusive upper bound.
    what : str, optional
        The allowed values in words; default ``"a finite number"``, with ``" >= minimum"``
        or ``" in [minimum, below)"``.
    error : exception class
        Raised with the message (default :class:`~spectrocnn.errors.ConfigError`).

    Returns
    -------
    float

    Raises
    ------
    error
        When ``value`` is not a finite number or lies outside the bounds.
    """
    ok = is_number(value) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value >= minimum
    if ok and below is not None:
        ok = value < below
    if not ok:
        if what is None:
            what = "a finite number"
            if minimum is not None and below is not None:
                what = f"a number in [{minimum:g}, {below:g})"
            elif minimum is not None:
                what += f" >= {minimum:g}"
            elif below is not None:
                what += f" < {below:g}"
        raise error(f"{name} must be {what}, got {_shown(value)}")
    return float(value)
