"""The simulator against closed-form physics (docs/design.md 4)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spectrocnn.simulate import (
    C_GEV_PER_T_MM,
    CylinderLayer,
    Detector,
    ParticleGun,
    PlaneLayer,
    Simulation,
    UniformField,
    highland_theta0,
    lecture_detector,
    propagate,
    simulate_events,
    telescope_detector,
)
from spectrocnn.simulate.geometry import surface_distance

PION_MASS = 0.13957039  # GeV, PDG


def circumradius(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Radius of the circle through three points in the x-y plane (rows)."""
    ab = np.hypot(*(b - a)[:, :2].T)
    bc = np.hypot(*(c - b)[:, :2].T)
    ca = np.hypot(*(a - c)[:, :2].T)
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    return ab * bc * ca / (2.0 * np.abs(cross))


def shoot_from_origin(p, phi, dip, q):
    p, phi, dip, q = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (p, phi, dip, q)))
    mom = np.stack(
        [p * np.cos(dip) * np.cos(phi), p * np.cos(dip) * np.sin(phi), p * np.sin(dip)], axis=1
    )
    return np.zeros_like(mom), mom, q


@pytest.mark.parametrize("bz", [2.0, -1.3, 0.5])
def test_radius_of_curvature_matches_closed_form(bz):
    det = lecture_detector(UniformField((0.0, 0.0, bz)))
    rng = np.random.default_rng(3)
    n = 400
    p = rng.uniform(0.09, 10.0, n)
    pos, mom, q = shoot_from_origin(
        p, rng.uniform(0, 2 * np.pi, n), rng.uniform(-0.2, 0.2, n), rng.choice([-1, 1], n)
    )
    cr = propagate(det, pos, mom, q, PION_MASS, rng=1)
    counts = np.bincount(cr.particle, minlength=n)
    pt = np.hypot(mom[:, 0], mom[:, 1])
    r_expected = pt / (C_GEV_PER_T_MM * np.abs(q) * abs(bz))
    full = np.flatnonzero(counts >= 3)
    assert full.size > 300
    starts = np.searchsorted(cr.particle, full)
    ends = starts + counts[full] - 1
    mids = (starts + ends) // 2
    r_fit = circumradius(cr.position[starts], cr.position[mids], cr.position[ends])
    np.testing.assert_allclose(r_fit, r_expected[full], rtol=1e-9)
    # also through the production point (origin)
    r0 = circumradius(np.zeros((full.size, 3)), cr.position[mids], cr.position[ends])
    np.testing.assert_allclose(r0, r_expected[full], rtol=1e-9)


@pytest.mark.parametrize("charge", [1, -1])
def test_turning_sense_and_z_advance(charge):
    """A positive charge in B along +z turns clockwise seen from +z; z follows the helix."""
    bz = 2.0
    det = lecture_detector(UniformField((0.0, 0.0, bz)))
    p, dip = 0.3, 0.15
    pos, mom, q = shoot_from_origin([p], [0.4], [dip], [charge])
    cr = propagate(det, pos, mom, q, PION_MASS, rng=0)
    assert len(cr) == 16
    t0 = mom[0, :2]
    cross = t0[0] * cr.position[:, 1] - t0[1] * cr.position[:, 0]
    assert np.all(np.sign(cross) == -charge)  # clockwise (to the right) for q > 0
    pt = p * np.cos(dip)
    R = pt / (C_GEV_PER_T_MM * bz)
    r = np.hypot(cr.position[:, 0], cr.position[:, 1])
    np.testing.assert_allclose(r, np.arange(50, 201, 10), atol=1e-9)
    alpha = 2.0 * np.arcsin(r / (2.0 * R))  # transverse turning angle to radius r
    z_expected = R * alpha * np.tan(dip)
    np.testing.assert_allclose(cr.position[:, 2], z_expected, atol=1e-9)
    # momentum at the crossing: magnitude kept, transverse direction turned by alpha
    np.testing.assert_allclose(np.linalg.norm(cr.momentum, axis=1), p, rtol=1e-12)
    phi = np.arctan2(cr.momentum[:, 1], cr.momentum[:, 0])
    np.testing.assert_allclose(phi, 0.4 - charge * alpha, atol=1e-9)


