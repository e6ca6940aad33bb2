"""Adaptive Runge-Kutta-Nystrom propagation through any magnetic field.

:func:`propagate_rk` integrates the equation of motion of charged particles in a static
magnetic field with the path length ``s`` as the independent variable,

.. math::

    \\frac{d\\vec x}{ds} = \\vec t, \\qquad
    \\frac{d\\vec t}{ds} = \\frac{C q}{|\\vec p|}\\, \\vec t \\times \\vec B(\\vec x),

(``C = 0.299792458e-3 GeV/(c T mm)``, ``q`` in units of e), so a positive charge in a field
along +z turns clockwise seen from +z. It uses the fourth-order Runge-Kutta-Nystrom scheme
of the ATLAS and ACTS track extrapolators (Bugge and Myrheim, NIM 179 (1981) 365): three
field evaluations per step, the field at the last stage reused as the first stage of the
next step, the local error estimate ``h^2 |k1 - k2 - k3 + k4|_1`` held below the tolerance
by a per-particle step size. The direction is renormalised after every step, so ``|p|`` is
conserved exactly (a magnetic field does no work).

All particles of a call are stepped together: the Python loop runs over steps, every
operation inside acts on the arrays of the still-active particles, which shrink as
particles stop.

Layer crossings are found as sign changes, over a step, of the signed distance to each
layer not yet hit. Each is located by safeguarded Newton iterations on the quintic Hermite
interpolant of the step (positions, directions and curvatures at both ends, the dense
output of the stepper, accurate to ``O(h^6)``), so the crossing lies on the surface to
``1e-11`` mm and on the integrated trajectory far below the step tolerance. A step is
truncated at the first crossing of a layer with material, where the particle scatters and
a new step starts; crossings of layers without material do not change the trajectory, so
every one inside a step is recorded without restarting the step.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

import spectrocnn.simulate.propagation as _propagation
from spectrocnn.errors import ConfigError
from spectrocnn.simulate.geometry import Detector, on_active_area, surface_normal
from spectrocnn.simulate.material import beta_of, highland_theta0, scatter_directions

if TYPE_CHECKING:
    from spectrocnn.simulate.propagation import Crossings

__all__ = ["propagate_rk"]

log = logging.getLogger(__name__)

#: Particles times layers stepped together (bounds the memory of the (n, L) arrays); the
#: larger the groups, the less Python overhead per step.
_CHUNK_ELEMENTS = 1 << 20
#: A step this short is accepted whatever its error estimate [mm].
_H_MIN_MM = 1e-6
#: Newton iterations on the interpolant stop when the point is this close to the surface [mm].
_SURFACE_TOL_MM = 1e-11
#: Smallest |cos| of the incidence angle used for the material path (grazing crossings).
_MIN_COS_INCIDENCE = 1e-3
#: Upper bound on the number of steps of one call (a guard against non-terminating fields).
_MAX_ITERATIONS = 200_000


def propagate_rk(
    detector: Detector,
    position: np.ndarray,
    momentum: np.ndarray,
    charge: np.ndarray,
    mass: np.ndarray,
    rng: np.random.Generator | int | None,
    *,
    tolerance_mm: float = 1e-4,
    max_path_mm: float | None = None,
    max_step_mm: float | None = None,
) -> Crossings:
    """Propagate particles through the detector's field with an adaptive RKN stepper.

    Parameters
    ----------
    detector : Detector
        Layers, outer boundary and field (any callable ``B(points (n, 3) [mm]) -> (n, 3) [T]``).
    position : ndarray, shape (n, 3), float64
        Start points (production vertices) [mm].
    momentum : ndarray, shape (n, 3), float64
        Initial momenta [GeV/c]; every ``|p|`` must be positive and finite.
    charge : ndarray, shape (n,), float64
        Charges in units of e; a neutral particle (0) leaves no crossings (it ionises
        nothing in the tracking layers) and is not stepped.
    mass : ndarray, shape (n,), float64
        Masses [GeV/c^2] (for the velocity in the multiple-scattering angle).
    rng : numpy.random.Generator, int or None
        Source of the scattering angles (used only at layers with ``thickness_x0 > 0``).
    tolerance_mm : float
        Step-size control: the local error estimate ``h^2 |k1 - k2 - k3 + k4|_1`` of every
        accepted step is at most this [mm]. With the default, a uniform map reproduces the
        analytic helix to far better than 1 micrometre over the detector.
    max_path_mm : float, optional
        A particle stops after this path length [mm]; default
        ``4 pi r_max + 2 z_max`` of the detector's outer boundary.
    max_step_mm : float, optional
        Upper bound of the step length [mm]; default a quarter of the smaller of the outer
        boundary's radius and half length. A surface touched twice within one step (a
        graze shallower than about ``h^2 / (8 R)``) is not seen, so this also bounds the
        depth of a graze that can be missed.

    Returns
    -------
    Crossings
        Every particle's crossings of the layers' active areas, at most one per layer (its
        first), ordered by particle then path length; positions on the surfaces [mm] and
        momenta arriving at the layers, before scattering in them [GeV/c].

    Raises
    ------
    ConfigError
        For inconsistent shapes, non-finite inputs, a zero momentum or a non-positive
        tolerance.

    Notes
    -----
    A particle stops when it leaves the outer boundary (``rho > r_max_mm`` or
    ``|z| > z_max_mm``), when the accumulated turning angle of its transverse direction
    exceeds pi (half a turn, loop protection), or beyond ``max_path_mm``; crossings past
    the turning or path limit inside the last step are dropped. At a crossing of a layer
    with ``thickness_x0 > 0`` the direction is deflected by two Gaussian angles of RMS
    given by the Highland formula for ``x/X0 = thickness_x0 / |t . n|``
    (``|t . n|`` floored at 1e-3 for grazing crossings).

    Particles are processed in fixed-size groups in input order, so the result is a
    deterministic function of the inputs and the state of ``rng``.
    """
    position = np.asarray(position, dtype=np.float64)
    momentum = np.asarray(momentum, dtype=np.float64)
    n = position.shape[0] if position.ndim == 2 else -1
    if position.shape != (n, 3) or momentum.shape != (n, 3):
        raise ConfigError(
            f"position and momentum must have shape (n, 3), got {position.shape} and "
            f"{momentum.shape}"
        )
    charge = np.broadcast_to(np.asarray(charge, dtype=np.float64), (n,))
    mass = np.broadcast_to(np.asarray(mass, dtype=np.float64), (n,))
    for name, arr in (("position", position), ("momentum", momentum), ("charge", charge)):
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"{name} must be finite, got NaN or inf")
    if not np.all(np.isfinite(mass)) or np.any(mass < 0):
        raise ConfigError("mass must be finite and >= 0")
    pmag = np.sqrt(np.einsum("ij,ij->i", momentum, momentum))
    if np.any(pmag <= 0):
        raise ConfigError(
            f"momentum must be non-zero, got |p| = 0 for particle {int(np.argmin(pmag))}"
        )
    tol = float(tolerance_mm)
    if not math.isfinite(tol) or tol <= 0:
        raise ConfigError(f"tolerance_mm must be positive, got {tolerance_mm!r}")
    r_max, z_max = detector.r_max_mm, detector.z_max_mm
    if max_path_mm is None:
        max_path = 4.0 * math.pi * r_max + 2.0 * z_max
    else:
        max_path = float(max_path_mm)
        if not max_path > 0:
            raise ConfigError(f"max_path_mm must be positive, got {max_path_mm!r}")
    if max_step_mm is None:
        h_max = 0.25 * min(r_max, z_max)
    else:
        h_max = float(max_step_mm)
        if not (math.isfinite(h_max) and h_max > 0):
            raise ConfigError(f"max_step_mm must be positive, got {max_step_mm!r}")
    rng = np.random.default_rng(rng)

    run = _Run(detector, tol, max_path, h_max, rng)
    chunk = max(1024, _CHUNK_ELEMENTS // detector.n_layers)
    charged = np.flatnonzero(charge != 0)  # a neutral particle leaves no crossings
    for start in range(0, len(charged), chunk):
        rows = charged[start : start + chunk]
        run.chunk(
            rows,
            position[rows],
            momentum[rows] / pmag[rows, None],
            pmag[rows],
            charge[rows],
            mass[rows],
        )
    log.debug(
        "propagate_rk: %d particles, %d crossings, %d steps (%d rejected)",
        n,
        sum(len(a) for a in run.out_particle),
        run.n_steps,
        run.n_rejected,
    )
    return _propagation.Crossings.collect(
        run.out_particle, run.out_layer, run.out_position, run.out_momentum, run.out_path
    )


# ----------------------------------------------------------------------------- helpers
def _cross(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``scale * (a x b)`` for vectors stored as rows, shape (3, n)."""
    out = np.empty_like(a)
    np.multiply(a[1], b[2], out=out[0])
    out[0] -= a[2] * b[1]
    np.multiply(a[2], b[0], out=out[1])
    out[1] -= a[0] * b[2]
    np.multiply(a[0], b[1], out=out[2])
    out[2] -= a[1] * b[0]
    out *= scale
    return out


