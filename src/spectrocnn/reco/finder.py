# One file for one algorithm: triplet seeding, the road search, ambiguity resolution and the
# finding report share the hit arrays and settings.
"""Track finding without truth: triplet seeds, a road search, ambiguity resolution.

The finder works in the bending (x-y) plane of a field along z and uses ``z`` as a second
measurement. It assumes nothing about where the particles come from beyond a largest
transverse impact parameter ``d0_max_mm`` and a smallest radius of curvature
``min_radius_mm``; vertices need not lie on the beam line. Layers are cylinders about z or
planes parallel to z (their normal in the x-y plane), ordered by their distance from the
z axis (cylinders: radius; planes: distance of the plane from the axis).

It runs in *passes* (iterative tracking, as in CMS's iterative tracking, CMS Collaboration,
JINST 9 (2014) P10009), each seeded on one triplet of layers and seeing only the hits that
earlier passes left free:

1. **Triplet seeds**, as in the ATLAS/ACTS seed finder (ACTS ``SeedFinder``: bottom, middle,
   top space points): for every free hit ``a`` on the first layer of the triplet, the hits
   ``b`` of the second layer within the azimuth window that ``|d0| <= d0_max_mm`` and
   ``R >= min_radius_mm`` allow; for every doublet, the hits ``c`` of the third layer
   between the crossings predicted by the two extreme circles through ``a`` and ``b``
   (curvature ``+-1/min_radius_mm``), widened by ``road_mm``. Each triplet's exact circle
   must satisfy the curvature and impact-parameter cuts, and ``c`` must lie within
   ``road_z_mm`` of the straight line through ``a`` and ``b`` in the (arc length, z) plane.
2. **Road search** (a combinatorial Kalman filter simplified to a refit at each step):
   each candidate is extended outward layer by layer, then inward to the innermost layer.
   At each layer the current circle (Karimaki's closed form from running sums of the hit
   moments, :func:`~spectrocnn.reco.circlefit.circle_from_moments`, O(1) per added hit) is
   intersected with the layer (Newton's method on the helix in arc length, exact for
   cylinders and planes), ``z`` is predicted from a straight-line fit of ``z`` against
   arc length, and the free hit with the smallest ``(dw / road_mm)^2 + (dz / road_z_mm)^2``
   inside the road (``dw`` along the layer) is added. A candidate is dropped after
   ``max_missing`` layers in a row without a hit.
3. **Quality cuts**: at least ``min_hits`` hits and a chi-square per degree of freedom of
   at most ``max_chi2_ndf`` both for the final Karimaki fit in x-y and for the straight
   line in (arc length, z), with the hit resolution ``sigma_mm``.
4. **Ambiguity resolution** (a greedy solver as ACTS's ``GreedyAmbiguityResolution``):
   candidates are ranked by number of hits, then by chi-square per degree of freedom;
   the best candidate is kept and every worse candidate sharing a hit with it is dropped,
   so a hit belongs to at most one track. This runs vectorised: in each round every
   candidate that is the best claimant of all its hits is kept.

Everything is vectorised over all candidates of many events (a batch of at most
``max_hits_per_batch`` hits); the Python loops run over passes and layers only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.reco.circlefit import CircleFit, circle_from_moments, fit_circles
from spectrocnn.simulate.geometry import CylinderLayer, PlaneLayer

__all__ = [
    "FinderSettings",
    "FoundTracks",
    "find_tracks",
    "finder_resolution",
    "finding_performance",
]

log = logging.getLogger(__name__)

_TWO_PI = 2.0 * np.pi
_SPAN = 8.0  # key units per (event, layer) group; along-layer coordinates lie in [0, 2 pi]


@dataclass(frozen=True)
class FinderSettings:
    """Cuts of the track finder.

    Parameters
    ----------
    seed_layers : tuple of (int, int, int)
        One triplet of layers per pass (indices in the order of distance from the z axis,
        0 innermost); a pass sees only the hits earlier passes left free. Triplets with a
        layer the detector lacks are skipped.
    min_radius_mm : float
        Smallest radius of curvature of a track in x-y [mm] (``p_T >= 0.3 |q| B R``).
    d0_max_mm : float
        Largest transverse distance of closest approach of a track to the z axis [mm].
    prompt_d0_mm : float or None
        The first triplet is seeded twice: first for tracks with ``|d0| <= prompt_d0_mm``
        (tighter windows, far fewer combinations in crowded events), then, on the hits
        left free, with ``d0_max_mm`` like every other triplet. None: no prompt pass.
    road_mm : float
        Half width of the road along the layer around the predicted crossing [mm].
    road_z_mm : float
        Half width of the road in z [mm].
    min_hits : int
        Hits a track needs (seed included), >= 3.
    max_missing : int
        Layers in a row without a hit after which a candidate stops, in each direction.
    max_chi2_ndf : float
        Largest chi-square per degree of freedom of the x-y circle and of the z line.
    max_plane_angle_deg : float
        Planes only: largest angle between a track and the plane's normal in x-y [deg],
        which bounds the seed doublets' window.
    max_hits_per_batch : int
        Events are processed in batches of about this many hits (memory bound).
    """

    seed_layers: tuple[tuple[int, int, int], ...] = ((3, 4, 5), (0, 1, 2), (7, 8, 9), (11, 12, 13))
    min_radius_mm: float = 100.0
    d0_max_mm: float = 40.0
    prompt_d0_mm: float | None = 2.0
    road_mm: float = 1.0
    road_z_mm: float = 1.0
    min_hits: int = 8
    max_missing: int = 3
    max_chi2_ndf: float = 10.0
    max_plane_angle_deg: float = 60.0
    max_hits_per_batch: int = 200_000

    def __post_init__(self) -> None:
        for name in ("min_radius_mm", "road_mm", "road_z_mm", "max_chi2_ndf"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 < v < np.inf):
                raise ConfigError(f"finder setting {name} must be a positive number, got {v!r}")
        if not (isinstance(self.d0_max_mm, int | float) and 0 <= self.d0_max_mm < np.inf):
            raise ConfigError(f"finder setting d0_max_mm must be >= 0, got {self.d0_max_mm!r}")
        p = self.prompt_d0_mm
        if p is not None and not (isinstance(p, int | float) and 0 <= p < np.inf):
            raise ConfigError(f"finder setting prompt_d0_mm must be >= 0 or None, got {p!r}")
        if not 0 < self.max_plane_angle_deg < 90:
            raise ConfigError(
                f"finder setting max_plane_angle_deg must be in (0, 90), got "
                f"{self.max_plane_angle_deg!r}"
            )
        for name, lo in (("min_hits", 3), ("max_missing", 0), ("max_hits_per_batch", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
                raise ConfigError(f"finder setting {name} must be an integer >= {lo}, got {v!r}")
        seeds = tuple(tuple(int(i) for i in t) for t in self.seed_layers)
        if not seeds or any(len(t) != 3 or len(set(t)) != 3 or min(t) < 0 for t in seeds):
            raise ConfigError(
                f"finder setting seed_layers must be triplets of distinct layer indices >= 0, "
                f"got {self.seed_layers!r}"
            )
        object.__setattr__(self, "seed_layers", tuple(tuple(sorted(t)) for t in seeds))


def finder_resolution(
    layers: Sequence[CylinderLayer | PlaneLayer],
    bz_T: float,
    settings: FinderSettings | None = None,
    mass_GeV: float = 0.13957,
) -> tuple[FinderSettings, float]:
    """Hit resolution and roads for the finder on a detector, multiple scattering included.

    The finder fits circles and straight lines without a scattering model, so scattering
    enters as an effective per-hit resolution: ``sigma_eff^2 = sigma_hit^2 + (1.5 theta0
    g)^2``, with ``sigma_hit`` the largest layer resolution, ``g`` the mean distance
    between consecutive layers and ``theta0`` the Highland angle
    (:func:`~spectrocnn.simulate.highland_theta0`) of the thickest layer for the softest
    track the finder accepts (``p_T = 0.3 |B| min_radius``, a particle of mass
    ``mass_GeV``, a pion by default). The roads become ``max(road, 8 sigma_eff)``. The
    factor 1.5 was set so that 100-particle lecture events with ``thickness_x0 = 0.01``
    keep an efficiency above 0.99.

    Parameters
    ----------
    layers : sequence of CylinderLayer or PlaneLayer
    bz_T : float
        Field along z [T].
    settings : FinderSettings, optional
        The settings to widen (defaults: :class:`FinderSettings`).
    mass_GeV : float
        Mass of the particles assumed for the scattering angle [GeV/c^2].

    Returns
    -------
    settings : FinderSettings
    sigma_mm : float
        The effective resolution to pass to :func:`find_tracks` [mm].
    """
    from dataclasses import replace

    from spectrocnn.simulate.constants import C_GEV_PER_T_MM
    from spectrocnn.simulate.material import highland_theta0

    s = settings or FinderSettings()
    geo = _geometry(layers)
    sigma = max(max(layer.resolution_um for layer in layers), 1.0) * 1e-3
    x0 = max(layer.thickness_x0 for layer in layers)
    if x0 > 0 and bz_T != 0:
        p = C_GEV_PER_T_MM * abs(bz_T) * s.min_radius_mm
        beta = p / np.hypot(p, mass_GeV)
        theta0 = float(highland_theta0(np.array([p]), np.array([beta]), np.array([1.0]),
                                       np.array([x0]))[0])  # fmt: skip
        gap = float(np.mean(np.diff(geo.dist)))
        sigma = float(np.hypot(sigma, 1.5 * theta0 * gap))
    s = replace(s, road_mm=max(s.road_mm, 8 * sigma), road_z_mm=max(s.road_z_mm, 8 * sigma))
    return s, sigma


@dataclass(frozen=True)
class FoundTracks:
    """Tracks found and fitted without truth (one row per track, sorted by event).

    Attributes
    ----------
    event : ndarray int64 (n,)
    hits : ndarray int64 (n, n_layers)
        Row of the track's hit on each layer (in the input arrays), -1 for none; no row
        appears in two tracks.
    n_hits : ndarray int64 (n,)
    fit : CircleFit
        Karimaki fit of each track's hits (reference point: the origin).
    tan_lambda : ndarray (n,)
        Slope dz/ds of the straight-line fit of z against transverse arc length.
    """

    event: np.ndarray
    hits: np.ndarray
    n_hits: np.ndarray
    fit: CircleFit
    tan_lambda: np.ndarray


def _empty(n_layers: int) -> FoundTracks:
    e = np.empty(0)
    fit = CircleFit(e, e, e, np.empty((0, 3, 3)), e, np.empty(0, np.int64))
    return FoundTracks(
        np.empty(0, np.int64), np.empty((0, n_layers), np.int64), np.empty(0, np.int64), fit, e
    )


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class _Geometry:
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


def _geometry(layers: Sequence[CylinderLayer | PlaneLayer]) -> _Geometry:
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
    return _Geometry(
        is_cyl[by_rank], radius[by_rank], mx[by_rank], my[by_rank], c[by_rank],
        t0[by_rank], scale[by_rank], dist[by_rank], rank, by_rank,
    )  # fmt: skip


def _along(geo: _Geometry, L: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
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


def _intersect(geo: _Geometry, L, px, py, phi, rho):
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


# ----------------------------------------------------------------------------- index
class _Index:
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


# ----------------------------------------------------------------------------- passes
def _seeds(idx: _Index, geo, s: FinderSettings, x, y, z, ev, lay, free, triplet, d0_max, sigma):
    la, lb, lc = triplet
    rho_max = 1.0 / s.min_radius_mm
    a = np.flatnonzero(free & (lay == la))
    if not a.size:
        return None
    # doublets: azimuth window from |d0| <= d0_max and R >= min_radius (cylinders), or
    # the largest crossing angle (planes)
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
    wa = _along(geo, np.full(len(a), lb), x[a], y[a])  # a's point in b's layer coordinate
    qa, b = idx.query(
        ev[a], np.full(len(a), lb), wa - half, wa + half, np.full(len(a), geo.is_cyl[lb])
    )
    a = a[qa]
    if not a.size:
        return None
    # third hit: the circles through a and b with |d0| <= d0_max span the curvatures
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
    w0 = _along(geo, L, qx, qy) + sign * lever * 0.5 * (rho_lo + rho_hi)
    half = lever * 0.5 * (rho_hi - rho_lo) + s.road_mm / geo.scale[lc]
    keep = np.isfinite(w0) & (sc > lab)
    a, b, w0, half = a[keep], b[keep], w0[keep], half[keep]
    wraps = np.full(len(a), bool(geo.is_cyl[lc]))
    qc, c = idx.query(ev[a], np.full(len(a), lc), w0 - half, w0 + half, wraps)
    a, b = a[qc], b[qc]
    log.debug("seeds %s: %d doublets, %d triplet candidates", triplet, len(keep), len(a))
    if not a.size:
        return None
    # the exact circle through a, b, c
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


def _follow(idx, geo, s, x, y, z, ev, lay, w, sigma, seeds, triplet):
    """Extend seeds outward, then inward; return the candidates' hit rows and quality."""
    a, b, c, phi_seed = seeds
    n_layers = len(geo.dist)
    n = len(a)
    hits = np.full((n, n_layers), -1, np.int64)
    ar = np.arange(n)
    # running sums: x-y moments (unit weights) and the z line against arc length from a
    M = np.zeros((10, n))  # 1, x, y, r2, xx, xy, yy, xr2, yr2, r2r2
    Z = np.zeros((5, n))  # 1, s, z, ss, sz
    ZZ = np.zeros(n)

    def add(t, h, arc):
        hits[t, lay[h]] = h
        xh, yh = x[h], y[h]
        r2 = xh * xh + yh * yh
        for k, v in enumerate(
            (1.0, xh, yh, r2, xh * xh, xh * yh, yh * yh, xh * r2, yh * r2, r2 * r2)
        ):
            M[k, t] += v
        zh = z[h]
        for k, v in enumerate((1.0, arc, zh, arc * arc, arc * zh)):
            Z[k, t] += v
        ZZ[t] += zh * zh

    lab = np.hypot(x[b] - x[a], y[b] - y[a])
    lac = np.hypot(x[c] - x[a], y[c] - y[a])
    rho0 = (
        -2.0
        * ((x[b] - x[a]) * (y[c] - y[b]) - (y[b] - y[a]) * (x[c] - x[b]))
        / (lab * np.hypot(x[c] - x[b], y[c] - y[b]) * lac)
    )
    add(ar, a, np.zeros(n))
    add(ar, b, _arc(lab, rho0))
    add(ar, c, _arc(lac, rho0))
    ta = np.stack([np.cos(phi_seed), np.sin(phi_seed)])
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
        Mt = M[:, act]
        n1 = Mt[0]
        xm, ym, r2m = Mt[1] / n1, Mt[2] / n1, Mt[3] / n1
        with np.errstate(invalid="ignore", divide="ignore"):
            rho, phi, d = circle_from_moments(
                xm, ym, r2m,
                Mt[4] / n1 - xm * xm, Mt[5] / n1 - xm * ym, Mt[6] / n1 - ym * ym,
                Mt[7] / n1 - xm * r2m, Mt[8] / n1 - ym * r2m, Mt[9] / n1 - r2m * r2m,
            )  # fmt: skip
        flip = np.cos(phi - phi_seed[act]) < 0
        phi = np.where(flip, phi + np.pi, phi)
        rho, d = np.where(flip, -rho, rho), np.where(flip, -d, d)
        Lv = np.full(len(act), L)
        qx, qy, ok = _intersect(geo, Lv, d * np.sin(phi), -d * np.cos(phi), phi, rho)
        ex, ey = qx - x[a[act]], qy - y[a[act]]
        sign = np.where(ex * ta[0, act] + ey * ta[1, act] < 0, -1.0, 1.0)
        arc = sign * _arc(np.hypot(ex, ey), rho)
        Zt = Z[:, act]
        with np.errstate(invalid="ignore", divide="ignore"):
            det = Zt[0] * Zt[3] - Zt[1] ** 2
            slope = (Zt[0] * Zt[4] - Zt[1] * Zt[2]) / det
            z_pred = (Zt[2] - slope * Zt[1]) / Zt[0] + slope * arc
        ok &= np.isfinite(z_pred) & np.isfinite(arc)
        wq = _along(geo, Lv, qx, qy)
        road = s.road_mm / geo.scale[L]
        sel = np.flatnonzero(ok)
        q, h = idx.query(
            ev[a[act[sel]]], Lv[sel], wq[sel] - road, wq[sel] + road,
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
        t = act[q]
        add(t, h, arc[q])
        got = np.zeros(len(act), bool)
        got[q] = True
        missing[act[got]] = 0
        missing[act[~got]] += 1
        alive[act[missing[act] > s.max_missing]] = False

    n_hits = (hits >= 0).sum(axis=1)
    keep = np.flatnonzero(n_hits >= s.min_hits)
    if not keep.size:
        return None
    hits, n_hits = hits[keep], n_hits[keep]
    # z line chi-square from the running sums
    Zk = Z[:, keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        sxx = Zk[3] - Zk[1] ** 2 / Zk[0]
        sxy = Zk[4] - Zk[1] * Zk[2] / Zk[0]
        syy = ZZ[keep] - Zk[2] ** 2 / Zk[0]
        rss = np.maximum(syy - sxy * sxy / sxx, 0.0)
        tan_l = sxy / sxx
    chi2_z = rss / sigma**2 / (n_hits - 2)
    rows = hits[hits >= 0]  # grouped by candidate, in rank order
    offsets = np.r_[0, np.cumsum(n_hits)]
    fit = fit_circles(x[rows], y[rows], offsets, sigma)
    chi2_xy = fit.chi2 / np.maximum(fit.ndf, 1)
    good = (chi2_xy <= s.max_chi2_ndf) & (chi2_z <= s.max_chi2_ndf) & np.isfinite(fit.rho)
    quality = np.where(good, chi2_xy * (n_hits - 3) + chi2_z * (n_hits - 2), np.inf)
    return hits, n_hits, quality / (2 * n_hits - 5), good, fit, tan_l


def _resolve(hits, n_hits, chi2_ndf, n_rows):
    """Greedy ambiguity resolution: indices of the kept candidates (no shared hit)."""
    rank = np.empty(len(n_hits), np.int64)
    rank[np.lexsort((chi2_ndf, -n_hits))] = np.arange(len(n_hits))
    cand, col = np.nonzero(hits >= 0)
    row = hits[cand, col]
    alive = np.ones(len(n_hits), bool)
    kept = np.zeros(len(n_hits), bool)
    while alive.any():
        sel = alive[cand]
        pc, pr = cand[sel], row[sel]
        best = np.full(n_rows, np.iinfo(np.int64).max)
        np.minimum.at(best, pr, rank[pc])
        beaten = np.zeros(len(n_hits), bool)
        beaten[pc[best[pr] != rank[pc]]] = True
        new = alive & ~beaten
        kept |= new
        used = np.zeros(n_rows, bool)
        used[pr[new[pc]]] = True
        lost = np.zeros(len(n_hits), bool)
        lost[pc[used[pr]]] = True
        alive &= ~lost
    return np.flatnonzero(kept)


def _find_batch(geo, s, x, y, z, ev, lay, sigma):
    n_layers = len(geo.dist)
    w = _along(geo, lay, x, y)
    free = np.ones(len(x), bool)
    out = []
    passes = [(t, s.d0_max_mm) for t in s.seed_layers if max(t) < n_layers]
    if passes and s.prompt_d0_mm is not None and s.prompt_d0_mm < s.d0_max_mm:
        passes.insert(0, (passes[0][0], s.prompt_d0_mm))
    for triplet, d0_max in passes:
        idx = _Index(np.flatnonzero(free), ev, lay, w, n_layers)
        seeds = _seeds(idx, geo, s, x, y, z, ev, lay, free, triplet, d0_max, sigma)
        if seeds is None or not len(seeds[0]):
            continue
        res = _follow(idx, geo, s, x, y, z, ev, lay, w, sigma, seeds, triplet)
        if res is None:
            continue
        hits, n_hits, chi2_ndf, good, fit, tan_l = res
        g = np.flatnonzero(good)
        k = g[_resolve(hits[g], n_hits[g], chi2_ndf[g], len(x))]
        free[hits[k][hits[k] >= 0]] = False
        out.append((hits[k], n_hits[k], fit, k, tan_l[k]))
        log.debug(
            "pass %s |d0| <= %g: %d seeds, %d candidates, %d tracks",
            triplet,
            d0_max,
            len(seeds[0]),
            len(hits),
            len(k),
        )
    return out


def find_tracks(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    layer: np.ndarray,
    event: np.ndarray,
    n_events: int,
    layers: Sequence[CylinderLayer | PlaneLayer],
    sigma_mm: float,
    settings: FinderSettings | None = None,
) -> FoundTracks:
    """Find and fit tracks in many events at once, without truth.

    The algorithm (triplet seeding, road search, quality cuts, greedy ambiguity
    resolution) is described in the module docstring.

    Parameters
    ----------
    x, y, z : ndarray (m,)
        Measured hit positions [mm]; hits with a NaN or infinite coordinate are ignored.
    layer : ndarray int (m,)
        Layer of each hit (index into ``layers``).
    event : ndarray int (m,)
        Event of each hit, 0 ... n_events - 1 (any order).
    n_events : int
    layers : sequence of CylinderLayer or PlaneLayer
        The detector's layers (cylinders about z, planes parallel to z), in the order of
        the ``layer`` numbers.
    sigma_mm : float
        Hit resolution along the layer and in z [mm], for the chi-square cuts and the fit.
    settings : FinderSettings, optional

    Returns
    -------
    FoundTracks
        Sorted by event; a hit row belongs to at most one track.

    Raises
    ------
    ConfigError
        For a detector the finder does not handle (fewer than 3 layers, a plane not
        parallel to z) or a non-positive ``sigma_mm``.
    """
    s = settings or FinderSettings()
    geo = _geometry(layers)
    n_layers = len(geo.dist)
    if not (np.isfinite(sigma_mm) and sigma_mm > 0):
        raise ConfigError(f"track finding needs a hit resolution > 0, got sigma_mm={sigma_mm!r}")
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    ev = np.asarray(event, dtype=np.int64)
    lay_in = np.asarray(layer, dtype=np.int64)
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    good &= (lay_in >= 0) & (lay_in < n_layers) & (ev >= 0) & (ev < n_events)
    rows = np.flatnonzero(good)
    rows = rows[np.argsort(ev[rows], kind="stable")]
    # batches of whole events with about max_hits_per_batch hits each
    counts = np.bincount(ev[rows], minlength=n_events)
    cum = np.cumsum(counts)
    bounds = [0]
    while bounds[-1] < n_events:
        start_hits = cum[bounds[-1] - 1] if bounds[-1] else 0
        nxt = int(np.searchsorted(cum, start_hits + s.max_hits_per_batch, "right"))
        bounds.append(min(n_events, max(nxt, bounds[-1] + 1)))
    ev_parts, hit_parts, nh_parts, fits, tl_parts = [], [], [], [], []
    for e0, e1 in pairwise(bounds):
        h0 = cum[e0 - 1] if e0 else 0
        r = rows[h0 : cum[e1 - 1]]
        if not r.size:
            continue
        for hits, n_hits, fit, k, tan_l in _find_batch(
            geo, s, x[r], y[r], z[r], ev[r] - e0, geo.rank[lay_in[r]], sigma_mm
        ):
            first = hits[np.arange(len(hits)), np.argmax(hits >= 0, axis=1)]
            ev_parts.append(ev[r][first])
            out = np.full_like(hits, -1)
            out[:, geo.by_rank] = np.where(hits >= 0, r[np.maximum(hits, 0)], -1)
            hit_parts.append(out)
            nh_parts.append(n_hits)
            fits.append(_take(fit, k))
            tl_parts.append(tan_l)
    if not ev_parts:
        return _empty(n_layers)
    event_out = np.concatenate(ev_parts)
    o = np.argsort(event_out, kind="stable")
    fit = _concat_fits(fits)
    return FoundTracks(
        event_out[o], np.concatenate(hit_parts)[o], np.concatenate(nh_parts)[o],
        _take(fit, o), np.concatenate(tl_parts)[o],
    )  # fmt: skip


def _take(fit: CircleFit, k) -> CircleFit:
    return CircleFit(fit.rho[k], fit.phi[k], fit.d[k], fit.cov[k], fit.chi2[k], fit.ndf[k])


def _concat_fits(fits: list[CircleFit]) -> CircleFit:
    return CircleFit(
        *(
            np.concatenate([getattr(f, n) for f in fits])
            for n in ("rho", "phi", "d", "cov", "chi2", "ndf")
        )
    )


def finding_performance(
    track_hits: np.ndarray, hit_particle: np.ndarray, min_hits: int
) -> dict[str, float | int]:
    """Efficiency, fake rate and duplicate rate of found tracks against the truth.

    Definitions (as in the ACTS/TrackML performance writers): a found track is *matched*
    to the particle that left more than 50 % of its hits (noise hits count as nobody's);
    a particle is *findable* when it left at least ``min_hits`` hits.

    * efficiency = findable particles matched by at least one track / findable particles;
    * fake rate = tracks matched to no particle / tracks;
    * duplicate rate = tracks matched to a particle that another (better-ranked, i.e.
      earlier) track is already matched to / tracks.

    Parameters
    ----------
    track_hits : ndarray int (n_tracks, n_layers)
        Hit rows of each track, -1 for none (as :attr:`FoundTracks.hits`).
    hit_particle : ndarray int (m,)
        Particle of each hit row (-1 for noise); particle ids are >= 0 and unique over
        the events considered.
    min_hits : int
        Hits a particle needs to count as findable.

    Returns
    -------
    dict
        ``efficiency``, ``fake_rate``, ``duplicate_rate`` (NaN when undefined: no findable
        particle, no track), and the counts ``n_tracks``, ``n_findable``,
        ``n_findable_matched``, ``n_fake``, ``n_duplicate``, ``match_fraction`` (0.5) and
        ``findable_min_hits``.
    """
    hit_particle = np.asarray(hit_particle, dtype=np.int64)
    track_hits = np.asarray(track_hits, dtype=np.int64)
    n_tracks = len(track_hits)
    part = hit_particle[hit_particle >= 0]
    ids, counts = np.unique(part, return_counts=True)
    findable = ids[counts >= min_hits]
    matched = np.full(n_tracks, -1, np.int64)
    if n_tracks:
        owner = np.where(track_hits >= 0, hit_particle[np.maximum(track_hits, 0)], -1)
        n_hits = (track_hits >= 0).sum(axis=1)
        t, col = np.nonzero(owner >= 0)
        p = owner[t, col]
        pairs, npair = np.unique(np.stack([t, p], axis=1), axis=0, return_counts=True)
        major = npair * 2 > n_hits[pairs[:, 0]]  # more than half of the track's hits
        matched[pairs[major, 0]] = pairs[major, 1]
    is_matched = matched >= 0
    n_fake = int(np.count_nonzero(~is_matched))
    m = matched[is_matched]
    n_duplicate = int(len(m) - len(np.unique(m)))
    n_found = int(np.count_nonzero(np.isin(findable, m)))
    nan = float("nan")
    return {
        "efficiency": n_found / len(findable) if len(findable) else nan,
        "fake_rate": n_fake / n_tracks if n_tracks else nan,
        "duplicate_rate": n_duplicate / n_tracks if n_tracks else nan,
        "n_tracks": int(n_tracks),
        "n_findable": len(findable),
        "n_findable_matched": n_found,
        "n_fake": n_fake,
        "n_duplicate": n_duplicate,
        "match_fraction": 0.5,
        "findable_min_hits": int(min_hits),
    }
