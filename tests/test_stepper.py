"""The adaptive Runge-Kutta-Nystrom stepper against closed forms (docs/design.md 4).

Every expected value here is a closed form (helix, straight line, Highland) or an
independent high-order integration with SciPy; nothing is compared with captured output.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from spectrocnn.errors import ConfigError
from spectrocnn.simulate.fields import CallableField, FieldMap, UniformField
from spectrocnn.simulate.geometry import (
    CylinderLayer,
    Detector,
    PlaneLayer,
    lecture_detector,
    surface_distance,
    telescope_detector,
)
from spectrocnn.simulate.propagation import C_GEV_PER_T_MM as C
from spectrocnn.simulate.propagation import propagate, propagate_helix
from spectrocnn.simulate.stepper import propagate_rk

PION_MASS = 0.13957039  # GeV/c^2 (PDG)
UM = 1e-3  # one micrometre in mm


def uniform_map(b_t, half_xy: float = 350.0, half_z: float = 1100.0) -> FieldMap:
    """A coarse regular grid holding a uniform field (exact under trilinear interpolation)."""
    xy = np.linspace(-half_xy, half_xy, 8)
    z = np.linspace(-half_z, half_z, 5)
    b = np.broadcast_to(np.asarray(b_t, dtype=float), (8, 8, 5, 3))
    return FieldMap(xy, xy, z, np.array(b))


def shoot(p, phi, dip, q):
    """Start points at the origin, momenta from (p, azimuth, dip), charges."""
    p, phi, dip, q = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (p, phi, dip, q)))
    mom = np.stack(
        [p * np.cos(dip) * np.cos(phi), p * np.cos(dip) * np.sin(phi), p * np.sin(dip)], axis=1
    )
    return np.zeros_like(mom), mom, q.copy()


def helix_point(alpha, p, phi0, dip, q, bz):
    """Closed-form helix from the origin in B = (0, 0, bz) after transverse turning ``alpha``.

    Returns positions (n, 3) [mm] and momenta (n, 3) [GeV/c]. The direction's azimuth is
    ``phi0 + s alpha`` with ``s = -sign(q bz)``: a positive charge in B along +z turns
    clockwise seen from +z.
    """
    pt = p * np.cos(dip)
    radius = pt / (C * np.abs(q * bz))
    s = -np.sign(q * bz)
    phi = phi0 + s * alpha
    pos = np.stack(
        [
            s * radius * (np.sin(phi) - np.sin(phi0)),
            -s * radius * (np.cos(phi) - np.cos(phi0)),
            radius * alpha * np.tan(dip),
        ],
        axis=1,
    )
    mom = np.stack([pt * np.cos(phi), pt * np.sin(phi), p * np.sin(dip)], axis=1)
    return pos, mom


def assert_on_surfaces(det, cr, tol=1e-6):
    d = surface_distance(det, cr.position)[np.arange(len(cr)), cr.layer]
    assert np.all(np.abs(d) <= tol), np.abs(d).max()


def assert_one_per_layer_in_path_order(cr):
    key = cr.particle * 100000 + cr.layer
    assert np.unique(key).size == key.size
    assert np.all(np.diff(cr.particle) >= 0)


# ----------------------------------------------------------------------------- uniform map
@pytest.mark.parametrize("bz", [2.0, -1.5])
def test_uniform_map_reproduces_barrel_helix(bz):
    det = lecture_detector(uniform_map((0.0, 0.0, bz)))
    radii = np.array([layer.radius_mm for layer in det.layers])
    p = np.array([0.1, 0.15, 0.3, 0.5, 1.0, 3.0, 10.0])
    dips = np.radians([-10.0, 0.0, 4.0, 10.0])
    pp, dd, qq = (a.ravel() for a in np.meshgrid(p, dips, [-1.0, 1.0], indexing="ij"))
    phi = np.random.default_rng(5).uniform(0, 2 * np.pi, pp.size)
    pos, mom, q = shoot(pp, phi, dd, qq)

    cr = propagate_rk(det, pos, mom, q, np.full(pp.size, PION_MASS), rng=1)

    radius = pp * np.cos(dd) / (C * abs(bz))
    assert np.all(radius > radii.max() / 2)  # every track reaches every layer
    assert len(cr) == pp.size * len(radii)
    i, r = cr.particle, radii[cr.layer]
    np.testing.assert_array_equal(cr.layer, np.tile(np.arange(len(radii)), pp.size))
    alpha = 2.0 * np.arcsin(r / (2.0 * radius[i]))
    exp_pos, exp_mom = helix_point(alpha, pp[i], phi[i], dd[i], q[i], bz)
    dev = np.linalg.norm(cr.position - exp_pos, axis=1)
    assert dev.max() < UM, dev.max()
    assert np.max(np.abs(cr.momentum - exp_mom).max(axis=1) / pp[i]) < 1e-7
    assert_on_surfaces(det, cr, 1e-9)


def test_uniform_map_reproduces_plane_helix():
    bz = 2.0
    det = telescope_detector(uniform_map((0.0, 0.0, bz), half_xy=450.0))
    xs = np.array([layer.center_mm[0] for layer in det.layers])
    rng = np.random.default_rng(7)
    n = 60
    p = np.exp(rng.uniform(np.log(0.25), np.log(10.0), n))
    phi0 = rng.uniform(-0.3, 0.3, n)
    dip = np.radians(rng.uniform(-10, 10, n))
    pos, mom, q = shoot(p, phi0, dip, rng.choice([-1.0, 1.0], n))

    cr = propagate_rk(det, pos, mom, q, np.full(n, PION_MASS), rng=2)

    assert len(cr) == n * len(xs)
    i, x = cr.particle, xs[cr.layer]
    radius = p[i] * np.cos(dip[i]) / (C * bz)
    s = -np.sign(q[i])
    # x(alpha) = s R (sin(phi0 + s alpha) - sin(phi0)) = X on the first (outgoing) branch.
    alpha = s * (np.arcsin(np.sin(phi0[i]) + s * x / radius) - phi0[i])
    exp_pos, exp_mom = helix_point(alpha, p[i], phi0[i], dip[i], q[i], bz)
    dev = np.linalg.norm(cr.position - exp_pos, axis=1)
    assert dev.max() < UM, dev.max()
    assert np.max(np.abs(cr.momentum - exp_mom).max(axis=1) / p[i]) < 1e-7
    assert_on_surfaces(det, cr, 1e-9)


def test_curling_track_crosses_each_plane_once_on_the_way_out():
    # R = 75 mm: the circle reaches x = 75 and comes back through the planes at 50..70
    # before half a turn; only the first (outgoing) crossing of each plane counts.
    det = telescope_detector(uniform_map((0.0, 0.0, 2.0)))
    p = 75.0 * C * 2.0
    pos, mom, q = shoot([p, p], [0.0, 0.0], [0.0, 0.0], [1.0, -1.0])
    cr = propagate_rk(det, pos, mom, q, np.full(2, PION_MASS), rng=0)
    np.testing.assert_array_equal(cr.particle, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(cr.layer, [0, 1, 2, 0, 1, 2])
    x = np.array([50.0, 60.0, 70.0, 50.0, 60.0, 70.0])
    alpha = np.arcsin(x / 75.0)
    exp_pos, _ = helix_point(alpha, np.full(6, p), 0.0, 0.0, q[cr.particle], 2.0)
    np.testing.assert_allclose(cr.position, exp_pos, rtol=0, atol=UM)


# ----------------------------------------------------------------------------- termination
def test_loop_protection_low_momentum_track_terminates_without_crossings():
    det = lecture_detector(uniform_map((0.0, 0.0, 2.0)))
    p = 20.0 * C * 2.0  # R = 20 mm: the circle never reaches r = 50 mm
    pos, mom, q = shoot([p, p, p], [0.3, 2.0, 4.0], [0.0, 0.1, -0.17], [1.0, -1.0, 1.0])
    cr = propagate_rk(det, pos, mom, q, np.full(3, PION_MASS), rng=0)
    assert len(cr) == 0


def test_half_turn_stops_a_track_at_its_apex():
    # R = 37.5 mm from the origin: crosses r = 50, 60, 70, reaches r = 75 after half a
    # turn and stops there (it would cross the same layers again on the way back).
    det = lecture_detector(uniform_map((0.0, 0.0, 2.0)))
    pt = 37.5 * C * 2.0
    phi0, dip = np.array([1.0, -2.0]), np.array([0.05, -0.1])
    pos, mom, q = shoot(pt / np.cos(dip), phi0, dip, [1.0, -1.0])
    cr = propagate_rk(det, pos, mom, q, np.full(2, PION_MASS), rng=0)
    np.testing.assert_array_equal(cr.particle, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(cr.layer, [0, 1, 2, 0, 1, 2])
    r = np.array([50.0, 60.0, 70.0] * 2)
    i = cr.particle
    alpha = 2.0 * np.arcsin(r / 75.0)
    exp_pos, _ = helix_point(alpha, pt / np.cos(dip[i]), phi0[i], dip[i], q[i], 2.0)
    np.testing.assert_allclose(cr.position, exp_pos, rtol=0, atol=UM)


def test_zero_field_goes_straight_and_neutral_particles_leave_nothing():
    rng = np.random.default_rng(11)
    n = 50
    p = rng.uniform(0.05, 5.0, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    dip = np.radians(rng.uniform(-30, 30, n))
    # a neutral particle ionises nothing: no crossings in any field (issue 14)
    pos, mom, q = shoot(p, phi, dip, np.zeros(n))
    det = lecture_detector(uniform_map((0, 0, 2.0)))
    assert len(propagate_rk(det, pos, mom, q, np.full(n, PION_MASS), rng=0)) == 0
    det = lecture_detector(uniform_map((0.0, 0.0, 0.0)))
    radii = np.array([layer.radius_mm for layer in det.layers])
    pos, mom, q = shoot(p, phi, dip, np.ones(n))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero anywhere
        cr = propagate_rk(det, pos, mom, q, np.full(n, PION_MASS), rng=0)
    assert len(cr) == n * len(radii)
    t = mom / p[:, None]
    r, i = radii[cr.layer], cr.particle
    exp = t[i] * (r / np.cos(dip[i]))[:, None]
    np.testing.assert_allclose(cr.position, exp, rtol=0, atol=1e-9)
    np.testing.assert_allclose(cr.momentum, mom[i], rtol=1e-12, atol=1e-15)


def test_inactive_area_and_max_path():
    # Short cylinders: a steep track misses the active area of the outer ones.
    det = lecture_detector(uniform_map((0.0, 0.0, 2.0)), half_length_mm=30.0)
    pos, mom, q = shoot([5.0], [0.0], [np.radians(20.0)], [1.0])
    cr = propagate_rk(det, pos, mom, q, [PION_MASS], rng=0)
    # z = r tan(20 deg) to first order: active (|z| <= 30 mm) up to r = 80 mm
    np.testing.assert_array_equal(cr.layer, [0, 1, 2, 3])
    assert np.all(np.abs(cr.position[:, 2]) <= 30.0)
    # Stop after 105 mm of path: the layers at r = 50..100 only.
    det = lecture_detector(uniform_map((0.0, 0.0, 2.0)))
    pos, mom, q = shoot([5.0], [0.0], [0.0], [1.0])
    cr = propagate_rk(det, pos, mom, q, [PION_MASS], rng=0, max_path_mm=105.0)
    np.testing.assert_array_equal(cr.layer, np.arange(6))


# ----------------------------------------------------------------------------- non-uniform
def fringe_dipole(points: np.ndarray) -> np.ndarray:
    """1 T solenoid along z plus a 1.5 T dipole along y for |x| < 80 mm, 15 mm fringe."""
    x, y = points[:, 0], points[:, 1]
    by = 1.5 / (1.0 + np.exp((np.abs(x) - 80.0) / 15.0))
    bz = 1.0 / (1.0 + np.exp((np.hypot(x, y) - 150.0) / 30.0))
    return np.stack([np.zeros_like(x), by, bz], axis=1)


def fringe_dipole_map() -> FieldMap:
    xy = np.linspace(-260.0, 260.0, 53)
    z = np.linspace(-1100.0, 1100.0, 3)
    gx, gy, gz = np.meshgrid(xy, xy, z, indexing="ij")
    b = fringe_dipole(np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1))
    return FieldMap(xy, xy, z, b.reshape(*gx.shape, 3))


def test_non_uniform_map_conserves_momentum_and_crosses_layers():
    det = lecture_detector(fringe_dipole_map(), thickness_x0=0.01)
    rng = np.random.default_rng(4)
    n = 400
    p = rng.uniform(0.1, 2.0, n)
    pos, mom, q = shoot(
        p, rng.uniform(0, 2 * np.pi, n), np.radians(rng.uniform(-10, 10, n)), rng.choice([-1, 1], n)
    )
    cr = propagate_rk(det, pos, mom, q, np.full(n, PION_MASS), rng=rng)
    assert len(cr) > 0.8 * n * det.n_layers
    pm = np.linalg.norm(cr.momentum, axis=1)
    np.testing.assert_allclose(pm, p[cr.particle], rtol=1e-9, atol=0)
    assert_on_surfaces(det, cr)
    assert_one_per_layer_in_path_order(cr)
    # outgoing tracks meet the layers in order of radius
    same = np.diff(cr.particle) == 0
    assert np.all(np.diff(cr.layer)[same] > 0)


def reference_crossings(p0, mom0, q, radii):
    """Crossings of the cylinders by an independent DOP853 integration of the same field."""
    pmag = np.linalg.norm(mom0)
    lam = C * q / pmag

    def rhs(_s, y):
        b = fringe_dipole(y[None, :3])[0]
        return np.concatenate([y[3:], lam * np.cross(y[3:], b)])

    events = [lambda _s, y, r=r: np.hypot(y[0], y[1]) - r for r in radii]
    sol = solve_ivp(
        rhs,
        (0.0, 400.0),
        np.concatenate([p0, mom0 / pmag]),
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
        events=events,
    )
    return np.array([ye[0, :3] for ye in sol.y_events if len(ye)])


def test_callable_field_matches_independent_integration():
    radii = np.arange(50.0, 201.0, 10.0)
    det = Detector(
        tuple(CylinderLayer(radius_mm=r, half_length_mm=2000.0) for r in radii),
        CallableField(fringe_dipole, "fringe dipole"),
    )
    pos, mom, q = shoot(
        [0.15, 0.4, 1.0, 0.25], [0.0, 1.2, 3.0, -2.5], np.radians([5.0, -8.0, 0.0, 10.0]),
        [1.0, -1.0, 1.0, -1.0],
    )  # fmt: skip
    cr = propagate_rk(det, pos, mom, q, np.full(4, PION_MASS), rng=0)
    for i in range(4):
        ref = reference_crossings(pos[i], mom[i], q[i], radii)
        got = cr.position[cr.particle == i]
        assert len(ref) == len(got) == len(radii)
        dev = np.linalg.norm(got - ref, axis=1)
        assert dev.max() < UM, (i, dev.max())


def test_mixed_geometry_crossings_lie_on_surfaces():
    layers = (
        CylinderLayer(radius_mm=40.0, half_length_mm=300.0),
        PlaneLayer(center_mm=(90.0, 0.0, 0.0), normal=(1.0, 0.2, 0.3), half_width_mm=150.0,
                   half_height_mm=150.0, thickness_x0=0.02),
        CylinderLayer(radius_mm=120.0, half_length_mm=300.0, thickness_x0=0.02),
        PlaneLayer(center_mm=(0.0, 0.0, 60.0), normal=(0.0, 0.0, 1.0), half_width_mm=200.0,
                   half_height_mm=200.0),
        PlaneLayer(center_mm=(150.0, 10.0, 0.0), normal=(-1.0, 0.0, 0.0)),
    )  # fmt: skip
    det = Detector(layers, fringe_dipole_map())
    rng = np.random.default_rng(8)
    n = 2000
    pos, mom, q = shoot(
        rng.uniform(0.08, 3.0, n), rng.uniform(-1.0, 1.0, n), rng.uniform(-0.6, 0.6, n),
        rng.choice([-1.0, 1.0], n),
    )  # fmt: skip
    cr = propagate_rk(det, pos, mom, q, np.full(n, PION_MASS), rng=rng)
    assert set(np.unique(cr.layer)) == set(range(len(layers)))
    assert_on_surfaces(det, cr)
    assert_one_per_layer_in_path_order(cr)
    np.testing.assert_allclose(
        np.linalg.norm(cr.momentum, axis=1), np.linalg.norm(mom, axis=1)[cr.particle], rtol=1e-9
    )


# ----------------------------------------------------------------------------- material
@pytest.mark.parametrize("field", [UniformField((0.0, 0.0, 0.0)), uniform_map((0.0, 0.0, 2.0))])
def test_highland_rms_at_one_thin_plane(field):
    x_over_x0 = 0.01
    p = 2.0
    det = Detector(
        (
            PlaneLayer(center_mm=(50.0, 0.0, 0.0), normal=(1.0, 0.0, 0.0), thickness_x0=x_over_x0),
            PlaneLayer(center_mm=(50.0 + 1e-3, 0.0, 0.0), normal=(1.0, 0.0, 0.0)),
        ),
        field,
    )
    n = 100_000
    mom = np.tile([p, 0.0, 0.0], (n, 1))
    cr = propagate_rk(det, np.zeros((n, 3)), mom, np.ones(n), np.full(n, PION_MASS), rng=9)
    assert len(cr) == 2 * n
    before, after = cr.momentum[cr.layer == 0], cr.momentum[cr.layer == 1]
    beta = p / np.hypot(p, PION_MASS)
    theta0 = 0.0136 / (beta * p) * np.sqrt(x_over_x0) * (1 + 0.038 * np.log(x_over_x0 / beta**2))
    for k in (1, 2):  # projections on the x-y and x-z planes
        dtheta = np.arctan2(after[:, k], after[:, 0]) - np.arctan2(before[:, k], before[:, 0])
        rms = np.sqrt(np.mean(dtheta**2))
        assert rms == pytest.approx(theta0, rel=0.05)


def test_same_seed_same_crossings_and_seeds_differ():
    det = lecture_detector(fringe_dipole_map(), thickness_x0=0.02)
    rng = np.random.default_rng(12)
    n = 300
    pos, mom, q = shoot(
        rng.uniform(0.1, 1.0, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(-0.2, 0.2, n),
        rng.choice([-1.0, 1.0], n),
    )  # fmt: skip
    m = np.full(n, PION_MASS)
    a = propagate_rk(det, pos, mom, q, m, np.random.default_rng(1))
    b = propagate_rk(det, pos, mom, q, m, np.random.default_rng(1))
    c = propagate_rk(det, pos, mom, q, m, np.random.default_rng(2))
    for name in ("particle", "layer", "position", "momentum"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert len(a) != len(c) or not np.array_equal(a.position, c.position)


def test_bad_input_raises():
    det = lecture_detector(uniform_map((0.0, 0.0, 2.0)))
    with pytest.raises(ConfigError, match="non-zero"):
        propagate_rk(det, np.zeros((1, 3)), np.zeros((1, 3)), [1.0], [PION_MASS], rng=0)
    with pytest.raises(ConfigError, match="tolerance_mm"):
        propagate_rk(det, np.zeros((1, 3)), [[1.0, 0, 0]], [1.0], [PION_MASS], 0, tolerance_mm=0)
    with pytest.raises(ConfigError, match="shape"):
        propagate_rk(det, np.zeros((2, 3)), np.ones((1, 3)), [1.0], [PION_MASS], rng=0)
    empty = propagate_rk(det, np.zeros((0, 3)), np.zeros((0, 3)), [], [], rng=0)
    assert len(empty) == 0


# ----------------------------------------------------------------------------- issue 14/22
def _uniform_callable(bz: float) -> CallableField:
    """A uniform field along z given as a callable, so that the stepper runs."""
    return CallableField(lambda p: np.broadcast_to([0.0, 0.0, bz], (len(p), 3)).copy(), "uniform")


def _barrel_and_planes() -> tuple:
    """The lecture's 16 cylinders and 4 planes parallel to z (one oblique)."""
    cyl = [CylinderLayer(radius_mm=float(r), half_length_mm=1000.0) for r in range(50, 201, 10)]
    planes = [
        PlaneLayer(center_mm=c, normal=nv, half_width_mm=300.0, half_height_mm=1000.0)
        for c, nv in (
            ((75.0, 0.0, 0.0), (1.0, 0.0, 0.0)),
            ((135.0, 0.0, 0.0), (1.0, 0.0, 0.0)),
            ((0.0, -95.0, 0.0), (0.0, 1.0, 0.0)),
            ((60.0, 80.0, 0.0), (0.6, 0.8, 0.0)),
        )
    ]
    return tuple(cyl + planes)


