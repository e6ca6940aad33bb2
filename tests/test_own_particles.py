"""Your own particles (simulate_particles), the true momentum at each hit, progress callbacks.

The right values come from closed forms: helices in a uniform field, a line-arc-line track
through a hard-edged dipole, |p| conserved by a magnetic field, or from the gun's own
particles fed back through the same random streams.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import spectrocnn
from spectrocnn import simulate
from spectrocnn.config import config_from_dict
from spectrocnn.dataset import ImageSpec, open_events
from spectrocnn.dataset.eventfile import write_events
from spectrocnn.errors import ConfigError
from spectrocnn.simulate import (
    C_GEV_PER_T_MM,
    HIT_COLUMNS,
    HIT_MOMENTUM_COLUMNS,
    CallableField,
    Detector,
    FieldMap,
    PlaneLayer,
    Simulation,
    UniformField,
    choose_propagator,
    concatenate_batches,
    lecture_detector,
    simulate_events,
    simulate_particles,
)
from spectrocnn.simulate.gun import shoot, shoot_guns

#: pi+, mu-, proton, He4 (charge 2), K-
PDG = np.array([211, 13, 2212, 1000020040, -321])
CHARGE = np.array([1, -1, 1, 2, -1])


def uniform_map(b_t, half_xy: float = 350.0, half_z: float = 1100.0) -> FieldMap:
    """A coarse grid holding a uniform field (exact under trilinear interpolation)."""
    xy = np.linspace(-half_xy, half_xy, 8)
    z = np.linspace(-half_z, half_z, 5)
    return FieldMap(xy, xy, z, np.array(np.broadcast_to(np.asarray(b_t, float), (8, 8, 5, 3))))


def _columns(batch) -> dict[str, np.ndarray]:
    out = {f"particles/{k}": v for k, v in batch.particles.columns().items()}
    out.update({f"hits/{k}": v for k, v in batch.hits.columns(momentum=True).items()})
    out["labels"], out["stop"] = batch.labels, batch.stop
    return out


def _assert_same(a, b) -> None:
    ca, cb = _columns(a), _columns(b)
    assert ca.keys() == cb.keys()
    for k in ca:
        assert ca[k].dtype == cb[k].dtype, k
        assert np.array_equal(ca[k], cb[k], equal_nan=ca[k].dtype.kind == "f"), k


# ----------------------------------------------------------------------------- reproduction
@pytest.mark.parametrize(
    "config",
    [
        {"noise": {"hits_per_layer": 0.5}, "detector": {"thickness_x0": 0.01}},
        {"detector": {"thickness_mm": 0.3, "energy_loss": True, "efficiency": 0.9}},
    ],
    ids=["scattering+noise", "energy-loss"],
)
def test_simulate_particles_reproduces_simulate_events_with_the_guns_particles(config):
    """The gun's particles fed in through the same random stream give the same batch."""
    sim = config_from_dict(config).simulation
    expected = simulate_events(sim, 60, rng=np.random.default_rng(3))
    rng = np.random.default_rng(3)
    prim = shoot(sim.gun, 60, sim.n_particles, sim.high_fraction, rng)
    got = simulate_particles(sim, prim.vertex, prim.momentum, prim.pdg, prim.event, rng=rng)
    _assert_same(expected, got)