def _hermite_coefficients(
    x0: np.ndarray, v0: np.ndarray, a0: np.ndarray, x1: np.ndarray, v1: np.ndarray, a1: np.ndarray
) -> np.ndarray:
    """Power-series coefficients of the quintic Hermite interpolant on ``theta in [0, 1]``.

    Parameters
    ----------
    x0, x1 : ndarray, shape (3, m)
        Positions at ``theta = 0`` and ``1``.
    v0, v1 : ndarray, shape (3, m)
        First derivatives with respect to ``theta``.
    a0, a1 : ndarray, shape (3, m)
        Second derivatives with respect to ``theta``.

    Returns
    -------
    ndarray, shape (6, 3, m)
        ``c`` with ``p(theta) = sum_k c[k] theta^k``.
    """
    c = np.empty((6, *x0.shape))
    d = x1 - x0
    c[0] = x0
    c[1] = v0
    np.multiply(a0, 0.5, out=c[2])
    c[3] = 10.0 * d - 6.0 * v0 - 4.0 * v1 - 1.5 * a0 + 0.5 * a1
    c[4] = -15.0 * d + 8.0 * v0 + 7.0 * v1 + 1.5 * a0 - a1
    c[5] = 6.0 * d - 3.0 * v0 - 3.0 * v1 - 0.5 * a0 + 0.5 * a1
    return c


