"""The global chi-square track fit (reco/gx2f.py) against closed forms and independent fits.

The forward spectrometer of issue 22: six planes normal to z around a hard-edged 1 T dipole
(B along y for 1000 < z < 2000 mm), 50 um hits, no material, muons from the origin. Its
expected resolution comes from the test's own closed-form track model (a straight line, a
circular arc in the magnet, a straight line), linearised: ``C = (A^T W A)^-1`` with
``A = d(hits)/d(x0, y0, tx, ty, q/p)`` (central differences of the closed form) and
``W = 1 / sigma^2`` (PDG Review, "Statistics", 40.2.3, linear least squares). The marginal
variance of q/p does not depend on how the other four parameters are chosen, so the fit's
own parametrisation at the vertex plane (x, y, dx/dz, dy/dz, q/p) needs no conversion.

Statistical margins: the standard deviation of n pulls has a relative error of about
1/sqrt(2n), 4 % for n = 300 tracks, so a 10 % band is 2.4 of its sigmas; the mean's error
is 1/sqrt(n).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from spectrocnn.errors import ConfigError
from spectrocnn.reco import ReferenceSurface, fit_circles, fit_track, fit_tracks
from spectrocnn.simulate import (
    CallableField,
    CylinderLayer,
    Detector,
    PlaneLayer,
    UniformField,
    lecture_detector,
    simulate_particles,
)

C_GEV_PER_T_MM = 0.299792458e-3  # docs/design.md 4: p = 0.299792458 |q| B[T] R[m]
Z_PLANES_MM = np.array([500.0, 700.0, 900.0, 2100.0, 2300.0, 2500.0])
Z_MAGNET_MM = (1000.0, 2000.0)
B_DIPOLE_T = 1.0
SIGMA_MM = 0.05
N_TRACKS = 300


def dipole(points: np.ndarray) -> np.ndarray:
    """The hard-edged dipole: B = (0, 1 T, 0) for 1000 < z < 2000 mm."""
    b = np.zeros_like(points)
    inside = (points[:, 2] > Z_MAGNET_MM[0]) & (points[:, 2] < Z_MAGNET_MM[1])
    b[:, 1] = np.where(inside, B_DIPOLE_T, 0.0)
    return b


def forward_detector(field=None) -> Detector:
    layers = tuple(
        PlaneLayer(
            center_mm=(0.0, 0.0, z),
            normal=(0.0, 0.0, 1.0),
            half_width_mm=1000.0,
            half_height_mm=1000.0,
            resolution_um=SIGMA_MM * 1e3,
        )
        for z in Z_PLANES_MM
    )
    return Detector(layers, field if field is not None else CallableField(dipole, name="dipole"))


def closed_form_hits(theta: np.ndarray) -> np.ndarray:
    """x at the six planes, then y [mm], of track (x0, y0, tx, ty, q/p) at z = 0.

    In the magnet the direction t turns about y: dt/ds = C (q/p) t x B, so with
    t = (a sin(alpha), t_y, a cos(alpha)), a = sqrt(1 - t_y^2), alpha decreases at the rate
    w = C (q/p) B: sin(alpha_out) = sin(alpha_in) - w L / a, the arc's x advance is
    a (cos(alpha_out) - cos(alpha_in)) / w and its path (alpha_in - alpha_out) / w.
    """
    x0, y0, tx, ty, qop = theta
    t = np.array([tx, ty, 1.0]) / np.sqrt(1.0 + tx * tx + ty * ty)
    a, alpha_in = np.hypot(t[0], t[2]), np.arctan2(t[0], t[2])
    w = C_GEV_PER_T_MM * qop * B_DIPOLE_T
    z1, z2 = Z_MAGNET_MM
    alpha_out = np.arcsin(np.sin(alpha_in) - w * (z2 - z1) / a)
    x2 = x0 + tx * z1 + a * (np.cos(alpha_out) - np.cos(alpha_in)) / w
    y2 = y0 + ty * z1 + t[1] * (alpha_in - alpha_out) / w
    tx_out, ty_out = np.tan(alpha_out), t[1] / (a * np.cos(alpha_out))
    z = Z_PLANES_MM
    x = np.where(z < z1, x0 + tx * z, x2 + tx_out * (z - z2))
    y = np.where(z < z1, y0 + ty * z, y2 + ty_out * (z - z2))
    return np.concatenate([x, y])


def closed_form_design(theta: np.ndarray) -> np.ndarray:
    """A = d(hits)/d(theta) (12, 5) of the closed form, central differences."""
    h = np.array([1e-4, 1e-4, 1e-7, 1e-7, 1e-6 * abs(theta[4])])
    cols = [
        (closed_form_hits(theta + h[i] * e) - closed_form_hits(theta - h[i] * e)) / (2 * h[i])
        for i, e in enumerate(np.eye(5))
    ]
    return np.stack(cols, axis=1)


def simulate(detector, vertex, momentum, charge, rng):
    """Hits of muons (mu- for charge -1, mu+ for +1; no noise, full efficiency) and their
    truth, grouped by particle, from the project's simulation."""
    pdg = np.where(np.asarray(charge) > 0, -13, 13)
    h = simulate_particles(detector, vertex, momentum, pdg, rng=rng).hits
    offsets = np.r_[0, np.cumsum(np.bincount(h.particle, minlength=len(pdg)))]
    hits = np.stack([h.x, h.y, h.z], axis=1)
    true = np.stack([h.true_x, h.true_y, h.true_z], axis=1)
    return hits, true, h.layer, offsets