def test_simulate_particles_reproduces_a_mixture_on_the_stepper():
    """Several species (masses and |q| per particle), a field map: the stepper's path."""
    cfg = config_from_dict(
        {
            "n_particles": {"distribution": "poisson", "mean": 4.0},
            "guns": [
                {"particle": "mu-", "fraction": 0.5, "pt_GeV": [0.2, 2.0]},
                {"particle": "He4", "fraction": 0.5, "p_GeV": [0.5, 3.0]},
            ],
            "label": {"threshold_GeV": 1.0},
            "detector": {"thickness_mm": 0.3, "energy_loss": True},
        }
    )
    det = cfg.simulation.detector
    sim = Simulation(
        Detector(det.layers, uniform_map((0.0, 0.0, 2.0))), guns=cfg.simulation.guns,
        label=cfg.simulation.label,
    )  # fmt: skip
    assert choose_propagator(sim.detector) == "stepper"
    expected = simulate_events(sim, 25, rng=11)
    rng = np.random.default_rng(11)
    prim = shoot_guns(sim.guns, 25, sim.n_particles, sim.label, rng)
    got = simulate_particles(sim, prim.vertex, prim.momentum, prim.pdg, prim.event, rng=rng)
    _assert_same(expected, got)


def test_simulate_particles_takes_a_detector_and_defaults_to_one_event():
    det = lecture_detector()
    mom = [[1.0, 0.0, 0.0], [0.0, 6.0, 0.5], [-0.5, -0.5, 0.0]]
    batch = simulate_particles(det, np.zeros((3, 3)), mom, [211, -211, 2212], rng=1)
    assert batch.n_events == 1
    assert batch.particles.event.tolist() == [0, 0, 0]
    assert batch.particles.charge.tolist() == [1, -1, 1]
    # the label of Simulation(detector): |p| at or above the lecture's 5 GeV/c
    assert batch.particles.is_high.tolist() == [0, 1, 0]
    assert batch.labels.tolist() == [1]
    assert len(batch.hits) == 48 and np.all(batch.hits.particle >= 0)
    # an event index skipped is an event without particles
    gap = simulate_particles(det, np.zeros((2, 3)), mom[:2], [13, 13], event=[0, 2], rng=1)
    assert gap.n_events == 3
    assert gap.event_offsets("hits").tolist() == [0, 16, 16, 32]
    assert simulate_particles(det, np.zeros((0, 3)), np.zeros((0, 3)), []).n_events == 0


def test_simulate_particles_is_exported():
    assert spectrocnn.simulate_particles is simulate_particles
    assert "simulate_particles" in spectrocnn.__all__
    assert "simulate_particles" in simulate.__all__


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pdg": [111, 211]}, r"pdg id 111 \(pi0\) has charge 0: a neutral particle"),
        ({"pdg": [211, 22]}, r"pdg id 22 \(gamma\) has charge 0: a neutral particle"),
        ({"pdg": [2, 211]}, r"pdg id 2 \(u\) has charge 2/3: a quark carries colour"),
        ({"pdg": [21, 211]}, r"pdg id 21 \(g\) has charge 0: a gluon carries colour"),
        ({"pdg": [211, 999999]}, r"pdg id 999999 is not a particle of the PDG table"),
        ({"pdg": [211.0, 13.0]}, r"pdg must hold integers, got dtype float64"),
        ({"pdg": [211]}, r"pdg must have shape \(2,\) \(one per particle\), got \(1,\)"),
        ({"event": [1, 0]}, r"event must be non-decreasing .* event\[1\] = 0 after event\[0\]"),
        ({"event": [-1, 0]}, r"event must be >= 0, got -1"),
        ({"momentum_GeV": [[1, 0, 0], [0, 0, 0]]}, r"momentum_GeV must be non-zero.* 1$"),
        ({"momentum_GeV": [[1, 0, np.nan], [1, 0, 0]]}, r"momentum_GeV must be finite"),
        ({"vertex_mm": np.zeros((2, 2))}, r"must have shape \(n, 3\), got \(2, 2\)"),
        ({"vertex_mm": [["a", 0, 0], [0, 0, 0]]}, r"vertex_mm must be an array of numbers"),
    ],
)
def test_simulate_particles_refuses_bad_input_in_one_line(kwargs, message):
    args = {"vertex_mm": np.zeros((2, 3)), "momentum_GeV": [[1, 0, 0], [0, 1, 0]]}
    args["pdg"] = [211, -13]
    args.update(kwargs)
    with pytest.raises(ConfigError, match=message) as info:
        simulate_particles(lecture_detector(), **args)
    assert "\n" not in str(info.value)


