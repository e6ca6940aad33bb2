"""The particle gun: momenta, directions, vertices and charges of an event's particles."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from spectrocnn.errors import ConfigError

__all__ = ["ParticleGun", "Primaries", "shoot"]


def _range(name: str, value, *, lo: float | None = None, hi: float | None = None):
    try:
        a, b = (float(x) for x in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a list of 2 numbers [min, max], got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if not a < b:
        raise ConfigError(f"{name} must be a non-empty range with min < max, got {value!r}")
    if (lo is not None and a < lo) or (hi is not None and b > hi):
        where = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"within [{lo}, {hi}]"
        raise ConfigError(f"{name} must lie {where}, got {value!r}")
    return (a, b)


@lru_cache(maxsize=64)
def _particle_properties(name: str) -> tuple[float, int, int]:
    """(mass [GeV/c^2], PDG id, charge [e]) of a PDG name; cached (a look-up takes 0.3 s)."""
    from particle import Particle

    try:
        p = Particle.from_name(name)
    except Exception:
        raise ConfigError(f"particle must be a PDG name such as 'pi+', got {name!r}") from None
    if p.mass is None:
        raise ConfigError(f"particle {name!r} has no known mass")
    return float(p.mass) / 1000.0, int(p.pdgid), round(p.charge or 0)


@dataclass(frozen=True)
class ParticleGun:
    """How particles are produced.

    Parameters
    ----------
    particle : str
        PDG name understood by the ``particle`` package (``"pi+"``, ``"mu-"``, ``"e+"``...);
        its mass and |charge| are used, the charge sign is drawn at random per particle.
    p_low_GeV, p_high_GeV : (float, float)
        Momentum ranges [GeV/c] (uniform) of ordinary tracks and of the high-momentum track.
    phi_deg : (float, float)
        Azimuth range of the initial direction in the x-y plane [deg] (uniform).
    dip_deg : (float, float)
        Range of the angle out of the x-y plane [deg] (uniform), within [-90, 90].
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
        """Charge of the named particle in units of e."""
        return self._properties[2]


@dataclass(frozen=True)
class Primaries:
    """The particles of a batch of events at production (columnar).

    Attributes
    ----------
    event : ndarray int64 (n,)
        Event index (0-based within the batch), non-decreasing.
    charge : ndarray int8 (n,)
    pdg : ndarray int32 (n,)
        Signed PDG id (the sign follows the charge for charged particles).
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
    ``p_high_GeV``, every other particle comes from ``p_low_GeV``.

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
    if gun.charge == 0:
        pdg = np.full(n, gun.pdg, dtype=np.int32)
    else:
        pdg = np.where(charge == gun.charge, gun.pdg, -gun.pdg).astype(np.int32)
    vertex = rng.standard_normal((n, 3)) * np.asarray(gun.vertex_sigma_mm)[None, :]
    return Primaries(event, charge, pdg, momentum, vertex, is_high, labels, gun.mass_GeV)