def forward_muons(rng, n, p_range, slope_sigma=0.01, vertex_sigma_mm=0.5):
    """Muons from about the origin along +z: (truth (n, 5), vertex, momentum, charge)."""
    p = rng.uniform(*p_range, n)
    slopes = rng.normal(0.0, slope_sigma, (n, 2))
    vertex = np.c_[rng.normal(0.0, vertex_sigma_mm, (n, 2)), np.zeros(n)]
    d = np.c_[slopes, np.ones(n)]
    d /= np.linalg.norm(d, axis=1)[:, None]
    charge = rng.choice([-1.0, 1.0], n)
    truth = np.c_[vertex[:, :2], slopes, charge / p]
    return truth, vertex, d * p[:, None], charge


def forward_sample(p_range, n, seed):
    """Fit n simulated muons; the closed-form expectation of each."""
    rng = np.random.default_rng(seed)
    det = forward_detector()
    truth, vertex, mom, charge = forward_muons(rng, n, p_range)
    hits, true, layer, offsets = simulate(det, vertex, mom, charge, rng)
    assert np.all(np.diff(offsets) == 6)
    fit = fit_tracks(det, hits, layer, offsets)
    design = np.array([closed_form_design(t) for t in truth])  # (n, 12, 5)
    cov = np.linalg.inv(np.einsum("kmi,kmj->kij", design, design) / SIGMA_MM**2)
    # the linear least-squares estimate's error from the actual smearing of the hits
    noise = (hits - true).reshape(n, 6, 3)
    noise = np.concatenate([noise[:, :, 0], noise[:, :, 1]], axis=1)  # x then y: u, v
    linear = np.einsum("kij,kmj,km->ki", cov, design, noise) / SIGMA_MM**2
    return {
        "fit": fit,
        "truth": truth,
        "true_hits": true.reshape(n, 6, 3),
        "sigma_expected": np.sqrt(cov[:, 4, 4]),
        "linear_error": linear[:, 4],
    }


RANGES = {"1-3GeV": ((1.0, 3.0), 11), "10-15GeV": ((10.0, 15.0), 12)}


@pytest.fixture(scope="module", params=list(RANGES))
def forward(request):
    p_range, seed = RANGES[request.param]
    return forward_sample(p_range, N_TRACKS, seed)


def test_closed_form_is_the_simulated_trajectory(forward):
    """The test's own track model reproduces the simulation's crossings (the stepper's
    error at a hard edge is nanometres, README), so its expectation applies."""
    model = np.array([closed_form_hits(t) for t in forward["truth"]])
    true = forward["true_hits"]
    assert np.abs(model - np.c_[true[:, :, 0], true[:, :, 1]]).max() < 1e-4


def test_covariance_is_the_linearised_expectation(forward):
    fit = forward["fit"]
    assert fit.converged.all()
    np.testing.assert_allclose(fit.sigma_qop, forward["sigma_expected"], rtol=0.01)


def test_fit_is_the_linear_least_squares_solution(forward):
    """Track by track, the fitted q/p error equals the linear least-squares estimate's
    error from the hits' actual smearing: the fit finds the chi2 minimum."""
    fit, truth = forward["fit"], forward["truth"]
    err = fit.qop - truth[:, 4]
    np.testing.assert_allclose(err, forward["linear_error"], atol=0.02 * fit.sigma_qop.min())


def test_resolution_within_10_percent_of_expectation(forward):
    """Issue 22's target: sigma(q/p)/(q/p) within 10 % of the linearised expectation."""
    fit, truth = forward["fit"], forward["truth"]
    relative = (fit.qop - truth[:, 4]) / truth[:, 4]
    expected = forward["sigma_expected"] / np.abs(truth[:, 4])
    ratio = np.std(relative / expected)  # each track against its own expectation
    assert abs(ratio - 1.0) < 0.10, (ratio, np.mean(expected))


