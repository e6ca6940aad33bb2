"""The particle gun: momenta, directions, vertices and charges of an event's particles."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.simulate._validate import check_choice, check_range, is_number
from spectrocnn.simulate.multiplicity import MAX_PARTICLES_PER_EVENT, Multiplicity
from spectrocnn.simulate.pdg import particle_properties

__all__ = [
    "Gun",
    "LabelThreshold",
    "Multiplicity",
    "ParticleGun",
    "Primaries",
    "check_guns",
    "shoot",
    "shoot_guns",
    "threshold_labels",
]


_MOMENTUM_KINDS = ("p", "pt")
_SIGNS = ("random", "+", "-")


def _check_pt_dip(name: str, dip) -> None:
    """p_T with a dip angle: |dip| = 90 deg would need an infinite |p|."""
    if max(abs(float(dip[0])), abs(float(dip[1]))) >= 90.0:
        raise ConfigError(
            f"{name} must lie within (-90, 90) when the momentum is given as p_T "
            f"(|p| = p_T / cos(dip)), got {list(dip)!r}"
        )


def _momenta(
    magnitude: np.ndarray, kind: str, phi_rad: np.ndarray, polar: np.ndarray, polar_kind: str
) -> np.ndarray:
    """Momentum vectors [GeV/c], shape (n, 3), from a magnitude and a direction.

    ``kind`` says whether ``magnitude`` is |p| (``"p"``) or p_T (``"pt"``); ``polar`` is the
    dip angle lambda [rad] (``"dip"``) or the pseudorapidity eta (``"eta"``, PDG:
    eta = -ln tan(theta/2), so p_T = |p| / cosh(eta) and p_z = p_T sinh(eta)). With the dip
    angle, p_T = |p| cos(lambda) and p_z = |p| sin(lambda) = p_T tan(lambda).
    """
    if polar_kind == "dip":
        if kind == "p":
            pt, pz = magnitude * np.cos(polar), magnitude * np.sin(polar)
        else:
            pt, pz = magnitude, magnitude * np.tan(polar)
    elif kind == "p":
        pt, pz = magnitude / np.cosh(polar), magnitude * np.tanh(polar)
    else:
        pt, pz = magnitude, magnitude * np.sinh(polar)
    return np.stack([pt * np.cos(phi_rad), pt * np.sin(phi_rad), pz], axis=1)


def _signs(charge_sign: str, u: np.ndarray) -> np.ndarray:
    """+-1 per particle: random (``u < 0.5`` gives -1) or fixed."""
    if charge_sign == "+":
        return np.ones(len(u), dtype=np.int64)
    if charge_sign == "-":
        return -np.ones(len(u), dtype=np.int64)
    return np.where(u < 0.5, -1, 1)


#: Largest |eta| a gun takes: theta = 2 atan(e^-15) = 6e-7 rad from the z axis, far
#: beyond any tracking layer's acceptance (and p_z = p_T sinh(eta) stays finite).
MAX_ETA = 15.0


@dataclass(frozen=True)
class LabelThreshold:
    """The threshold label: an event is labelled 1 when at least one of its (charged)
    particles has ``variable >= threshold_GeV``.

    Parameters
    ----------
    threshold_GeV : float
        [GeV/c], > 0.
    variable : {"p", "pt"}
        The momentum magnitude |p| or the transverse momentum p_T = sqrt(px^2 + py^2).
    """

    threshold_GeV: float = 1.0
    variable: str = "pt"

    def __post_init__(self) -> None:
        t = self.threshold_GeV
        if not is_number(t) or not 0 < t < math.inf:
            raise ConfigError(f"threshold_GeV must be a finite number > 0, got {t!r}")
        object.__setattr__(self, "threshold_GeV", float(t))
        check_choice("variable", self.variable, _MOMENTUM_KINDS)

    def values(self, px, py, pz) -> np.ndarray:
        """The thresholded variable of each particle [GeV/c]."""
        pt = np.hypot(px, py)
        return pt if self.variable == "pt" else np.hypot(pt, pz)

    def above(self, px, py, pz) -> np.ndarray:
        """bool per particle: at or above the threshold."""
        return self.values(px, py, pz) >= self.threshold_GeV


@dataclass(frozen=True)
class Gun:
    """One gun of a mixture (the ``[[guns]]`` tables): a species and its kinematics.

    Parameters
    ----------
    particle : str
        PDG name (the rules of :class:`ParticleGun`: a free particle of non-zero integer
        charge; its mass and |q| are used).
    charge_sign : {"random", "+", "-"}
        Random sign per particle (default), or a fixed sign (the PDG id follows it).
    fraction : float or None
        Probability that a particle comes from this gun, in (0, 1]; the fractions of all
        guns sum to 1. The number of particles per event then comes from ``n_particles``.
    count : int or None
        Instead of ``fraction``: exactly this many particles of this gun in every event
        (>= 1). Either every gun has a fraction or every gun has a count.
    p_GeV, pt_GeV : (float, float)
        Range of |p| or of p_T [GeV/c] (uniform, > 0): exactly one of the two.
    dip_deg, eta : (float, float)
        Range of the dip angle [deg] within [-90, 90] or of the pseudorapidity within
        [-15, 15] (uniform),
        at most one of the two; neither: ``dip_deg = (-10, 10)``.
    phi_deg : (float, float)
        Azimuth range [deg] (uniform).
    vertex_sigma_mm : (float, float, float)
        Gaussian spread of the production vertex about the origin [mm].

    Every range is ``[min, max]`` with ``min <= max``; ``min == max`` is that fixed value.
    """

    particle: str = "pi+"
    charge_sign: str = "random"
    fraction: float | None = None
    count: int | None = None
    p_GeV: tuple[float, float] | None = None
    pt_GeV: tuple[float, float] | None = None
    dip_deg: tuple[float, float] | None = None
    eta: tuple[float, float] | None = None
    phi_deg: tuple[float, float] = (0.0, 360.0)
    vertex_sigma_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        check_choice("charge_sign", self.charge_sign, _SIGNS)
        if (self.fraction is None) == (self.count is None):
            raise ConfigError(
                f"give exactly one of fraction and count, got fraction={self.fraction!r} "
                f"count={self.count!r}"
            )
        if self.fraction is not None:
            f = self.fraction
            if not is_number(f) or not 0 < f <= 1:
                raise ConfigError(f"fraction must be a number in (0, 1], got {f!r}")
            object.__setattr__(self, "fraction", float(f))
        else:
            c = self.count
            cap = MAX_PARTICLES_PER_EVENT
            if isinstance(c, bool) or not isinstance(c, int | np.integer) or not 1 <= c <= cap:
                raise ConfigError(f"count must be an integer in [1, {cap}], got {c!r}")
            object.__setattr__(self, "count", int(c))
        if (self.p_GeV is None) == (self.pt_GeV is None):
            raise ConfigError(
                f"give exactly one of p_GeV and pt_GeV, got p_GeV={self.p_GeV!r} "
                f"pt_GeV={self.pt_GeV!r}"
            )
        key = "p_GeV" if self.p_GeV is not None else "pt_GeV"
        mag = check_range(key, getattr(self, key), lo=0.0)
        if mag[0] <= 0:
            raise ConfigError(f"{key} must be positive, got {getattr(self, key)!r}")
        object.__setattr__(self, key, mag)
        if self.dip_deg is not None and self.eta is not None:
            raise ConfigError(
                f"give either dip_deg or eta, not both, got dip_deg={self.dip_deg!r} "
                f"eta={self.eta!r}"
            )
        if self.eta is not None:
            object.__setattr__(self, "eta", check_range("eta", self.eta, lo=-MAX_ETA, hi=MAX_ETA))
        else:
            dip = (-10.0, 10.0) if self.dip_deg is None else self.dip_deg
            dip = check_range("dip_deg", dip, lo=-90.0, hi=90.0)
            if key == "pt_GeV":
                _check_pt_dip("dip_deg", dip)
            object.__setattr__(self, "dip_deg", dip)
        object.__setattr__(self, "phi_deg", check_range("phi_deg", self.phi_deg))
        # the vertex and particle rules of ParticleGun
        pg = ParticleGun(particle=self.particle, vertex_sigma_mm=self.vertex_sigma_mm)
        object.__setattr__(self, "vertex_sigma_mm", pg.vertex_sigma_mm)
        object.__setattr__(self, "_gun", pg)

    @property
    def momentum(self) -> str:
        """``"p"`` or ``"pt"``: which of ``p_GeV``, ``pt_GeV`` is given."""
        return "p" if self.p_GeV is not None else "pt"

    @property
    def mass_GeV(self) -> float:
        """Mass of the particle [GeV/c^2]."""
        return self._gun.mass_GeV

    @property
    def pdg(self) -> int:
        """PDG id of the named particle."""
        return self._gun.pdg

    @property
    def charge(self) -> int:
        """Charge of the named particle [e]."""
        return self._gun.charge

    def to_config(self) -> dict:
        """The ``[[guns]]`` table of this gun (keys that are set)."""
        out: dict = {"particle": self.particle, "charge_sign": self.charge_sign}
        for key in ("fraction", "count"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        for key in ("p_GeV", "pt_GeV", "dip_deg", "eta", "phi_deg", "vertex_sigma_mm"):
            if getattr(self, key) is not None:
                out[key] = list(getattr(self, key))
        return out


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
    momentum : {"p", "pt"}
        What ``p_low_GeV`` and ``p_high_GeV`` give: the momentum magnitude |p| (default)
        or the transverse momentum p_T = sqrt(px^2 + py^2) [GeV/c].
    eta : (float, float) or None
        Range of the pseudorapidity (uniform), eta = -ln tan(theta/2) with theta the polar
        angle to the z axis (PDG, "Kinematics"), within [-15, 15]; when given it replaces
        ``dip_deg`` (which must then keep its default). tan(dip) = sinh(eta).
    charge_sign : {"random", "+", "-"}
        Sign of each particle's charge: drawn at random (probability 1/2 each, default),
        or always positive or always negative (the PDG id follows the charge: "pi+"
        with ``"-"`` shoots pi-).

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
    momentum: str = "p"
    eta: tuple[float, float] | None = None
    charge_sign: str = "random"

    def __post_init__(self) -> None:
        check_choice("momentum", self.momentum, _MOMENTUM_KINDS)
        check_choice("charge_sign", self.charge_sign, _SIGNS)
        if self.eta is not None:
            if tuple(self.dip_deg) != (-10.0, 10.0):
                raise ConfigError(
                    f"give either dip_deg or eta, not both, got dip_deg={list(self.dip_deg)} "
                    f"eta={self.eta!r}"
                )
            object.__setattr__(self, "eta", check_range("eta", self.eta, lo=-MAX_ETA, hi=MAX_ETA))
        object.__setattr__(self, "p_low_GeV", check_range("p_low_GeV", self.p_low_GeV, lo=0.0))
        object.__setattr__(self, "p_high_GeV", check_range("p_high_GeV", self.p_high_GeV, lo=0.0))
        if self.p_low_GeV[0] <= 0 or self.p_high_GeV[0] <= 0:
            raise ConfigError(
                f"momentum ranges must be positive, got p_low_GeV={list(self.p_low_GeV)} "
                f"p_high_GeV={list(self.p_high_GeV)}"
            )
        object.__setattr__(self, "phi_deg", check_range("phi_deg", self.phi_deg))
        object.__setattr__(self, "dip_deg", check_range("dip_deg", self.dip_deg, lo=-90.0, hi=90.0))
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
        if self.momentum == "pt" and self.eta is None:
            _check_pt_dip("dip_deg", self.dip_deg)
        _ = self._properties  # validate the particle name now

    @cached_property
    def _properties(self) -> tuple[float, int, int]:
        if not isinstance(self.particle, str):
            raise ConfigError(f"particle must be a PDG name such as 'pi+', got {self.particle!r}")
        return particle_properties(self.particle)

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
        Charge [e]: the gun particle's |q| with its sign (+-2 for He4).
    pdg : ndarray int32 (n,)
        Signed PDG id: the named particle's where the charge has its sign, the
        antiparticle's (opposite sign) elsewhere.
    momentum : ndarray float64 (n, 3)
        [GeV/c].
    vertex : ndarray float64 (n, 3)
        [mm].
    is_high : ndarray uint8 (n,)
        The lecture recipe: 1 for the event's high-momentum particle; with a threshold
        label: 1 for each particle at or above the threshold.
    labels : ndarray uint8 (n_events,)
        1 when the event holds a high-momentum particle (lecture recipe), or a particle at
        or above the threshold.
    mass_GeV : float or ndarray float64 (n,)
        [GeV/c^2]: one value (one species) or one per particle (several guns).
    """

    event: np.ndarray
    charge: np.ndarray
    pdg: np.ndarray
    momentum: np.ndarray
    vertex: np.ndarray
    is_high: np.ndarray
    labels: np.ndarray
    mass_GeV: float | np.ndarray


