"""The machinery of the track finder (:mod:`spectrocnn.reco.finder`, whose docstring gives
the method): the layers as the finder sees them, circles in x-y, the index of free hits,
the triplet seeds and the road search. All of it acts on many candidates at once; ``s``
is always the finder's :class:`~spectrocnn.reco.finder.FinderSettings` (not imported
here: finder.py imports this module).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.reco.circlefit import circle_from_moments, fit_circles
from spectrocnn.simulate.geometry import CylinderLayer, PlaneLayer

__all__ = ["Geometry", "HitIndex", "along", "find_seeds", "follow_roads", "layer_geometry"]

log = logging.getLogger("spectrocnn.reco.finder")

_TWO_PI = 2.0 * np.pi
_SPAN = 8.0  # key units per (event, layer) group; along-layer coordinates lie in [0, 2 pi]


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Geometry:
    """The layers in x-y, renumbered by distance from the z axis ("rank")."""

    is_cyl: np.ndarray  # (L,) bool
    radius: np.ndarray  # (L,) cylinders [mm]
    mx: np.ndarray  # (L,) plane normal in x-y (pointing away from the axis)
    my: np.ndarray
    c: np.ndarray  # (L,) plane: m . p = c >= 0 [mm]
    t0: np.ndarray  # (L,) plane: along-layer coordinate origin [mm]
    scale: np.ndarray  # (L,) mm per key unit along the layer
    dist: np.ndarray  # (L,) distance from the z axis [mm]
    rank: np.ndarray  # (L_input,) caller's layer -> rank
    by_rank: np.ndarray  # (L,) rank -> caller's layer


def layer_geometry(layers: Sequence[CylinderLayer | PlaneLayer]) -> Geometry:
    """The finder's view of ``layers`` (cylinders about z, planes parallel to z).

    Raises
    ------
    ConfigError
        For fewer than 3 layers, a plane not parallel to z or another kind of layer.
    """
    n = len(layers)
    if n < 3:
        raise ConfigError(f"track finding needs at least 3 layers, got {n}")
    is_cyl = np.zeros(n, bool)
    radius, mx, my, c, t0, scale, dist = (np.zeros(n) for _ in range(7))
    for i, layer in enumerate(layers):
        if isinstance(layer, CylinderLayer):
            is_cyl[i] = True
            radius[i] = dist[i] = scale[i] = layer.radius_mm
        elif isinstance(layer, PlaneLayer):
            nx, ny, nz = layer.normal
            if abs(nz) > 1e-9 * np.hypot(nx, ny) or np.hypot(nx, ny) == 0:
                raise ConfigError(
                    f"track finding needs planes parallel to the field (z); layer {i} has "
                    f"normal {list(layer.normal)}"
                )
            m = np.array([nx, ny]) / np.hypot(nx, ny)
            ci = float(m @ np.asarray(layer.center_mm[:2]))
            if ci < 0:
                m, ci = -m, -ci
            mx[i], my[i], c[i], dist[i] = m[0], m[1], ci, ci
            tc = float(np.array([-m[1], m[0]]) @ np.asarray(layer.center_mm[:2]))
            t0[i] = tc - 1.05 * layer.half_width_mm
            scale[i] = 2.1 * layer.half_width_mm / _TWO_PI  # the plane spans [0, 2 pi]
        else:
            raise ConfigError(f"layer {i} is not a CylinderLayer or PlaneLayer: {layer!r}")
    by_rank = np.argsort(dist, kind="stable")
    rank = np.empty(n, np.int64)
    rank[by_rank] = np.arange(n)
    return Geometry(
        is_cyl[by_rank], radius[by_rank], mx[by_rank], my[by_rank], c[by_rank],
        t0[by_rank], scale[by_rank], dist[by_rank], rank, by_rank,
    )  # fmt: skip


def along(geo: Geometry, L: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coordinate along layer ``L`` in key units: azimuth in [0, 2 pi) on a cylinder."""
    phi = np.mod(np.arctan2(y, x), _TWO_PI)
    t = (-geo.my[L] * x + geo.mx[L] * y - geo.t0[L]) / geo.scale[L]
    return np.where(geo.is_cyl[L], phi, np.clip(t, 0.0, _TWO_PI))


