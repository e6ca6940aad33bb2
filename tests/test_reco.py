"""The classical baseline: circle fit pulls (Gluckstern), classification figures."""

from __future__ import annotations

import numpy as np
import pytest

from spectrocnn.metrics import best_cut_accuracy, roc_auc, roc_curve
from spectrocnn.reco import (
    classify_events,
    find_tracks,
    fit_circles,
    fit_truth_tracks,
    gluckstern_sigma_k,
)
from spectrocnn.simulate import (
    C_GEV_PER_T_MM,
    ParticleGun,
    Simulation,
    lecture_detector,
    simulate_events,
)


def test_exact_circle_is_recovered():
    # points on a circle of radius 500 mm through the origin, turning clockwise
    R, phi0 = 500.0, 0.3
    s = np.linspace(50, 200, 16)
    alpha = s / R
    cx, cy = R * np.sin(phi0), -R * np.cos(phi0)  # centre to the right of the motion
    x = cx - R * np.sin(phi0 - alpha)
    y = cy + R * np.cos(phi0 - alpha)
    fit = fit_circles(x, y, np.array([0, 16]), 0.01)
    assert fit.rho[0] == pytest.approx(1 / R, rel=1e-9)
    assert fit.d[0] == pytest.approx(0.0, abs=1e-9)
    assert fit.phi[0] == pytest.approx(phi0, abs=1e-9)
    assert fit.chi2[0] == pytest.approx(0.0, abs=1e-12)


def test_curvature_pull_matches_gluckstern():
    """No scattering: (k_fit - k_true) / sigma_Gluckstern has a standard deviation in [0.9, 1.1]."""
    eps_um = 50.0
    det = lecture_detector(resolution_um=eps_um)
    # stiff tracks: the 16 points are close to equally spaced along the projected length
    sim = Simulation(det, ParticleGun(p_low_GeV=(2.0, 10.0)), high_fraction=0.0)
    batch = simulate_events(sim, 1000, rng=21)
    fits = fit_truth_tracks(batch, 2.0, eps_um)
    assert np.all(fits.n_hits == 16)
    pt = np.hypot(batch.particles.px, batch.particles.py)[fits.particle]
    q = batch.particles.charge[fits.particle]
    k_true = C_GEV_PER_T_MM * 2.0 * q / pt  # clockwise (q > 0 in +z field) is positive
    sigma = gluckstern_sigma_k(eps_um * 1e-3, 150.0, 16)
    pull = (fits.fit.rho - k_true) / sigma
    assert 0.9 <= np.std(pull) <= 1.1
    assert abs(np.mean(pull)) < 0.1
    # the fit's own uncertainty agrees with Gluckstern for these tracks
    assert np.median(fits.fit.sigma_rho) == pytest.approx(sigma, rel=0.1)


def test_truth_fit_classifies_lecture_events():
    batch = simulate_events(Simulation(), 500, rng=2)
    result = classify_events(fit_truth_tracks(batch, 2.0, 50.0), batch.labels)
    assert result["accuracy"] >= 0.99
    assert result["roc_auc"] >= 0.99
    assert 0.5 < result["cut_GeV"] < 5.0


def test_roc_and_auc_closed_forms():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc(labels, [0.0, 0.0, 1.0, 1.0]) == 1.0
    assert roc_auc(labels, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))
    fpr, tpr, thr = roc_curve(labels, [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1.0, 1.0])
    assert thr[0] == np.inf
    # two Gaussians one sigma apart: AUC = Phi(1 / sqrt(2))
    rng = np.random.default_rng(0)
    n = 200_000
    s = np.r_[rng.normal(0, 1, n), rng.normal(1, 1, n)]
    y = np.r_[np.zeros(n), np.ones(n)]
    from scipy.stats import norm

    assert roc_auc(y, s) == pytest.approx(norm.cdf(1 / np.sqrt(2)), abs=3e-3)
    acc, cut = best_cut_accuracy(y, s)
    assert acc == pytest.approx(norm.cdf(0.5), abs=3e-3)
    assert cut == pytest.approx(0.5, abs=0.05)


def test_track_finder_without_truth():
    det = lecture_detector(resolution_um=50.0)
    sim = Simulation(det, noise_hits_per_layer=0.5)
    batch = simulate_events(sim, 300, rng=8)
    h = batch.hits
    found = find_tracks(h.x, h.y, h.z, h.layer, h.event, 300, det.layers, 0.05)
    # every true track (all 16 hits) is found as a candidate made of its own hits only
    owner = np.where(found.hits >= 0, h.particle[np.maximum(found.hits, 0)], -2)
    pure = np.all((owner == owner[:, :1]) | (owner == -2), axis=1) & (found.n_hits == 16)
    recovered = np.unique(owner[pure, 0])
    assert len(recovered) >= 0.98 * len(batch.particles)
    # and the events are classified as well as with the truth association
    pt = C_GEV_PER_T_MM * 2.0 / np.abs(found.fit.rho)
    scores = np.zeros(300)
    np.maximum.at(scores, found.event, pt)
    assert best_cut_accuracy(batch.labels, scores)[0] >= 0.99
