"""The exact helix propagator: crossings in a uniform field along z, in closed form.

:func:`propagate_helix` finds the crossings of particles with the layers by exact
helix-surface intersections (circle-circle and circle-line in the transverse plane) when
the field is uniform and along z and every plane layer is parallel to z
(:func:`spectrocnn.simulate.propagation.helix_applicable`); the material interactions at
the crossings are those of :func:`~spectrocnn.simulate.material.interact_at_layers`, the
stepper's too. Rules and stop reasons: :mod:`spectrocnn.simulate.propagation`.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from spectrocnn.simulate.constants import C_GEV_PER_T_MM
from spectrocnn.simulate.crossings import Crossings, StopReason
from spectrocnn.simulate.geometry import on_active_area, surface_normal
from spectrocnn.simulate.material import LayerMaterials, interact_at_layers

__all__ = ["propagate_helix"]

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
    la = detector.arrays
    is_cyl, radius, center, normal = la.is_cylinder, la.radius_mm, la.center_mm, la.normal
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
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s_z = np.where(
            cot > 0, (zmax - pos[:, 2]) / cot, np.where(cot < 0, (-zmax - pos[:, 2]) / cot, np.inf)
        )
    s_exit = np.minimum(s_exit, s_z)
    # the turn about the field: |h| per unit transverse path (|q C B| / p per unit path)
    s_turn = np.where(g["curved"], (np.pi - turned) * g["inv_h"], np.inf)
    g["looped"] = s_turn < s_exit
    return np.minimum(s_exit, s_turn)


def propagate_helix(detector, position, momentum, charge, mass, rng) -> Crossings:
    """Exact helix propagation in a uniform field along z.

    Parameters and result as :func:`~spectrocnn.simulate.propagation.propagate`
    (``position``, ``momentum`` (n, 3) float64 [mm], [GeV/c]; ``charge``, ``mass`` (n,)
    float64 [e], [GeV/c^2]; ``rng`` a Generator, used by the material interactions only).

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
    bz = float(detector.field.B_T[2])
    materials = LayerMaterials.of(detector)
    pmag = np.linalg.norm(momentum, axis=1)
    stop = np.full(len(pmag), StopReason.AT_REST, dtype=np.int8)
    stop[np.asarray(charge) == 0] = StopReason.NEUTRAL
    with np.errstate(invalid="ignore", divide="ignore"):
        t = momentum / pmag[:, None]
    alive = np.flatnonzero((pmag > 0) & (charge != 0))  # a neutral particle leaves no hits
    st = _HelixState(alive, position, t, pmag, charge, mass, detector.n_layers)
    out: tuple[list, ...] = ([], [], [], [], [])  # particle, layer, position, momentum, path
    while len(st.alive):
        # only the layers some particle has still to hit (in an ordered geometry, the
        # outer ones): the same result as all layers, for less work
        todo = np.flatnonzero(~st.hit.all(axis=0))
        if todo.size == 0:  # every layer hit: the tracks go on to their limits
            g = _track_geometry(st.pos, st.t, st.pm, st.q, bz)
            _limits(detector, st.pos, g, st.turned)
            st.ended(stop, np.arange(len(st.alive)), g)
            break
        cand = _candidates(
            detector, st.pos, st.t, st.pm, st.q, bz, st.turned, st.hit[:, todo], todo
        )
        if not materials.any_material:  # nothing changes the tracks: all crossings at once
            st.ended(stop, np.arange(len(st.alive)), cand[-1])
            _record_all(detector, st, cand, out)
            break
        _cross_next(detector, st, todo, cand, materials, rng, stop, out)
    return Crossings.collect(*out, stop)