def test_qop_pulls_are_standard_normal(forward):
    fit, truth = forward["fit"], forward["truth"]
    pull = (fit.qop - truth[:, 4]) / fit.sigma_qop
    n = len(pull)
    assert abs(pull.mean()) < 3.0 / np.sqrt(n)
    assert abs(pull.std() - 1.0) < 0.10
    # chi2 of 12 coordinates and 5 parameters: mean 7, variance 14
    assert np.all(fit.ndf == 7)
    assert abs(fit.chi2.mean() - 7.0) < 3.0 * np.sqrt(14.0 / n)


@pytest.mark.slow
@pytest.mark.parametrize("label", list(RANGES))
def test_resolution_large_sample(label):
    p_range, seed = RANGES[label]
    s = forward_sample(p_range, 2000, seed + 100)
    fit, truth = s["fit"], s["truth"]
    assert fit.converged.all()
    ratio = np.std((fit.qop - truth[:, 4]) / s["sigma_expected"])
    assert abs(ratio - 1.0) < 0.05  # 1.6 % statistical error
    pull = (fit.qop - truth[:, 4]) / fit.sigma_qop
    assert abs(pull.mean()) < 3.0 / np.sqrt(len(pull))


def test_reference_on_a_measured_plane_gives_the_same_qop():
    """q/p and its error do not depend on the reference surface in a field-free region;
    a measured layer as reference predicts its hit at the start point."""
    rng = np.random.default_rng(5)
    det = forward_detector()
    _, vertex, mom, charge = forward_muons(rng, 20, (2.0, 5.0))
    hits, _, layer, offsets = simulate(det, vertex, mom, charge, rng)
    at_vertex = fit_tracks(det, hits, layer, offsets)
    at_first = fit_tracks(det, hits, layer, offsets, reference=det.layers[0])
    assert at_first.reference.center_mm == (0.0, 0.0, 500.0)
    np.testing.assert_allclose(at_first.qop, at_vertex.qop, atol=0.02 * at_vertex.sigma_qop.min())
    np.testing.assert_allclose(at_first.sigma_qop, at_vertex.sigma_qop, rtol=1e-3)
    np.testing.assert_allclose(at_first.chi2, at_vertex.chi2, atol=0.02)
    # the first plane's parameters are the vertex ones carried 500 mm in a straight line
    x_first = at_vertex.parameters[:, 0] + 500.0 * at_vertex.parameters[:, 2]
    sigma_x = np.sqrt(at_first.covariance[:, 0, 0])
    assert np.all(np.abs(at_first.parameters[:, 0] - x_first) < 0.05 * sigma_x)


