"""Events: the simulation set-up, :func:`simulate_events` (the gun's particles) and
:func:`simulate_particles` (your own), both returning the columnar
:class:`~spectrocnn.simulate.tables.EventBatch` (whose names this module re-exports)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.simulate.crossings import StopReason, stop_counts
from spectrocnn.simulate.geometry import Detector, lecture_detector
from spectrocnn.simulate.gun import (
    Gun,
    LabelThreshold,
    Multiplicity,
    ParticleGun,
    Primaries,
    check_guns,
    shoot,
    shoot_guns,
    threshold_labels,
)
from spectrocnn.simulate.hits import measure, noise_hits
from spectrocnn.simulate.pdg import pdg_properties
from spectrocnn.simulate.propagation import propagate
from spectrocnn.simulate.tables import (
    EVENT_COLUMNS,
    HIT_COLUMNS,
    HIT_MOMENTUM_COLUMNS,
    PARTICLE_COLUMNS,
    EventBatch,
    HitTable,
    ParticleTable,
    concatenate_batches,
)

__all__ = [
    "EVENT_COLUMNS",
    "HIT_COLUMNS",
    "HIT_MOMENTUM_COLUMNS",
    "PARTICLE_COLUMNS",
    "EventBatch",
    "HitTable",
    "ParticleTable",
    "Simulation",
    "concatenate_batches",
    "simulate_events",
    "simulate_particles",
]

log = logging.getLogger(__name__)

#: A progress callback: called with the number of events just simulated.
Progress = Callable[[int], Any]


@dataclass(frozen=True, eq=False)
class Simulation:
    """Everything needed to simulate events (the physics part of a configuration).

    Parameters
    ----------
    detector : Detector
        Layers and field; defaults to the lecture barrel in 2 T.
    gun : ParticleGun
        The single gun (the ``[gun]`` table); not used when ``guns`` is given.
    n_particles : int or Multiplicity
        Particles per event: an int >= 1 (fixed), or a :class:`Multiplicity` (Poisson,
        uniform); not used with guns that have counts.
    high_fraction : float
        Fraction of events with one high-momentum particle, in [0, 1] (the lecture recipe:
        the single gun without ``label``).
    guns : tuple of Gun
        Several guns (the ``[[guns]]`` tables), a mixture of species; needs ``label``.
        Empty (default): the single ``gun``.
    label : LabelThreshold or None
        The threshold label: 1 when an event holds a particle at or above the threshold.
        None (default): the lecture recipe (``high_fraction``).
    noise_hits_per_layer : float
        Mean number of random noise hits per layer per event (Poisson), >= 0.
    stepper_tolerance_mm : float
        Local position-error tolerance of the adaptive Runge-Kutta-Nystrom stepper [mm],
        used when the field is not uniform along the layer axes.
    """

    detector: Detector = field(default_factory=lecture_detector)
    gun: ParticleGun = field(default_factory=ParticleGun)
    n_particles: int = 10
    high_fraction: float = 0.5
    noise_hits_per_layer: float = 0.0
    stepper_tolerance_mm: float = 1e-4
    guns: tuple[Gun, ...] = ()
    label: LabelThreshold | None = None

    def __post_init__(self) -> None:
        np_ = self.n_particles
        if isinstance(np_, Multiplicity | dict):
            mult = Multiplicity.of(np_)
            fixed = mult.distribution == "fixed"
            object.__setattr__(self, "n_particles", mult.n if fixed else mult)
        else:
            if isinstance(np_, bool) or not isinstance(np_, int | np.integer) or np_ < 1:
                raise ConfigError(f"n_particles must be a positive integer, got {np_!r}")
            object.__setattr__(self, "n_particles", int(np_))
        if self.guns:
            object.__setattr__(self, "guns", check_guns(self.guns))
            if self.label is None:
                raise ConfigError(
                    "guns need a threshold label ([label] threshold_GeV): the high_fraction "
                    "recipe belongs to the single [gun]"
                )
        if self.label is not None and not isinstance(self.label, LabelThreshold):
            raise ConfigError(f"label must be a LabelThreshold, got {self.label!r}")
        hf = self.high_fraction
        if isinstance(hf, bool) or not isinstance(hf, int | float) or not 0 <= hf <= 1:
            raise ConfigError(f"high_fraction must be in [0, 1], got {hf!r}")
        object.__setattr__(self, "high_fraction", float(hf))
        nh = self.noise_hits_per_layer
        if isinstance(nh, bool) or not isinstance(nh, int | float) or not 0 <= nh < math.inf:
            raise ConfigError(f"noise hits_per_layer must be a number >= 0, got {nh!r}")
        object.__setattr__(self, "noise_hits_per_layer", float(nh))
        tol = self.stepper_tolerance_mm
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 < tol < math.inf:
            raise ConfigError(f"stepper_tolerance_mm must be positive, got {tol!r}")
        object.__setattr__(self, "stepper_tolerance_mm", float(tol))

    @property
    def multiplicity(self) -> Multiplicity:
        """Particles per event as a :class:`Multiplicity` (guns with counts: their sum)."""
        if self.guns and self.guns[0].count is not None:
            return Multiplicity("fixed", n=sum(g.count for g in self.guns))
        return Multiplicity.of(self.n_particles)

    @property
    def fixed_particles(self) -> int | None:
        """The number of particles of every event, or None when it varies."""
        m = self.multiplicity
        return m.n if m.distribution == "fixed" else None

    @property
    def particles_bound(self) -> float:
        """A generous bound on the particles of one event (memory budgets)."""
        return self.multiplicity.bound

    @property
    def threshold(self) -> LabelThreshold:
        """The threshold of the stored ``n_above_threshold``: ``label``, or for the lecture
        recipe |p| >= the lower end of ``gun.p_high_GeV``."""
        if self.label is not None:
            return self.label
        return LabelThreshold(self.gun.p_high_GeV[0], "p")


def simulate_events(
    simulation: Simulation,
    n_events: int,
    rng: np.random.Generator | int | None = None,
    *,
    progress: Progress | None = None,
) -> EventBatch:
    """Simulate ``n_events`` events of the simulation's particle gun(s).

    Parameters
    ----------
    simulation : Simulation
    n_events : int
        >= 0.
    rng : numpy.random.Generator, int or None
        Source of randomness; the same seed gives identical arrays. A varying
        multiplicity is its first draw (``simulation.multiplicity.draw(n_events, rng)``),
        which sharded generation repeats to place each shard's particle rows. The gun
        draws first, then the propagation, the hits and the noise (the draws of
        :func:`simulate_particles`).
    progress : callable, optional
        Called with the number of events just simulated, as in
        :func:`spectrocnn.dataset.generate_file`: the calls add up to ``n_events`` by the
        time the function returns (none for 0 events). On the stepper an event counts once
        its particles are propagated (after each group of particles); on the exact helix,
        which propagates all particles at once, there is one call at the end. It does not
        change the result.

    Returns
    -------
    EventBatch
        With :attr:`EventBatch.stop`, why each particle's propagation ended
        (:meth:`EventBatch.stop_counts` counts them), and the true momentum at each hit
        (:attr:`HitTable.true_px`...).
    """
    if isinstance(n_events, bool) or not isinstance(n_events, int | np.integer) or n_events < 0:
        raise ConfigError(f"n_events must be an integer >= 0, got {n_events!r}")
    rng = np.random.default_rng(rng)
    sim = simulation
    if sim.guns:
        prim = shoot_guns(sim.guns, int(n_events), sim.n_particles, sim.label, rng)
    else:
        prim = shoot(
            sim.gun, int(n_events), sim.n_particles, sim.high_fraction, rng, threshold=sim.label
        )
    return _simulate(sim, prim, int(n_events), rng, progress)


def simulate_particles(
    simulation: Simulation | Detector,
    vertex_mm: np.ndarray,
    momentum_GeV: np.ndarray,
    pdg: np.ndarray,
    event: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
    *,
    progress: Progress | None = None,
) -> EventBatch:
    """Simulate your own particles (a generator's output) through the detector.

    The particles are propagated, leave hits and noise exactly as the gun's do in
    :func:`simulate_events` (same propagator, material effects, efficiency, smearing and
    noise, same order of random draws), so the result is the same :class:`EventBatch`.

    Parameters
    ----------
    simulation : Simulation or Detector
        The detector, field and material (``simulation.detector``), the noise
        (``noise_hits_per_layer``), the stepper's tolerance and the label
        (``simulation.threshold``); its gun and multiplicity are not used. A bare
        :class:`~spectrocnn.simulate.geometry.Detector` stands for ``Simulation(detector)``
        (no noise, the default tolerance).
    vertex_mm : array_like, shape (n, 3)
        Production vertices [mm], finite.
    momentum_GeV : array_like, shape (n, 3)
        Momenta at the vertex [GeV/c], finite, non-zero.
    pdg : array_like of int, shape (n,)
        Signed PDG ids (211 pi+, -13 mu+, 2212 p, 1000020040 He4...): mass and charge come
        from the PDG table (the ``particle`` package), as for the gun; neutral particles,
        quarks, diquarks, gluons and fractional charges raise ConfigError.
    event : array_like of int, shape (n,), optional
        Event index of each particle, >= 0 and non-decreasing (particles grouped by event,
        in order); the batch holds ``event.max() + 1`` events (an index skipped is an event
        without particles: noise only). None: all particles form one event.
    rng : numpy.random.Generator, int or None
        Source of randomness (material effects, efficiency, smearing, noise).
    progress : callable, optional
        As for :func:`simulate_events`.

    Returns
    -------
    EventBatch
        ``particles`` in the given order (``is_high``: at or above
        ``simulation.threshold``), ``labels`` 1 for an event holding such a particle,
        ``hits`` with the true momentum at each hit, ``stop``.

    Raises
    ------
    ConfigError
        For arrays of the wrong shape or type, non-finite values, a zero momentum, an
        event index that is negative or decreasing, or a refused PDG id; the message
        names the argument.
    """
    if isinstance(simulation, Detector):
        simulation = Simulation(detector=simulation)
    elif not isinstance(simulation, Simulation):
        raise ConfigError(f"simulation must be a Simulation or a Detector, got {simulation!r}")
    vertex, momentum, pdg_ids, event_idx = _own_particles(vertex_mm, momentum_GeV, pdg, event)
    n_events = int(event_idx[-1]) + 1 if len(event_idx) else 0
    mass, charge = pdg_properties(pdg_ids)
    labels, is_high = threshold_labels(event_idx, momentum, n_events, simulation.threshold)
    prim = Primaries(
        event_idx, charge, pdg_ids.astype(np.int32), momentum, vertex, is_high, labels, mass
    )
    return _simulate(simulation, prim, n_events, np.random.default_rng(rng), progress)


def _own_particles(vertex_mm, momentum_GeV, pdg, event) -> tuple[np.ndarray, ...]:
    """The arrays of :func:`simulate_particles`, validated: vertex, momentum float64 (n, 3),
    pdg int64 (n,), event int64 (n,)."""
    vertex = _float_array("vertex_mm", vertex_mm)
    momentum = _float_array("momentum_GeV", momentum_GeV)
    n = len(vertex) if vertex.ndim == 2 else -1
    if vertex.shape != (n, 3) or momentum.shape != (n, 3):
        raise ConfigError(
            f"vertex_mm and momentum_GeV must have shape (n, 3), got {vertex.shape} and "
            f"{momentum.shape}"
        )
    pmag = np.sqrt(np.einsum("ij,ij->i", momentum, momentum))
    if np.any(pmag <= 0):
        raise ConfigError(
            f"momentum_GeV must be non-zero, got |p| = 0 for particle {int(np.argmin(pmag))}"
        )
    pdg_ids = _int_array("pdg", pdg, n)
    if event is None:
        return vertex, momentum, pdg_ids, np.zeros(n, dtype=np.int64)
    event_idx = _int_array("event", event, n)
    if n and event_idx[0] < 0:
        raise ConfigError(f"event must be >= 0, got {int(event_idx[0])} for particle 0")
    down = np.flatnonzero(np.diff(event_idx) < 0)
    if down.size:
        i = int(down[0]) + 1
        raise ConfigError(
            f"event must be non-decreasing (the particles grouped by event, in order), got "
            f"event[{i}] = {int(event_idx[i])} after event[{i - 1}] = {int(event_idx[i - 1])}"
        )
    return vertex, momentum, pdg_ids, event_idx


def _float_array(name: str, value) -> np.ndarray:
    """``value`` as a finite float64 array; ConfigError naming ``name`` otherwise."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an array of numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} must be finite, got NaN or inf")
    return arr


