"""Propagation of charged particles through the detector.

:func:`propagate` finds, for every particle, its crossings of the detector's layers, with
the material effects (multiple scattering, energy loss) applied at each crossing. It uses
exact helix-surface intersections (:func:`propagate_helix`) when the field is uniform and
parallel to every layer's axis (B along z, planes whose normal has no z component), and the
adaptive
Runge-Kutta-Nystrom stepper (:func:`spectrocnn.simulate.stepper.propagate_rk`) for every
other field.

Rules (docs/design.md 4): each particle leaves at most one crossing per layer, at its first crossing
of the layer's active area; it stops when it leaves the detector's outer boundary or has
made half a turn about the field. The turn is the angle by which the direction has rotated
about the local field, ``integral |q C B| / p ds`` (a magnetic field turns the direction
about itself at that rate; in a uniform field it is the turning angle of the track's helix
in its bending plane). Scattering deflections do not count: a track whose momentum
component normal to the field is tiny (a track along the field, or a forward track in a
dipole whose transverse direction flips when a scatter passes p_T through zero) is not
taken for a looper. Both propagators apply this rule and report why each particle stopped
(:class:`StopReason`, :attr:`Crossings.stop`). A neutral particle (charge 0) ionises
nothing and leaves no crossing in the tracking layers, whichever propagator runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import partial

import numpy as np

__all__ = ["C_GEV_PER_T_MM", "Crossings", "StopReason", "propagate"]

#: Curvature constant: p[GeV/c] = C * |q| * B[T] * R[mm] (0.299792458 GeV/(T m)).
C_GEV_PER_T_MM = 0.299792458e-3


class StopReason(IntEnum):
    """Why a particle's propagation ended (:attr:`Crossings.stop`)."""

    #: left the detector's outer boundary (or started outside it): the normal end
    LEFT_DETECTOR = 0
    #: made half a turn about the field (loop protection, docs/design.md 4)
    LOOPED = 1
    #: reached the stepper's path-length limit (``max_path_mm``)
    PATH_LIMIT = 2
    #: still stepping after the stepper's iteration limit
    STEP_LIMIT = 3
    #: the state became NaN or infinite (a field returning NaN)
    NOT_FINITE = 4
    #: at rest: ``|p| = 0`` at the start, or its kinetic energy exhausted by energy loss in
    #: a layer (it leaves no further crossings)
    AT_REST = 5
    #: charge 0: a neutral particle is not propagated and leaves no crossings
    NEUTRAL = 6


def stop_counts(stop: np.ndarray) -> dict[str, int]:
    """Number of particles per stop reason, every reason listed (lower-case names).

    Parameters
    ----------
    stop : ndarray of int, shape (n,)
        :class:`StopReason` codes.
    """
    counts = np.bincount(np.asarray(stop, dtype=np.int64), minlength=len(StopReason))
    return {r.name.lower(): int(counts[r]) for r in StopReason}


@dataclass(frozen=True)
class Crossings:
    """Layer crossings of a set of particles, ordered by particle, then along each track.

    Attributes
    ----------
    particle : ndarray int64 (m,)
        Index of the particle in the arrays given to :func:`propagate`.
    layer : ndarray int16 (m,)
        Index of the crossed layer.
    position : ndarray float64 (m, 3)
        True crossing point on the layer surface [mm].
    momentum : ndarray float64 (m, 3)
        Momentum arriving at the layer, before scattering and energy loss in it [GeV/c].
    stop : ndarray int8 (n_particles,)
        Why each particle given to :func:`propagate` stopped (:class:`StopReason`).
    """

    particle: np.ndarray
    layer: np.ndarray
    position: np.ndarray
    momentum: np.ndarray
    stop: np.ndarray

    def __len__(self) -> int:
        return len(self.particle)

    def stop_counts(self) -> dict[str, int]:
        """Number of particles per stop reason (:func:`stop_counts`)."""
        return stop_counts(self.stop)

    @classmethod
    def collect(cls, particle, layer, position, momentum, path, stop) -> Crossings:
        """Build from per-step pieces (lists of arrays), sorted by particle, then path length.

        Parameters
        ----------
        particle, layer, position, momentum : list of ndarray
            Pieces to concatenate (shapes as the attributes).
        path : list of ndarray
            Path length of each crossing from the particle's start [mm], the sort key
            within a particle.
        stop : ndarray of int, shape (n_particles,)
            :class:`StopReason` of every particle.
        """
        stop = np.asarray(stop, dtype=np.int8)
        if not particle:
            return cls(
                np.empty(0, np.int64),
                np.empty(0, np.int16),
                np.empty((0, 3)),
                np.empty((0, 3)),
                stop,
            )
        p = np.concatenate(particle).astype(np.int64)
        if len(particle) == 1 and path[0] is None:  # already ordered
            idx = slice(None)
        elif len(particle) == 1:
            idx = np.lexsort((path[0], p))
        else:  # pieces come in path order: a stable sort by particle keeps it
            idx = np.argsort(p, kind="stable")
        return cls(
            p[idx],
            np.concatenate(layer).astype(np.int16)[idx],
            np.concatenate(position)[idx],
            np.concatenate(momentum)[idx],
            stop,
        )


