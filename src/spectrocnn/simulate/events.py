"""Events: the simulation set-up, the columnar :class:`EventBatch`, and :func:`simulate_events`."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.simulate.crossings import StopReason, stop_counts
from spectrocnn.simulate.geometry import Detector, lecture_detector
from spectrocnn.simulate.gun import (
    Gun,
    LabelThreshold,
    Multiplicity,
    ParticleGun,
    check_guns,
    shoot,
    shoot_guns,
)
from spectrocnn.simulate.hits import measure, noise_hits
from spectrocnn.simulate.propagation import propagate

__all__ = [
    "EVENT_COLUMNS",
    "HIT_COLUMNS",
    "PARTICLE_COLUMNS",
    "EventBatch",
    "HitTable",
    "ParticleTable",
    "Simulation",
    "concatenate_batches",
    "simulate_events",
]

log = logging.getLogger(__name__)

#: Columns of the particle table: name -> (dtype, unit or None). docs/design.md 3.3 /particles.
PARTICLE_COLUMNS: dict[str, tuple[np.dtype, str | None]] = {
    "event": (np.dtype(np.int64), None),
    "charge": (np.dtype(np.int8), "e"),
    "pdg": (np.dtype(np.int32), None),
    "px": (np.dtype(np.float64), "GeV/c"),
    "py": (np.dtype(np.float64), "GeV/c"),
    "pz": (np.dtype(np.float64), "GeV/c"),
    "vx": (np.dtype(np.float64), "mm"),
    "vy": (np.dtype(np.float64), "mm"),
    "vz": (np.dtype(np.float64), "mm"),
    "is_high": (np.dtype(np.uint8), None),
}

#: Per-event summaries of an event file (``/events/<name>``, issue 19): name -> (dtype, unit).
EVENT_COLUMNS: dict[str, tuple[np.dtype, str | None]] = {
    "n_above_threshold": (np.dtype(np.int32), None),
    "max_pt_GeV": (np.dtype(np.float64), "GeV/c"),
}

#: Columns of the hit table: name -> (dtype, unit or None). docs/design.md 3.3 /hits.
HIT_COLUMNS: dict[str, tuple[np.dtype, str | None]] = {
    "event": (np.dtype(np.int64), None),
    "particle": (np.dtype(np.int64), None),
    "layer": (np.dtype(np.int16), None),
    "x": (np.dtype(np.float64), "mm"),
    "y": (np.dtype(np.float64), "mm"),
    "z": (np.dtype(np.float64), "mm"),
    "true_x": (np.dtype(np.float64), "mm"),
    "true_y": (np.dtype(np.float64), "mm"),
    "true_z": (np.dtype(np.float64), "mm"),
}


def _check_columns(obj, spec: dict) -> None:
    n = None
    for name, (dtype, _) in spec.items():
        a = np.asarray(getattr(obj, name))
        if a.dtype != dtype:
            a = a.astype(dtype)
        object.__setattr__(obj, name, a)
        if n is None:
            n = len(a)
        elif len(a) != n:
            raise ValueError(f"column {name} has length {len(a)}, expected {n}")


@dataclass(frozen=True)
class ParticleTable:
    """One row per particle, grouped by event (columns and units: :data:`PARTICLE_COLUMNS`)."""

    event: np.ndarray
    charge: np.ndarray
    pdg: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vz: np.ndarray
    is_high: np.ndarray

    def __post_init__(self) -> None:
        _check_columns(self, PARTICLE_COLUMNS)

    def __len__(self) -> int:
        return len(self.event)

    def columns(self) -> dict[str, np.ndarray]:
        """The columns as a dict name -> array."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class HitTable:
    """One row per hit, grouped by event (columns and units: :data:`HIT_COLUMNS`).

    ``particle`` is the row in the batch's :class:`ParticleTable` (-1 for a noise hit);
    ``x, y, z`` are measured, ``true_x, true_y, true_z`` are the true crossing (NaN for
    noise). Within an event the track hits come first, by particle and in the order
    the particle made them, then the noise hits.
    """

    event: np.ndarray
    particle: np.ndarray
    layer: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    true_x: np.ndarray
    true_y: np.ndarray
    true_z: np.ndarray

    def __post_init__(self) -> None:
        _check_columns(self, HIT_COLUMNS)

    def __len__(self) -> int:
        return len(self.event)

    def columns(self) -> dict[str, np.ndarray]:
        """The columns as a dict name -> array."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class EventBatch:
    """The simulated truth of a batch of events, as columns.

    Attributes
    ----------
    labels : ndarray uint8 (n_events,)
        1 when the event holds a high-momentum particle (lecture recipe) or a particle
        at or above the simulation's ``label`` threshold.
    particles : ParticleTable
    hits : HitTable
        Event indices in both tables run from 0 to ``n_events - 1``.
    stop : ndarray int8 (n_particles,) or None
        Why the propagation of each particle (row of ``particles``) ended, a
        :class:`~spectrocnn.simulate.crossings.StopReason` code; None where not known
        (a batch read back from an event file, which does not store it).
    """

    labels: np.ndarray
    particles: ParticleTable
    hits: HitTable
    stop: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.uint8))
        if self.stop is not None:
            stop = np.asarray(self.stop, dtype=np.int8)
            if stop.shape != (len(self.particles),):
                raise ValueError(f"stop has shape {stop.shape}, expected ({len(self.particles)},)")
            object.__setattr__(self, "stop", stop)

    def stop_counts(self) -> dict[str, int] | None:
        """Number of particles per stop reason (``left_detector``, ``looped``, ...).

        Returns
        -------
        dict or None
            Every :class:`~spectrocnn.simulate.crossings.StopReason`, lower-case, with its
            count; None when :attr:`stop` is not known.
        """
        return None if self.stop is None else stop_counts(self.stop)

    @property
    def n_events(self) -> int:
        """Number of events."""
        return len(self.labels)

    def event_offsets(self, table: str = "hits") -> np.ndarray:
        """Row offsets of each event in a table.

        Parameters
        ----------
        table : {"hits", "particles"}

        Returns
        -------
        ndarray int64 (n_events + 1,)
            Rows of event ``i`` are ``offsets[i]:offsets[i + 1]``.
        """
        ev = getattr(self, table).event
        return np.searchsorted(ev, np.arange(self.n_events + 1)).astype(np.int64)


def concatenate_batches(batches: list[EventBatch]) -> EventBatch:
    """Join batches into one, renumbering events and particle rows.

    Parameters
    ----------
    batches : list of EventBatch

    Returns
    -------
    EventBatch
    """
    ev_off = 0
    p_off = 0
    parts: list[dict] = []
    hits: list[dict] = []
    for b in batches:
        pc = b.particles.columns()
        pc["event"] = pc["event"] + ev_off
        hc = b.hits.columns()
        hc["event"] = hc["event"] + ev_off
        hc["particle"] = np.where(hc["particle"] >= 0, hc["particle"] + p_off, -1)
        parts.append(pc)
        hits.append(hc)
        ev_off += b.n_events
        p_off += len(b.particles)

    def cat(dicts: list[dict], spec: dict) -> dict:
        return {
            k: (np.concatenate([d[k] for d in dicts]) if dicts else np.empty(0, dt))
            for k, (dt, _) in spec.items()
        }

    labels = np.concatenate([b.labels for b in batches]) if batches else np.empty(0, np.uint8)
    known = all(b.stop is not None for b in batches)
    stop = np.concatenate([b.stop for b in batches] or [np.empty(0, np.int8)]) if known else None
    return EventBatch(
        labels,
        ParticleTable(**cat(parts, PARTICLE_COLUMNS)),
        HitTable(**cat(hits, HIT_COLUMNS)),
        stop,
    )


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
    simulation: Simulation, n_events: int, rng: np.random.Generator | int | None = None
) -> EventBatch:
    """Simulate ``n_events`` events.

    Parameters
    ----------
    simulation : Simulation
    n_events : int
        >= 0.
    rng : numpy.random.Generator, int or None
        Source of randomness; the same seed gives identical arrays. A varying
        multiplicity is its first draw (``simulation.multiplicity.draw(n_events, rng)``),
        which sharded generation repeats to place each shard's particle rows.

    Returns
    -------
    EventBatch
        With :attr:`EventBatch.stop`, why each particle's propagation ended
        (:meth:`EventBatch.stop_counts` counts them).
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
    n = len(prim.event)
    crossings = propagate(
        sim.detector,
        prim.vertex,
        prim.momentum,
        prim.charge.astype(np.float64),
        np.broadcast_to(np.asarray(prim.mass_GeV, dtype=np.float64), (n,)).copy(),
        rng,
        tolerance_mm=sim.stepper_tolerance_mm,
    )
    track = measure(sim.detector, crossings, prim.event, rng)
    noise = noise_hits(sim.detector, int(n_events), sim.noise_hits_per_layer, rng)
    if len(noise["event"]):
        hit_cols = {k: np.concatenate([track[k], noise[k]]) for k in HIT_COLUMNS}
    else:
        hit_cols = track
    if len(noise["event"]):  # interleave: each event's track hits, then its noise hits
        is_noise = hit_cols["particle"] < 0
        order = np.argsort(hit_cols["event"] * 2 + is_noise, kind="stable")
        hit_cols = {k: v[order] for k, v in hit_cols.items()}
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
    early = int(
        np.count_nonzero(~np.isin(crossings.stop, (StopReason.LEFT_DETECTOR, StopReason.NEUTRAL)))
    )
    if early:
        log.debug("%d of %d tracks stopped early: %s", early, n, crossings.stop_counts())
    return EventBatch(prim.labels, particles, HitTable(**hit_cols), crossings.stop)