def graze_depth(pos, mom, q, bz, layer):
    """How far the exact helix of each track goes past a layer's surface between two
    crossings of it: the smaller excursion of its transverse circle beyond the layer
    (closed form, in the transverse plane)."""
    pt = np.hypot(mom[:, 0], mom[:, 1])
    radius = pt / (C * np.abs(q * bz))
    s = -np.sign(q * bz)  # the direction's azimuth turns by s * alpha
    # centre: to the right of the direction for s = -1 (clockwise), to the left for s = +1
    cx = pos[:, 0] - s * radius * mom[:, 1] / pt
    cy = pos[:, 1] + s * radius * mom[:, 0] / pt
    depth = np.empty(len(pos))
    for k, lay in enumerate(layer):
        if isinstance(lay, CylinderLayer):
            dist = np.hypot(cx[k], cy[k])
            depth[k] = min(lay.radius_mm - abs(dist - radius[k]), dist + radius[k] - lay.radius_mm)
        else:
            n = np.asarray(lay.normal)
            delta = cx[k] * n[0] + cy[k] * n[1] - np.dot(lay.center_mm, n)
            depth[k] = radius[k] - abs(delta)
    return depth


#: Grazes shallower than this may differ between the stepper and the exact helix (README).
GRAZE_DEPTH_MM = 1e-3