def threshold_labels(
    event: np.ndarray, momentum: np.ndarray, n_events: int, threshold: LabelThreshold
) -> tuple[np.ndarray, np.ndarray]:
    """(labels uint8 (n_events,), is_high uint8 (n,)) of a threshold label: ``is_high`` marks
    the particles (``event`` int (n,), ``momentum`` (n, 3) [GeV/c]) at or above it, an
    event is labelled 1 when it holds one."""
    above = threshold.above(momentum[:, 0], momentum[:, 1], momentum[:, 2])
    per_event = np.bincount(event[above], minlength=n_events)
    return (per_event > 0).astype(np.uint8), above.astype(np.uint8)


def shoot(
    gun: ParticleGun,
    n_events: int,
    n_particles: int | Multiplicity,
    high_fraction: float,
    rng: np.random.Generator | int | None = None,
    *,
    threshold: LabelThreshold | None = None,
) -> Primaries:
    """Produce the particles of ``n_events`` events (one species).

    Each event is labelled 1 with probability ``high_fraction``; a labelled event has
    exactly one particle (at a random position among its particles) drawn from
    ``p_high_GeV``, every other particle comes from ``p_low_GeV``. Momentum (|p| or p_T,
    ``gun.momentum``), azimuth and dip (or eta) are uniform in their ranges
    (``min + (max - min) u``: exactly ``min`` for a fixed range ``min == max``).
    With ``threshold``, the labels and ``is_high`` come from the threshold instead (the
    momenta are drawn as above).

    Parameters
    ----------
    gun : ParticleGun
    n_events : int
        >= 0.
    n_particles : int or Multiplicity
        Particles per event (>= 1), fixed or drawn per event.
    high_fraction : float
        In [0, 1].
    rng : numpy.random.Generator, int or None
    threshold : LabelThreshold, optional

    Returns
    -------
    Primaries
    """
    rng = np.random.default_rng(rng)
    mult = Multiplicity.of(n_particles)
    if mult.distribution == "fixed":  # the draws of the lecture files, unchanged
        k = mult.n
        n = n_events * k
        labels = (rng.random(n_events) < high_fraction).astype(np.uint8)
        slot = rng.integers(0, k, size=n_events)
        event = np.repeat(np.arange(n_events, dtype=np.int64), k)
        first = np.arange(n_events, dtype=np.int64) * k
    else:
        counts = mult.draw(n_events, rng)
        n = int(counts.sum())
        labels = (rng.random(n_events) < high_fraction).astype(np.uint8)
        slot = rng.integers(0, counts) if n_events else np.zeros(0, np.int64)
        event = np.repeat(np.arange(n_events, dtype=np.int64), counts)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    is_high = np.zeros(n, dtype=np.uint8)
    is_high[first[labels == 1] + slot[labels == 1]] = 1
    u = rng.random(n)
    lo = np.where(is_high == 1, gun.p_high_GeV[0], gun.p_low_GeV[0])
    hi = np.where(is_high == 1, gun.p_high_GeV[1], gun.p_low_GeV[1])
    p = lo + (hi - lo) * u
    phi = np.deg2rad(rng.uniform(gun.phi_deg[0], gun.phi_deg[1], n))
    if gun.eta is None:
        polar, polar_kind = np.deg2rad(rng.uniform(gun.dip_deg[0], gun.dip_deg[1], n)), "dip"
    else:
        polar, polar_kind = rng.uniform(gun.eta[0], gun.eta[1], n), "eta"
    momentum = _momenta(p, gun.momentum, phi, polar, polar_kind)
    sign = _signs(gun.charge_sign, rng.random(n))
    charge = (sign * abs(gun.charge)).astype(np.int8)
    pdg = np.where(charge == gun.charge, gun.pdg, -gun.pdg).astype(np.int32)
    vertex = rng.standard_normal((n, 3)) * np.asarray(gun.vertex_sigma_mm)[None, :]
    if threshold is not None:
        labels, is_high = threshold_labels(event, momentum, n_events, threshold)
    return Primaries(event, charge, pdg, momentum, vertex, is_high, labels, gun.mass_GeV)