class _HelixState:
    """The particles still propagating (rows), their position, direction, |p|, charge,
    mass, turn about the field, path length [mm] and the layers they have hit (n, L)."""

    def __init__(self, alive, position, t, pmag, charge, mass, n_layers) -> None:
        self.alive = alive
        self.pos = position[alive].copy()
        self.t = t[alive]
        self.pm, self.q, self.m = pmag[alive], charge[alive], mass[alive]
        self.turned = np.zeros(len(alive))
        self.path = np.zeros(len(alive))
        self.hit = np.zeros((len(alive), n_layers), dtype=bool)

    def ended(self, stop: np.ndarray, rows: np.ndarray, g: dict) -> None:
        """Record why the particles ``rows`` end: the first limit (``g`` of :func:`_limits`)."""
        stop[self.alive[rows]] = np.where(
            g["looped"][rows], StopReason.LOOPED, StopReason.LEFT_DETECTOR
        )

    def keep(self, keep: np.ndarray) -> None:
        """Keep only the rows ``keep`` (bool (n,))."""
        self.alive, self.pos, self.t = self.alive[keep], self.pos[keep], self.t[keep]
        self.pm, self.q, self.m = self.pm[keep], self.q[keep], self.m[keep]
        self.turned, self.path, self.hit = self.turned[keep], self.path[keep], self.hit[keep]


def _record_all(detector, st: _HelixState, cand: tuple, out: tuple[list, ...]) -> None:
    """Every crossing of every particle, ordered by particle then path length (no material:
    the tracks are the helices of their start)."""
    sigma, px, py, z, g = cand
    order = np.argsort(sigma, axis=1, kind="stable")
    srt = np.take_along_axis(sigma, order, axis=1)
    rows, k = np.nonzero(np.isfinite(srt))
    cols = order[rows, k]
    pts = np.stack([px[rows, cols], py[rows, cols], z[rows, cols]], axis=1)
    ok = on_active_area(detector, pts, cols)
    if not ok.all():
        rows, cols, pts = rows[ok], cols[ok], pts[ok]
    s = sigma[rows, cols]  # todo is every layer here: columns are layer indices
    mom = _momentum_at(g, rows, pts, st.t, st.pm, s)
    for piece, value in zip(out, (st.alive[rows], cols, pts, mom, None), strict=True):
        piece.append(value)


def _cross_next(detector, st, todo, cand, materials, rng, stop, out: tuple[list, ...]) -> None:
    """Move every particle to its next crossing, record it (on the active area), apply the
    material interactions there, and drop the particles that end."""
    sigma, px, py, z, g = cand
    first = np.argmin(sigma, axis=1)
    has_next = np.isfinite(sigma)[np.arange(len(st.alive)), first]
    st.ended(stop, np.flatnonzero(~has_next), g)
    rows = np.flatnonzero(has_next)
    cols = todo[first[rows]]
    fr = first[rows]
    s = sigma[rows, fr]
    pts = np.stack([px[rows, fr], py[rows, fr], z[rows, fr]], axis=1)
    # A point outside the active area is not a hit; the next crossing of the same
    # surface, if any, comes later and is found when sigma is recomputed.
    ok = on_active_area(detector, pts, cols)
    pm, t = st.pm, st.t
    mom = _momentum_at(g, rows, pts, t, pm, s)
    newt = mom / pm[rows, None]
    sel = rows[ok]
    path = st.path[sel] + s[ok] * pm[sel] / np.hypot(mom[ok, 0], mom[ok, 1])
    for piece, value in zip(out, (st.alive[sel], cols[ok], pts[ok], mom[ok], path), strict=True):
        piece.append(value)
    # material interactions (only on the active area: elsewhere there is none):
    # scattering, and energy loss on the layers that have it
    newt[ok], p_out = interact_at_layers(
        newt[ok],
        surface_normal(detector, pts[ok], cols[ok]),
        cols[ok],
        materials,
        pm[sel],
        st.m[sel],
        st.q[sel],
        rng,
    )
    # advance: outside the active area the particle moves on but the layer stays unhit
    pt_before = pm[rows] * np.hypot(t[rows, 0], t[rows, 1])
    st.path[rows] += s * pm[rows] / pt_before
    st.turned[rows] += s * np.abs(g["h"][rows]) * g["curved"][rows]
    st.pos[rows] = pts
    t[rows] = newt
    st.hit[sel, cols[ok]] = True
    keep = np.zeros(len(st.alive), dtype=bool)
    keep[rows] = True
    if materials.any_energy_loss:  # the next crossings follow the new radius
        pm[sel] = p_out
        at_rest = sel[p_out <= 0]
        stop[st.alive[at_rest]] = StopReason.AT_REST
        keep[at_rest] = False
    st.keep(keep)


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