def assert_stepper_matches_helix(n: int, seed: int) -> None:
    bz = 2.0
    layers = _barrel_and_planes()
    det_rk = Detector(layers, _uniform_callable(bz))
    det_hx = Detector(layers, UniformField((0.0, 0.0, bz)))
    rng = np.random.default_rng(seed)
    # p_T from the looping threshold (R = 12.5 mm, which never reaches the first layer from
    # the origin) to 10 GeV/c, dip up to +-80 deg, vertices spread by up to 100 mm.
    pt = np.exp(rng.uniform(np.log(12.5 * C * bz), np.log(10.0), n))
    dip = np.radians(rng.uniform(-80.0, 80.0, n))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    mom = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.tan(dip)], axis=1)
    pos = rng.uniform(-100.0, 100.0, (n, 3))
    q = rng.choice([-1.0, 1.0], n)
    m = np.full(n, PION_MASS)

    rk = propagate_rk(det_rk, pos, mom, q, m, rng=0)
    hx = propagate_helix(det_hx, pos, mom, q, m, np.random.default_rng(0))

    key_rk = rk.particle * 100 + rk.layer
    key_hx = hx.particle * 100 + hx.layer
    differ = np.setxor1d(key_rk, key_hx)
    i, lay = np.divmod(differ, 100)
    depth = graze_depth(pos[i], mom[i], q[i], bz, [layers[k] for k in lay])
    assert np.all(depth < GRAZE_DEPTH_MM), (differ, depth)
    both, a, b = np.intersect1d(key_rk, key_hx, return_indices=True)
    assert len(both) > 10 * n
    dev = np.linalg.norm(rk.position[a] - hx.position[b], axis=1)
    assert dev.max() < UM, dev.max()
    # the same loop rule: every track stops for the same reason on both paths
    np.testing.assert_array_equal(rk.stop, hx.stop)
    assert 0 < rk.stop_counts()["looped"] < n


