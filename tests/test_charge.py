"""Particle charge and fixed ranges (issue 14, items 1, 2 and 7).

Expected values are physics (He4 has Z = 2, a quark 2/3), closed forms
(``R = p_T / (0.299792458 |q| B)``, Gluckstern) or the file's own truth, never the code's
output for the same question.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from spectrocnn.cli import fit_tracks, gen_events, show_event
from spectrocnn.config import config_from_dict, load_config
from spectrocnn.dataset import generate_file, open_events
from spectrocnn.errors import ConfigError
from spectrocnn.reco import fit_truth_tracks, gluckstern_sigma_k
from spectrocnn.reco.circlefit import pt_from_curvature
from spectrocnn.simulate import (
    FieldMap,
    ParticleGun,
    Simulation,
    UniformField,
    lecture_detector,
    propagate,
    simulate_events,
)
from spectrocnn.simulate.gun import shoot
from spectrocnn.simulate.propagation import StopReason

C_GEV_PER_T_M = 0.299792458  # p[GeV/c] = C |q| B[T] R[m] (docs/design.md 4), written out here

# -- which particles the gun takes ----------------------------------------------------------

#: (name, charge as the message shows it): neutral, quarks, a diquark, the gluon.
REFUSED = [
    ("gamma", "0"),
    ("pi0", "0"),
    ("n", "0"),
    ("K(L)0", "0"),
    ("u", "2/3"),
    ("t", "2/3"),
    ("(uu)(1)", "4/3"),
    ("g", "0"),
]

#: (name, charge [e]) from physics: nuclei are fully stripped (q = Z).
ACCEPTED = [
    ("pi+", 1),
    ("mu-", -1),
    ("e+", 1),
    ("p", 1),
    ("Omega-", -1),
    ("Delta(1232)++", 2),
    ("He3", 2),
    ("He4", 2),
    ("He4~", -2),
    ("Li6", 3),
]


@pytest.mark.parametrize(("name", "charge"), REFUSED, ids=[n for n, _ in REFUSED])
def test_refused_particles_name_the_particle_and_its_charge(name, charge):
    with pytest.raises(ConfigError) as info:
        ParticleGun(particle=name)
    msg = str(info.value)
    assert msg.startswith(f"particle {name!r} has charge {charge}: "), msg
    assert "\n" not in msg
    # through a configuration, the key is named too
    with pytest.raises(ConfigError) as info:
        config_from_dict({"gun": {"particle": name}})
    assert str(info.value).startswith(f"gun.particle {name!r} has charge {charge}: ")


def test_refusal_reasons():
    def reason(name: str) -> str:
        with pytest.raises(ConfigError) as info:
            ParticleGun(particle=name)
        return str(info.value)

    assert "neutral particle leaves no hits" in reason("gamma")
    assert "a quark carries colour" in reason("u")
    assert "a diquark carries colour" in reason("(uu)(1)")
    assert "a gluon carries colour" in reason("g")


def test_a_fractional_charge_is_refused_whatever_the_species(monkeypatch):
    """A colour-neutral entry of fractional charge (none in today's PDG table) is refused."""
    import particle

    fake = SimpleNamespace(pdgid=9_000_211, three_charge=1, mass=139.57)
    monkeypatch.setattr(particle.Particle, "from_name", classmethod(lambda cls, name: fake))
    with pytest.raises(ConfigError, match=r"particle 'fake\+1/3' has charge 1/3: .*integer"):
        ParticleGun(particle="fake+1/3")


@pytest.mark.parametrize(("name", "charge"), ACCEPTED, ids=[n for n, _ in ACCEPTED])
def test_accepted_particles_keep_their_real_charge(name, charge):
    gun = ParticleGun(particle=name)
    assert gun.charge == charge
    prim = shoot(gun, 400, 5, 0.5, rng=4)
    assert prim.charge.dtype == np.int8
    # the magnitude is the particle's, the sign random (both present), the PDG id follows
    assert set(np.unique(prim.charge).tolist()) == {-abs(charge), abs(charge)}
    assert 0.4 < np.mean(prim.charge > 0) < 0.6
    np.testing.assert_array_equal(
        prim.pdg, np.where(prim.charge == charge, gun.pdg, -gun.pdg).astype(np.int32)
    )


def test_he4_charge_survives_the_event_file(tmp_path):
    cfg = config_from_dict({"gun": {"particle": "He4"}}).with_image_size(32)
    path = tmp_path / "he4.h5"
    generate_file(cfg, 20, path, seed=2, workers=1)
    with open_events(path) as ev:
        truth = ev.truth(0, 20)
    assert truth.particles.charge.dtype == np.int8
    assert set(np.unique(truth.particles.charge).tolist()) == {-2, 2}
    np.testing.assert_array_equal(
        truth.particles.pdg, 1000020040 * np.sign(truth.particles.charge).astype(np.int32)
    )


# -- neutral particles leave nothing, through the library too ------------------------------


def _shots(n: int, rng: np.random.Generator):
    p = rng.uniform(0.3, 3.0, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    dip = rng.uniform(-0.2, 0.2, n)
    mom = np.stack([p * np.cos(dip) * np.cos(phi), p * np.cos(dip) * np.sin(phi), p * np.sin(dip)])
    return np.zeros((n, 3)), mom.T


def _uniform_map(bz: float) -> FieldMap:
    xy = np.linspace(-350.0, 350.0, 6)
    z = np.linspace(-1100.0, 1100.0, 4)
    b = np.zeros((6, 6, 4, 3))
    b[..., 2] = bz
    return FieldMap(xy, xy, z, b)


@pytest.mark.parametrize("field", ["helix", "runge-kutta"])
def test_neutral_particles_leave_no_crossings(field):
    """Charge 0 among charged particles (one call): no crossings; the others unaffected."""
    bz = 2.0
    fld = UniformField((0.0, 0.0, bz)) if field == "helix" else _uniform_map(bz)
    det = lecture_detector(fld)
    n = 40
    pos, mom = _shots(n, np.random.default_rng(5))
    q = np.tile([1.0, 0.0, -2.0, 0.0], n // 4)
    cr = propagate(det, pos, mom, q, 0.14, rng=0)
    assert set(np.unique(cr.particle).tolist()) == set(np.flatnonzero(q != 0).tolist())
    # every charged track crosses all 16 layers on its circle, R = p_T / (C |q| B)
    assert np.all(np.bincount(cr.particle, minlength=n)[q != 0] == 16)
    # both propagators say why: neutral ones were never propagated
    assert np.all((cr.stop == StopReason.NEUTRAL) == (q == 0))
    pt = np.hypot(mom[:, 0], mom[:, 1])
    radius_mm = 1e3 * pt / (C_GEV_PER_T_M * np.abs(np.where(q != 0, q, 1.0)) * bz)
    i = cr.particle
    phi0 = np.arctan2(mom[:, 1], mom[:, 0])[i]
    s = np.sign(q[i])  # q > 0 turns clockwise: the centre lies to the right of the motion
    cx, cy = s * radius_mm[i] * np.sin(phi0), -s * radius_mm[i] * np.cos(phi0)
    dist = np.hypot(cr.position[:, 0] - cx, cr.position[:, 1] - cy)
    np.testing.assert_allclose(dist, radius_mm[i], rtol=0, atol=1e-3 if field != "helix" else 1e-6)


def test_neutral_particles_through_the_library_leave_no_hits():
    """A user who skips ParticleGun (a neutral 'particle' in simulate's own pieces) gets no hits."""
    from spectrocnn.simulate.hits import measure

    det = lecture_detector()
    pos, mom = _shots(10, np.random.default_rng(6))
    cr = propagate(det, pos, mom, np.zeros(10), 0.0, rng=0)
    hits = measure(det, cr, np.zeros(10, np.int64), np.random.default_rng(1))
    assert len(hits["x"]) == 0


# -- |q| in the reconstruction --------------------------------------------------------------


def test_pt_from_curvature_closed_form():
    # R = 1 m in 2 T: p_T = 0.299792458 |q| * 2 GeV/c
    rho = np.array([1e-3, -1e-3, 1e-3])
    q = np.array([1, -2, 3])
    np.testing.assert_allclose(
        pt_from_curvature(rho, -2.0, q), C_GEV_PER_T_M * 2.0 * np.abs(q), rtol=1e-15
    )


def test_truth_fit_of_he4_matches_the_true_curvature():
    """He4 (|q| = 2): fitted curvature against 0.299792458 |q| B / p_T, Gluckstern's spread."""
    eps_um, bz = 50.0, 2.0
    det = lecture_detector(resolution_um=eps_um)
    # stiff tracks (R of pions of 2-10 GeV/c): 16 nearly equally spaced points
    sim = Simulation(det, ParticleGun("He4", p_low_GeV=(4.0, 20.0)), high_fraction=0.0)
    batch = simulate_events(sim, 500, rng=22)
    fits = fit_truth_tracks(batch, bz, eps_um)
    assert np.all(fits.n_hits == 16)
    p = batch.particles
    pt_true = np.hypot(p.px, p.py)[fits.particle]
    k_true = 1.0 / (1e3 * pt_true / (C_GEV_PER_T_M * 2 * bz))  # 1 / R [1/mm]
    sigma = gluckstern_sigma_k(eps_um * 1e-3, 150.0, 16)
    pull = (np.abs(fits.fit.rho) - k_true) / sigma
    assert 0.9 <= np.std(pull) <= 1.1
    assert abs(np.mean(pull)) < 0.15
    # p_T itself: unbiased (|q| = 1 would give half of it)
    ratio = fits.pt_GeV / pt_true
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
    # a particle stored with charge 0 (hits of a neutral particle in an old file) is not fitted
    zeroed = p.charge.copy()
    zeroed[:7] = 0
    old = dataclasses.replace(batch, particles=dataclasses.replace(p, charge=zeroed))
    fits0 = fit_truth_tracks(old, bz, eps_um)
    assert set(fits0.particle.tolist()) == set(fits.particle.tolist()) - set(range(7))


#: Twin files: (gun particle, |q|); each shoots |q| times the pions' momenta, so that every
#: trajectory (R = p_T / (0.3 |q| B)), hit and image is the pions' (no material here).
TWINS = [("pi+", 1), ("He4", 2), ("Li6", 3), ("Omega-", 1)]


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    d = tmp_path_factory.mktemp("twins")
    files = {}
    for name, abs_q in TWINS:
        cfg = config_from_dict(
            {"gun": {"particle": name, "p_low_GeV": [0.1 * abs_q, 0.15 * abs_q],
                     "p_high_GeV": [2.0 * abs_q, 4.0 * abs_q]}}
        ).with_image_size(64)  # fmt: skip
        files[name] = d / f"{name}.h5"
        generate_file(cfg, 60, files[name], seed=9, workers=1)
    return files


def _fit_json(path, capsys, *extra) -> dict:
    assert fit_tracks.main([str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("extra", [[], ["--no-truth"]], ids=["truth", "no-truth"])
@pytest.mark.parametrize(("name", "abs_q"), TWINS[1:], ids=[n for n, _ in TWINS[1:]])
def test_fit_tracks_cut_is_the_true_pt_for_any_charge(twins, capsys, extra, name, abs_q):
    with open_events(twins[name]) as ev, open_events(twins["pi+"]) as ev_pi:
        t = ev.truth(0, ev.n_events)
        # the same pictures: |q| times the momentum bends as a pion of p
        np.testing.assert_array_equal(ev.read_images(0, 60), ev_pi.read_images(0, 60))
    # the cut: the lowest high-p_T track of the labelled events, from the truth
    pt = np.hypot(t.particles.px, t.particles.py)
    lowest_high = pt[t.particles.is_high == 1].min()
    fitted, pion = _fit_json(twins[name], capsys, *extra), _fit_json(twins["pi+"], capsys, *extra)
    assert fitted["accuracy"] >= 0.98
    # Gluckstern: sigma(p_T) / p_T = sigma(k) / k, k = 1 / R = 0.3 |q| B / p_T (about 4 %)
    k_true = 1.0 / (1e3 * lowest_high / (C_GEV_PER_T_M * abs_q * 2.0))
    sigma_rel = gluckstern_sigma_k(0.05, 150.0, 16) / k_true
    assert fitted["cut_pt_GeV"] == pytest.approx(lowest_high, rel=4 * sigma_rel)
    # the same tracks as pions of 1/|q| the momentum: the cut is |q| times the pions'
    assert fitted["cut_pt_GeV"] == pytest.approx(abs_q * pion["cut_pt_GeV"], rel=1e-9)
    assert fitted["n_tracks"] == pion["n_tracks"]


def test_fit_tracks_help_documents_the_charge(capsys):
    with pytest.raises(SystemExit):
        fit_tracks.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "0.299792458 |q| B R" in out
    assert "--no-truth" in out and "gun particle" in out


def test_gen_events_refuses_a_neutral_gun_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "gamma.toml"
    cfg.write_text('[gun]\nparticle = "gamma"\n')
    out = tmp_path / "out.h5"
    assert gen_events.main(["--n", "5", "--out", str(out), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "gun.particle 'gamma' has charge 0" in err[0]
    assert not out.exists()


# -- fixed ranges (min == max) --------------------------------------------------------------


def test_fixed_ranges_give_exactly_that_value():
    gun = ParticleGun(
        p_low_GeV=(0.2, 0.2), p_high_GeV=(7.0, 7.0), phi_deg=(30.0, 30.0), dip_deg=(0.0, 0.0)
    )
    prim = shoot(gun, 200, 10, 0.5, rng=3)
    px, py, pz = prim.momentum.T
    assert np.all(pz == 0.0)  # dip exactly 0
    high = prim.is_high == 1
    p = np.sqrt(px**2 + py**2 + pz**2)
    np.testing.assert_allclose(p[~high], 0.2, rtol=2e-16)
    np.testing.assert_allclose(p[high], 7.0, rtol=2e-16)
    np.testing.assert_allclose(np.degrees(np.arctan2(py, px)), 30.0, rtol=0, atol=1e-13)
    # the pieces: the sampled magnitude is exactly the fixed value
    gun0 = ParticleGun(p_low_GeV=(0.2, 0.2), phi_deg=(0.0, 0.0), dip_deg=(0.0, 0.0))
    prim0 = shoot(gun0, 50, 4, 0.0, rng=1)
    assert np.all(prim0.momentum == [0.2, 0.0, 0.0])


def test_fixed_dip_from_a_config_file(tmp_path):
    path = tmp_path / "fixed.toml"
    path.write_text("[gun]\ndip_deg = [0.0, 0.0]\nphi_deg = [-45.0, -45.0]\n")
    cfg = load_config(path)
    assert cfg.simulation.gun.dip_deg == (0.0, 0.0)
    assert config_from_dict(cfg.to_dict()).simulation.gun.phi_deg == (-45.0, -45.0)
    batch = simulate_events(cfg.simulation, 30, rng=2)
    assert np.all(batch.particles.pz == 0.0)
    assert np.all(batch.hits.true_z == 0.0)  # in the x-y plane all along


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("p_low_GeV", [0.3, 0.2]),
        ("p_high_GeV", [5.0, 4.999]),
        ("phi_deg", [10.0, -10.0]),
        ("dip_deg", [1.0, 0.0]),
    ],
)
def test_reversed_ranges_stay_errors(key, value):
    with pytest.raises(ConfigError, match=f"gun.{key} must be a range .* min <= max"):
        config_from_dict({"gun": {key: value}})


def test_fixed_ranges_flow_downstream_without_nan(tmp_path, capsys):
    """Every gun range fixed: simulate, write, fit and draw with warnings as errors."""
    cfg = config_from_dict(
        {"gun": {"particle": "He4", "p_low_GeV": [0.4, 0.4], "p_high_GeV": [3.0, 3.0],
                 "phi_deg": [100.0, 100.0], "dip_deg": [5.0, 5.0]}}
    ).with_image_size(64)  # fmt: skip
    path = tmp_path / "fixed.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # division by zero, invalid values
        generate_file(cfg, 12, path, seed=1, workers=1)
        with open_events(path) as ev:
            t = ev.truth(0, ev.n_events)
        result = _fit_json(path, capsys)
        assert show_event.main([str(path), "--truth", "--out", str(tmp_path / "e.png")]) == 0
    assert np.all(np.isfinite(t.hits.x)) and len(t.hits.x) > 0
    p = np.sqrt(t.particles.px**2 + t.particles.py**2 + t.particles.pz**2)
    np.testing.assert_allclose(np.unique(np.round(p, 12)), [0.4, 3.0])
    assert result["accuracy"] == 1.0
    # Gluckstern: sigma(p_T) / p_T = 3 % for He4 at 3 GeV/c in 2 T
    assert result["cut_pt_GeV"] == pytest.approx(3.0 * np.cos(np.radians(5.0)), rel=0.15)


def test_fit_tracks_on_a_file_of_a_neutral_gun(twins, tmp_path, capsys):
    """A file made before issue 14 with particle = "gamma" (hits of charge-0 particles):
    the truth fit leaves those particles out, --no-truth has no |q| to use (exit 2)."""
    import shutil

    import h5py

    path = tmp_path / "gamma.h5"
    shutil.copy(twins["pi+"], path)
    with h5py.File(path, "a") as f:
        config = json.loads(f.attrs["config"])
        config["gun"]["particle"] = "gamma"
        f.attrs["config"] = json.dumps(config)
        charge = f["particles/charge"][:]
        charge[::2] = 0  # every other particle neutral
        f["particles/charge"][:] = charge
    result = _fit_json(path, capsys)
    assert result["n_tracks"] == np.count_nonzero(charge)
    assert fit_tracks.main([str(path), "--no-truth"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--no-truth" in err[0] and "gun.particle 'gamma' has charge 0" in err[0]
