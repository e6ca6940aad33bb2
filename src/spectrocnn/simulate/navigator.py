"""The stepper's navigator: where the layers are relative to a step, and where it crosses them.

For each step of :func:`spectrocnn.simulate.stepper.propagate_rk` the navigator gives the
signed distances of the step's ends from every layer surface
(:meth:`Navigator.distances`), how near the step's chord comes to each surface
(:meth:`Navigator.chord_approach`: a layer nearer than the step's sagitta may be crossed,
or grazed, within the step), and the first crossing of a surface along the step's quintic
Hermite interpolant (:meth:`Navigator.locate`, :func:`locate_in_step`), on the surface to
:data:`SURFACE_TOL_MM`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from spectrocnn.simulate.interpolant import first_root, hermite_coefficients, poly_eval

if TYPE_CHECKING:
    from spectrocnn.simulate.geometry import Detector

__all__ = ["REACH_SAFETY", "SURFACE_TOL_MM", "Located", "Navigator", "locate_in_step"]

#: Newton iterations on the interpolant stop when the point is this close to the surface [mm].
SURFACE_TOL_MM = 1e-11
#: Safety factor on the sagitta ``kappa h^2 / 8`` of a step, the most its trajectory (and
#: interpolant) strays from the chord: a layer nearer the chord than this is examined.
REACH_SAFETY = 2.0


class Navigator:
    """The layers as the stepper sees them: signed distances, how near a step's chord comes
    to each surface, and where a step's interpolant first crosses it (built once per call).

    Parameters
    ----------
    detector : Detector
    """

    def __init__(self, detector: Detector) -> None:
        la = detector.arrays
        self.n = detector.n_layers
        self.is_cyl = np.asarray(la.is_cylinder, dtype=bool)
        self.radius = np.asarray(la.radius_mm, dtype=np.float64)
        self.normal = np.asarray(la.normal, dtype=np.float64)
        self.offset = la.plane_offset_mm
        self.all_cyl = bool(self.is_cyl.all())
        self.cyl = np.flatnonzero(self.is_cyl)
        self.pln = np.flatnonzero(~self.is_cyl)

    def chord_approach(
        self, x0: np.ndarray, x1: np.ndarray, d0: np.ndarray, d1: np.ndarray
    ) -> np.ndarray:
        """How near each surface the chord of a step comes, from the side it starts on.

        Parameters
        ----------
        x0, x1 : ndarray, shape (3, n)
            The step's ends [mm].
        d0, d1 : ndarray, shape (n, L)
            Signed distances of the ends from every surface [mm].

        Returns
        -------
        ndarray, shape (n, L)
            The least distance from the surface over the chord, on the start's side [mm];
            zero or negative when the chord reaches the surface (a sign change). The
            distance is linear along the chord for a plane and convex for a cylinder, so
            the extreme lies at an end, except for a cylinder approached from outside: there
            it is the chord's point nearest the axis.
        """
        start_out = d0 > 0
        near = -np.maximum(d0, d1)  # from inside; from outside, planes: min(d0, d1)
        if not self.all_cyl:
            pln = self.pln
            near[:, pln] = np.where(
                start_out[:, pln], np.minimum(d0[:, pln], d1[:, pln]), near[:, pln]
            )
        if self.cyl.size:
            ux, uy = x1[0] - x0[0], x1[1] - x0[1]
            den = np.maximum(ux * ux + uy * uy, 1e-300)
            tc = np.clip(-(x0[0] * ux + x0[1] * uy) / den, 0.0, 1.0)
            rho_c = np.hypot(x0[0] + tc * ux, x0[1] + tc * uy)
            if self.all_cyl:
                np.copyto(near, np.subtract.outer(rho_c, self.radius), where=start_out)
            else:
                cols = self.cyl
                dc = np.subtract.outer(rho_c, self.radius[cols])
                near[:, cols] = np.where(start_out[:, cols], dc, near[:, cols])
        return near

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

    def locate(self, layer: np.ndarray, coef: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Parameter ``theta in (0, 1]`` of the first crossing of each pair's surface.

        Parameters
        ----------
        layer : ndarray of int, shape (m,)
            The layer of each pair (particle, layer) to examine.
        coef : ndarray, shape (6, 3, m)
            Interpolant coefficients of the pair's step
            (:func:`~spectrocnn.simulate.interpolant.hermite_coefficients`).
        h : ndarray, shape (m,)
            Step lengths [mm].

        Returns
        -------
        ndarray, shape (m,)
            The first root of the signed distance along the interpolant, NaN where the
            interpolant does not cross the surface within the step.

        Notes
        -----
        The signed distance is replaced by a polynomial of the same sign: ``n . p - c``
        (degree 5) for a plane, ``|p_xy|^2 - r^2`` (degree 10) for a cylinder. See
        :func:`~spectrocnn.simulate.interpolant.first_root` for how the first root is bracketed.
        """
        theta = np.empty(len(layer))
        cyl = self.is_cyl[layer]
        pc, pp = np.flatnonzero(cyl), np.flatnonzero(~cyl)
        if pc.size:
            cx, cy = coef[:, 0, pc], coef[:, 1, pc]
            poly = np.zeros((11, pc.size))
            for i in range(6):
                for j in range(i, 6):
                    term = cx[i] * cx[j] + cy[i] * cy[j]
                    poly[i + j] += term if i == j else 2.0 * term
            r = self.radius[layer[pc]]
            poly[0] -= r * r
            # |g| <= tol  <=>  |rho^2 - r^2| <= tol (rho + r), with rho ~ r near the root
            theta[pc] = first_root(poly, (2.0 * SURFACE_TOL_MM) * r, h[pc])
        if pp.size:
            nrm = self.normal[layer[pp]].T
            poly = np.einsum("jm,kjm->km", nrm, coef[:, :, pp])
            poly[0] -= self.offset[layer[pp]]
            theta[pp] = first_root(poly, np.full(pp.size, SURFACE_TOL_MM), h[pp])
        return theta