def test_curling_track_has_no_hits_and_half_turn_stops_loopers():
    det = lecture_detector()
    # R = 20 mm never reaches r = 50 mm
    p_small = 20.0 * C_GEV_PER_T_MM * 2.0
    # R = 38 mm: reaches 50, 60, 70 (2R = 76) once each on the way out, no hits on the way back
    p_mid = 38.0 * C_GEV_PER_T_MM * 2.0
    pos, mom, q = shoot_from_origin([p_small, p_mid], [0.0, 1.0], [0.0, 0.0], [1, -1])
    cr = propagate(det, pos, mom, q, PION_MASS, rng=0)
    assert np.sum(cr.particle == 0) == 0
    layers = cr.layer[cr.particle == 1]
    assert layers.tolist() == [0, 1, 2]
    assert len(np.unique(layers)) == len(layers)


def test_straight_lines_without_field():
    det = lecture_detector(UniformField((0.0, 0.0, 0.0)))
    pos, mom, q = shoot_from_origin([1.0, 1.0], [0.3, 2.0], [0.1, -0.1], [1, -1])
    cr = propagate(det, pos, mom, q, PION_MASS, rng=0)
    assert len(cr) == 32
    r = np.hypot(cr.position[:, 0], cr.position[:, 1])
    phi = np.arctan2(cr.position[:, 1], cr.position[:, 0])
    np.testing.assert_allclose(phi[:16], 0.3, atol=1e-12)
    np.testing.assert_allclose(cr.position[:16, 2], r[:16] * np.tan(0.1), atol=1e-9)


def test_plane_crossings_match_closed_form():
    det = telescope_detector()
    bz = 2.0
    p = np.array([0.3, 1.0, 7.0])
    q = np.array([1.0, -1.0, 1.0])
    pos, mom, q = shoot_from_origin(p, [0.1, -0.05, 0.0], [0.05, 0.0, -0.05], q)
    cr = propagate(det, pos, mom, q, PION_MASS, rng=0)
    for i in range(3):
        hits = cr.position[cr.particle == i]
        assert len(hits) == 16
        np.testing.assert_allclose(hits[:, 0], np.arange(50, 201, 10), atol=1e-9)
        pt = np.hypot(*mom[i, :2])
        R = pt / (C_GEV_PER_T_MM * bz)
        phi0 = np.arctan2(mom[i, 1], mom[i, 0])
        h = -q[i] / R  # signed curvature
        # circle centre, then y on the circle at x = X on the branch the track reaches first
        cx, cy = -np.sin(phi0) / h, np.cos(phi0) / h
        dy = np.sqrt(R**2 - (hits[:, 0] - cx) ** 2)
        y_branch = np.where(np.abs(cy + dy) < np.abs(cy - dy), cy + dy, cy - dy)
        np.testing.assert_allclose(hits[:, 1], y_branch, atol=1e-8)


@pytest.mark.parametrize("preset", ["lecture", "telescope"])
def test_true_hits_lie_on_their_layer(preset):
    base = lecture_detector if preset == "lecture" else telescope_detector
    det = base(thickness_x0=0.02)
    gun = ParticleGun(vertex_sigma_mm=(2.0, 2.0, 5.0), p_low_GeV=(0.05, 2.0))
    sim = Simulation(det, gun, noise_hits_per_layer=1.0)
    batch = simulate_events(sim, 200, rng=5)
    h = batch.hits
    track = h.particle >= 0
    assert track.sum() > 1000
    pts = np.stack([h.true_x, h.true_y, h.true_z], axis=1)[track]
    d = surface_distance(det, pts)[np.arange(track.sum()), h.layer[track]]
    assert np.max(np.abs(d)) < 1e-6
    # measured hits (smeared along the surface) and noise hits lie on the surface too
    meas = np.stack([h.x, h.y, h.z], axis=1)
    dm = surface_distance(det, meas)[np.arange(len(h)), h.layer]
    assert np.max(np.abs(dm)) < 1e-6