# ----------------------------------------------------------------------------- dispatcher
def helix_applicable(detector) -> bool:
    """Whether exact helix intersections apply: a uniform field along z (or none) and
    every plane layer parallel to z (its normal has no z component)."""
    from spectrocnn.simulate.fields import UniformField

    if not isinstance(detector.field, UniformField):
        return False
    bx, by, _ = detector.field.B_T
    if bx != 0.0 or by != 0.0:
        return False
    is_cyl, normal = detector.arrays[0], detector.arrays[4]
    return bool(np.all(is_cyl | (np.abs(normal[:, 2]) < 1e-15)))


def propagate(
    detector,
    position: np.ndarray,
    momentum: np.ndarray,
    charge: np.ndarray,
    mass: np.ndarray,
    rng: np.random.Generator | int | None = None,
    *,
    tolerance_mm: float = 1e-4,
) -> Crossings:
    """Find the layer crossings of particles, with the material effects in the layers.

    Parameters
    ----------
    detector : Detector
    position : ndarray, shape (n, 3)
        Production vertices [mm].
    momentum : ndarray, shape (n, 3)
        Initial momenta [GeV/c].
    charge : ndarray, shape (n,)
        Charges [e], any real value (|q| = 2 bends twice as much as |q| = 1); a particle
        of charge 0 leaves no crossings.
    mass : ndarray, shape (n,)
        Masses [GeV/c^2] (beta in the Highland formula; the Bethe formula).
    rng : numpy.random.Generator, int or None
        Used for the material effects only (multiple scattering, energy loss).
    tolerance_mm : float
        Local error tolerance of the Runge-Kutta-Nystrom stepper [mm] (ignored on the
        exact helix path).

    Returns
    -------
    Crossings
    """
    rng = np.random.default_rng(rng)
    position = np.asarray(position, dtype=np.float64).reshape(-1, 3)
    momentum = np.asarray(momentum, dtype=np.float64).reshape(-1, 3)
    charge = np.asarray(charge, dtype=np.float64).reshape(-1)
    mass = np.broadcast_to(np.asarray(mass, dtype=np.float64), charge.shape)
    if helix_applicable(detector):
        return propagate_helix(detector, position, momentum, charge, mass, rng)
    from spectrocnn.simulate.stepper import propagate_rk

    return propagate_rk(detector, position, momentum, charge, mass, rng, tolerance_mm=tolerance_mm)


# ----------------------------------------------------------------------------- exact helix
_EPS_MM = 1e-9  # a crossing must lie further than this along the track
#: Transverse curvature [1/mm] below which a track is propagated as a straight line: a radius
#: over 1e10 mm bends less than 0.1 um over 2 m, and the circle formulas lose precision there.
_STRAIGHT_H = 1e-10


