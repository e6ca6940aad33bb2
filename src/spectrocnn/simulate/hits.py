"""Hits: detector response to crossings (efficiency, Gaussian smearing) and noise hits."""

from __future__ import annotations

import numpy as np

from spectrocnn.simulate.crossings import Crossings
from spectrocnn.simulate.geometry import Detector

__all__ = ["measure", "noise_hits"]


def _layer_response(detector: Detector) -> tuple[np.ndarray, np.ndarray]:
    sigma = np.array([layer.resolution_um for layer in detector.layers]) * 1e-3
    eff = np.array([layer.efficiency for layer in detector.layers])
    return sigma, eff


def measure(
    detector: Detector,
    crossings: Crossings,
    particle_event: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Turn crossings into measured hits.

    Each crossing leaves a hit with its layer's efficiency. The hit is displaced by
    independent Gaussians of standard deviation ``resolution_um`` along the layer's two
    measurement directions, staying on the surface: the arc r*phi and z on a cylinder,
    ``u`` and ``v`` on a plane.

    Parameters
    ----------
    detector : Detector
    crossings : Crossings
    particle_event : ndarray int64 (n_particles,)
        Event index of each particle.
    rng : numpy.random.Generator
        Draws 3 numbers per crossing, whatever the settings.

    Returns
    -------
    dict of str -> ndarray
        The columns of :data:`~spectrocnn.simulate.events.HIT_COLUMNS` and
        :data:`~spectrocnn.simulate.events.HIT_MOMENTUM_COLUMNS` (the crossing's momentum,
        :attr:`Crossings.momentum`: arriving at the layer, before scattering in it).
    """
    sigma, eff = _layer_response(detector)
    la = detector.arrays
    is_cyl, radius, u, v = la.is_cylinder, la.radius_mm, la.u, la.v
    m = len(crossings)
    layer = crossings.layer.astype(np.intp)
    keep = rng.random(m) < eff[layer]
    g = rng.standard_normal((m, 2)) * sigma[layer][:, None]
    true = crossings.position
    cyl = is_cyl[layer]
    if cyl.all():
        meas = np.empty_like(true)
        _smear_cylinder(true, radius[layer], g, meas)
    else:
        meas = true.copy()
        if np.any(cyl):
            sub = np.empty((int(cyl.sum()), 3))
            _smear_cylinder(true[cyl], radius[layer[cyl]], g[cyl], sub)
            meas[cyl] = sub
        pl = ~cyl
        lp = layer[pl]
        meas[pl] = true[pl] + g[pl, :1] * u[lp] + g[pl, 1:] * v[lp]
    mom = crossings.momentum
    if not keep.all():
        idx = np.flatnonzero(keep)
        true, meas, mom = true[idx], meas[idx], mom[idx]
    else:
        idx = slice(None)
    part = crossings.particle[idx]
    return {
        "event": np.asarray(particle_event, dtype=np.int64)[part],
        "particle": part.astype(np.int64),
        "layer": crossings.layer[idx].astype(np.int16),
        "x": meas[:, 0],
        "y": meas[:, 1],
        "z": meas[:, 2],
        "true_x": true[:, 0],
        "true_y": true[:, 1],
        "true_z": true[:, 2],
        "true_px": mom[:, 0],
        "true_py": mom[:, 1],
        "true_pz": mom[:, 2],
    }


def _smear_cylinder(true: np.ndarray, r: np.ndarray, g: np.ndarray, out: np.ndarray) -> None:
    """Rotate points on cylinders by the arc g[:, 0] / r and shift z by g[:, 1]."""
    dphi = g[:, 0] / r
    c, s = np.cos(dphi), np.sin(dphi)
    out[:, 0] = true[:, 0] * c - true[:, 1] * s
    out[:, 1] = true[:, 0] * s + true[:, 1] * c
    out[:, 2] = true[:, 2] + g[:, 1]


def noise_hits(
    detector: Detector, n_events: int, mean_per_layer: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random noise hits, uniform over each layer's active area.

    The number of noise hits of each layer in each event is Poisson with mean
    ``mean_per_layer``. Positions: uniform in phi and z on a cylinder, uniform in ``u`` and
    ``v`` on a plane. Truth columns are NaN and ``particle`` is -1.

    Parameters
    ----------
    detector : Detector
    n_events : int
    mean_per_layer : float
        Mean number of noise hits per layer per event.
    rng : numpy.random.Generator
        Not used when ``mean_per_layer`` is 0.

    Returns
    -------
    dict of str -> ndarray
        The hit columns (true momentum columns included, NaN), grouped by event.
    """
    n_layers = detector.n_layers
    if mean_per_layer > 0 and n_events > 0:
        counts = rng.poisson(mean_per_layer, size=(n_events, n_layers))
    else:
        counts = np.zeros((n_events, n_layers), dtype=np.int64)
    total = int(counts.sum())
    event = np.repeat(np.repeat(np.arange(n_events), n_layers), counts.ravel())
    layer = np.repeat(np.tile(np.arange(n_layers), n_events), counts.ravel())
    la = detector.arrays
    is_cyl, radius, half_z, center = la.is_cylinder, la.radius_mm, la.half_length_mm, la.center_mm
    u, v, hw, hh = la.u, la.v, la.half_width_mm, la.half_height_mm
    a = rng.random((total, 2)) if total else np.empty((0, 2))
    pos = np.empty((total, 3))
    cyl = is_cyl[layer]
    phi = 2 * np.pi * a[cyl, 0]
    r = radius[layer[cyl]]
    pos[cyl, 0] = r * np.cos(phi)
    pos[cyl, 1] = r * np.sin(phi)
    pos[cyl, 2] = (2 * a[cyl, 1] - 1) * half_z[layer[cyl]]
    pl = ~cyl
    lp = layer[pl]
    du = ((2 * a[pl, 0] - 1) * hw[lp])[:, None]
    dv = ((2 * a[pl, 1] - 1) * hh[lp])[:, None]
    pos[pl] = center[lp] + du * u[lp] + dv * v[lp]
    nan = np.full(total, np.nan)
    return {
        "event": event.astype(np.int64),
        "particle": np.full(total, -1, dtype=np.int64),
        "layer": layer.astype(np.int16),
        "x": pos[:, 0],
        "y": pos[:, 1],
        "z": pos[:, 2],
        "true_x": nan,
        "true_y": nan.copy(),
        "true_z": nan.copy(),
        "true_px": nan.copy(),
        "true_py": nan.copy(),
        "true_pz": nan.copy(),
    }
