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
``max_hits_per_batch`` hits); the Python loops run over passes and layers only. The
geometry, the seeds and the road search are in :mod:`spectrocnn.reco._finder_core`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from spectrocnn._validate import check_int
from spectrocnn.errors import ConfigError
from spectrocnn.reco._finder_core import HitIndex, along, find_seeds, follow_roads, layer_geometry
from spectrocnn.reco.circlefit import CircleFit
from spectrocnn.simulate.geometry import CylinderLayer, PlaneLayer

__all__ = [
    "FinderSettings",
    "FoundTracks",
    "find_tracks",
    "finder_resolution",
    "finding_performance",
]

log = logging.getLogger(__name__)


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
            check_int(f"finder setting {name}", getattr(self, name), minimum=lo)
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
    geo = layer_geometry(layers)
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
    w = along(geo, lay, x, y)
    free = np.ones(len(x), bool)
    out = []
    passes = [(t, s.d0_max_mm) for t in s.seed_layers if max(t) < n_layers]
    if passes and s.prompt_d0_mm is not None and s.prompt_d0_mm < s.d0_max_mm:
        passes.insert(0, (passes[0][0], s.prompt_d0_mm))
    for triplet, d0_max in passes:
        idx = HitIndex(np.flatnonzero(free), ev, lay, w, n_layers)
        seeds = find_seeds(idx, geo, s, x, y, z, ev, lay, free, triplet, d0_max, sigma)
        if seeds is None or not len(seeds[0]):
            continue
        res = follow_roads(idx, geo, s, x, y, z, ev, lay, w, sigma, seeds, triplet)
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
    geo = layer_geometry(layers)
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