def _circle_candidates(
    x0, y0, dx, dy, radius, px1, py1, px2, py2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transverse path to the nearer of two points on the track circle, within half a turn.

    A point P on the circle lies within half a turn ahead of the start x0 (moving along the
    unit transverse direction d) exactly when ``d . (P - x0) > 0``; the transverse path to
    it is then ``2 R asin(|P - x0| / 2R)``, precise for nearly straight tracks too.
    Returns (sigma, px, py); NaN points and points further than half a turn give inf.
    """
    best_s = np.full(np.broadcast_shapes(px1.shape, x0.shape), np.inf)
    best_x = np.zeros_like(best_s)
    best_y = np.zeros_like(best_s)
    with np.errstate(divide="ignore"):  # straight tracks (R = 0 here) are masked later
        half_inv_r = 0.5 / radius
    for px, py in ((px1, py1), (px2, py2)):
        ex, ey = px - x0, py - y0
        with np.errstate(invalid="ignore"):
            ahead = ex * dx + ey * dy > 0
            s = (2.0 * radius) * np.arcsin(np.minimum(np.hypot(ex, ey) * half_inv_r, 1.0))
        s = np.where(ahead & (s > _EPS_MM), s, np.inf)
        better = s < best_s
        best_s = np.where(better, s, best_s)
        best_x = np.where(better, px, best_x)
        best_y = np.where(better, py, best_y)
    return best_s, best_x, best_y


def _line_candidates(x0, y0, dx, dy, px1, py1, px2, py2):
    """Transverse path along a straight line to the nearer of two points ahead."""
    best_s = np.full(np.broadcast_shapes(px1.shape, x0.shape), np.inf)
    best_x = np.zeros_like(best_s)
    best_y = np.zeros_like(best_s)
    for px, py in ((px1, py1), (px2, py2)):
        s = (px - x0) * dx + (py - y0) * dy
        s = np.where(np.isfinite(px) & (s > _EPS_MM), s, np.inf)
        better = s < best_s
        best_s = np.where(better, s, best_s)
        best_x = np.where(better, px, best_x)
        best_y = np.where(better, py, best_y)
    return best_s, best_x, best_y


def _track_geometry(pos, t, pmag, q, bz):
    """Transverse helix parameters of particles."""
    pt = pmag * np.hypot(t[:, 0], t[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = t[:, 0] * pmag / pt
        dy = t[:, 1] * pmag / pt
        h = -C_GEV_PER_T_MM * q * bz / pt  # signed transverse curvature [1/mm]
        cot = t[:, 2] * pmag / pt  # dz / d(transverse path)
    moving = pt > 1e-12 * pmag
    curved = moving & (np.abs(h) > _STRAIGHT_H)
    inv_h = np.where(curved, 1.0 / np.where(curved, np.abs(h), 1.0), 0.0)
    hs = np.sign(h)
    cx = np.where(curved, pos[:, 0] - hs * inv_h * dy, 0.0)
    cy = np.where(curved, pos[:, 1] + hs * inv_h * dx, 0.0)
    return dict(
        dx=dx, dy=dy, h=h, hs=hs, inv_h=inv_h, cot=cot, cx=cx, cy=cy, moving=moving, curved=curved
    )


def _cylinder_points(cx, cy, R, r):
    """Intersections of circles (centre c, radius R) with circles about the origin (radius r).

    Shapes broadcast: c, R (n, 1); r (1, Lc). Returns two points (x1, y1, x2, y2), NaN where
    the circles do not meet. Stable for R >> r (straight tracks).
    """
    D = np.hypot(cx, cy)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (r * r + (D - R) * (D + R)) / (2.0 * D)
        h2 = r * r - a * a
        hc = np.sqrt(np.where(h2 >= 0, h2, np.nan))
        ux, uy = cx / D, cy / D
    return a * ux - hc * uy, a * uy + hc * ux, a * ux + hc * uy, a * uy - hc * ux


def _line_circle_points(x0, y0, dx, dy, r):
    """Intersections of lines (point x0, direction d, unit) with circles about the origin."""
    b = x0 * dx + y0 * dy
    c = x0 * x0 + y0 * y0 - r * r
    disc = b * b - c
    with np.errstate(invalid="ignore"):
        sq = np.sqrt(np.where(disc >= 0, disc, np.nan))
    s1, s2 = -b - sq, -b + sq
    return x0 + s1 * dx, y0 + s1 * dy, x0 + s2 * dx, y0 + s2 * dy


def _plane_points_circle(cx, cy, R, nx, ny, d):
    """Intersections of track circles with lines n . x = d (n transverse unit)."""
    delta = cx * nx + cy * ny - d
    adel = np.abs(delta)
    w2 = (R - adel) * (R + adel)
    with np.errstate(invalid="ignore"):
        w = np.sqrt(np.where(w2 >= 0, w2, np.nan))
    bx, by = cx - delta * nx, cy - delta * ny
    tx, ty = -ny, nx
    return bx + w * tx, by + w * ty, bx - w * tx, by - w * ty


def _plane_points_line(x0, y0, dx, dy, nx, ny, d):
    """Intersection of lines with lines n . x = d (second point NaN)."""
    den = dx * nx + dy * ny
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (d - (x0 * nx + y0 * ny)) / den
    s = np.where(den != 0, s, np.nan)
    px, py = x0 + s * dx, y0 + s * dy
    nan = np.full_like(px, np.nan)
    return px, py, nan, nan


def _candidates(detector, pos, t, pmag, q, bz, turned, hit, layers=None):
    """First crossing of each layer ahead of each particle (n, L), within the limits.

    Returns sigma (transverse path; inf = none), x, y, z of the crossing points, and the
    track geometry.
    """
    is_cyl, radius, _, center, normal, *_ = detector.arrays
    if layers is not None:  # only these layers (columns of the result)
        is_cyl, radius, center, normal = (
            is_cyl[layers],
            radius[layers],
            center[layers],
            normal[layers],
        )
    n, n_layers = len(pos), len(is_cyl)
    g = _track_geometry(pos, t, pmag, q, bz)
    col = lambda a: a[:, None]  # noqa: E731
    x0, y0 = col(pos[:, 0]), col(pos[:, 1])
    dx, dy = col(g["dx"]), col(g["dy"])
    cx, cy, R = col(g["cx"]), col(g["cy"]), col(g["inv_h"])
    curved = col(g["curved"])

    sigma = np.full((n, n_layers), np.inf)
    px = np.zeros((n, n_layers))
    py = np.zeros((n, n_layers))
    any_curved, any_straight = bool(curved.any()), bool((~curved).any())
    kinds = []
    ic = np.flatnonzero(is_cyl)
    if ic.size:
        r = radius[ic][None, :]
        kinds.append(
            (
                ic,
                partial(_cylinder_points, cx, cy, R, r),
                partial(_line_circle_points, x0, y0, dx, dy, r),
            )
        )
    ip = np.flatnonzero(~is_cyl)
    if ip.size:
        nx, ny = normal[ip, 0][None, :], normal[ip, 1][None, :]
        d = np.einsum("ij,ij->i", center[ip], normal[ip])[None, :]
        kinds.append(
            (
                ip,
                partial(_plane_points_circle, cx, cy, R, nx, ny, d),
                partial(_plane_points_line, x0, y0, dx, dy, nx, ny, d),
            )
        )
    for idx, circ, line in kinds:
        if any_curved:
            sc, xc, yc = _circle_candidates(x0, y0, dx, dy, R, *circ())
        if any_straight:
            sl, xl, yl = _line_candidates(x0, y0, dx, dy, *line())
        if any_curved and any_straight:
            sc, xc, yc = (
                np.where(curved, sc, sl),
                np.where(curved, xc, xl),
                np.where(curved, yc, yl),
            )
        elif any_straight:
            sc, xc, yc = sl, xl, yl
        sigma[:, idx], px[:, idx], py[:, idx] = sc, xc, yc

    limit = _limits(detector, pos, g, turned)
    with np.errstate(invalid="ignore"):
        z = pos[:, 2][:, None] + sigma * g["cot"][:, None]
    bad = (sigma > limit[:, None]) | hit | ~g["moving"][:, None]
    sigma = np.where(bad, np.inf, sigma)
    return sigma, px, py, z, g


def _limits(detector, pos, g, turned) -> np.ndarray:
    """Transverse path (n,) [mm] to the end of each track: the outer boundary (r_max, z_max)
    or half a turn, whichever comes first; records ``g["looped"]`` (bool (n,)): the turn
    comes first."""
    x0, y0 = pos[:, 0][:, None], pos[:, 1][:, None]
    dx, dy = g["dx"][:, None], g["dy"][:, None]
    cx, cy, R = g["cx"][:, None], g["cy"][:, None], g["inv_h"][:, None]
    curved = g["curved"][:, None]
    rmax = np.array([[detector.r_max_mm]])
    sc, *_ = _circle_candidates(x0, y0, dx, dy, R, *_cylinder_points(cx, cy, R, rmax))
    sl, *_ = _line_candidates(x0, y0, dx, dy, *_line_circle_points(x0, y0, dx, dy, rmax))
    s_exit = np.where(curved, sc, sl)[:, 0]
    cot = g["cot"]
    zmax = detector.z_max_mm
    with np.errstate(divide="ignore", invalid="ignore"):
        s_z = np.where(
            cot > 0, (zmax - pos[:, 2]) / cot, np.where(cot < 0, (-zmax - pos[:, 2]) / cot, np.inf)
        )
    s_exit = np.minimum(s_exit, s_z)
    # the turn about the field: |h| per unit transverse path (|q C B| / p per unit path)
    s_turn = np.where(g["curved"], (np.pi - turned) * g["inv_h"], np.inf)
    g["looped"] = s_turn < s_exit
    return np.minimum(s_exit, s_turn)


def propagate_helix(detector, position, momentum, charge, mass, rng) -> Crossings:
    """Exact helix propagation in a uniform field along z (see :func:`propagate`).

    Crossing points are circle-circle and circle-line intersections computed in a
    cancellation-free form, so they lie on the layer surface to rounding (~1e-12 mm) for
    any radius of curvature. Multiple scattering, where a layer has material, changes the
    direction at the crossing, and energy loss, on layers with ``energy_loss``, lowers
    ``|p|`` there, keeping the direction
    (:func:`~spectrocnn.simulate.material.interact_at_layers`, the stepper's rule too);
    the remaining crossings are recomputed from there with the new radius. A particle
    whose kinetic energy is exhausted in a layer stops there (``StopReason.AT_REST``,
    after its crossing of that layer). The turn about the field
    accumulates ``|h| sigma`` (transverse curvature times transverse path, equal to
    ``|q C B| / p`` times the path), so a deflection by scattering does not count.
    Neutral particles (charge 0) and particles at rest leave no crossings.
    """
    from spectrocnn.simulate.geometry import on_active_area, surface_normal
    from spectrocnn.simulate.material import LayerMaterials, interact_at_layers

    bz = float(detector.field.B_T[2])
    materials = LayerMaterials.of(detector)
    n_layers = detector.n_layers
    pmag = np.linalg.norm(momentum, axis=1)
    stop = np.full(len(pmag), StopReason.AT_REST, dtype=np.int8)
    stop[np.asarray(charge) == 0] = StopReason.NEUTRAL
    with np.errstate(invalid="ignore", divide="ignore"):
        t = momentum / pmag[:, None]
    alive = np.flatnonzero((pmag > 0) & (charge != 0))  # a neutral particle leaves no hits
    pos = position[alive].copy()
    t = t[alive]
    pm, q, m = pmag[alive], charge[alive], mass[alive]
    turned = np.zeros(len(alive))
    path = np.zeros(len(alive))
    hit = np.zeros((len(alive), n_layers), dtype=bool)
    out_p, out_l, out_x, out_m, out_s = [], [], [], [], []
    scattering = materials.any_material

    def ended(rows, g):
        """Record why the particles ``rows`` (of the state arrays) end: the first limit."""
        stop[alive[rows]] = np.where(g["looped"][rows], StopReason.LOOPED, StopReason.LEFT_DETECTOR)

    while len(alive):
        # only the layers some particle has still to hit (in an ordered geometry, the
        # outer ones): the same result as all layers, for less work
        todo = np.flatnonzero(~hit.all(axis=0))
        if todo.size == 0:  # every layer hit: the tracks go on to their limits
            g = _track_geometry(pos, t, pm, q, bz)
            _limits(detector, pos, g, turned)
            ended(np.arange(len(alive)), g)
            break
        sigma, px, py, z, g = _candidates(detector, pos, t, pm, q, bz, turned, hit[:, todo], todo)
        # Keep only crossings on the layers' active areas; retry the others' next crossing
        # is not needed: a point outside the active area is not a hit, and the next crossing
        # of the same surface, if any, comes later and is found when sigma is recomputed.
        finite = np.isfinite(sigma)
        if not scattering:
            ended(np.arange(len(alive)), g)
            # all crossings at once, ordered by particle then path length
            order = np.argsort(sigma, axis=1, kind="stable")
            srt = np.take_along_axis(sigma, order, axis=1)
            rows, k = np.nonzero(np.isfinite(srt))
            cols = order[rows, k]
            pts = np.stack([px[rows, cols], py[rows, cols], z[rows, cols]], axis=1)
            ok = on_active_area(detector, pts, cols)
            if not ok.all():
                rows, cols, pts = rows[ok], cols[ok], pts[ok]
            s = sigma[rows, cols]  # todo is every layer here: columns are layer indices
            mom = _momentum_at(g, rows, pts, t, pm, s)
            out_p.append(alive[rows])
            out_l.append(cols)
            out_x.append(pts)
            out_m.append(mom)
            out_s.append(None)
            break
        first = np.argmin(sigma, axis=1)
        has_next = finite[np.arange(len(alive)), first]
        ended(np.flatnonzero(~has_next), g)
        rows = np.flatnonzero(has_next)
        cols = todo[first[rows]]
        fr = first[rows]
        s = sigma[rows, fr]
        pts = np.stack([px[rows, fr], py[rows, fr], z[rows, fr]], axis=1)
        ok = on_active_area(detector, pts, cols)
        mom = _momentum_at(g, rows, pts, t, pm, s)
        newt = mom / pm[rows, None]
        sel = rows[ok]
        out_p.append(alive[sel])
        out_l.append(cols[ok])
        out_x.append(pts[ok])
        out_m.append(mom[ok])
        out_s.append(path[sel] + s[ok] * pm[sel] / np.hypot(mom[ok, 0], mom[ok, 1]))
        # material interactions (only on the active area: elsewhere there is none):
        # scattering, and energy loss on the layers that have it
        newt[ok], p_out = interact_at_layers(
            newt[ok],
            surface_normal(detector, pts[ok], cols[ok]),
            cols[ok],
            materials,
            pm[sel],
            m[sel],
            q[sel],
            rng,
        )
        # advance: outside the active area the particle moves on but the layer stays unhit
        pt_before = pm[rows] * np.hypot(t[rows, 0], t[rows, 1])
        path[rows] += s * pm[rows] / pt_before
        turned[rows] += s * np.abs(g["h"][rows]) * g["curved"][rows]
        pos[rows] = pts
        t[rows] = newt
        hit[sel, cols[ok]] = True
        keep = np.zeros(len(alive), dtype=bool)
        keep[rows] = True
        if materials.any_energy_loss:  # the next crossings follow the new radius
            pm[sel] = p_out
            at_rest = sel[p_out <= 0]
            stop[alive[at_rest]] = StopReason.AT_REST
            keep[at_rest] = False
        alive, pos, t, pm, q, m = alive[keep], pos[keep], t[keep], pm[keep], q[keep], m[keep]
        turned, path, hit = turned[keep], path[keep], hit[keep]
    return Crossings.collect(out_p, out_l, out_x, out_m, out_s, stop)


def _momentum_at(g, rows, pts, t, pm, sigma) -> np.ndarray:
    """Momentum vectors [GeV/c] at crossing points (rows of the state arrays)."""
    pmr = pm[rows]
    pt = pmr * np.hypot(t[rows, 0], t[rows, 1])
    out = np.empty((len(rows), 3))
    # tangent at P on the circle: h * z x (P - c), a unit vector since |P - c| = 1 / |h|
    hpt = g["h"][rows] * pt
    out[:, 0] = -hpt * (pts[:, 1] - g["cy"][rows])
    out[:, 1] = hpt * (pts[:, 0] - g["cx"][rows])
    straight = ~g["curved"][rows]
    if straight.any():  # straight tracks keep their direction
        out[straight, 0] = pt[straight] * g["dx"][rows][straight]
        out[straight, 1] = pt[straight] * g["dy"][rows][straight]
    out[:, 2] = pmr * t[rows, 2]
    return out