def test_one_hit_per_layer_per_particle():
    batch = simulate_events(Simulation(lecture_detector(thickness_x0=0.05)), 100, rng=2)
    h = batch.hits
    key = h.particle * 1000 + h.layer
    assert len(np.unique(key)) == len(key)


def test_highland_rms_after_one_layer():
    """RMS projected angle after one thin layer (normal incidence) vs Highland, 1e5 tracks."""
    x0 = 0.01
    layers = (
        PlaneLayer(
            center_mm=(10.0, 0, 0),
            normal=(1, 0, 0),
            half_width_mm=1e3,
            half_height_mm=1e3,
            thickness_x0=x0,
        ),
        PlaneLayer(center_mm=(20.0, 0, 0), normal=(1, 0, 0), half_width_mm=1e3, half_height_mm=1e3),
    )
    det = Detector(layers, UniformField((0.0, 0.0, 0.0)))
    n, p = 100_000, 1.0
    mom = np.tile([p, 0.0, 0.0], (n, 1))
    cr = propagate(det, np.zeros((n, 3)), mom, np.ones(n), PION_MASS, rng=11)
    after = cr.momentum[cr.layer == 1]
    assert len(after) == n
    beta = p / np.hypot(p, PION_MASS)
    expected = highland_theta0(p, beta, 1.0, x0)
    # closed form of the formula itself at this point
    manual = 0.0136 / (beta * p) * np.sqrt(x0) * (1 + 0.038 * np.log(x0 / beta**2))
    assert expected == pytest.approx(manual, rel=1e-12)
    for comp in (1, 2):
        theta = np.arctan2(after[:, comp], after[:, 0])
        assert np.sqrt(np.mean(theta**2)) == pytest.approx(expected, rel=0.05)
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), p, rtol=1e-12)


def test_smearing_efficiency_and_noise_rates():
    res_um, eff, noise = 80.0, 0.9, 0.5
    det = lecture_detector(resolution_um=res_um, efficiency=eff)
    gun = ParticleGun(p_low_GeV=(0.2, 0.5))  # every track reaches all 16 layers
    sim = Simulation(det, gun, noise_hits_per_layer=noise)
    n_ev = 2000
    batch = simulate_events(sim, n_ev, rng=9)
    h = batch.hits
    tr = h.particle >= 0
    r = np.hypot(h.true_x[tr], h.true_y[tr])
    dphi = np.arctan2(h.y[tr], h.x[tr]) - np.arctan2(h.true_y[tr], h.true_x[tr])
    dphi = (dphi + np.pi) % (2 * np.pi) - np.pi
    sigma = res_um * 1e-3
    assert np.std(r * dphi) == pytest.approx(sigma, rel=0.03)
    assert np.std(h.z[tr] - h.true_z[tr]) == pytest.approx(sigma, rel=0.03)
    crossings = n_ev * 10 * 16
    k = tr.sum()
    assert abs(k - eff * crossings) < 3 * np.sqrt(crossings * eff * (1 - eff))
    mu = noise * 16 * n_ev
    assert abs((~tr).sum() - mu) < 3 * np.sqrt(mu)
    assert np.all(np.isnan(h.true_x[~tr]))


