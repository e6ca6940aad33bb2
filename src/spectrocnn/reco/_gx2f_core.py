"""The machinery of the global chi-square fit (:mod:`spectrocnn.reco.gx2f`, whose docstring
gives the method): start values from the hits, the predictions (the propagation from the
reference surface), the Jacobians by central differences and the Gauss-Newton iterations.
All of it acts on many tracks at once.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spectrocnn.simulate import C_GEV_PER_T_MM, Detector, propagate

if TYPE_CHECKING:
    from spectrocnn.reco.gx2f import ReferenceSurface

__all__ = [
    "FD_QOP_ABSOLUTE",
    "FD_QOP_RELATIVE",
    "FD_STEPS",
    "MIN_MEASUREMENTS",
    "Model",
    "gauss_newton",
    "start_values",
]

log = logging.getLogger("spectrocnn.reco.gx2f")

#: Finite-difference steps of the five parameters: two positions [mm], two slopes or angles
#: [1 or rad]; the q/p step is ``FD_QOP_RELATIVE |q/p| + FD_QOP_ABSOLUTE`` [c/GeV].
FD_STEPS = (1e-2, 1e-2, 1e-4, 1e-4)
FD_QOP_RELATIVE = 1e-3
FD_QOP_ABSOLUTE = 1e-5
#: Fewest measured coordinates for five parameters (three 2-D hits give six).
MIN_MEASUREMENTS = 5
#: A step is accepted unless chi2 rises by more than this (the propagation's noise near the
#: minimum is far smaller than 1 in chi2, and far larger than nothing).
_CHI2_SLACK = 1e-2
#: Largest |q/p| of a start value [c/GeV] (|p| >= 10 MeV/c per unit charge).
_QOP_MAX = 100.0
#: |q/p| below this is propagated as this (|p| = 10^9 GeV/c: straight to rounding).
_QOP_FLOOR = 1e-9


# ----------------------------------------------------------------------------- start values
def start_values(fdet, ref, meas, q_abs) -> tuple[np.ndarray, np.ndarray]:
    """Start parameters (n, 5) and senses (n,) of int8 from the hits alone."""
    pts, off = meas["points"], meas["offsets"]
    if ref.kind == "perigee":
        return _start_perigee(fdet.field, pts, off), np.ones(len(off) - 1, dtype=np.int8)
    starts = [_start_plane(fdet.field, ref, pts[a:b]) for a, b in itertools.pairwise(off)]
    params = np.array([s[0] for s in starts]).reshape(-1, 5)
    params[:, 4] = np.clip(params[:, 4], -_QOP_MAX * q_abs, _QOP_MAX * q_abs)
    return params, np.array([s[1] for s in starts], dtype=np.int8)


def _start_perigee(field, pts: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Perigee start values: a circle fit in x-y (Karimaki,
    :func:`~spectrocnn.reco.circlefit.fit_circles`, oriented away from the z axis) and a
    straight line ``z = z0 + s cot(theta)`` in the transverse arc length ``s``."""
    from spectrocnn.reco.circlefit import fit_circles

    starts, counts = off[:-1], np.diff(off)
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    mean = lambda a: np.add.reduceat(a, starts) / counts  # noqa: E731
    circle = fit_circles(x, y, off, 1.0, direction=np.stack([mean(x), mean(y)], axis=1))
    rho, phi, dk = circle.rho, circle.phi, circle.d
    # Karimaki's closest point is d (sin phi, -cos phi); ACTS's is d0 (-sin phi, cos phi)
    track = np.repeat(np.arange(len(counts)), counts)
    chord = np.hypot(x - (dk * np.sin(phi))[track], y + (dk * np.cos(phi))[track])
    half = np.abs(rho[track]) * chord / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(half > 1e-9, 2 * np.arcsin(np.minimum(half, 1.0)) / np.abs(rho[track]), chord)
    ms, mz = mean(s), mean(z)
    var = mean(s * s) - ms * ms
    cot = np.where(var > 0, (mean(s * z) - ms * mz) / np.where(var > 0, var, 1.0), 0.0)
    theta = np.arctan2(1.0, cot)
    bz = mean(field(pts)[:, 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        qop = np.where(np.abs(bz) > 1e-9, rho / (C_GEV_PER_T_MM * bz) * np.sin(theta), 0.0)
    qop = np.where(np.isfinite(qop) & (qop != 0), qop, 1e-4)
    return np.stack([-dk, mz - ms * cot, phi, theta, np.clip(qop, -_QOP_MAX, _QOP_MAX)], axis=1)


def _start_plane(field, ref: ReferenceSurface, pts: np.ndarray) -> tuple[np.ndarray, int]:
    """Plane start values of one track: the principal line of its hits, a parabola of the
    deviations from it, ``d^2 x / ds^2 = C (q/p) t x B`` with B averaged along the line
    (docs/design.md 4), and the tangent at the first hit carried straight to the plane."""
    c = pts.mean(axis=0)
    d = np.linalg.svd(pts - c)[2][0]
    c_ref, w = np.asarray(ref.center_mm), np.asarray(ref.normal)
    if np.dot(d, c - c_ref) < 0:
        d = -d
    s = (pts - c) @ d
    dev = pts - c - s[:, None] * d
    design = np.stack([np.ones_like(s), s, 0.5 * s * s], axis=1)
    a, b, kappa = np.linalg.lstsq(design, dev, rcond=None)[0]
    line = c + np.linspace(s.min(), s.max(), 33)[:, None] * d
    dxb = np.cross(d, np.asarray(field(line)).mean(axis=0))
    den = C_GEV_PER_T_MM * float(dxb @ dxb)
    qop = float(kappa @ dxb) / den if den > 1e-30 else 0.0
    qop = qop if np.isfinite(qop) and qop != 0 else 1e-4
    s0 = s.min()
    p0 = c + s0 * d + a + b * s0 + 0.5 * kappa * s0 * s0
    t0 = d + b + kappa * s0
    tw = float(t0 @ w)
    if abs(tw) < 1e-9 * np.linalg.norm(t0):  # along the plane: no start on it
        return np.full(5, np.nan), 1
    r = p0 + (float((c_ref - p0) @ w) / tw) * t0 - c_ref
    u, v = np.asarray(ref.u), np.asarray(ref.v)
    return np.array([r @ u, r @ v, (t0 @ u) / tw, (t0 @ v) / tw, qop]), int(np.sign(tw))


# ----------------------------------------------------------------------------- the fit
@dataclass(frozen=True)
class Model:
    """Predicted hits of track parameters: the propagation from the reference surface.

    Attributes
    ----------
    detector : Detector
        The fit's layers (no material, enlarged active areas) and field.
    ref : ReferenceSurface
    ref_col : int or None
        The layer that is the reference plane, whose prediction is the start point.
    sense : ndarray int8 (n,)
        +1 / -1: each track moves along / against the reference plane's normal.
    abs_charge : ndarray (n,)
        |q| of each track [e].
    tolerance_mm : float
        The stepper's tolerance.
    start : ndarray (n, 5)
        Start values (estimated from the hits, or the caller's ``initial``).
    """

    detector: Detector
    ref: ReferenceSurface
    ref_col: int | None
    sense: np.ndarray
    abs_charge: np.ndarray
    tolerance_mm: float
    start: np.ndarray

    def predict(self, params: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Crossing points (k, L, 3) [mm] of parameters (k, 5) of tracks ``rows`` (k,);
        NaN where a layer is not crossed."""
        pos, d = self.ref.position_direction(params, self.sense[rows])
        qop = params[:, 4]
        qop = np.where(np.abs(qop) < _QOP_FLOOR, np.copysign(_QOP_FLOOR, qop), qop)
        q = self.abs_charge[rows]
        cr = propagate(
            self.detector,
            pos,
            d * (q / np.abs(qop))[:, None],
            np.sign(qop) * q,
            np.zeros(len(rows)),
            rng=0,
            tolerance_mm=self.tolerance_mm,
        )
        out = np.full((len(rows), self.detector.n_layers, 3), np.nan)
        out[cr.particle, cr.layer] = cr.position
        if self.ref_col is not None:
            out[:, self.ref_col] = pos
        return out

    def residuals(self, hits: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Measured minus predicted coordinates (..., L, 2) [mm]: ``u, v`` on a plane, the
        arc ``r phi`` and ``z`` on a cylinder."""
        is_cyl, radius, _, _, _, u, v, *_ = self.detector.arrays
        diff = hits - pred
        plane = np.stack([np.sum(diff * u, axis=-1), np.sum(diff * v, axis=-1)], axis=-1)
        dphi = np.arctan2(hits[..., 1], hits[..., 0]) - np.arctan2(pred[..., 1], pred[..., 0])
        dphi = (dphi + np.pi) % (2 * np.pi) - np.pi
        cyl = np.stack([radius * dphi, diff[..., 2]], axis=-1)
        return np.where(is_cyl[:, None], cyl, plane)


def _evaluate(model: Model, hits, weight, theta, rows):
    """Residuals r (k, M), their Jacobian dr/dtheta (k, M, 5) by central differences, and
    whether every measured layer was reached (k,), for the parameters ``theta[rows]``."""
    k, th = len(rows), theta[rows]
    h = np.empty((k, 5))
    h[:, :4] = FD_STEPS
    h[:, 4] = FD_QOP_RELATIVE * np.abs(th[:, 4]) + FD_QOP_ABSOLUTE
    var = np.repeat(th[:, None, :], 11, axis=1)
    i = np.arange(5)
    var[:, 1 + i, i] += h
    var[:, 6 + i, i] -= h
    finite = np.all(np.isfinite(th), axis=1)
    pred = np.full((k, 11, model.detector.n_layers, 3), np.nan)
    if finite.any():
        sub = rows[finite]
        p = model.predict(var[finite].reshape(-1, 5), np.repeat(sub, 11))
        pred[finite] = p.reshape(len(sub), 11, -1, 3)
    r = model.residuals(hits[rows][:, None], pred)
    measured = np.broadcast_to(weight[rows][:, None] > 0, r.shape)
    ok = np.all(np.isfinite(r) | ~measured, axis=(1, 2, 3))
    r = np.where(measured & np.isfinite(r), r, 0.0)
    jac = (r[:, 1:6] - r[:, 6:11]) / (2.0 * h[:, :, None, None])
    return r[:, 0].reshape(k, -1), jac.reshape(k, 5, -1).transpose(0, 2, 1), ok


def _solve(jac, w, r):
    """Covariance ``(J^T W J)^-1`` (k, 5, 5) and Gauss-Newton step (k, 5) for residuals
    r = m - f (so ``J = dr/dtheta = -df/dtheta``); NaN where ``J^T W J`` is singular
    (its correlation matrix's smallest eigenvalue below 1e-12)."""
    info = np.einsum("kmi,km,kmj->kij", jac, w, jac)
    diag = np.sqrt(np.einsum("kii->ki", info))
    good = np.all(np.isfinite(diag) & (diag > 0), axis=1)
    corr = info / np.where(good[:, None, None], diag[:, :, None] * diag[:, None, :], 1.0)
    good &= np.linalg.eigvalsh(np.where(good[:, None, None], corr, np.eye(5)))[:, 0] > 1e-12
    cov = np.full_like(info, np.nan)
    cov[good] = np.linalg.inv(info[good])
    step = -np.einsum("kij,kmj,km,km->ki", cov, jac, w, r)
    return cov, step


def gauss_newton(model, hits, weight, start, max_iterations, step_tolerance) -> dict:
    """Gauss-Newton iterations with step halving, all tracks together (see fit_tracks)."""
    max_iterations, step_tolerance = int(max_iterations), float(step_tolerance)
    n = len(start)
    theta, trial = start.copy(), start.copy()
    chi2, frac = np.full(n, np.inf), np.ones(n)
    cov, delta = np.full((n, 5, 5), np.nan), np.zeros((n, 5))
    iters, conv, active = np.zeros(n, np.int64), np.zeros(n, bool), np.ones(n, bool)
    failed = {"missed a measured layer": 0, "no descent": 0, "singular J^T W J": 0}
    w_all = weight.reshape(n, -1)
    for _ in range(max_iterations):
        rows = np.flatnonzero(active)
        if not rows.size:
            break
        r, jac, ok = _evaluate(model, hits, weight, trial, rows)
        w = w_all[rows]
        c2 = np.einsum("km,km,km->k", w, r, r)
        first = ~np.isfinite(chi2[rows])
        accept = ok & (first | (c2 <= chi2[rows] + _CHI2_SLACK))
        rej = rows[~accept]
        frac[rej] *= 0.5
        lost = rows[~accept & first]
        hopeless = rej[frac[rej] < 1.0 / 64]
        failed["missed a measured layer"] += len(lost)
        failed["no descent"] += len(np.setdiff1d(hopeless, lost))
        active[lost] = active[hopeless] = False
        trial[rej] = theta[rej] + frac[rej, None] * delta[rej]
        acc = rows[accept]
        theta[acc], chi2[acc] = trial[acc], c2[accept]
        iters[acc] += ~first[accept]
        cov[acc], delta[acc] = _solve(jac[accept], w[accept], r[accept])
        frac[acc] = 1.0
        sigma = np.sqrt(np.einsum("kii->ki", cov[acc]))
        singular = ~np.all(np.isfinite(sigma), axis=1)
        small = ~singular & np.all(np.abs(delta[acc]) <= step_tolerance * sigma, axis=1)
        failed["singular J^T W J"] += int(singular.sum())
        conv[acc[small]] = True
        active[acc[small | singular]] = False
        trial[acc] = theta[acc] + delta[acc]
    failed[f"not converged in {max_iterations} evaluations"] = int(active.sum())
    for why, count in failed.items():
        if count:
            log.warning("track fit: %d of %d tracks failed (%s)", count, n, why)
    return dict(parameters=theta, covariance=cov, chi2=chi2, iterations=iters, converged=conv)
