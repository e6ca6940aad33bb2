"""The classical baseline: fit every track, call an event 'high' by its stiffest track."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.metrics import best_cut_accuracy, roc_auc
from spectrocnn.reco.circlefit import CircleFit, fit_circles, pt_from_curvature
from spectrocnn.simulate.events import EventBatch

__all__ = ["TrackFits", "classify_events", "fit_truth_tracks"]


@dataclass(frozen=True)
class TrackFits:
    """Fitted tracks (one row per fitted track).

    Attributes
    ----------
    event : ndarray int64 (n,)
    particle : ndarray int64 (n,)
        Row of the particle in the batch (-1 when found without truth).
    n_hits : ndarray int64 (n,)
    pt_GeV : ndarray (n,)
        Transverse momentum from the fitted curvature, ``0.299792458 |q| B R`` with each
        particle's own |q| [GeV/c].
    fit : CircleFit
    """

    event: np.ndarray
    particle: np.ndarray
    n_hits: np.ndarray
    pt_GeV: np.ndarray
    fit: CircleFit


def fit_truth_tracks(
    batch: EventBatch, bz_T: float, resolution_um: float | np.ndarray
) -> TrackFits:
    """Fit the hits of each particle (truth association) with a circle.

    Parameters
    ----------
    batch : EventBatch
    bz_T : float
        The uniform field along z [T].
    resolution_um : float or ndarray (n_layers,)
        Hit resolution, per layer if an array [um]; 0 is replaced by 1 um for the weights.

    Returns
    -------
    TrackFits
        Particles with at least 3 hits (hits with a NaN or infinite ``x`` or ``y``, as in a
        damaged file, are left out). p_T uses each particle's charge from
        ``batch.particles.charge`` (|q| = 2 for He4); a particle stored with charge 0 (hits
        of a neutral particle, which the simulator no longer makes) is not fitted.
    """
    if bz_T == 0:
        raise ConfigError("fit-tracks needs a magnetic field along z, got B_z = 0")
    h = batch.hits
    track = (h.particle >= 0) & np.isfinite(h.x) & np.isfinite(h.y)  # NaN/inf: not measured
    if track.any():  # p_T needs |q| > 0
        charged = batch.particles.charge != 0
        track[track] = charged[h.particle[track]]
    part = h.particle[track]
    if np.any(np.diff(part) < 0):  # keep each particle's hits together
        order = np.argsort(part, kind="stable")
    else:
        order = slice(None)
    part = part[order]
    x, y, layer = h.x[track][order], h.y[track][order], h.layer[track][order]
    res = np.asarray(resolution_um, dtype=np.float64)
    sigma = (res[layer] if res.ndim else np.full(len(x), float(res))) * 1e-3
    sigma = np.where(sigma > 0, sigma, 1e-3)
    uniq, counts = np.unique(part, return_counts=True)
    ok = counts >= 3
    keep = np.repeat(ok, counts)
    offsets = np.r_[0, np.cumsum(counts[ok])]
    fit = fit_circles(x[keep], y[keep], offsets, sigma[keep])
    particles = uniq[ok]
    pt = pt_from_curvature(fit.rho, bz_T, batch.particles.charge[particles])
    return TrackFits(
        batch.particles.event[particles], particles, counts[ok].astype(np.int64), pt, fit
    )


def classify_events(fits: TrackFits, labels: np.ndarray) -> dict[str, float | int]:
    """Score each event by its highest fitted p_T and report accuracy and ROC AUC.

    Parameters
    ----------
    fits : TrackFits
    labels : ndarray uint8 (n_events,)

    Returns
    -------
    dict
        ``accuracy`` at the best cut, ``cut_GeV``, ``roc_auc``, ``n_events``, ``n_tracks``,
        and ``scores`` (ndarray, highest fitted p_T of each event, 0 without tracks).
    """
    n = len(labels)
    scores = np.zeros(n)
    np.maximum.at(scores, fits.event, fits.pt_GeV)
    acc, cut = best_cut_accuracy(labels, scores)
    return {
        "accuracy": acc,
        "cut_GeV": cut,
        "roc_auc": roc_auc(labels, scores),
        "n_events": n,
        "n_tracks": len(fits.pt_GeV),
        "scores": scores,
    }