def test_graze_of_issue_14_is_found():
    # dips about 1.1 mm into r = 130 mm and out again within one 50 mm step
    det = Detector(_barrel_and_planes()[:16], _uniform_callable(2.0))
    pos = np.array([[128.2108577119286, -26.103077425343933, 0.0]])
    mom = np.array([[0.2542535688509112, 8.941972143993366, -1.3880469665103308]])
    for q in (1.0, -1.0):
        cr = propagate_rk(det, pos, mom, [q], [PION_MASS], rng=0)
        np.testing.assert_array_equal(cr.layer, np.arange(8, 16))
        assert np.all(graze_depth(pos, mom, np.array([q]), 2.0, [det.layers[8]]) > 1.0)


def test_stepper_finds_every_helix_crossing():
    assert_stepper_matches_helix(10_000, seed=21)


@pytest.mark.slow
def test_stepper_finds_every_helix_crossing_1e5_tracks():
    assert_stepper_matches_helix(100_000, seed=22)


# ----------------------------------------------------------------------------- scattering
@pytest.mark.parametrize("path", ["helix", "stepper"])
@pytest.mark.parametrize(("incidence_deg", "p"), [(0.0, 2.0), (60.0, 2.0), (89.5, 50.0)])
def test_scattering_angle_is_highland_through_both_propagators(path, incidence_deg, p):
    # 89.5 deg: |cos| = 0.0087, below the floor 0.01 (a path of 100 thicknesses); 50 GeV/c
    # so that the scattered tracks still reach the second plane 1 um behind
    from scipy import stats

    x_over_x0 = 0.01
    field = UniformField((0.0, 0.0, 2.0)) if path == "helix" else _uniform_callable(2.0)
    det = Detector(
        (
            PlaneLayer(center_mm=(50.0, 0.0, 0.0), normal=(1.0, 0.0, 0.0), thickness_x0=x_over_x0,
                       half_width_mm=1e6, half_height_mm=1e6),
            PlaneLayer(center_mm=(50.001, 0.0, 0.0), normal=(1.0, 0.0, 0.0), half_width_mm=1e6,
                       half_height_mm=1e6),
        ),
        field,
    )  # fmt: skip
    n = 40_000
    a = np.radians(incidence_deg)
    mom = np.tile([p * np.cos(a), p * np.sin(a), 0.0], (n, 1))
    start = np.tile([49.9, 0.0, 0.0], (n, 1))  # 0.1 mm before the plane: the field (2 T)
    # turns the direction by less than 2e-4 rad before it, so the incidence is as set
    cr = propagate(det, start, mom, np.ones(n), np.full(n, PION_MASS), rng=9)
    assert len(cr) == 2 * n
    before, after = cr.momentum[cr.layer == 0] / p, cr.momentum[cr.layer == 1] / p
    # the material path: x / cos(incidence), capped at 100 thicknesses at grazing incidence
    x = x_over_x0 / max(np.cos(a), 0.01)
    beta = p / np.hypot(p, PION_MASS)
    theta0 = 0.0136 / (beta * p) * np.sqrt(x) * (1 + 0.038 * np.log(x / beta**2))
    # projected angles on two axes normal to the incoming direction: Gaussian, RMS theta0
    v = np.cross(before, [0.0, 0.0, 1.0])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    u = np.cross(v, before)
    for axis in (u, v):
        angle = np.arctan2(np.einsum("ij,ij->i", after, axis), np.einsum("ij,ij->i", after, before))
        assert stats.kstest(angle / theta0, "norm").pvalue > 1e-3
        assert np.sqrt(np.mean(angle**2)) == pytest.approx(theta0, rel=0.03)