class Located(NamedTuple):
    """Crossings located within a step, one per examined (particle, layer) pair that
    crosses; ``particle`` indexes the stepper's state (columns), ``layer`` the layers."""

    particle: np.ndarray  # int (m,)
    layer: np.ndarray  # int (m,)
    theta: np.ndarray  # (m,) fraction of the step in (0, 1]
    position: np.ndarray  # (3, m) [mm]
    direction: np.ndarray  # (3, m) unit
    path: np.ndarray  # (m,) path length from the start [mm]
    turn: np.ndarray  # (m,) turn about the field from the start [rad]


def locate_in_step(nav: Navigator, examine: np.ndarray, start, end) -> Located | None:
    """The first crossing, within one step, of each examined (particle, layer) pair.

    Parameters
    ----------
    nav : Navigator
    examine : ndarray of bool, shape (n, L)
        The pairs that may cross within the step: a sign change of the signed distance
        over the step, or a surface within reach of the step's chord (a possible graze).
    start : spectrocnn.simulate.stepper.StepperState
        The state at the step's start (``x, t, a`` (3, n), ``d`` (n, L), ``s, phi`` (n,)).
    end : spectrocnn.simulate.rkn.Step
        The step: its end (``x, t, a``, ``d``), its length ``h`` and turn ``dphi``.

    Returns
    -------
    Located or None
        None when no examined pair crosses.
    """
    pi, li = np.nonzero(examine)
    hp = end.h[pi]
    hp2 = hp * hp
    coef = hermite_coefficients(
        start.x[:, pi], start.t[:, pi] * hp, start.a[:, pi] * hp2,
        end.x[:, pi], end.t[:, pi] * hp, end.a[:, pi] * hp2,
    )  # fmt: skip
    theta = nav.locate(li, coef, hp)
    # A sign change at the ends that the polynomial misses by rounding (|d1| ~ 1e-12 mm)
    # is a crossing at the step's end.
    sign_change = (start.d[pi, li] > 0) != (end.d[pi, li] > 0)
    theta = np.where(np.isnan(theta) & sign_change, 1.0, theta)
    found = np.flatnonzero(~np.isnan(theta))
    if found.size == 0:
        return None
    if found.size < len(theta):
        pi, li, theta, hp = pi[found], li[found], theta[found], hp[found]
        coef = coef[..., found]
    pos, dpos = poly_eval(coef, theta)
    direction = dpos / np.sqrt(np.einsum("ij,ij->j", dpos, dpos))
    path = start.s[pi] + theta * hp
    turn = start.phi[pi] + theta * end.dphi[pi]
    return Located(pi, li, theta, pos, direction, path, turn)
