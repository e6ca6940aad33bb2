"""Seeds: the accepted range, fresh seeds, and the random streams derived from a seed.

One policy for every command that takes ``--seed`` and every file that records one
(docs/design.md 5):

- a seed is an integer in ``[0, 2**64)`` (:func:`check_seed`), the range of NumPy's
  ``SeedSequence`` entropy word and of the ``seed`` attribute of an event file;
- a fresh seed (no ``--seed``) comes from the operating system's entropy and lies in
  ``[0, 2**63)`` (:func:`new_seed`), so that it fits a signed 64-bit integer too;
- parallel or repeated work draws from child streams keyed by integers,
  ``SeedSequence(seed, spawn_key=key)`` (:func:`stream`), e.g. chunk ``i`` of gen-events
  from ``stream(seed, i)``: the streams do not depend on how the work is split up.

>>> stream(1, 0).integers(10**6) == stream(1, 0).integers(10**6)
True
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from spectrocnn._validate import check_int
from spectrocnn.errors import ConfigError

__all__ = ["SEED_BOUND", "check_seed", "new_seed", "stream"]

#: Seeds are integers in ``[0, SEED_BOUND)``.
SEED_BOUND = 2**64

#: Bits of a fresh seed (:func:`new_seed`).
_FRESH_BITS = 63


def check_seed(seed: Any, name: str = "seed", error: type[Exception] = ConfigError) -> int:
    """``seed`` as an ``int`` in ``[0, 2**64)``.

    Parameters
    ----------
    seed : int
        ``int`` or a NumPy integer; never a bool.
    name : str
        The argument as the user knows it, for the message (``"seed"``, ``"--seed"``).
    error : exception class
        Raised when the seed is not valid (default :class:`~spectrocnn.errors.ConfigError`).

    Returns
    -------
    int

    Raises
    ------
    error
        "seed must be an integer in [0, 2**64), got ...".
    """
    what = "an integer in [0, 2**64)"
    return check_int(name, seed, minimum=0, maximum=SEED_BOUND - 1, what=what, error=error)


def new_seed() -> int:
    """A fresh seed from the operating system's entropy, in ``[0, 2**63)``."""
    return secrets.randbits(_FRESH_BITS)


def stream(seed: int, *key: int) -> np.random.Generator:
    """The random stream ``key`` of ``seed``: ``default_rng(SeedSequence(seed, spawn_key=key))``.

    Parameters
    ----------
    seed : int
        In ``[0, 2**64)``.
    *key : int
        The stream's place, e.g. the chunk index; ``stream(seed)`` is the root stream.

    Returns
    -------
    numpy.random.Generator
        PCG64, the same numbers for the same ``seed`` and ``key`` on every platform.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