# ----------------------------------------------------------------------------- forward, edges
Z_IN, Z_OUT = 350.0, 650.0  # the dipole's hard edges [mm]
Z_PLANES = np.array([100.0, 200.0, 300.0, 700.0, 800.0, 900.0])
MUON_MASS = 0.1056583755


def forward_spectrometer(thickness_x0: float, z_in: float = Z_IN, z_out: float = Z_OUT):
    """Six planes normal to z; 1 T along y for z_in <= z <= z_out, 0 elsewhere (hard edges)."""

    def dipole(points: np.ndarray) -> np.ndarray:
        b = np.zeros((len(points), 3))
        b[:, 1] = np.where((points[:, 2] >= z_in) & (points[:, 2] <= z_out), 1.0, 0.0)
        return b

    planes = tuple(
        PlaneLayer(center_mm=(0.0, 0.0, z), normal=(0.0, 0.0, 1.0), half_width_mm=500.0,
                   half_height_mm=500.0, thickness_x0=thickness_x0)
        for z in Z_PLANES
    )  # fmt: skip
    return Detector(planes, CallableField(dipole, "hard-edged dipole"))


def forward_muons(n: int, seed: int):
    rng = np.random.default_rng(seed)
    p = rng.uniform(1.0, 20.0, n)
    dip = np.radians(rng.uniform(89.0, 90.0, n))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    t = np.stack([np.cos(dip) * np.cos(phi), np.cos(dip) * np.sin(phi), np.sin(dip)], axis=1)
    pos = np.zeros((n, 3))
    pos[:, :2] = rng.normal(0.0, 1.0, (n, 2))
    return pos, t, p, rng.choice([-1.0, 1.0], n)