def _helix_point(px, py, phi, rho, s):
    """Point and direction at arc length ``s`` on the circle through (px, py) with
    direction ``phi`` and curvature ``rho`` (> 0: clockwise), stable for rho -> 0."""
    a = rho * s
    big_s = s * np.sinc(a / np.pi)  # sin(rho s) / rho
    big_k = 0.5 * rho * s * s * np.sinc(a / _TWO_PI) ** 2  # (1 - cos(rho s)) / rho
    tx, ty = np.cos(phi), np.sin(phi)
    qx = px + big_s * tx + big_k * ty
    qy = py + big_s * ty - big_k * tx
    return qx, qy, np.cos(phi - a), np.sin(phi - a)


def _intersect(geo: Geometry, L, px, py, phi, rho):
    """Crossing of each circle with layer ``L`` (Newton's method in arc length).

    The starting point is the crossing of the tangent line; for a cylinder the root taken
    is ``-p.t + sqrt(...)``, the forward crossing from inside or the nearer backward one
    from outside. Returns ``x, y, ok``.
    """
    cyl = geo.is_cyl[L]
    r = geo.radius[L]
    mx, my, c = geo.mx[L], geo.my[L], geo.c[L]
    tx, ty = np.cos(phi), np.sin(phi)
    pt = px * tx + py * ty
    with np.errstate(invalid="ignore", divide="ignore"):
        disc = pt * pt - (px * px + py * py) + r * r
        s_cyl = -pt + np.sqrt(np.maximum(disc, 0.0))
        s_pl = (c - mx * px - my * py) / (mx * tx + my * ty)
        s = np.where(cyl, s_cyl, s_pl)
        for _ in range(4):
            qx, qy, dx, dy = _helix_point(px, py, phi, rho, s)
            f = np.where(cyl, 0.5 * (qx * qx + qy * qy - r * r), mx * qx + my * qy - c)
            fp = np.where(cyl, qx * dx + qy * dy, mx * dx + my * dy)
            s = s - f / fp
        qx, qy, dx, dy = _helix_point(px, py, phi, rho, s)
        miss = np.where(cyl, np.hypot(qx, qy) - r, mx * qx + my * qy - c)
    ok = np.isfinite(miss) & (np.abs(miss) < 1e-3) & (np.abs(rho * s) < np.pi)
    return qx, qy, ok


def _pca(px, py, phi_a, rho):
    """Karimaki parameters (phi, d) at the point of closest approach to the origin of
    the circle through (px, py) with direction ``phi_a`` and curvature ``rho``."""
    nx, ny = np.sin(phi_a), -np.cos(phi_a)
    u = px * nx + py * ny
    p2 = px * px + py * py
    d = (rho * p2 + 2.0 * u) / (1.0 + np.sqrt(np.maximum(1.0 + 2.0 * rho * u + rho * rho * p2, 0)))
    phi = np.arctan2(rho * px + nx, -(rho * py + ny))
    return phi, d


