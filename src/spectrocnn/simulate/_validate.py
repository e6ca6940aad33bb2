"""Validators shared by the gun and the event composition: numbers, choices, ranges.

Each raises :class:`~spectrocnn.errors.ConfigError` naming the key and the bad value.
"""

from __future__ import annotations

import math

import numpy as np

from spectrocnn.errors import ConfigError

__all__ = ["check_choice", "check_range", "is_number"]


def check_range(name: str, value, *, lo: float | None = None, hi: float | None = None):
    """Validate a ``[min, max]`` range; ``min == max`` is allowed and means that fixed value."""
    try:
        a, b = (float(x) for x in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a list of 2 numbers [min, max], got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if not a <= b:
        raise ConfigError(
            f"{name} must be a range [min, max] with min <= max (min == max: a fixed value), "
            f"got {value!r}"
        )
    if (lo is not None and a < lo) or (hi is not None and b > hi):
        where = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"within [{lo}, {hi}]"
        raise ConfigError(f"{name} must lie {where}, got {value!r}")
    return (a, b)


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    """Raise unless ``value`` is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{name} must be one of {shown}, got {value!r}")


def is_number(x) -> bool:
    """Whether ``x`` is an int or float (NumPy's too), not a bool."""
    return not isinstance(x, bool) and isinstance(x, int | float | np.integer | np.floating)
