"""Circle fits of many tracks at once (Karimaki 1991), with their covariance.

The fit works in the x-y plane with the parameters of V. Karimaki, "Effective circle
fitting for particle trajectories", Nucl. Instrum. Meth. A305 (1991) 187:

* ``rho``: signed curvature [1/mm] (positive for a track turning clockwise seen from +z),
* ``phi``: direction of the track at its point of closest approach to the reference
  point [rad],
* ``d``: signed distance of closest approach to the reference point [mm].

All tracks are fitted in one vectorised pass: the hits of track ``k`` are the rows
``offsets[k]:offsets[k + 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spectrocnn.simulate.constants import C_GEV_PER_T_MM

__all__ = [
    "CircleFit",
    "circle_from_moments",
    "fit_circles",
    "gluckstern_sigma_k",
    "pt_from_curvature",
]


@dataclass(frozen=True)
class CircleFit:
    """Fitted circles (one row per track).

    Attributes
    ----------
    rho : ndarray (n,)
        Signed curvature [1/mm]; > 0 for a track turning clockwise seen from +z (a
        positive charge in a field along +z): rho = C q B_z / p_T
        (:func:`pt_from_curvature` inverts it).
    phi : ndarray (n,)
        Direction at the point of closest approach to the reference point [rad].
    d : ndarray (n,)
        Signed distance of closest approach [mm].
    cov : ndarray (n, 3, 3)
        Covariance of (rho, phi, d) from the hit resolutions.
    chi2 : ndarray (n,)
        Chi-square of the fit.
    ndf : ndarray int (n,)
        Degrees of freedom (hits - 3).
    """

    rho: np.ndarray
    phi: np.ndarray
    d: np.ndarray
    cov: np.ndarray
    chi2: np.ndarray
    ndf: np.ndarray

    @property
    def sigma_rho(self) -> np.ndarray:
        """Uncertainty of the curvature [1/mm]."""
        return np.sqrt(self.cov[:, 0, 0])


def fit_circles(
    x: np.ndarray,
    y: np.ndarray,
    offsets: np.ndarray,
    sigma_mm: float | np.ndarray,
    *,
    direction: np.ndarray | None = None,
) -> CircleFit:
    """Fit circles to the hits of many tracks at once.

    Parameters
    ----------
    x, y : ndarray (m,)
        Hit positions [mm], grouped by track.
    offsets : ndarray int (n + 1,)
        Track ``k`` owns hits ``offsets[k]:offsets[k + 1]``; each track needs >= 3 hits.
    sigma_mm : float or ndarray (m,)
        Resolution of each hit perpendicular to the track [mm].
    direction : ndarray (n, 2), optional
        A vector along each track's direction of motion, to fix the sense of ``phi``;
        default: from the first to the last hit.

    Returns
    -------
    CircleFit
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    if np.any(counts < 3):
        raise ValueError("every track needs at least 3 hits for a circle fit")
    w = np.broadcast_to(1.0 / np.asarray(sigma_mm, dtype=np.float64) ** 2, x.shape)
    starts = offsets[:-1]

    def wsum(a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(w * a, starts)

    wt = np.add.reduceat(w, starts)
    r2 = x * x + y * y
    xm, ym, r2m = wsum(x) / wt, wsum(y) / wt, wsum(r2) / wt
    cxx = wsum(x * x) / wt - xm * xm
    cxy = wsum(x * y) / wt - xm * ym
    cyy = wsum(y * y) / wt - ym * ym
    cxr = wsum(x * r2) / wt - xm * r2m
    cyr = wsum(y * r2) / wt - ym * r2m
    crr = wsum(r2 * r2) / wt - r2m * r2m
    rho, phi, d = circle_from_moments(xm, ym, r2m, cxx, cxy, cyy, cxr, cyr, crr)
    s, c = np.sin(phi), np.cos(phi)
    # orient phi along the motion (the solution is defined up to phi -> phi + pi)
    if direction is None:
        last = offsets[1:] - 1
        direction = np.stack([x[last] - x[starts], y[last] - y[starts]], axis=1)
    flip = (c * direction[:, 0] + s * direction[:, 1]) < 0
    phi = np.where(flip, phi + np.pi, phi)
    rho = np.where(flip, -rho, rho)
    d = np.where(flip, -d, d)
    phi = (phi + np.pi) % (2.0 * np.pi) - np.pi
    # residuals and their derivatives (Karimaki's eq. 4, 'epsilon'), covariance (J^T W J)^-1
    track = np.repeat(np.arange(len(counts)), counts)
    R, F, D = rho[track], phi[track], d[track]
    rr = np.sqrt(r2)
    big_phi = np.arctan2(y, x)
    sn, cs = np.sin(F - big_phi), np.cos(F - big_phi)
    u = 1.0 + R * D
    eps = 0.5 * R * r2 - u * rr * sn + 0.5 * R * D * D + D
    jac = np.stack(
        [0.5 * r2 - D * rr * sn + 0.5 * D * D, -u * rr * cs, -R * rr * sn + R * D + 1.0], axis=1
    )
    scale = np.sqrt(1.0 + R * eps)  # eps -> distance for a finite curvature (first order)
    eps = eps / np.maximum(scale, 1e-12)
    wj = w[:, None] * jac
    info = np.add.reduceat(wj[:, :, None] * jac[:, None, :], starts, axis=0)
    cov = np.linalg.inv(info)
    chi2 = np.add.reduceat(w * eps * eps, starts)
    return CircleFit(rho, phi, d, cov, chi2, counts - 3)


def circle_from_moments(
    xm: np.ndarray,
    ym: np.ndarray,
    r2m: np.ndarray,
    cxx: np.ndarray,
    cxy: np.ndarray,
    cyy: np.ndarray,
    cxr: np.ndarray,
    cyr: np.ndarray,
    crr: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Karimaki's closed-form circle parameters from the weighted moments of the hits.

    With ``<.>`` the weighted mean over a track's hits and ``r2 = x^2 + y^2``, the inputs
    are ``xm = <x>``, ``ym = <y>``, ``r2m = <r2>`` and the centred second moments
    ``cxx = <x x> - xm xm``, ``cxy``, ``cyy``, ``cxr = <x r2> - xm r2m``, ``cyr``,
    ``crr = <r2 r2> - r2m r2m`` (all arrays of one shape, [mm^k]). The solution is
    V. Karimaki, Nucl. Instrum. Meth. A305 (1991) 187, eqs. 9-13; it is stable for
    straight tracks (``rho -> 0``) and needs only these sums, so a track finder can keep
    them as running sums and refit in O(1) per added hit.

    Returns
    -------
    rho, phi, d : ndarray
        Curvature [1/mm], direction [rad] and distance of closest approach to the origin
        [mm], up to the orientation ``(rho, phi, d) -> (-rho, phi + pi, -d)``.
    """
    q1 = crr * cxy - cxr * cyr
    q2 = crr * (cxx - cyy) - cxr * cxr + cyr * cyr
    phi = 0.5 * np.arctan2(2.0 * q1, q2)
    s, c = np.sin(phi), np.cos(phi)
    kappa = (s * cxr - c * cyr) / crr
    delta = -kappa * r2m + s * xm - c * ym
    root = np.sqrt(1.0 - 4.0 * delta * kappa)
    rho = 2.0 * kappa / root
    d = 2.0 * delta / (1.0 + root)
    return rho, phi, d


def gluckstern_sigma_k(
    sigma_mm: float, length_mm: float | np.ndarray, n_points: int | np.ndarray
) -> np.ndarray:
    """Gluckstern's curvature resolution for N equally spaced points (no scattering).

    ``sigma(k) = eps / L^2 * sqrt(720 / (N + 4))``, k = 1/R.

    Parameters
    ----------
    sigma_mm : float
        Per-point resolution eps [mm].
    length_mm : float or ndarray
        Projected track length L [mm].
    n_points : int or ndarray
        Number of points N.

    Returns
    -------
    ndarray
        sigma(k) [1/mm].
    """
    n = np.asarray(n_points, dtype=np.float64)
    return sigma_mm / np.asarray(length_mm, dtype=np.float64) ** 2 * np.sqrt(720.0 / (n + 4.0))


def pt_from_curvature(
    rho_per_mm: np.ndarray, bz_T: float, abs_charge: float | np.ndarray
) -> np.ndarray:
    """Transverse momentum from a fitted curvature: ``p_T = 0.299792458 |q| B R``.

    docs/design.md 4: ``R[m] = p_T[GeV/c] / (0.299792458 |q| B[T])``, so with R = 1/|rho| in mm,
    ``p_T = C |q| |B_z| / |rho|`` with ``C`` =
    :data:`~spectrocnn.simulate.constants.C_GEV_PER_T_MM` (0.299792458e-3 GeV/(c T mm)).

    Parameters
    ----------
    rho_per_mm : ndarray (n,)
        Fitted curvature [1/mm], either sign; |rho| is floored at 1e-300 /mm, so a
        straight fit gives a huge but finite p_T.
    bz_T : float
        The uniform field along z [T].
    abs_charge : float or ndarray (n,)
        |q| of each track [e] (2 for He4); the sign is not used.

    Returns
    -------
    ndarray (n,)
        p_T [GeV/c].
    """
    rho = np.maximum(np.abs(np.asarray(rho_per_mm, dtype=np.float64)), 1e-300)
    return C_GEV_PER_T_MM * np.abs(np.asarray(abs_charge, dtype=np.float64)) * abs(bz_T) / rho