def test_fit_track_is_one_row_of_fit_tracks():
    rng = np.random.default_rng(6)
    det = forward_detector()
    _, vertex, mom, charge = forward_muons(rng, 2, (5.0, 5.0))
    hits, _, layer, offsets = simulate(det, vertex, mom, charge, rng)
    batch = fit_tracks(det, hits, layer, offsets)
    one = fit_track(det, hits[6:], layer[6:], SIGMA_MM)
    np.testing.assert_allclose(one.parameters, batch.parameters[1], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(one.covariance, batch.covariance[1], rtol=1e-6)
    assert one.ndf == 7 and one.converged and one.sense == 1
    assert one.parameter_names == ("loc0_mm", "loc1_mm", "du_dw", "dv_dw", "qop_per_GeV")
    assert one.p_GeV == pytest.approx(5.0, rel=5 * one.sigma_qop / abs(one.qop))
    sigma_p = one.p_GeV**2 * one.sigma_qop  # p = |q| / |q/p|
    np.testing.assert_allclose(one.momentum_GeV, mom[1], atol=5 * sigma_p)
    sigma_x = np.sqrt(one.covariance[0, 0])
    np.testing.assert_allclose(one.position_mm, [*vertex[1, :2], 0.0], atol=5 * sigma_x)


# ----------------------------------------------------------------------------- other fields
def gradient_dipole(points: np.ndarray) -> np.ndarray:
    """A dipole with fringe fields along z and a transverse gradient of 0.1 %/mm:
    B = f(z) (g y, 1 + g x, 0) T, curl-free in x-y, f an Enge-like profile."""
    f = B_DIPOLE_T / (1.0 + np.exp((np.abs(points[:, 2] - 1500.0) - 500.0) / 40.0))
    g = 1e-3
    return np.stack([f * g * points[:, 1], f * (1 + g * points[:, 0]), 0 * f], axis=1)


def test_non_uniform_field_pulls():
    """A field with a gradient and fringes, through the stepper: unbiased, pulls N(0, 1),
    chi2 of the right mean; a fit that ignores the gradient is visibly wrong."""
    rng = np.random.default_rng(7)
    det = forward_detector(CallableField(gradient_dipole, name="gradient"))
    truth, vertex, mom, charge = forward_muons(rng, N_TRACKS, (2.0, 20.0), slope_sigma=0.05)
    hits, _, layer, offsets = simulate(det, vertex, mom, charge, rng)
    fit = fit_tracks(det, hits, layer, offsets)
    assert fit.converged.all()
    pull = (fit.qop - truth[:, 4]) / fit.sigma_qop
    assert abs(pull.mean()) < 3.0 / np.sqrt(N_TRACKS)
    assert abs(pull.std() - 1.0) < 0.10
    assert abs(fit.chi2.mean() - 7.0) < 3.0 * np.sqrt(14.0 / N_TRACKS)
    no_gradient = CallableField(lambda p: gradient_dipole(p * [0.0, 0.0, 1.0]), name="flat")
    wrong = fit_tracks(det, hits, layer, offsets, field=no_gradient)
    assert wrong.chi2.mean() > 3 * 7.0


def test_barrel_agrees_with_the_circle_fit():
    """On the lecture barrel (uniform 2 T along z, exact helix) the perigee fit's p_T is the
    circle fit's (Karimaki) to a small fraction of its error, track by track."""
    rng = np.random.default_rng(8)
    det = lecture_detector()
    n = 100
    pt, phi, cot = rng.uniform(1.0, 10.0, n), rng.uniform(-np.pi, np.pi, n), rng.uniform(-1, 1, n)
    mom = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * cot], axis=1)
    charge = rng.choice([-1.0, 1.0], n)
    hits, _, layer, offsets = simulate(det, np.zeros((n, 3)), mom, charge, rng)
    fit = fit_tracks(det, hits, layer, offsets)
    assert fit.converged.all() and fit.reference.kind == "perigee"
    circle = fit_circles(hits[:, 0], hits[:, 1], offsets, SIGMA_MM)
    pt_circle = C_GEV_PER_T_MM * 2.0 / np.abs(circle.rho)
    sigma_pt = pt_circle * circle.sigma_rho / np.abs(circle.rho)
    pt_fit = np.hypot(fit.momentum_GeV[:, 0], fit.momentum_GeV[:, 1])
    assert np.all(np.abs(pt_fit - pt_circle) < 0.05 * sigma_pt)
    np.testing.assert_array_equal(np.sign(fit.qop), charge)
    # q/p error against the circle's: q/p = q sin(theta) / p_T, theta well measured
    sin_theta = np.sin(fit.parameters[:, 3])
    np.testing.assert_allclose(
        fit.sigma_qop, sin_theta * circle.sigma_rho / (C_GEV_PER_T_MM * 2.0), rtol=0.05
    )


def test_iterations_converge_from_a_poor_start():
    """Start values off by many standard deviations: the Gauss-Newton iterations (with
    step halving) reach the same minimum."""
    rng = np.random.default_rng(9)
    det = lecture_detector()
    n = 20
    pt, phi = rng.uniform(0.5, 5.0, n), rng.uniform(-np.pi, np.pi, n)
    mom = np.stack([pt * np.cos(phi), pt * np.sin(phi), 0.3 * pt], axis=1)
    hits, _, layer, offsets = simulate(det, np.zeros((n, 3)), mom, np.ones(n), rng)
    best = fit_tracks(det, hits, layer, offsets)
    start = best.parameters * [1.0, 1.0, 1.0, 1.0, 1.3] + [0.5, 2.0, 0.02, 0.05, 0.0]
    again = fit_tracks(det, hits, layer, offsets, initial=start)
    assert again.converged.all() and np.all(again.iterations >= 2)
    sigma = np.sqrt(np.einsum("kii->ki", best.covariance))
    assert np.all(np.abs(again.parameters - best.parameters) < 0.05 * sigma)