def dipole_closed_form(pos, t, p, q):
    """Crossings (n, 6, 3) of the planes: a line, a circle in the x-z plane inside the
    dipole (the direction turns about y at the rate k = C q B / p), a line."""
    k = C * q * 1.0 / p
    entry = pos + t * ((Z_IN - pos[:, 2]) / t[:, 2])[:, None]
    # z(u) - Z_IN = (tz sin u + tx (1 - cos u)) / k = L, u = k s: rho sin(u - al) = kL - tx
    rho, al = np.hypot(t[:, 0], t[:, 2]), np.arctan2(t[:, 0], t[:, 2])
    u = al + np.arcsin((k * (Z_OUT - Z_IN) - t[:, 0]) / rho)
    out_x = entry[:, 0] + (t[:, 0] * np.sin(u) + t[:, 2] * (np.cos(u) - 1.0)) / k
    out_y = entry[:, 1] + t[:, 1] * u / k
    tx = t[:, 0] * np.cos(u) - t[:, 2] * np.sin(u)
    tz = t[:, 2] * np.cos(u) + t[:, 0] * np.sin(u)
    exp = np.empty((len(p), len(Z_PLANES), 3))
    for j, z in enumerate(Z_PLANES):
        if z < Z_IN:
            exp[:, j] = pos + t * ((z - pos[:, 2]) / t[:, 2])[:, None]
        else:
            s = (z - Z_OUT) / tz
            exp[:, j] = np.stack([out_x + tx * s, out_y + t[:, 1] * s, np.full(len(p), z)], 1)
    return exp