def test_labels_and_high_track():
    sim = Simulation(high_fraction=0.3)
    batch = simulate_events(sim, 3000, rng=4)
    n = batch.n_events
    frac = batch.labels.mean()
    assert abs(frac - 0.3) < 3 * np.sqrt(0.3 * 0.7 / n)
    per_event = np.bincount(batch.particles.event, weights=batch.particles.is_high, minlength=n)
    np.testing.assert_array_equal(per_event, batch.labels)
    p = np.sqrt(batch.particles.px**2 + batch.particles.py**2 + batch.particles.pz**2)
    hi = batch.particles.is_high == 1
    assert np.all((p[hi] >= 5.0) & (p[hi] <= 10.0))
    assert np.all((p[~hi] >= 0.1) & (p[~hi] <= 0.5))
    # the high track sits at a random position among the event's particles
    slot = np.flatnonzero(hi) % sim.n_particles
    assert len(np.unique(slot)) == sim.n_particles
    # random charge signs, PDG ids follow the charge
    assert 0.45 < (batch.particles.charge > 0).mean() < 0.55
    np.testing.assert_array_equal(
        batch.particles.pdg, 211 * batch.particles.charge.astype(np.int32)
    )


def test_reproducible_for_a_seed():
    sim = Simulation(
        lecture_detector(thickness_x0=0.01, resolution_um=30), noise_hits_per_layer=0.2
    )
    a = simulate_events(sim, 50, rng=123)
    b = simulate_events(sim, 50, rng=123)
    c = simulate_events(sim, 50, rng=124)
    for name, col in a.hits.columns().items():
        np.testing.assert_array_equal(col, b.hits.columns()[name])
    for name, col in a.particles.columns().items():
        np.testing.assert_array_equal(col, b.particles.columns()[name])
    assert not np.array_equal(a.particles.px, c.particles.px)


def test_hits_grouped_by_event_in_order():
    batch = simulate_events(Simulation(noise_hits_per_layer=0.3), 40, rng=1)
    assert np.all(np.diff(batch.hits.event) >= 0)
    assert np.all(np.diff(batch.particles.event) >= 0)
    ev = batch.hits.event[batch.hits.particle >= 0]
    np.testing.assert_array_equal(
        ev, batch.particles.event[batch.hits.particle[batch.hits.particle >= 0]]
    )
    off = batch.event_offsets("hits")
    assert off[0] == 0 and off[-1] == len(batch.hits)


def test_custom_geometry_in_python():
    layers = (
        CylinderLayer(radius_mm=30.0, half_length_mm=100.0, resolution_um=10.0),
        PlaneLayer(
            center_mm=(0.0, 0.0, 150.0),
            normal=(0.0, 0.0, 1.0),
            half_width_mm=300,
            half_height_mm=300,
        ),
    )
    det = Detector(layers, UniformField((0.0, 0.0, 1.0)))
    gun = ParticleGun(dip_deg=(40.0, 60.0), p_low_GeV=(1.0, 2.0))
    batch = simulate_events(Simulation(det, gun, n_particles=3), 20, rng=0)
    # a plane normal to z is not parallel to B: the stepper handles it
    assert set(np.unique(batch.hits.layer)) <= {0, 1}
    assert len(batch.hits) > 0
    assert dataclasses.is_dataclass(det)


def test_simulate_events_counts_why_every_track_stopped():
    # 2 T, from the origin: a track of p_T < 0.06 GeV/c (2R < r_max = 201 mm) makes half a
    # turn inside the detector and stops there (looped); the 5-10 GeV/c tracks leave it.
    sim = Simulation(
        gun=ParticleGun(p_low_GeV=(0.02, 0.05), p_high_GeV=(5.0, 10.0)), high_fraction=1.0
    )
    from spectrocnn.simulate import StopReason, concatenate_batches

    batch = simulate_events(sim, 30, rng=3)
    high = batch.particles.is_high.astype(bool)
    np.testing.assert_array_equal(
        batch.stop, np.where(high, StopReason.LEFT_DETECTOR, StopReason.LOOPED)
    )
    counts = batch.stop_counts()
    assert counts["looped"] == np.count_nonzero(~high) and counts["left_detector"] == 30
    assert sum(counts.values()) == len(batch.particles)
    joined = concatenate_batches([batch, simulate_events(sim, 5, rng=4)])
    assert joined.stop_counts()["left_detector"] == 35