# ----------------------------------------------------------------------------- errors
def _three_hits():
    det = forward_detector()
    rng = np.random.default_rng(10)
    _, vertex, mom, charge = forward_muons(rng, 1, (5.0, 5.0))
    hits, _, layer, _ = simulate(det, vertex, mom, charge, rng)
    return det, hits, layer


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, ids: (h[:2], ids[:2], {}), "track 0 has 2 hit(s), 4 measured coordinates"),
        (lambda h, ids: (h[:3], [0, 0, 1], {}), "track 0 has two hits on layer 0"),
        (lambda h, ids: (h, ids + 1, {}), "layer_ids[5] = 6 is not a layer"),
        (
            lambda h, ids: (h + np.array([0, 0, 1.0]), ids, {}),
            "lies 1 mm from the surface of layer 0",
        ),
        (lambda h, ids: (h, ids, {"sigma_mm": 0.0}), "sigma_mm must be positive"),
        (
            lambda h, ids: (h, ids, {"sigma_mm": np.ones(4)}),
            "sigma_mm must be a number or of shape",
        ),
        (lambda h, ids: (h * np.nan, ids, {}), "hits_mm[0] = [nan, nan, nan] is not finite"),
        (lambda h, ids: (h, ids, {"reference": "beam"}), "reference must be 'perigee', 'vertex'"),
        (lambda h, ids: (h, ids, {"abs_charge": 0.0}), "abs_charge must be positive"),
        (lambda h, ids: (h, ids, {"initial": np.zeros(4)}), "initial must have shape (1, 5)"),
    ],
)
def test_bad_inputs_are_named(change, message):
    det, hits, layer = _three_hits()
    h, lay, kw = change(hits, layer)
    with pytest.raises(ConfigError) as info:
        fit_track(det, h, lay, **kw)
    assert message in str(info.value)


def test_zero_resolution_layer_needs_sigma():
    det = Detector(
        tuple(CylinderLayer(radius_mm=r, resolution_um=0.0) for r in (50.0, 100.0, 150.0)),
        UniformField((0.0, 0.0, 2.0)),
    )
    rng = np.random.default_rng(11)
    hits, _, layer, _ = simulate(det, np.zeros((1, 3)), np.array([[1.0, 0.5, 0.1]]), [1.0], rng)
    with pytest.raises(ConfigError, match="layer 0 has resolution_um = 0"):
        fit_track(det, hits, layer)
    assert fit_track(det, hits, layer, sigma_mm=0.01).converged


def test_failures_are_reported_not_raised(caplog):
    """No field: q/p is not determined (a singular J^T W J); too few iterations: not
    converged. Both come back in the result, with a warning."""
    rng = np.random.default_rng(12)
    _, vertex, mom, charge = forward_muons(rng, 3, (2.0, 2.0))
    hits, _, layer, offsets = simulate(forward_detector(), vertex, mom, charge, rng)
    no_field = forward_detector(UniformField((0.0, 0.0, 0.0)))
    with caplog.at_level(logging.WARNING, logger="spectrocnn.reco.gx2f"):
        fit = fit_tracks(no_field, hits, layer, offsets)
    assert not fit.converged.any() and np.isnan(fit.sigma_qop).all()
    assert "3 of 3 tracks failed (singular J^T W J)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spectrocnn.reco.gx2f"):
        fit = fit_tracks(forward_detector(), hits, layer, offsets, max_iterations=1)
    assert not fit.converged.any() and np.all(fit.iterations == 0)
    assert "not converged in 1 evaluations" in caplog.text


def test_reference_surface_kinds():
    plane = ReferenceSurface.plane((0.0, 0.0, 100.0), (0.0, 0.0, -2.0))
    assert plane.normal == (0.0, 0.0, -1.0)
    pos, d = plane.position_direction(np.array([[1.0, 2.0, 0.1, -0.2, 0.5]]), [-1])
    np.testing.assert_allclose(pos[0], [plane.u[0] * 1.0, 2.0 * plane.v[1], 100.0], atol=1e-12)
    u, v, w = (np.array(a) for a in (plane.u, plane.v, plane.normal))
    np.testing.assert_allclose(d[0], -(0.1 * u - 0.2 * v + w) / np.sqrt(1.05), atol=1e-12)
    perigee = ReferenceSurface.perigee()
    pos, d = perigee.position_direction(np.array([[2.0, 5.0, np.pi / 2, np.pi / 4, 1.0]]), [1])
    np.testing.assert_allclose(pos[0], [-2.0, 0.0, 5.0], atol=1e-12)
    np.testing.assert_allclose(d[0], [0.0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    with pytest.raises(ConfigError):
        ReferenceSurface.plane((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


def test_readme_forward_spectrometer_example_runs():
    """The README's worked example, as printed there."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("### A forward spectrometer: your own particles", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    fit, pull = namespace["fit"], namespace["pull"]
    assert fit.converged.all() and len(fit) == 200
    assert abs(pull.mean()) < 3 / np.sqrt(200) and abs(pull.std() - 1.0) < 0.15
