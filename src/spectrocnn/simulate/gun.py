"""The particle gun: momenta, directions, vertices and charges of an event's particles."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache

import numpy as np

from spectrocnn.errors import ConfigError

__all__ = ["ParticleGun", "Primaries", "shoot"]


def _range(name: str, value, *, lo: float | None = None, hi: float | None = None):
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


#: PDG ids of the gluon (21, and 9 in some generators): coloured, never free.
_GLUON_IDS = (9, 21)


def _particle_properties(name: str) -> tuple[float, int, int]:
    """(mass [GeV/c^2], PDG id, charge [e]) of a PDG name.

    The gun shoots free particles with a non-zero integer charge: quarks, diquarks and
    gluons (coloured, confined), particles of fractional charge, and neutral particles
    (which leave no hit in a tracking layer) are refused.

    Raises
    ------
    ConfigError
        For an unknown name, a refused particle (the message names its charge) or a
        particle without a known mass.
    """
    record = _particle_record(name)
    if isinstance(record, str):
        raise ConfigError(record)
    return record


@lru_cache(maxsize=64)
def _particle_record(name: str) -> tuple[float, int, int] | str:
    """:func:`_particle_properties`, or the reason the name is refused; cached, refusals
    included (a look-up in the ``particle`` table takes 0.3 s)."""
    from particle import PDGID, Particle

    try:
        p = Particle.from_name(name)
    except Exception:
        return f"particle must be a PDG name such as 'pi+', got {name!r}"
    if p.three_charge is None:
        return f"particle {name!r} has no known charge"
    pdgid = PDGID(int(p.pdgid))
    three_q = int(p.three_charge)
    shown = str(Fraction(three_q, 3))
    choose = "choose a lepton, hadron or nucleus such as 'pi+', 'mu-', 'p' or 'He4'"
    gluon = abs(int(pdgid)) in _GLUON_IDS
    if pdgid.is_quark or pdgid.is_diquark or gluon:
        kind = "quark" if pdgid.is_quark else "diquark" if pdgid.is_diquark else "gluon"
        return (
            f"particle {name!r} has charge {shown}: a {kind} carries colour and is never a "
            f"free particle; {choose}"
        )
    if three_q % 3:
        return (
            f"particle {name!r} has charge {shown}: a free particle has an integer charge; {choose}"
        )
    if three_q == 0:
        return (
            f"particle {name!r} has charge 0: a neutral particle leaves no hits in the tracking "
            f"layers; {choose}"
        )
    if p.mass is None:
        return f"particle {name!r} has no known mass"
    return float(p.mass) / 1000.0, int(p.pdgid), three_q // 3


@dataclass(frozen=True)
class ParticleGun:
    """How particles are produced.

    Parameters
    ----------
    particle : str
        PDG name understood by the ``particle`` package (``"pi+"``, ``"mu-"``, ``"e+"``,
        ``"p"``, ``"He4"``...): a free particle with a non-zero integer charge. Its mass
        and its real charge magnitude |q| are used (|q| = 2 for ``"He4"``); the sign is
        drawn at random per particle (the PDG id follows it). Neutral particles
        (``"gamma"``, ``"pi0"``, ``"n"``...), quarks, diquarks, gluons and fractional
        charges raise :class:`~spectrocnn.errors.ConfigError`. Particles are not decayed:
        a short-lived species crosses the whole detector as if it were stable.
    p_low_GeV, p_high_GeV : (float, float)
        Momentum ranges [GeV/c] (uniform) of ordinary tracks and of the high-momentum track.
    phi_deg : (float, float)
        Azimuth range of the initial direction in the x-y plane [deg] (uniform).
    dip_deg : (float, float)
        Range of the angle out of the x-y plane [deg] (uniform), within [-90, 90].

    Every range is ``(min, max)`` with ``min <= max``; ``min == max`` gives exactly that
    value to every particle (``dip_deg=(0, 0)``: every track in the x-y plane).
    vertex_sigma_mm : (float, float, float)
        Gaussian spread of the production vertex about the origin [mm].
    """

    particle: str = "pi+"
    p_low_GeV: tuple[float, float] = (0.1, 0.15)
    p_high_GeV: tuple[float, float] = (5.0, 10.0)
    phi_deg: tuple[float, float] = (0.0, 360.0)
    dip_deg: tuple[float, float] = (-10.0, 10.0)
    vertex_sigma_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "p_low_GeV", _range("p_low_GeV", self.p_low_GeV, lo=0.0))
        object.__setattr__(self, "p_high_GeV", _range("p_high_GeV", self.p_high_GeV, lo=0.0))
        if self.p_low_GeV[0] <= 0 or self.p_high_GeV[0] <= 0:
            raise ConfigError(
                f"momentum ranges must be positive, got p_low_GeV={list(self.p_low_GeV)} "
                f"p_high_GeV={list(self.p_high_GeV)}"
            )
        object.__setattr__(self, "phi_deg", _range("phi_deg", self.phi_deg))
        object.__setattr__(self, "dip_deg", _range("dip_deg", self.dip_deg, lo=-90.0, hi=90.0))
        try:
            vs = tuple(float(x) for x in self.vertex_sigma_mm)
        except (TypeError, ValueError):
            raise ConfigError(
                f"vertex_sigma_mm must be a list of 3 numbers, got {self.vertex_sigma_mm!r}"
            ) from None
        if len(vs) != 3 or not all(math.isfinite(x) and x >= 0 for x in vs):
            raise ConfigError(
                f"vertex_sigma_mm must be 3 finite numbers >= 0, got {self.vertex_sigma_mm!r}"
            )
        object.__setattr__(self, "vertex_sigma_mm", vs)
        _ = self._properties  # validate the particle name now

    @cached_property
    def _properties(self) -> tuple[float, int, int]:
        if not isinstance(self.particle, str):
            raise ConfigError(f"particle must be a PDG name such as 'pi+', got {self.particle!r}")
        return _particle_properties(self.particle)

    @property
    def mass_GeV(self) -> float:
        """Mass of the particle [GeV/c^2]."""
        return self._properties[0]

    @property
    def pdg(self) -> int:
        """PDG id of the named particle (its antiparticle gets the opposite sign)."""
        return self._properties[1]

    @property
    def charge(self) -> int:
        """Charge of the named particle in units of e (a non-zero integer, e.g. 2 for He4)."""
        return self._properties[2]


@dataclass(frozen=True)
class Primaries:
    """The particles of a batch of events at production (columnar).

    Attributes
    ----------
    event : ndarray int64 (n,)
        Event index (0-based within the batch), non-decreasing.
    charge : ndarray int8 (n,)
        Charge [e]: the gun particle's |q| with a random sign (+-2 for He4).
    pdg : ndarray int32 (n,)
        Signed PDG id: the named particle's where the charge has its sign, the
        antiparticle's (opposite sign) elsewhere.
    momentum : ndarray float64 (n, 3)
        [GeV/c].
    vertex : ndarray float64 (n, 3)
        [mm].
    is_high : ndarray uint8 (n,)
        1 for the event's high-momentum particle.
    labels : ndarray uint8 (n_events,)
        1 when the event holds a high-momentum particle.
    mass_GeV : float
    """

    event: np.ndarray
    charge: np.ndarray
    pdg: np.ndarray
    momentum: np.ndarray
    vertex: np.ndarray
    is_high: np.ndarray
    labels: np.ndarray
    mass_GeV: float


def shoot(
    gun: ParticleGun,
    n_events: int,
    n_particles: int,
    high_fraction: float,
    rng: np.random.Generator | int | None = None,
) -> Primaries:
    """Produce the particles of ``n_events`` events.

    Each event is labelled 1 with probability ``high_fraction``; a labelled event has
    exactly one particle (at a random position among its ``n_particles``) drawn from
    ``p_high_GeV``, every other particle comes from ``p_low_GeV``. Momentum, azimuth and
    dip are uniform in their ranges (``min + (max - min) u``: exactly ``min`` for a fixed
    range ``min == max``).

    Parameters
    ----------
    gun : ParticleGun
    n_events : int
        >= 0.
    n_particles : int
        Particles per event, >= 1.
    high_fraction : float
        In [0, 1].
    rng : numpy.random.Generator, int or None

    Returns
    -------
    Primaries
    """
    rng = np.random.default_rng(rng)
    n = n_events * n_particles
    labels = (rng.random(n_events) < high_fraction).astype(np.uint8)
    slot = rng.integers(0, n_particles, size=n_events)
    event = np.repeat(np.arange(n_events, dtype=np.int64), n_particles)
    is_high = np.zeros(n, dtype=np.uint8)
    high_rows = np.flatnonzero(labels) * n_particles + slot[labels == 1]
    is_high[high_rows] = 1
    u = rng.random(n)
    lo = np.where(is_high == 1, gun.p_high_GeV[0], gun.p_low_GeV[0])
    hi = np.where(is_high == 1, gun.p_high_GeV[1], gun.p_low_GeV[1])
    p = lo + (hi - lo) * u
    phi = np.deg2rad(rng.uniform(gun.phi_deg[0], gun.phi_deg[1], n))
    dip = np.deg2rad(rng.uniform(gun.dip_deg[0], gun.dip_deg[1], n))
    momentum = np.stack(
        [p * np.cos(dip) * np.cos(phi), p * np.cos(dip) * np.sin(phi), p * np.sin(dip)], axis=1
    )
    sign = np.where(rng.random(n) < 0.5, -1, 1)
    charge = (sign * abs(gun.charge)).astype(np.int8)
    pdg = np.where(charge == gun.charge, gun.pdg, -gun.pdg).astype(np.int32)
    vertex = rng.standard_normal((n, 3)) * np.asarray(gun.vertex_sigma_mm)[None, :]
    return Primaries(event, charge, pdg, momentum, vertex, is_high, labels, gun.mass_GeV)