def check_guns(guns) -> tuple[Gun, ...]:
    """Validate a list of guns: at least one, all with a fraction (summing to 1) or all
    with a count. Returns them as a tuple."""
    guns = tuple(guns)
    if not guns or not all(isinstance(g, Gun) for g in guns):
        raise ConfigError(f"guns must be a non-empty list of guns, got {guns!r}")
    with_fraction = [g.fraction is not None for g in guns]
    if any(with_fraction) and not all(with_fraction):
        raise ConfigError(
            "guns: give every gun a fraction or every gun a count, got "
            f"{['fraction' if f else 'count' for f in with_fraction]}"
        )
    if all(with_fraction):
        total = math.fsum(g.fraction for g in guns)
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(
                f"guns: the fractions must sum to 1, got {[g.fraction for g in guns]} "
                f"(sum {total:g})"
            )
    return guns


def shoot_guns(
    guns: tuple[Gun, ...],
    n_events: int,
    n_particles: int | Multiplicity,
    threshold: LabelThreshold,
    rng: np.random.Generator | int | None = None,
) -> Primaries:
    """Produce the particles of ``n_events`` events from several guns.

    With fractions, an event holds N particles (``n_particles``) and each particle comes
    from gun i with probability ``fraction_i`` (independently: the species counts of an
    event are multinomial). With counts, every event holds ``count_i`` particles of gun i
    (``n_particles`` is not used), grouped by gun. Each gun draws its magnitude (|p| or
    p_T), azimuth, dip or eta uniformly in its ranges, its charge sign and its vertex. The
    labels and ``is_high`` come from ``threshold``.

    Parameters
    ----------
    guns : tuple of Gun
    n_events : int
        >= 0.
    n_particles : int or Multiplicity
    threshold : LabelThreshold
    rng : numpy.random.Generator, int or None

    Returns
    -------
    Primaries
        ``mass_GeV`` per particle.
    """
    guns = check_guns(guns)
    rng = np.random.default_rng(rng)
    if guns[0].count is not None:
        per_event = np.array([g.count for g in guns], dtype=np.int64)
        which = np.tile(np.repeat(np.arange(len(guns)), per_event), n_events)
        event = np.repeat(np.arange(n_events, dtype=np.int64), int(per_event.sum()))
    else:
        counts = Multiplicity.of(n_particles).draw(n_events, rng)
        event = np.repeat(np.arange(n_events, dtype=np.int64), counts)
        fractions = np.array([g.fraction for g in guns])
        which = rng.choice(len(guns), size=len(event), p=fractions / fractions.sum())
    n = len(event)
    momentum = np.empty((n, 3))
    vertex = np.empty((n, 3))
    charge = np.empty(n, dtype=np.int8)
    pdg = np.empty(n, dtype=np.int32)
    mass = np.empty(n)
    for i, g in enumerate(guns):
        rows = np.flatnonzero(which == i)
        m = len(rows)
        lo, hi = g.p_GeV if g.p_GeV is not None else g.pt_GeV
        mag = rng.uniform(lo, hi, m)
        phi = np.deg2rad(rng.uniform(g.phi_deg[0], g.phi_deg[1], m))
        if g.eta is None:
            polar, polar_kind = np.deg2rad(rng.uniform(g.dip_deg[0], g.dip_deg[1], m)), "dip"
        else:
            polar, polar_kind = rng.uniform(g.eta[0], g.eta[1], m), "eta"
        momentum[rows] = _momenta(mag, g.momentum, phi, polar, polar_kind)
        q = _signs(g.charge_sign, rng.random(m)) * abs(g.charge)
        charge[rows] = q
        pdg[rows] = np.where(q == g.charge, g.pdg, -g.pdg)
        mass[rows] = g.mass_GeV
        vertex[rows] = rng.standard_normal((m, 3)) * np.asarray(g.vertex_sigma_mm)[None, :]
    labels, is_high = threshold_labels(event, momentum, n_events, threshold)
    return Primaries(event, charge, pdg, momentum, vertex, is_high, labels, mass)
