"""Propagation of charged particles through the detector: the choice of propagator.

:func:`propagate` finds, for every particle, its crossings of the detector's layers, with
the material effects (multiple scattering, energy loss) applied at each crossing. As in
ACTS, a propagator is a stepper plus a navigator plus material interactions; there are
two here, and :func:`choose_propagator` is the one place that picks between them:

- ``"helix"`` (:func:`spectrocnn.simulate.helix.propagate_helix`): exact helix-surface
  intersections, when the field is uniform and parallel to every layer's axis (B along z,
  planes whose normal has no z component; :func:`helix_applicable`);
- ``"stepper"`` (:func:`spectrocnn.simulate.stepper.propagate_rk`): the adaptive
  Runge-Kutta-Nystrom stepper (:mod:`spectrocnn.simulate.rkn`) with its navigator
  (:mod:`spectrocnn.simulate.navigator`), for every other field or geometry.

Both apply the same material interactions
(:func:`spectrocnn.simulate.material.interact_at_layers`) and return the same record,
:class:`~spectrocnn.simulate.crossings.Crossings`.

Rules (docs/design.md 4): each particle leaves at most one crossing per layer, at its first
crossing of the layer's active area; it stops when it leaves the detector's outer boundary or has
made half a turn about the field. The turn is the angle by which the direction has rotated
about the local field, ``integral |q C B| / p ds`` (a magnetic field turns the direction
about itself at that rate; in a uniform field it is the turning angle of the track's helix
in its bending plane). Scattering deflections do not count: a track whose momentum
component normal to the field is tiny (a track along the field, or a forward track in a
dipole whose transverse direction flips when a scatter passes p_T through zero) is not
taken for a looper. Both propagators apply this rule and report why each particle stopped
(:class:`StopReason`, :attr:`Crossings.stop`). A neutral particle (charge 0) ionises
nothing and leaves no crossing in the tracking layers, whichever propagator runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from spectrocnn.simulate.constants import C_GEV_PER_T_MM
from spectrocnn.simulate.crossings import Crossings, StopReason, stop_counts
from spectrocnn.simulate.fields import UniformField
from spectrocnn.simulate.geometry import Detector
from spectrocnn.simulate.helix import propagate_helix
from spectrocnn.simulate.stepper import propagate_rk

__all__ = [
    "C_GEV_PER_T_MM",
    "Crossings",
    "StopReason",
    "choose_propagator",
    "helix_applicable",
    "propagate",
    "propagate_helix",
    "propagate_rk",
    "stop_counts",
]


def helix_applicable(detector: Detector) -> bool:
    """Whether exact helix intersections apply: a uniform field along z (or none) and
    every plane layer parallel to z (its normal has no z component)."""
    if not isinstance(detector.field, UniformField):
        return False
    bx, by, _ = detector.field.B_T
    if bx != 0.0 or by != 0.0:
        return False
    la = detector.arrays
    return bool(np.all(la.is_cylinder | (np.abs(la.normal[:, 2]) < 1e-15)))


def choose_propagator(detector: Detector) -> Literal["helix", "stepper"]:
    """The propagator :func:`propagate` uses for a detector: ``"helix"`` where
    :func:`helix_applicable`, else ``"stepper"``."""
    return "helix" if helix_applicable(detector) else "stepper"


def propagate(
    detector: Detector,
    position: np.ndarray,
    momentum: np.ndarray,
    charge: np.ndarray,
    mass: np.ndarray,
    rng: np.random.Generator | int | None = None,
    *,
    tolerance_mm: float = 1e-4,
    progress: Callable[[int], Any] | None = None,
) -> Crossings:
    """Find the layer crossings of particles, with the material effects in the layers.

    Parameters
    ----------
    detector : Detector
    position : ndarray, shape (n, 3)
        Production vertices [mm].
    momentum : ndarray, shape (n, 3)
        Initial momenta [GeV/c].
    charge : ndarray, shape (n,)
        Charges [e], any real value (|q| = 2 bends twice as much as |q| = 1); a particle
        of charge 0 leaves no crossings.
    mass : ndarray, shape (n,)
        Masses [GeV/c^2] (beta in the Highland formula; the Bethe formula).
    rng : numpy.random.Generator, int or None
        Used for the material effects only (multiple scattering, energy loss).
    tolerance_mm : float
        Local error tolerance of the Runge-Kutta-Nystrom stepper [mm] (ignored on the
        exact helix path).
    progress : callable, optional
        Called with the number of particles just finished, in input order (once the calls
        add up to k, the first k particles are done; they add up to n): after each group
        of particles on the stepper, once at the end on the exact helix.

    Returns
    -------
    Crossings
    """
    rng = np.random.default_rng(rng)
    position = np.asarray(position, dtype=np.float64).reshape(-1, 3)
    momentum = np.asarray(momentum, dtype=np.float64).reshape(-1, 3)
    charge = np.asarray(charge, dtype=np.float64).reshape(-1)
    mass = np.broadcast_to(np.asarray(mass, dtype=np.float64), charge.shape)
    if choose_propagator(detector) == "helix":
        crossings = propagate_helix(detector, position, momentum, charge, mass, rng)
        if progress is not None and len(charge):
            progress(len(charge))
        return crossings
    return propagate_rk(
        detector, position, momentum, charge, mass, rng, tolerance_mm=tolerance_mm,
        progress=progress,
    )  # fmt: skip