def test_simulate_particles_refuses_what_is_not_a_simulation():
    with pytest.raises(ConfigError, match="must be a Simulation or a Detector"):
        simulate_particles("lecture", np.zeros((1, 3)), [[1, 0, 0]], [211])


# ----------------------------------------------------------------------------- closed forms
def _helix_tracks(n: int, rng: np.random.Generator):
    """Particles from the origin: p_T 0.3-3 GeV/c, dip within 30 deg, of PDG."""
    pt = rng.uniform(0.3, 3.0, n)
    phi0 = rng.uniform(-np.pi, np.pi, n)
    dip = rng.uniform(-0.5, 0.5, n)
    mom = np.stack([pt * np.cos(phi0), pt * np.sin(phi0), pt * np.tan(dip)], axis=1)
    which = rng.integers(0, len(PDG), n)
    return mom, PDG[which], CHARGE[which]


def _helix_crossing(mom, q, bz, r):
    """Closed-form crossing of a helix from the origin with the cylinder of radius r, and
    the momentum there: the chord of length r turns the direction by 2 asin(r / 2R)."""
    pt = np.hypot(mom[:, 0], mom[:, 1])
    radius = pt / (C_GEV_PER_T_MM * np.abs(q) * abs(bz))
    alpha = 2.0 * np.arcsin(r / (2.0 * radius))
    s = np.sign(q * bz)  # a positive charge in B along +z turns clockwise
    phi0 = np.arctan2(mom[:, 1], mom[:, 0])
    pos = np.stack(
        [r * np.cos(phi0 - s * alpha / 2), r * np.sin(phi0 - s * alpha / 2),
         mom[:, 2] / pt * radius * alpha], axis=1,
    )  # fmt: skip
    p = np.stack([pt * np.cos(phi0 - s * alpha), pt * np.sin(phi0 - s * alpha), mom[:, 2]], 1)
    return pos, p


@pytest.mark.parametrize(
    ("field", "pos_tol", "dir_tol"),
    [(UniformField((0.0, 0.0, 2.0)), 1e-9, 1e-12), (uniform_map((0.0, 0.0, 2.0)), 1e-4, 1e-6)],
    ids=["helix", "stepper"],
)
def test_hits_carry_the_true_momentum_of_the_closed_form_helix(field, pos_tol, dir_tol):
    """Without material |p| is the particle's at every hit and the momentum is the helix
    tangent; positions lie on the closed-form helix (both propagators)."""
    det = lecture_detector(field)
    mom, pdg, q = _helix_tracks(200, np.random.default_rng(5))
    batch = simulate_particles(det, np.zeros((200, 3)), mom, pdg, np.arange(200), rng=2)
    hits = batch.hits
    assert hits.has_momentum and len(hits) == 200 * 16
    part = hits.particle
    r = np.hypot(hits.true_x, hits.true_y)
    pos, p = _helix_crossing(mom[part], q[part], 2.0, np.round(r))
    true = np.stack([hits.true_x, hits.true_y, hits.true_z], axis=1)
    got = np.stack([hits.true_px, hits.true_py, hits.true_pz], axis=1)
    np.testing.assert_allclose(true, pos, rtol=0, atol=pos_tol)
    pmag = np.linalg.norm(mom, axis=1)[part]
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), pmag, rtol=1e-13)
    np.testing.assert_allclose(got / pmag[:, None], p / pmag[:, None], rtol=0, atol=dir_tol)


def _dipole(points: np.ndarray) -> np.ndarray:
    """1 T along +y between z = 200 and 400 mm, hard-edged; no field elsewhere."""
    b = np.zeros_like(points)
    b[:, 1] = np.where((points[:, 2] > 200.0) & (points[:, 2] < 400.0), 1.0, 0.0)
    return b


