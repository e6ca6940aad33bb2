"""The crossing record that every propagator returns, and why a propagation ended.

:class:`Crossings` holds, particle by particle and along each track, the layer crossings
that a propagator found (:mod:`spectrocnn.simulate.helix`,
:mod:`spectrocnn.simulate.stepper`); :class:`StopReason` says why each particle's
propagation ended (docs/design.md 4). Both are plain records: this module imports NumPy
only, so every propagator and the hit maker can import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

__all__ = ["Crossings", "StopReason", "stop_counts"]


class StopReason(IntEnum):
    """Why a particle's propagation ended (:attr:`Crossings.stop`)."""

    #: left the detector's outer boundary (or started outside it): the normal end
    LEFT_DETECTOR = 0
    #: made half a turn about the field (loop protection, docs/design.md 4)
    LOOPED = 1
    #: reached the stepper's path-length limit (``max_path_mm``)
    PATH_LIMIT = 2
    #: still stepping after the stepper's iteration limit
    STEP_LIMIT = 3
    #: the state became NaN or infinite (a field returning NaN)
    NOT_FINITE = 4
    #: at rest: ``|p| = 0`` at the start, or its kinetic energy exhausted by energy loss in
    #: a layer (it leaves no further crossings)
    AT_REST = 5
    #: charge 0: a neutral particle is not propagated and leaves no crossings
    NEUTRAL = 6


def stop_counts(stop: np.ndarray) -> dict[str, int]:
    """Number of particles per stop reason, every reason listed (lower-case names).

    Parameters
    ----------
    stop : ndarray of int, shape (n,)
        :class:`StopReason` codes.
    """
    counts = np.bincount(np.asarray(stop, dtype=np.int64), minlength=len(StopReason))
    return {r.name.lower(): int(counts[r]) for r in StopReason}


@dataclass(frozen=True)
class Crossings:
    """Layer crossings of a set of particles, ordered by particle, then along each track.

    Attributes
    ----------
    particle : ndarray int64 (m,)
        Index of the particle in the arrays given to the propagator
        (:func:`~spectrocnn.simulate.propagation.propagate`).
    layer : ndarray int16 (m,)
        Index of the crossed layer.
    position : ndarray float64 (m, 3)
        True crossing point on the layer surface [mm].
    momentum : ndarray float64 (m, 3)
        Momentum arriving at the layer, before scattering and energy loss in it [GeV/c].
    stop : ndarray int8 (n_particles,)
        Why each particle given to the propagator stopped (:class:`StopReason`).
    """

    particle: np.ndarray
    layer: np.ndarray
    position: np.ndarray
    momentum: np.ndarray
    stop: np.ndarray

    def __len__(self) -> int:
        return len(self.particle)

    def stop_counts(self) -> dict[str, int]:
        """Number of particles per stop reason (:func:`stop_counts`)."""
        return stop_counts(self.stop)

    @classmethod
    def collect(cls, particle, layer, position, momentum, path, stop) -> Crossings:
        """Build from per-step pieces (lists of arrays), sorted by particle, then path length.

        Parameters
        ----------
        particle, layer, position, momentum : list of ndarray
            Pieces to concatenate (shapes as the attributes).
        path : list of ndarray
            Path length of each crossing from the particle's start [mm], the sort key
            within a particle.
        stop : ndarray of int, shape (n_particles,)
            :class:`StopReason` of every particle.
        """
        stop = np.asarray(stop, dtype=np.int8)
        if not particle:
            return cls(
                np.empty(0, np.int64),
                np.empty(0, np.int16),
                np.empty((0, 3)),
                np.empty((0, 3)),
                stop,
            )
        p = np.concatenate(particle).astype(np.int64)
        if len(particle) == 1 and path[0] is None:  # already ordered
            idx = slice(None)
        elif len(particle) == 1:
            idx = np.lexsort((path[0], p))
        else:  # pieces come in path order: a stable sort by particle keeps it
            idx = np.argsort(p, kind="stable")
        return cls(
            p[idx],
            np.concatenate(layer).astype(np.int16)[idx],
            np.concatenate(position)[idx],
            np.concatenate(momentum)[idx],
            stop,
        )
