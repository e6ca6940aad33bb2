"""Track finding without truth, for tracks from the origin in a barrel of cylinders.

A circle through the origin becomes a straight line ``2 a u + 2 b v = 1`` under the
conformal map ``(u, v) = (x, y) / r^2``, where ``(a, b)`` is the circle's centre, and a hit
at distance ``delta`` from the circle lies at distance ``delta / r^2`` from the line. So the
circle of a track candidate is a weighted orthogonal straight-line fit (weights ``r^4``),
computed from running sums in O(1) per added hit. The finder

1. seeds candidates from pairs of hits on two inner layers of the same event whose
   azimuths are close (``seed_dphi_rad``),
2. follows each candidate outward layer by layer: it predicts the crossing with the next
   cylinder from the current circle, takes the hit of that layer nearest in azimuth (found
   by binary search in the hits sorted by event, layer and azimuth) if it lies within
   ``window_mm``, and refits,
3. keeps candidates with at least ``min_hits`` hits, removes identical ones, and fits each
   with :func:`~spectrocnn.reco.circlefit.fit_circles`.

Everything is vectorised over all candidates of all events of a chunk; the Python loop
runs over layers only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spectrocnn.reco.circlefit import CircleFit, fit_circles

__all__ = ["FinderSettings", "FoundTracks", "find_tracks"]

_TWO_PI = 2.0 * np.pi


@dataclass(frozen=True)
class FinderSettings:
    """Cuts of the track finder.

    Parameters
    ----------
    window_mm : float
        Largest distance along the layer between the predicted crossing and a hit [mm].
    seed_dphi_rad : float
        Largest azimuth difference between the two hits of a seed [rad].
    seed_layers : tuple of (int, int)
        Layer pairs (indices in radius order) that seeds are made from.
    min_hits : int
        Hits a track needs (seed included).
    max_missing : int
        Layers in a row without a hit after which a candidate is dropped.
    """

    window_mm: float = 1.0
    seed_dphi_rad: float = 0.25
    seed_layers: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))
    min_hits: int = 8
    max_missing: int = 3


@dataclass(frozen=True)
class FoundTracks:
    """Tracks found and fitted without truth (one row per track).

    Attributes
    ----------
    event : ndarray int64 (n,)
    hits : ndarray int64 (n, n_layers)
        Row of the track's hit on each layer (in the input arrays), -1 for none.
    n_hits : ndarray int64 (n,)
    fit : CircleFit
    """

    event: np.ndarray
    hits: np.ndarray
    n_hits: np.ndarray
    fit: CircleFit


def _empty(n_layers: int) -> FoundTracks:
    e = np.empty(0)
    fit = CircleFit(e, e, e, np.empty((0, 3, 3)), e, np.empty(0, np.int64))
    return FoundTracks(
        np.empty(0, np.int64), np.empty((0, n_layers), np.int64), np.empty(0, np.int64), fit
    )


def find_tracks(
    x: np.ndarray,
    y: np.ndarray,
    layer: np.ndarray,
    event: np.ndarray,
    n_events: int,
    radii_mm: np.ndarray,
    sigma_mm: float,
    settings: FinderSettings | None = None,
) -> FoundTracks:
    """Find and fit tracks from the origin in many events at once.

    Parameters
    ----------
    x, y : ndarray (m,)
        Measured hit positions [mm]; hits with a NaN or infinite coordinate are ignored.
    layer : ndarray int (m,)
        Layer of each hit (index into ``radii_mm``).
    event : ndarray int (m,)
        Event of each hit, 0 ... n_events - 1.
    n_events : int
    radii_mm : ndarray (n_layers,)
        Radii of the cylindrical layers [mm].
    sigma_mm : float
        Hit resolution used in the final fit [mm].
    settings : FinderSettings, optional

    Returns
    -------
    FoundTracks
    """
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.all():  # hits with NaN/inf coordinates (a damaged file) are left out
        kept = np.flatnonzero(finite)
        found = find_tracks(
            np.asarray(x)[kept], np.asarray(y)[kept], np.asarray(layer)[kept],
            np.asarray(event)[kept], n_events, radii_mm, sigma_mm, settings,
        )  # fmt: skip
        rows = np.where(found.hits >= 0, kept[np.maximum(found.hits, 0)], -1)
        return FoundTracks(found.event, rows, found.n_hits, found.fit)
    s = settings or FinderSettings()
    radii = np.asarray(radii_mm, dtype=np.float64)
    n_layers = len(radii)
    by_radius = np.argsort(radii, kind="stable")
    rank = np.empty(n_layers, np.int64)
    rank[by_radius] = np.arange(n_layers)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ev = np.asarray(event, dtype=np.int64)
    lay = rank[np.asarray(layer, dtype=np.int64)]  # layers renumbered by radius
    rad = radii[by_radius]
    phi = np.arctan2(y, x) + np.pi  # [0, 2 pi]
    group = ev * n_layers + lay
    key = group * 8.0 + phi  # sorted by event, layer, azimuth
    order = np.argsort(key, kind="stable")
    key_s = key[order]
    group_s = group[order]
    phi_s = phi[order]
    r2 = x * x + y * y
    u, v = x / r2, y / r2
    w = r2 * r2  # conformal residual ~ distance / r^2

    def group_range(g):
        return np.searchsorted(group_s, g, "left"), np.searchsorted(group_s, g, "right")

    # ---- seeds
    seeds_a, seeds_b = [], []
    for la, lb in s.seed_layers:
        if lb >= n_layers:
            continue
        a_all = order[lay[order] == la]
        for shift in (0.0, _TWO_PI, -_TWO_PI):  # azimuth wraps around at 0 = 2 pi
            a_rows = a_all
            if shift:
                near = np.abs(phi[a_all] + shift - np.pi) < np.pi + s.seed_dphi_rad
                a_rows = a_all[near]
            lo_key = (ev[a_rows] * n_layers + lb) * 8.0 + phi[a_rows] + shift
            lo = np.searchsorted(key_s, lo_key - s.seed_dphi_rad, "left")
            hi = np.searchsorted(key_s, lo_key + s.seed_dphi_rad, "right")
            cnt = hi - lo
            a_rep = np.repeat(a_rows, cnt)
            b_idx = np.repeat(lo - np.r_[0, np.cumsum(cnt)[:-1]], cnt) + np.arange(cnt.sum())
            same = group_s[b_idx] == ev[a_rep] * n_layers + lb
            seeds_a.append(a_rep[same])
            seeds_b.append(order[b_idx[same]])
    if not seeds_a or not sum(len(a) for a in seeds_a):
        return _empty(n_layers)
    a, b = np.concatenate(seeds_a), np.concatenate(seeds_b)
    n_seed = len(a)
    seed_ev = ev[a]
    hits = np.full((n_seed, n_layers), -1, np.int64)
    hits[np.arange(n_seed), lay[a]] = a
    hits[np.arange(n_seed), lay[b]] = b
    sw = w[a] + w[b]
    suu = w[a] * u[a] ** 2 + w[b] * u[b] ** 2
    suv = w[a] * u[a] * v[a] + w[b] * u[b] * v[b]
    svv = w[a] * v[a] ** 2 + w[b] * v[b] ** 2
    su = w[a] * u[a] + w[b] * u[b]
    sv = w[a] * v[a] + w[b] * v[b]
    last_phi = phi[b]
    missing = np.zeros(n_seed, np.int64)
    alive = np.ones(n_seed, bool)
    seed_top = np.maximum(lay[a], lay[b])

    # ---- follow outward
    for L in range(n_layers):  # inner layers a seed skipped are filled in too
        act = np.flatnonzero(alive & (hits[:, L] < 0))
        if not act.size:
            continue
        # orthogonal line fit n . (u, v) = d in the conformal plane; centre = n / (2 d)
        W = sw[act]
        mu, mv = su[act] / W, sv[act] / W
        cuu = suu[act] / W - mu * mu
        cuv = suv[act] / W - mu * mv
        cvv = svv[act] / W - mv * mv
        theta = 0.5 * np.arctan2(2.0 * cuv, cuu - cvv)  # direction of the line
        nu, nv = -np.sin(theta), np.cos(theta)
        dline = nu * mu + nv * mv
        with np.errstate(divide="ignore", invalid="ignore"):
            ca, cb = nu / (2.0 * dline), nv / (2.0 * dline)
        R = np.hypot(ca, cb)
        rl = rad[L]
        ok = np.isfinite(R) & (rl <= 2 * R)
        # crossing with the cylinder: the two points at azimuth of centre +- acos(r / 2R)
        with np.errstate(invalid="ignore"):
            half = np.arccos(np.clip(rl / (2 * R), -1.0, 1.0))
        base = np.arctan2(cb, ca) + np.pi
        p1, p2 = base + half, base - half
        d1 = np.abs(np.angle(np.exp(1j * (p1 - last_phi[act]))))
        d2 = np.abs(np.angle(np.exp(1j * (p2 - last_phi[act]))))
        pred = np.mod(np.where(d1 < d2, p1, p2), _TWO_PI)
        g = seed_ev[act] * n_layers + L
        lo, hi = group_range(g)
        pos = np.searchsorted(key_s, g * 8.0 + pred)
        best = np.full(len(act), -1, np.int64)
        best_d = np.full(len(act), np.inf)
        for cand in (pos - 1, pos, lo, hi - 1):  # neighbours in azimuth, and the wrap-around
            valid = (cand >= lo) & (cand < hi)
            c = np.where(valid, cand, 0)
            dphi = np.abs(np.angle(np.exp(1j * (phi_s[c] - pred))))
            dist = np.where(valid, dphi * rl, np.inf)
            better = dist < best_d
            best_d = np.where(better, dist, best_d)
            best = np.where(better, c, best)
        take = ok & (best_d <= s.window_mm)
        t_act, h = act[take], order[best[take]]
        hits[t_act, L] = h
        sw[t_act] += w[h]
        suu[t_act] += w[h] * u[h] ** 2
        suv[t_act] += w[h] * u[h] * v[h]
        svv[t_act] += w[h] * v[h] ** 2
        su[t_act] += w[h] * u[h]
        sv[t_act] += w[h] * v[h]
        last_phi[t_act] = phi[h]
        missing[t_act] = 0
        miss = act[~take & (seed_top[act] < L)]
        missing[miss] += 1
        alive[miss[missing[miss] > s.max_missing]] = False

    n_hits = (hits >= 0).sum(axis=1)
    keep = n_hits >= s.min_hits
    if not keep.any():
        return _empty(n_layers)
    hits, seed_ev, n_hits = hits[keep], seed_ev[keep], n_hits[keep]
    hits, first = np.unique(hits, axis=0, return_index=True)  # identical candidates once
    seed_ev, n_hits = seed_ev[first], n_hits[first]
    srt = np.argsort(seed_ev, kind="stable")
    hits, seed_ev, n_hits = hits[srt], seed_ev[srt], n_hits[srt]
    rows = hits[hits >= 0]  # row-major: grouped by candidate, in radius order
    offsets = np.r_[0, np.cumsum(n_hits)]
    fit = fit_circles(x[rows], y[rows], offsets, sigma_mm)
    # back to the caller's layer numbering
    out = np.full_like(hits, -1)
    out[:, by_radius] = hits
    return FoundTracks(seed_ev, out, n_hits, fit)