def _arc(chord, rho):
    """Arc length of a chord on a circle of curvature rho (stable for rho -> 0)."""
    h = np.clip(0.5 * np.abs(rho) * chord, 0.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(h > 1e-6, np.arcsin(h) / np.where(h > 1e-6, h, 1.0), 1.0 + h * h / 6.0)
    return chord * f


def _wrap(a):
    return (a + np.pi) % _TWO_PI - np.pi


class HitIndex:
    """Free hits sorted by (event, layer rank, along-layer coordinate)."""

    def __init__(self, rows, ev, lay, w, n_layers):
        group = ev[rows] * n_layers + lay[rows]
        key = group * _SPAN + w[rows]
        o = np.argsort(key, kind="stable")
        self.rows = rows[o]
        self.key = key[o]
        self.n_layers = n_layers

    def query(self, ev, L, w_lo, w_hi, wraps):
        """All (query, row) pairs with a hit of event ``ev`` on layer ``L`` whose
        coordinate lies in [w_lo, w_hi] (key units; azimuth wraps where ``wraps``)."""
        base = (ev * self.n_layers + L) * _SPAN
        qs, los, his = [np.arange(len(ev))], [base + np.maximum(w_lo, 0)], [base + w_hi]
        for shift, sel in ((_TWO_PI, wraps & (w_lo < 0)), (-_TWO_PI, wraps & (w_hi > _TWO_PI))):
            idx = np.flatnonzero(sel)
            qs.append(idx)
            los.append(base[idx] + np.maximum(w_lo[idx] + shift, 0))
            his.append(base[idx] + np.minimum(w_hi[idx] + shift, _TWO_PI))
        q, lo_k, hi_k = (np.concatenate(a) for a in (qs, los, his))
        lo = np.searchsorted(self.key, lo_k, "left")
        hi = np.searchsorted(self.key, np.minimum(hi_k, base[q] + _TWO_PI + 1e-9), "right")
        cnt = np.maximum(hi - lo, 0)
        total = int(cnt.sum())
        qrep = np.repeat(q, cnt)
        pos = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(total)
        return qrep, self.rows[pos]


# ----------------------------------------------------------------------------- seeds
def find_seeds(idx: HitIndex, geo: Geometry, s, x, y, z, ev, lay, free, triplet, d0_max, sigma):
    """Triplet seeds of one pass on the free hits (step 1 of :mod:`spectrocnn.reco.finder`).

    Returns the rows ``(a, b, c)`` of each seed's hits on the triplet's layers and the
    direction ``phi_a`` of its circle at ``a`` [rad], or None when there is none.
    """
    la, lb, lc = triplet
    rho_max = 1.0 / s.min_radius_mm
    a = np.flatnonzero(free & (lay == la))
    if not a.size:
        return None
    a, b = _doublets(idx, geo, s, x, y, ev, a, la, lb, d0_max, rho_max)
    if not a.size:
        return None
    n_doublets = len(a)
    a, b, c = _third_hits(idx, geo, s, x, y, ev, a, b, lc, d0_max, rho_max)
    log.debug("seeds %s: %d doublets, %d triplet candidates", triplet, n_doublets, len(a))
    if not a.size:
        return None
    return _triplet_cuts(geo, s, x, y, z, a, b, c, (la, lc), d0_max, rho_max, sigma)


def _doublets(idx, geo, s, x, y, ev, a, la, lb, d0_max, rho_max):
    """Pairs ``(a, b)`` of hit rows: for each hit ``a`` on layer ``la``, the free hits of layer
    ``lb`` within the azimuth window that ``|d0| <= d0_max`` and ``R >= min_radius`` allow
    (cylinders), or the largest crossing angle (planes)."""
    da, db = geo.dist[la], geo.dist[lb]
    if geo.is_cyl[lb]:
        d0 = d0_max
        half = abs(np.arcsin(min(d0 / da, 1.0)) - np.arcsin(min(d0 / db, 1.0)))
        half += abs(np.arcsin(min(db * rho_max / 2, 1.0)) - np.arcsin(min(da * rho_max / 2, 1.0)))
        half += 3 * s.road_mm / db
    else:
        half = (abs(db - da) * np.tan(np.radians(s.max_plane_angle_deg)) + s.road_mm) / geo.scale[
            lb
        ]
    wa = along(geo, np.full(len(a), lb), x[a], y[a])  # a's point in b's layer coordinate
    qa, b = idx.query(
        ev[a], np.full(len(a), lb), wa - half, wa + half, np.full(len(a), geo.is_cyl[lb])
    )
    return a[qa], b


def _third_hits(idx, geo, s, x, y, ev, a, b, lc, d0_max, rho_max):
    """Triplets ``(a, b, c)`` of hit rows: the free hits ``c`` of layer ``lc`` between the
    crossings of the extreme circles through each doublet, widened by ``road_mm``."""
    # the circles through a and b with |d0| <= d0_max span the curvatures
    # between those through a, b and the points +-d0_max off the origin perpendicular to
    # the chord (and |rho| <= rho_max); such a circle deviates from the straight line
    # through a and b by rho / 2 s (s - |ab|) at arc s from a, which moves the crossing
    # with layer c along the layer by that over cos(angle between line and layer normal)
    dx, dy = x[b] - x[a], y[b] - y[a]
    lab = np.hypot(dx, dy)
    ux, uy = dx / lab, dy / lab
    rho_lo = np.full(len(a), rho_max)
    rho_hi = np.full(len(a), -rho_max)
    for off in (-d0_max, d0_max):
        ox, oy = off * uy, -off * ux  # a point d0 off the origin, perpendicular to the chord
        ax, ay = x[a] - ox, y[a] - oy
        r_ob = np.hypot(x[b] - ox, y[b] - oy)
        rho_o = -2.0 * (ax * dy - ay * dx) / (np.hypot(ax, ay) * lab * r_ob)
        rho_lo, rho_hi = np.minimum(rho_lo, rho_o), np.maximum(rho_hi, rho_o)
    rho_lo = np.clip(rho_lo, -rho_max, rho_max)
    rho_hi = np.clip(rho_hi, -rho_max, rho_max)
    if geo.is_cyl[lc]:
        pu = x[a] * ux + y[a] * uy
        sc = -pu + np.sqrt(np.maximum(pu * pu - x[a] ** 2 - y[a] ** 2 + geo.radius[lc] ** 2, 0))
        qx, qy = x[a] + sc * ux, y[a] + sc * uy
        nlx, nly = qx / geo.radius[lc], qy / geo.radius[lc]
    else:
        mu = geo.mx[lc] * ux + geo.my[lc] * uy
        with np.errstate(divide="ignore"):
            sc = (geo.c[lc] - geo.mx[lc] * x[a] - geo.my[lc] * y[a]) / mu
        qx, qy = x[a] + sc * ux, y[a] + sc * uy
        nlx, nly = np.full(len(a), geo.mx[lc]), np.full(len(a), geo.my[lc])
    cos_b = np.maximum(np.abs(ux * nlx + uy * nly), 0.2)
    # along-layer direction (-nly, nlx) against the line's right-hand normal (uy, -ux)
    sign = np.where(-nly * uy - nlx * ux >= 0, 1.0, -1.0)
    lever = 0.5 * sc * np.maximum(sc - lab, 0) / cos_b / geo.scale[lc]
    L = np.full(len(a), lc)
    w0 = along(geo, L, qx, qy) + sign * lever * 0.5 * (rho_lo + rho_hi)
    half = lever * 0.5 * (rho_hi - rho_lo) + s.road_mm / geo.scale[lc]
    keep = np.isfinite(w0) & (sc > lab)
    a, b, w0, half = a[keep], b[keep], w0[keep], half[keep]
    wraps = np.full(len(a), bool(geo.is_cyl[lc]))
    qc, c = idx.query(ev[a], np.full(len(a), lc), w0 - half, w0 + half, wraps)
    return a[qc], b[qc], c


def _triplet_cuts(geo, s, x, y, z, a, b, c, outer, d0_max, rho_max, sigma):
    """The triplets whose exact circle passes the curvature and impact-parameter cuts and
    whose ``c`` lies within ``road_z_mm`` of the line through ``a`` and ``b`` in (arc, z);
    ``outer`` = (first, third) layer of the triplet. Returns ``a, b, c, phi_a``."""
    la, lc = outer
    abx, aby = x[b] - x[a], y[b] - y[a]
    bcx, bcy = x[c] - x[b], y[c] - y[b]
    lab, lbc, lac = np.hypot(abx, aby), np.hypot(bcx, bcy), np.hypot(x[c] - x[a], y[c] - y[a])
    rho = -2.0 * (abx * bcy - aby * bcx) / (lab * lbc * lac)
    dz = z[c] - (z[a] + (z[b] - z[a]) * _arc(lac, rho) / _arc(lab, rho))
    g = np.flatnonzero((np.abs(rho) <= rho_max) & (np.abs(dz) <= s.road_z_mm))
    a, b, c, rho = a[g], b[g], c[g], rho[g]
    phi_a = np.arctan2(aby[g], abx[g]) + np.arcsin(np.clip(rho * lab[g] / 2, -1, 1))
    _, d = _pca(x[a], y[a], phi_a, rho)
    # the triplet's own d0 is poorly measured (a parabola through three points extrapolated
    # back to the axis): allow 3 sigma of it, with the Lagrange weights at the axis
    t = -geo.dist[la] / (0.5 * (geo.dist[lc] - geo.dist[la]))
    amp = np.sqrt(((t - 1) * (t - 2) / 2) ** 2 + (t * (t - 2)) ** 2 + (t * (t - 1) / 2) ** 2)
    good = np.abs(d) <= d0_max + 3.0 * sigma * amp
    return a[good], b[good], c[good], phi_a[good]


# ----------------------------------------------------------------------------- road search
class _Candidates:
    """The hits of each candidate and their running sums: the x-y moments (unit weights)
    and the straight line of z against the arc length from the seed's first hit."""

    def __init__(self, n: int, n_layers: int, x, y, z, lay):
        self.x, self.y, self.z, self.lay = x, y, z, lay
        self.hits = np.full((n, n_layers), -1, np.int64)
        self.M = np.zeros((10, n))  # 1, x, y, r2, xx, xy, yy, xr2, yr2, r2r2
        self.Z = np.zeros((5, n))  # 1, s, z, ss, sz
        self.ZZ = np.zeros(n)

    def add(self, t, h, arc):
        """Add hit rows ``h`` at arc lengths ``arc`` to candidates ``t`` (no repeats)."""
        M, Z = self.M, self.Z
        self.hits[t, self.lay[h]] = h
        xh, yh = self.x[h], self.y[h]
        r2 = xh * xh + yh * yh
        for k, v in enumerate(
            (1.0, xh, yh, r2, xh * xh, xh * yh, yh * yh, xh * r2, yh * r2, r2 * r2)
        ):
            M[k, t] += v
        zh = self.z[h]
        for k, v in enumerate((1.0, arc, zh, arc * arc, arc * zh)):
            Z[k, t] += v
        self.ZZ[t] += zh * zh

    def circle(self, act):
        """Karimaki's circle ``(rho, phi, d)`` of candidates ``act`` from their moments."""
        Mt = self.M[:, act]
        n1 = Mt[0]
        xm, ym, r2m = Mt[1] / n1, Mt[2] / n1, Mt[3] / n1
        with np.errstate(invalid="ignore", divide="ignore"):
            return circle_from_moments(
                xm, ym, r2m,
                Mt[4] / n1 - xm * xm, Mt[5] / n1 - xm * ym, Mt[6] / n1 - ym * ym,
                Mt[7] / n1 - xm * r2m, Mt[8] / n1 - ym * r2m, Mt[9] / n1 - r2m * r2m,
            )  # fmt: skip

    def z_at(self, act, arc):
        """z of candidates ``act`` at arc lengths ``arc`` on their straight lines [mm]."""
        Zt = self.Z[:, act]
        with np.errstate(invalid="ignore", divide="ignore"):
            det = Zt[0] * Zt[3] - Zt[1] ** 2
            slope = (Zt[0] * Zt[4] - Zt[1] * Zt[2]) / det
            return (Zt[2] - slope * Zt[1]) / Zt[0] + slope * arc


def follow_roads(idx: HitIndex, geo: Geometry, s, x, y, z, ev, lay, w, sigma, seeds, triplet):
    """Extend seeds outward, then inward (steps 2 and 3 of :mod:`spectrocnn.reco.finder`).

    Returns ``hits, n_hits, chi2_ndf, good, fit, tan_lambda`` of the candidates with at
    least ``min_hits`` hits (``good``: those that pass the quality cuts), or None.
    """
    a, b, c, phi_seed = seeds
    n_layers = len(geo.dist)
    n = len(a)
    cand = _Candidates(n, n_layers, x, y, z, lay)
    ar = np.arange(n)
    lab = np.hypot(x[b] - x[a], y[b] - y[a])
    lac = np.hypot(x[c] - x[a], y[c] - y[a])
    rho0 = (
        -2.0
        * ((x[b] - x[a]) * (y[c] - y[b]) - (y[b] - y[a]) * (x[c] - x[b]))
        / (lab * np.hypot(x[c] - x[b], y[c] - y[b]) * lac)
    )
    cand.add(ar, a, np.zeros(n))
    cand.add(ar, b, _arc(lab, rho0))
    cand.add(ar, c, _arc(lac, rho0))
    la, _, lc = triplet
    missing = np.zeros(n, np.int64)
    alive = np.ones(n, bool)
    outward = list(range(lc + 1, n_layers))
    between = [L for L in range(la + 1, lc) if L not in triplet]
    inward = list(range(la - 1, -1, -1))
    for L in outward + between + inward:
        if (inward[0] if inward else None) == L:
            missing[:] = 0
            alive[:] = True
        act = np.flatnonzero(alive)
        if not act.size:
            continue
        q, h, arc = _next_hits(idx, geo, s, cand, ev, w, a[act], phi_seed[act], act, L)
        cand.add(act[q], h, arc)
        got = np.zeros(len(act), bool)
        got[q] = True
        missing[act[got]] = 0
        missing[act[~got]] += 1
        alive[act[missing[act] > s.max_missing]] = False
    return _quality(cand, s, sigma)


def _next_hits(idx, geo, s, cand, ev, w, a, phi_seed, act, L):
    """The best free hit of layer ``L`` in the road of each candidate ``act`` (first hit
    ``a``, seed direction ``phi_seed``): ``q`` (index into ``act``), its row ``h`` and its
    arc length from ``a``."""
    x, y, z = cand.x, cand.y, cand.z
    rho, phi, d = cand.circle(act)
    flip = np.cos(phi - phi_seed) < 0
    phi = np.where(flip, phi + np.pi, phi)
    rho, d = np.where(flip, -rho, rho), np.where(flip, -d, d)
    Lv = np.full(len(act), L)
    qx, qy, ok = _intersect(geo, Lv, d * np.sin(phi), -d * np.cos(phi), phi, rho)
    ex, ey = qx - x[a], qy - y[a]
    sign = np.where(ex * np.cos(phi_seed) + ey * np.sin(phi_seed) < 0, -1.0, 1.0)
    arc = sign * _arc(np.hypot(ex, ey), rho)
    z_pred = cand.z_at(act, arc)
    ok &= np.isfinite(z_pred) & np.isfinite(arc)
    wq = along(geo, Lv, qx, qy)
    road = s.road_mm / geo.scale[L]
    sel = np.flatnonzero(ok)
    q, h = idx.query(
        ev[a[sel]], Lv[sel], wq[sel] - road, wq[sel] + road,
        np.full(len(sel), bool(geo.is_cyl[L])),
    )  # fmt: skip
    q = sel[q]
    dw = (w[h] - wq[q]) if not geo.is_cyl[L] else _wrap(w[h] - wq[q])
    dz = z[h] - z_pred[q]
    chi = (dw * geo.scale[L] / s.road_mm) ** 2 + (dz / s.road_z_mm) ** 2
    inside = np.abs(dz) <= s.road_z_mm
    q, h, chi = q[inside], h[inside], chi[inside]
    o = np.lexsort((chi, q))
    q, h = q[o], h[o]
    first = np.r_[True, q[1:] != q[:-1]] if len(q) else np.zeros(0, bool)
    q, h = q[first], h[first]
    return q, h, arc[q]


def _quality(cand, s, sigma):
    """The candidates with at least ``min_hits`` hits, their fits and quality cuts (the
    return value of :func:`follow_roads`), or None."""
    hits = cand.hits
    n_hits = (hits >= 0).sum(axis=1)
    keep = np.flatnonzero(n_hits >= s.min_hits)
    if not keep.size:
        return None
    hits, n_hits = hits[keep], n_hits[keep]
    # z line chi-square from the running sums
    Zk = cand.Z[:, keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        sxx = Zk[3] - Zk[1] ** 2 / Zk[0]
        sxy = Zk[4] - Zk[1] * Zk[2] / Zk[0]
        syy = cand.ZZ[keep] - Zk[2] ** 2 / Zk[0]
        rss = np.maximum(syy - sxy * sxy / sxx, 0.0)
        tan_l = sxy / sxx
    chi2_z = rss / sigma**2 / (n_hits - 2)
    rows = hits[hits >= 0]  # grouped by candidate, in rank order
    offsets = np.r_[0, np.cumsum(n_hits)]
    fit = fit_circles(cand.x[rows], cand.y[rows], offsets, sigma)
    chi2_xy = fit.chi2 / np.maximum(fit.ndf, 1)
    good = (chi2_xy <= s.max_chi2_ndf) & (chi2_z <= s.max_chi2_ndf) & np.isfinite(fit.rho)
    quality = np.where(good, chi2_xy * (n_hits - 3) + chi2_z * (n_hits - 2), np.inf)
    return hits, n_hits, quality / (2 * n_hits - 5), good, fit, tan_l