def _poly_eval(c: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value and derivative at ``theta`` (m,) of polynomials ``c`` (6, ..., m) (Horner)."""
    p = ((((c[5] * theta + c[4]) * theta + c[3]) * theta + c[2]) * theta + c[1]) * theta + c[0]
    dp = (((5.0 * c[5] * theta + 4.0 * c[4]) * theta + 3.0 * c[3]) * theta + 2.0 * c[2]) * theta
    dp += c[1]
    return p, dp


class _Layers:
    """Layer parameters in the shapes the stepper needs (built once per call)."""

    def __init__(self, detector: Detector) -> None:
        is_cyl, radius, _, center, normal, *_ = detector.arrays
        self.n = detector.n_layers
        self.is_cyl = np.asarray(is_cyl, dtype=bool)
        self.radius = np.asarray(radius, dtype=np.float64)
        self.normal = np.asarray(normal, dtype=np.float64)
        self.offset = np.einsum("ij,ij->i", center, normal)
        self.all_cyl = bool(self.is_cyl.all())
        self.cyl = np.flatnonzero(self.is_cyl)
        self.pln = np.flatnonzero(~self.is_cyl)
        self.thickness = np.array([layer.thickness_x0 for layer in detector.layers])

    def distances(self, x: np.ndarray) -> np.ndarray:
        """Signed distances (n, L) [mm] of points ``x`` (3, n) from every layer surface.

        The same as :func:`~spectrocnn.simulate.geometry.surface_distance`.
        """
        if self.all_cyl:
            return np.subtract.outer(np.hypot(x[0], x[1]), self.radius)
        out = np.empty((x.shape[1], self.n))
        if self.cyl.size:
            out[:, self.cyl] = np.subtract.outer(np.hypot(x[0], x[1]), self.radius[self.cyl])
        nrm = self.normal[self.pln]
        out[:, self.pln] = x.T @ nrm.T - self.offset[self.pln]
        return out

    def locate(
        self,
        layer: np.ndarray,
        coef: np.ndarray,
        g0: np.ndarray,
        g1: np.ndarray,
        h: np.ndarray,
    ) -> np.ndarray:
        """Parameter ``theta in [0, 1]`` where the interpolant crosses each pair's surface.

        Parameters
        ----------
        layer : ndarray of int, shape (m,)
            The crossed layer of each pair.
        coef : ndarray, shape (6, 3, m)
            Interpolant coefficients (:func:`_hermite_coefficients`).
        g0, g1 : ndarray, shape (m,)
            Signed distances at the step's ends [mm], of opposite signs.
        h : ndarray, shape (m,)
            Step lengths [mm].

        Returns
        -------
        ndarray, shape (m,)
        """
        cyl = self.is_cyl[layer]
        if cyl.all():
            return _newton(_CylinderPoly(coef, self.radius[layer]), g0, g1, h)
        theta = np.empty_like(g0)
        pc, pp = np.flatnonzero(cyl), np.flatnonzero(~cyl)
        if pc.size:
            poly = _CylinderPoly(coef[:, :, pc], self.radius[layer[pc]])
            theta[pc] = _newton(poly, g0[pc], g1[pc], h[pc])
        nrm = self.normal[layer[pp]].T
        scalar = np.einsum("jm,kjm->km", nrm, coef[:, :, pp])
        scalar[0] -= self.offset[layer[pp]]
        theta[pp] = _newton(_PlanePoly(scalar), g0[pp], g1[pp], h[pp])
        return theta


class _CylinderPoly:
    """``g(theta) = |p_xy(theta)| - r`` and its derivative for pairs crossing cylinders."""

    def __init__(self, coef: np.ndarray, radius: np.ndarray) -> None:
        self.c = coef[:, :2]  # (6, 2, m)
        self.radius = radius

    def __call__(self, theta: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, ...]:
        c = self.c if rows is None else self.c[:, :, rows]
        r = self.radius if rows is None else self.radius[rows]
        p, dp = _poly_eval(c, theta)
        rho = np.hypot(p[0], p[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            return rho - r, (p[0] * dp[0] + p[1] * dp[1]) / rho

    def end_slopes(self) -> tuple[np.ndarray, np.ndarray]:
        """``g'(0)`` and ``g'(1)``."""
        c = self.c
        p1 = c.sum(axis=0)
        dp1 = c[1] + 2.0 * c[2] + 3.0 * c[3] + 4.0 * c[4] + 5.0 * c[5]
        with np.errstate(divide="ignore", invalid="ignore"):
            s0 = (c[0, 0] * c[1, 0] + c[0, 1] * c[1, 1]) / np.hypot(c[0, 0], c[0, 1])
            s1 = (p1[0] * dp1[0] + p1[1] * dp1[1]) / np.hypot(p1[0], p1[1])
        return s0, s1


class _PlanePoly:
    """``g(theta) = n . p(theta) - c`` (a scalar quintic) and its derivative."""

    def __init__(self, scalar: np.ndarray) -> None:
        self.c = scalar  # (6, m)

    def __call__(self, theta: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, ...]:
        return _poly_eval(self.c if rows is None else self.c[:, rows], theta)

    def end_slopes(self) -> tuple[np.ndarray, np.ndarray]:
        """``g'(0)`` and ``g'(1)``."""
        c = self.c
        return c[1], c[1] + 2.0 * c[2] + 3.0 * c[3] + 4.0 * c[4] + 5.0 * c[5]


def _newton(
    poly: _CylinderPoly | _PlanePoly, g0: np.ndarray, g1: np.ndarray, h: np.ndarray
) -> np.ndarray:
    """Safeguarded Newton iterations for a root of ``poly`` in ``[0, 1]``.

    Parameters
    ----------
    poly : _CylinderPoly or _PlanePoly
        ``g(theta)`` and ``g'(theta)`` of the pairs.
    g0, g1 : ndarray, shape (m,)
        ``g(0)`` and ``g(1)`` [mm], of opposite signs.
    h : ndarray, shape (m,)
        Step lengths [mm] (for the bracket-length criterion).

    Returns
    -------
    ndarray, shape (m,)
        The root of each pair.

    Notes
    -----
    Starts from the root of the cubic through ``g`` and ``g'`` at both ends (or, failing
    that, of the straight line through ``g0, g1``); a Newton step that leaves the current
    bracket is replaced by bisection. Stops when ``|g| <= _SURFACE_TOL_MM`` or the
    bracket is shorter than 1e-14 mm.
    """
    lo = np.zeros_like(g0)
    hi = np.ones_like(g0)
    neg_lo = g0 <= 0  # the sign of g at lo
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = g0 / (g0 - g1)
    theta = np.where((theta > 0) & (theta < 1), theta, 0.5)
    # Refine on the cubic through g and g' at both ends (cheap, no interpolant needed).
    gd0, gd1 = poly.end_slopes()
    c1, c2 = gd0, 3.0 * (g1 - g0) - 2.0 * gd0 - gd1
    c3 = 2.0 * (g0 - g1) + gd0 + gd1
    guess = theta
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(3):
            guess = guess - (((c3 * guess + c2) * guess + c1) * guess + g0) / (
                (3.0 * c3 * guess + 2.0 * c2) * guess + c1
            )
    theta = np.where((guess > 0) & (guess < 1), guess, theta)
    rows: np.ndarray | None = None  # None: all pairs still iterate
    n_todo = len(g0)
    for _ in range(200):
        th = theta if rows is None else theta[rows]
        g, gp = poly(th, rows)
        sl = slice(None) if rows is None else rows
        lo_, hi_ = lo[sl], hi[sl]
        done = (np.abs(g) <= _SURFACE_TOL_MM) | ((hi_ - lo_) * h[sl] < 1e-14)
        same = (g <= 0) == neg_lo[sl]
        lo_ = np.where(same, th, lo_)
        hi_ = np.where(same, hi_, th)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = th - g / gp
        bad = ~((new > lo_) & (new < hi_))
        new = np.where(bad, 0.5 * (lo_ + hi_), new)
        new = np.where(done, th, new)
        if rows is None:
            lo, hi, theta = lo_, hi_, new
        else:
            lo[rows], hi[rows], theta[rows] = lo_, hi_, new
        n_done = int(np.count_nonzero(done))
        if n_done == len(th):
            break
        if n_done:
            # Keep iterating only the unconverged pairs once enough have converged.
            if rows is None and 4 * n_done >= n_todo:
                rows = np.flatnonzero(~done)
            elif rows is not None:
                rows = rows[~done]
    return theta


class _Run:
    """One call of :func:`propagate_rk`: settings and the collected crossings."""

    def __init__(
        self,
        detector: Detector,
        tol: float,
        max_path: float,
        h_max: float,
        rng: np.random.Generator,
    ) -> None:
        self.detector = detector
        self.field = detector.field
        self.layers = _Layers(detector)
        self.tol = tol
        self.max_path = max_path
        self.h_max = h_max
        self.r_max = detector.r_max_mm
        self.z_max = detector.z_max_mm
        self.rng = rng
        self.out_particle: list[np.ndarray] = []
        self.out_layer: list[np.ndarray] = []
        self.out_position: list[np.ndarray] = []
        self.out_momentum: list[np.ndarray] = []
        self.out_path: list[np.ndarray] = []
        self.n_steps = 0
        self.n_rejected = 0

    def field_at(self, x: np.ndarray) -> np.ndarray:
        """Field (3, n) [T] at points (3, n) [mm]."""
        b = np.asarray(self.field(x.T), dtype=np.float64)
        if b.shape != (x.shape[1], 3):
            raise ConfigError(
                f"the field returned shape {b.shape} for points of shape {(x.shape[1], 3)}"
            )
        return np.array(b.T, order="C")  # always a copy: the stepper writes into it

    def chunk(
        self,
        index: np.ndarray,
        position: np.ndarray,
        direction: np.ndarray,
        pmag: np.ndarray,
        charge: np.ndarray,
        mass: np.ndarray,
    ) -> None:
        """Propagate one group of particles to the end; append its crossings.

        Parameters
        ----------
        index : ndarray of int, shape (k,)
            The particles' indices in the call's input (recorded with the crossings).
        position : ndarray, shape (k, 3)
            Start points [mm].
        direction : ndarray, shape (k, 3)
            Unit initial directions.
        pmag, charge, mass : ndarray, shape (k,)
            ``|p|`` [GeV/c], charge [e] and mass [GeV/c^2].
        """
        tol, h_max, layers = self.tol, self.h_max, self.layers
        idx = np.asarray(index, dtype=np.int64)
        x = np.ascontiguousarray(position.T)
        t = np.ascontiguousarray(direction.T)
        lam = _propagation.C_GEV_PER_T_MM * charge / pmag  # [1/(T mm)]
        pmag = np.array(pmag)
        charge = np.array(charge)
        mass = np.array(mass)
        b = self.field_at(x)
        a = _cross(t, b, lam)  # d t / ds
        d = layers.distances(x)
        hit = np.zeros(d.shape, dtype=bool)
        s = np.zeros(len(idx))
        phi = np.zeros(len(idx))
        # First step from the curvature: the error estimate is about 0.25 h^4 kappa^3.
        kappa = np.sqrt(np.einsum("ij,ij->j", a, a))
        with np.errstate(divide="ignore"):
            h = np.where(kappa > 0, (2.0 * tol / np.maximum(kappa, 1e-300) ** 3) ** 0.25, h_max)
        h = np.clip(h, _H_MIN_MM, h_max)
        inside = (np.hypot(x[0], x[1]) <= self.r_max) & (np.abs(x[2]) <= self.z_max)
        if not inside.all():
            keep = np.flatnonzero(inside)
            idx, x, t, a, b, d, hit, s, phi, h = _take(keep, idx, x, t, a, b, d, hit, s, phi, h)
            lam, pmag, charge, mass = lam[keep], pmag[keep], charge[keep], mass[keep]

        iterations = 0
        while idx.size:
            iterations += 1
            if iterations > _MAX_ITERATIONS:
                log.warning(
                    "propagate_rk: %d particles still active after %d steps; stopped",
                    idx.size,
                    _MAX_ITERATIONS,
                )
                break
            # ---- one Runge-Kutta-Nystrom step of length h for every active particle
            hh = 0.5 * h
            h2 = h * h
            k1 = a
            x2 = x + hh * t + (0.125 * h2) * k1
            b2 = self.field_at(x2)
            k2 = _cross(t + hh * k1, b2, lam)
            k3 = _cross(t + hh * k2, b2, lam)
            x4 = x + h * t + (0.5 * h2) * k3
            b3 = self.field_at(x4)
            k4 = _cross(t + h * k3, b3, lam)
            err = h2 * np.abs(k1 - k2 - k3 + k4).sum(axis=0)
            accept = (err <= tol) | (h <= _H_MIN_MM)
            with np.errstate(divide="ignore"):
                scale = np.clip((tol / (2.0 * np.maximum(err, 1e-300))) ** 0.25, 0.25, 4.0)
            h_next = np.clip(h * scale, _H_MIN_MM, h_max)
            x1 = x + h * t + (h2 / 6.0) * (k1 + k2 + k3)
            t1 = t + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
            t1 /= np.sqrt(np.einsum("ij,ij->j", t1, t1))
            self.n_steps += idx.size
            if not accept.all():
                rejected = ~accept
                self.n_rejected += int(rejected.sum())
                x1[:, rejected] = x[:, rejected]
                t1[:, rejected] = t[:, rejected]
                b3[:, rejected] = b[:, rejected]
                h_step = np.where(accept, h, 0.0)
            else:
                h_step = h
            a1 = _cross(t1, b3, lam)
            dphi = np.arctan2(t[0] * t1[1] - t[1] * t1[0], t[0] * t1[0] + t[1] * t1[1])
            phi1 = phi + dphi
            s1 = s + h_step
            d1 = layers.distances(x1)
            crossed = (d > 0) != (d1 > 0)
            crossed &= ~hit
            stopped = (
                (np.hypot(x1[0], x1[1]) > self.r_max)
                | (np.abs(x1[2]) > self.z_max)
                | (np.abs(phi1) > math.pi)
                | (s1 > self.max_path)
                | ~np.isfinite(x1).all(axis=0)
            )
            trunc = None
            if crossed.any():
                trunc = self._crossings(
                    crossed, idx, x, t, a, x1, t1, a1, d, d1, h_step, s, phi, dphi, hit,
                    pmag, charge, mass,
                )  # fmt: skip
            x, t, a, b, d, s, phi, h = x1, t1, a1, b3, d1, s1, phi1, h_next
            if trunc is not None:
                j, xj, tj, sj, phij = trunc
                bj = self.field_at(xj)
                x[:, j], t[:, j], b[:, j] = xj, tj, bj
                a[:, j] = _cross(tj, bj, lam[j])
                d[j] = layers.distances(xj)
                s[j], phi[j] = sj, phij
                stopped[j] = False
            if stopped.any():
                keep = np.flatnonzero(~stopped)
                idx, x, t, a, b, d, hit, s, phi, h = _take(keep, idx, x, t, a, b, d, hit, s, phi, h)
                lam, pmag, charge, mass = lam[keep], pmag[keep], charge[keep], mass[keep]

    def _crossings(
        self,
        crossed: np.ndarray,
        idx: np.ndarray,
        x: np.ndarray,
        t: np.ndarray,
        a: np.ndarray,
        x1: np.ndarray,
        t1: np.ndarray,
        a1: np.ndarray,
        d: np.ndarray,
        d1: np.ndarray,
        h: np.ndarray,
        s: np.ndarray,
        phi: np.ndarray,
        dphi: np.ndarray,
        hit: np.ndarray,
        pmag: np.ndarray,
        charge: np.ndarray,
        mass: np.ndarray,
    ) -> tuple[np.ndarray, ...] | None:
        """Locate, record and (with material) scatter at the crossings found in a step.

        ``crossed`` (n, L) marks the layers whose signed distance changed sign over the
        step; the other arguments are the state at the step's start (``x, t, a, d, s,
        phi``; vectors (3, n)) and end (``x1, t1, a1, d1``), the step lengths ``h``, the
        turning ``dphi`` over the step and the particles' constants. Marks recorded
        layers in ``hit``.

        Returns
        -------
        tuple or None
            ``None`` when no step is truncated; else, for the particles whose step ends at
            a crossing of a layer with material, ``(rows (k,), position (3, k), scattered
            direction (3, k), path (k,), turning (k,))``.
        """
        layers = self.layers
        pi, li = np.nonzero(crossed)
        hp = h[pi]
        hp2 = hp * hp
        coef = _hermite_coefficients(
            x[:, pi], t[:, pi] * hp, a[:, pi] * hp2, x1[:, pi], t1[:, pi] * hp, a1[:, pi] * hp2
        )
        theta = layers.locate(li, coef, d[pi, li], d1[pi, li], hp)
        pos, dpos = _poly_eval(coef, theta)
        direction = dpos / np.sqrt(np.einsum("ij,ij->j", dpos, dpos))
        path = s[pi] + theta * hp
        turn = phi[pi] + theta * dphi[pi]
        ok = (np.abs(turn) <= math.pi) & (path <= self.max_path)
        ok &= on_active_area(self.detector, pos.T, li)
        material = ok & (layers.thickness[li] > 0)
        trunc = None
        if material.any():
            first = np.full(len(idx), np.inf)
            np.minimum.at(first, pi[material], theta[material])
            ok &= theta <= first[pi]
            rows, m = np.unique(pi[material & (theta == first[pi])], return_index=True)
            m = np.flatnonzero(material & (theta == first[pi]))[m]
            tm = direction[:, m]
            cos = np.abs(
                np.einsum("ij,ji->j", tm, surface_normal(self.detector, pos[:, m].T, li[m]))
            )
            x_over_x0 = layers.thickness[li[m]] / np.maximum(cos, _MIN_COS_INCIDENCE)
            p, q = pmag[rows], charge[rows]
            theta0 = highland_theta0(p, beta_of(p, mass[rows]), q, x_over_x0)
            scattered = scatter_directions(tm.T, theta0, self.rng).T
            trunc = (rows, pos[:, m], np.ascontiguousarray(scattered), path[m], turn[m])
        if ok.any():
            pk, lk = pi[ok], li[ok]
            hit[pk, lk] = True
            self.out_particle.append(idx[pk])
            self.out_layer.append(lk)
            self.out_position.append(pos[:, ok].T)
            self.out_momentum.append((direction[:, ok] * pmag[pk]).T)
            self.out_path.append(path[ok])
        return trunc


def _take(keep: np.ndarray, *state: np.ndarray) -> tuple[np.ndarray, ...]:
    """The particles ``keep`` of the state ``idx, x, t, a, b, d, hit, s, phi, h``."""
    idx, x, t, a, b, d, hit, s, phi, h = state
    return (
        idx[keep],
        x[:, keep],
        t[:, keep],
        a[:, keep],
        b[:, keep],
        d[keep],
        hit[keep],
        s[keep],
        phi[keep],
        h[keep],
    )
