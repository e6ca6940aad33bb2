"""The columnar truth of simulated events: :class:`EventBatch` and its particle and hit tables.

Each table is a frozen dataclass of NumPy columns of one length (names, dtypes and units:
:data:`PARTICLE_COLUMNS`, :data:`HIT_COLUMNS`, :data:`HIT_MOMENTUM_COLUMNS`); the event
file (docs/design.md 3.3) stores :data:`PARTICLE_COLUMNS` and :data:`HIT_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from spectrocnn.simulate.crossings import stop_counts

__all__ = [
    "EVENT_COLUMNS",
    "HIT_COLUMNS",
    "HIT_MOMENTUM_COLUMNS",
    "PARTICLE_COLUMNS",
    "EventBatch",
    "HitTable",
    "ParticleTable",
    "concatenate_batches",
]

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

#: The true momentum at each hit, in memory only (not in the event file, whose hit columns
#: are :data:`HIT_COLUMNS`): name -> (dtype, unit). The momentum arriving at the layer, after
#: the propagation to its surface and before the scattering and energy loss in it.
HIT_MOMENTUM_COLUMNS: dict[str, tuple[np.dtype, str | None]] = {
    "true_px": (np.dtype(np.float64), "GeV/c"),
    "true_py": (np.dtype(np.float64), "GeV/c"),
    "true_pz": (np.dtype(np.float64), "GeV/c"),
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

    ``true_px, true_py, true_pz`` (:data:`HIT_MOMENTUM_COLUMNS`) are the true momentum at
    the crossing [GeV/c]: the particle's momentum arriving at the layer, after the
    propagation to its surface and *before* the multiple scattering and energy loss in
    that layer (NaN for noise). :func:`simulate_events` and :func:`simulate_particles`
    fill them; they are None where not known (a batch read back from an event file, which
    does not store them).
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
    true_px: np.ndarray | None = None
    true_py: np.ndarray | None = None
    true_pz: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_columns(self, HIT_COLUMNS)
        given = [getattr(self, k) is not None for k in HIT_MOMENTUM_COLUMNS]
        if any(given) and not all(given):
            raise ValueError("give all of true_px, true_py, true_pz or none")
        if all(given):
            _check_columns(self, {"event": HIT_COLUMNS["event"], **HIT_MOMENTUM_COLUMNS})

    def __len__(self) -> int:
        return len(self.event)

    @property
    def has_momentum(self) -> bool:
        """Whether the true momentum columns are known."""
        return self.true_px is not None

    def columns(self, *, momentum: bool = False) -> dict[str, np.ndarray]:
        """The columns as a dict name -> array.

        Parameters
        ----------
        momentum : bool
            Add the true momentum columns (:data:`HIT_MOMENTUM_COLUMNS`) when known. By
            default only the event file's columns (:data:`HIT_COLUMNS`).
        """
        out = {name: getattr(self, name) for name in HIT_COLUMNS}
        if momentum and self.has_momentum:
            out.update({name: getattr(self, name) for name in HIT_MOMENTUM_COLUMNS})
        return out


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
        hc = b.hits.columns(momentum=True)
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
    hit_spec = dict(HIT_COLUMNS)
    if batches and all(b.hits.has_momentum for b in batches):
        hit_spec.update(HIT_MOMENTUM_COLUMNS)
    return EventBatch(
        labels,
        ParticleTable(**cat(parts, PARTICLE_COLUMNS)),
        HitTable(**cat(hits, hit_spec)),
        stop,
    )