def test_hard_edged_dipole_is_within_a_micrometre_of_the_closed_form():
    n = 500
    pos, t, p, q = forward_muons(n, seed=3)
    cr = propagate_rk(forward_spectrometer(0.0), pos, t * p[:, None], q, np.full(n, MUON_MASS), 0)
    assert len(cr) == n * len(Z_PLANES)
    err = np.linalg.norm(cr.position.reshape(n, -1, 3) - dipole_closed_form(pos, t, p, q), axis=2)
    assert err.max() < UM, err.max(axis=0)


@pytest.mark.parametrize("thickness_x0", [0.01, 0.05])
@pytest.mark.parametrize("edges", [(Z_IN, Z_OUT), (150.0, 850.0)])
def test_forward_spectrometer_with_material_loses_no_track(thickness_x0, edges):
    # Near-axial tracks (dip 89-90 deg) in a dipole: the dipole turns p_T through zero, and
    # where a plane with material lies in the field (150-850 mm) a scatter can land there
    # and turn it back, so the transverse direction flips by about pi twice. They do not
    # loop (the old rule, the turn of the transverse direction, stopped 32-34 of these
    # 2000 tracks in the wider field), and every one leaves a hit on each of the 6 planes.
    n = 2000
    pos, t, p, q = forward_muons(n, seed=4)
    det = forward_spectrometer(thickness_x0, *edges)
    cr = propagate_rk(det, pos, t * p[:, None], q, np.full(n, MUON_MASS), rng=5)
    assert np.all(np.abs(cr.position[:, :2]) < 500.0)  # all within the acceptance
    np.testing.assert_array_equal(np.bincount(cr.particle, minlength=n), len(Z_PLANES))
    assert cr.stop_counts()["left_detector"] == n