def test_forward_spectrometer_with_a_dipole_follows_the_line_arc_line():
    """Planes normal to z around a hard-edged dipole (the stepper): crossings and momenta
    of tracks along z on the closed form (a line, a circular arc of radius
    p / (C |q| B) in the x-z plane, a line)."""
    z_planes = (100.0, 150.0, 250.0, 300.0, 350.0, 450.0, 500.0, 550.0)
    layers = tuple(
        PlaneLayer(center_mm=(0.0, 0.0, z), normal=(0.0, 0.0, 1.0), half_width_mm=300.0,
                   half_height_mm=300.0)
        for z in z_planes
    )  # fmt: skip
    det = Detector(layers, CallableField(_dipole, "dipole"))
    assert choose_propagator(det) == "stepper"
    rng = np.random.default_rng(8)
    n = 40
    p = rng.uniform(0.5, 5.0, n)
    vertex = np.stack([rng.uniform(-20, 20, n), rng.uniform(-20, 20, n), np.zeros(n)], axis=1)
    which = rng.integers(0, len(PDG), n)
    mom = np.stack([np.zeros(n), np.zeros(n), p], axis=1)
    batch = simulate_particles(det, vertex, mom, PDG[which], np.arange(n), rng=1)
    hits = batch.hits
    assert len(hits) == n * len(z_planes)
    k = hits.particle
    q, pk = CHARGE[which][k], p[k]
    radius = pk / (C_GEV_PER_T_MM * np.abs(q) * 1.0)
    s = np.sign(q)  # v x B = z x y = -x: a positive charge bends towards -x
    z = np.asarray(hits.true_z)
    sin_in = np.clip((z - 200.0) / radius, 0.0, 200.0 / radius)
    cos_in = np.sqrt(1.0 - sin_in**2)
    dx = -s * radius * (1.0 - cos_in) - s * np.maximum(z - 400.0, 0.0) * sin_in / cos_in
    np.testing.assert_allclose(hits.true_x, vertex[k, 0] + dx, rtol=0, atol=1e-4)
    np.testing.assert_allclose(hits.true_y, vertex[k, 1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(z, np.array(z_planes)[hits.layer], rtol=0, atol=1e-9)
    got = np.stack([hits.true_px, hits.true_py, hits.true_pz], axis=1)
    expected = pk[:, None] * np.stack([-s * sin_in, np.zeros_like(z), cos_in], axis=1)
    np.testing.assert_allclose(got / pk[:, None], expected / pk[:, None], rtol=0, atol=1e-6)


@pytest.mark.parametrize("field", [UniformField((0.0, 0.0, 2.0)), uniform_map((0.0, 0.0, 2.0))])
def test_momentum_at_hits_decreases_layer_by_layer_with_energy_loss(field):
    """Energy loss in every layer: |p| arrives undiminished at the first layer (nothing
    before it), then lower at every next layer; the direction is the helix tangent's
    in the transverse plane (|p_z / p_T| constant: energy loss keeps the direction)."""
    cfg = config_from_dict({"detector": {"thickness_mm": 1.0, "energy_loss": True}})
    det = Detector(cfg.simulation.detector.layers, field)
    rng = np.random.default_rng(6)
    n = 60
    pt = rng.uniform(0.5, 2.0, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mom = np.stack([pt * np.cos(phi), pt * np.sin(phi), 0.2 * pt], axis=1)
    batch = simulate_particles(det, np.zeros((n, 3)), mom, np.full(n, 2212), np.arange(n), rng=4)
    h = batch.hits
    pmag = np.sqrt(h.true_px**2 + h.true_py**2 + h.true_pz**2)
    first = np.r_[True, h.particle[1:] != h.particle[:-1]]
    np.testing.assert_allclose(pmag[first], np.linalg.norm(mom, axis=1), rtol=1e-13)
    same = ~first
    assert np.all(pmag[same] < pmag[np.flatnonzero(same) - 1])
    assert np.all(np.diff(h.layer)[same[1:]] > 0)  # along the track, layer by layer


# ----------------------------------------------------------------------------- tables, file
def test_momentum_columns_round_trip_through_the_event_file(tmp_path):
    """The event file (schema 2) stores the momentum at each hit as float32 (README, "The
    event file"); plain h5py reads it back, NaN for noise hits."""
    batch = simulate_events(Simulation(noise_hits_per_layer=0.2), 5, rng=1)
    assert batch.hits.has_momentum
    noise = batch.hits.particle < 0
    assert noise.any() and np.all(np.isnan(batch.hits.true_px[noise]))
    assert list(batch.hits.columns()) == list(HIT_COLUMNS)
    assert list(batch.hits.columns(momentum=True)) == [*HIT_COLUMNS, *HIT_MOMENTUM_COLUMNS]
    path = tmp_path / "e.h5"
    write_events(path, batch, ImageSpec(size=32))
    with h5py.File(path, "r") as f:
        assert set(f["hits"]) == {*HIT_COLUMNS, *HIT_MOMENTUM_COLUMNS, "offsets"}
        for col in HIT_MOMENTUM_COLUMNS:
            stored = f["hits"][col][()]
            assert stored.dtype == np.float32 and f["hits"][col].attrs["units"] == "GeV/c"
            assert np.array_equal(
                stored, getattr(batch.hits, col).astype(np.float32), equal_nan=True
            )
    with open_events(path) as ef:
        back = ef.truth()
    assert back.hits.has_momentum and np.all(np.isnan(back.hits.true_px[noise]))
    np.testing.assert_array_equal(back.hits.true_pz, batch.hits.true_pz.astype(np.float32))
    joined = concatenate_batches([batch, batch])
    assert joined.hits.has_momentum
    np.testing.assert_array_equal(joined.hits.true_pz, np.tile(batch.hits.true_pz, 2))
    unknown = type(back)(back.labels, back.particles, type(back.hits)(**back.hits.columns()))
    assert not concatenate_batches([batch, unknown]).hits.has_momentum


# ----------------------------------------------------------------------------- progress
def _recorder():
    calls: list[int] = []
    return calls, calls.append


def _check_progress(calls: list[int], total: int) -> None:
    assert calls and all(isinstance(c, int) and c > 0 for c in calls)
    counts = np.cumsum(calls)
    assert np.all(np.diff(counts) > 0) and counts[-1] == total


def test_simulate_events_reports_progress_on_the_helix():
    calls, progress = _recorder()
    batch = simulate_events(Simulation(), 40, rng=3, progress=progress)
    _check_progress(calls, 40)
    _assert_same(batch, simulate_events(Simulation(), 40, rng=3))
    calls, progress = _recorder()
    simulate_events(Simulation(), 0, rng=3, progress=progress)
    assert calls == []


def test_progress_follows_the_stepper_groups(monkeypatch):
    """Groups of 1024 particles: several calls, monotone, ending at the total; the same
    batch as without a callback."""
    import spectrocnn.simulate.stepper as stepper

    monkeypatch.setattr(stepper, "_CHUNK_ELEMENTS", 1)
    sim = Simulation(lecture_detector(uniform_map((0.0, 0.0, 2.0))))
    calls, progress = _recorder()
    batch = simulate_events(sim, 250, rng=5, progress=progress)
    _check_progress(calls, 250)
    assert len(calls) >= 3
    _assert_same(batch, simulate_events(sim, 250, rng=5))
    prim = batch.particles
    mom = np.stack([prim.px, prim.py, prim.pz], axis=1)
    vtx = np.stack([prim.vx, prim.vy, prim.vz], axis=1)
    calls, progress = _recorder()
    simulate_particles(sim, vtx, mom, prim.pdg, prim.event, rng=1, progress=progress)
    _check_progress(calls, 250)
    assert len(calls) >= 3