def _int_array(name: str, value, n: int) -> np.ndarray:
    """``value`` as an int64 array of shape (n,); ConfigError naming ``name`` otherwise."""
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ConfigError(f"{name} must have shape ({n},) (one per particle), got {arr.shape}")
    if arr.dtype.kind not in "iu" and not (n == 0 and arr.dtype.kind == "f"):
        raise ConfigError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _simulate(
    sim: Simulation, prim: Primaries, n_events: int, rng: np.random.Generator, progress
) -> EventBatch:
    """Propagate the primaries, make their hits and the noise (in this order of draws)."""
    n = len(prim.event)
    reporter = _EventProgress(progress, prim.event, n_events)
    crossings = propagate(
        sim.detector,
        prim.vertex,
        prim.momentum,
        prim.charge.astype(np.float64),
        np.broadcast_to(np.asarray(prim.mass_GeV, dtype=np.float64), (n,)).copy(),
        rng,
        tolerance_mm=sim.stepper_tolerance_mm,
        progress=None if progress is None else reporter.particles,
    )
    track = measure(sim.detector, crossings, prim.event, rng)
    stop = crossings.stop
    del crossings  # its positions and momenta live on in the hit columns
    noise = noise_hits(sim.detector, n_events, sim.noise_hits_per_layer, rng)
    if len(noise["event"]):
        # interleave: each event's track hits, then its noise hits (column by column, so
        # that only one column is held twice at a time)
        event = np.concatenate([track["event"], noise["event"]])
        is_noise = np.concatenate([track["particle"], noise["particle"]]) < 0
        order = np.argsort(event * 2 + is_noise, kind="stable")
        del event, is_noise
        hit_cols = {k: np.concatenate([track.pop(k), noise.pop(k)])[order] for k in list(track)}
    else:
        hit_cols = track
    particles = ParticleTable(
        event=prim.event,
        charge=prim.charge,
        pdg=prim.pdg,
        px=prim.momentum[:, 0],
        py=prim.momentum[:, 1],
        pz=prim.momentum[:, 2],
        vx=prim.vertex[:, 0],
        vy=prim.vertex[:, 1],
        vz=prim.vertex[:, 2],
        is_high=prim.is_high,
    )
    log.debug("simulated %d events, %d particles", n_events, n)
    early = int(np.count_nonzero(~np.isin(stop, (StopReason.LEFT_DETECTOR, StopReason.NEUTRAL))))
    if early:
        log.debug("%d of %d tracks stopped early: %s", early, n, stop_counts(stop))
    batch = EventBatch(prim.labels, particles, HitTable(**hit_cols), stop)
    reporter.finish()
    return batch


class _EventProgress:
    """Turns the propagator's progress in particles (input order) into events for a
    progress callback: an event counts once all its particles are propagated; the rest
    at :meth:`finish`."""

    def __init__(self, progress: Progress | None, event: np.ndarray, n_events: int) -> None:
        self.progress = progress
        self.event = event
        self.n_events = n_events
        self.n_particles = 0
        self.reported = 0

    def particles(self, k: int) -> None:
        """``k`` more particles are propagated."""
        self.n_particles += k
        if self.n_particles < len(self.event):  # the events before this particle's are done
            self._report(int(self.event[self.n_particles]))

    def finish(self) -> None:
        """Every event is done."""
        self._report(self.n_events)

    def _report(self, done: int) -> None:
        if self.progress is not None and done > self.reported:
            self.progress(done - self.reported)
            self.reported = done