def test_near_axial_tracks_in_a_solenoid_stop_after_half_a_turn_on_both_paths():
    # The same loop rule on both paths: half a turn about the field, a path of
    # pi p / (C |q| B) whatever the dip (1572 mm here, inside z_max).
    bz, p = 2.0, 0.3
    layers = tuple(CylinderLayer(radius_mm=r, half_length_mm=3000.0) for r in (5.0, 10.0, 20.0))
    n = 400
    rng = np.random.default_rng(6)
    dip = np.radians(rng.uniform(89.0, 89.9, n))  # R < 9 mm: rho < 18 mm < r_max
    phi = rng.uniform(0, 2 * np.pi, n)
    mom = p * np.stack([np.cos(dip) * np.cos(phi), np.cos(dip) * np.sin(phi), np.sin(dip)], 1)
    half_turn = np.pi * p / (C * bz)
    for field in (UniformField((0.0, 0.0, bz)), _uniform_callable(bz)):
        det = Detector(layers, field)
        assert half_turn * np.sin(dip).max() < det.z_max_mm - 1.0
        cr = propagate(det, np.zeros((n, 3)), mom, np.ones(n), np.full(n, PION_MASS), rng=1)
        assert cr.stop_counts()["looped"] == n
        # crossings within half a turn only: |z| <= half_turn sin(dip)
        i = cr.particle
        assert np.all(cr.position[:, 2] <= half_turn * np.sin(dip[i]) + UM)


def test_a_field_that_turns_nan_stops_the_tracks_there_and_says_why():
    def field(points):
        b = np.zeros((len(points), 3))
        b[:, 2] = np.where(np.hypot(points[:, 0], points[:, 1]) > 125.0, np.nan, 2.0)
        return b

    det = lecture_detector(CallableField(field, "NaN beyond r = 125 mm"))
    pos, mom, q = shoot([1.0, 2.0, 5.0], [0.0, 1.0, 2.0], [0.0, 0.1, -0.1], [1.0, -1.0, 1.0])
    cr = propagate_rk(det, pos, mom, q, np.full(3, PION_MASS), rng=0)
    assert cr.stop_counts()["not_finite"] == 3
    assert np.all(cr.layer <= 7)  # r = 50..120 mm only
    assert len(cr) == 3 * 8
