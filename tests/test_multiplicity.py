"""Issue 19 items 1-4: multiplicity, several guns, p_T/eta kinematics, threshold labels.

Every expected value comes from a closed form or from scipy (the configured distribution),
never from the code under test: means and variances within 3 standard errors, fractions
within 3 binomial sigma, shapes by Kolmogorov-Smirnov tests, labels and per-event
summaries recomputed here from the stored particles.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

from spectrocnn.config import config_from_dict
from spectrocnn.dataset import CHUNK_EVENTS, generate_file, open_events
from spectrocnn.dataset.eventfile import write_events
from spectrocnn.errors import ConfigError
from spectrocnn.simulate import Simulation, simulate_events
from spectrocnn.simulate.gun import (
    Gun,
    LabelThreshold,
    Multiplicity,
    ParticleGun,
    shoot,
    shoot_guns,
)

N_EVENTS = 20_000
P_KS = 1e-3  # a correct generator fails a KS test with this probability


def _moments(ks: np.ndarray, pmf: np.ndarray) -> tuple[float, float, float]:
    """Mean, variance and 4th central moment of a pmf on the integers ``ks``."""
    pmf = pmf / pmf.sum()
    mean = float(np.sum(ks * pmf))
    var = float(np.sum((ks - mean) ** 2 * pmf))
    mu4 = float(np.sum((ks - mean) ** 4 * pmf))
    return mean, var, mu4


def _assert_moments(counts: np.ndarray, ks: np.ndarray, pmf: np.ndarray) -> None:
    """Sample mean and variance within 3 standard errors of the pmf's."""
    n = len(counts)
    mean, var, mu4 = _moments(ks, pmf)
    assert abs(counts.mean() - mean) < 3 * math.sqrt(var / n), (counts.mean(), mean)
    se_var = math.sqrt((mu4 - var**2 * (n - 3) / (n - 1)) / n)
    assert abs(counts.var(ddof=1) - var) < 3 * se_var, (counts.var(ddof=1), var)


def _per_event(event: np.ndarray, n_events: int) -> np.ndarray:
    return np.bincount(event, minlength=n_events)


# -- 1. multiplicity -------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [10.0, 0.7])
def test_poisson_multiplicity_is_the_zero_truncated_poisson(lam):
    """P(N = k) = Poisson(k; lambda) / (1 - e^-lambda), k >= 1 (scipy's pmf, renormalised)."""
    prim = shoot(ParticleGun(), N_EVENTS, Multiplicity("poisson", mean=lam), 0.5, rng=1)
    counts = _per_event(prim.event, N_EVENTS)
    assert counts.min() >= 1
    ks = np.arange(1, 200)
    _assert_moments(counts, ks, stats.poisson.pmf(ks, lam))
    # and the shape: chi-square over the well-populated values
    expected = stats.poisson.pmf(ks, lam) / stats.poisson.sf(0, lam) * N_EVENTS
    keep = expected >= 20
    observed = np.bincount(counts, minlength=200)[1:200]
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], N_EVENTS - expected[keep].sum())
    assert stats.chisquare(obs, exp).pvalue > P_KS
    # the labelled events hold exactly one high-momentum particle, in any slot
    per = np.bincount(prim.event, weights=prim.is_high, minlength=N_EVENTS)
    assert np.array_equal(per, prim.labels)


def test_uniform_multiplicity_is_uniform_on_both_ends_included():
    mult = Multiplicity.of({"distribution": "uniform", "range": [5, 15]})
    prim = shoot(ParticleGun(), N_EVENTS, mult, 0.5, rng=2)
    counts = _per_event(prim.event, N_EVENTS)
    ks = np.arange(5, 16)
    _assert_moments(counts, ks, np.ones(len(ks)))
    assert set(np.unique(counts)) == set(ks.tolist())
    observed = np.bincount(counts, minlength=16)[5:16]
    assert stats.chisquare(observed).pvalue > P_KS


def test_fixed_multiplicity_table_equals_the_integer():
    """The table form of a fixed multiplicity is the old integer (same draws)."""
    a = shoot(ParticleGun(), 50, 7, 0.5, rng=3)
    b = shoot(ParticleGun(), 50, Multiplicity("fixed", n=7), 0.5, rng=3)
    assert np.array_equal(a.momentum, b.momentum) and np.array_equal(a.labels, b.labels)
    assert Simulation(n_particles=Multiplicity("fixed", n=7)).n_particles == 7


def test_poisson_events_propagate_with_at_least_one_particle():
    sim = Simulation(n_particles={"distribution": "poisson", "mean": 2.0})
    batch = simulate_events(sim, 40, rng=4)
    counts = _per_event(batch.particles.event, 40)
    assert counts.min() >= 1 and len(batch.particles) == counts.sum()
    hits_per_particle = np.bincount(batch.hits.particle, minlength=len(batch.particles))
    assert np.all(hits_per_particle == 16)  # dip <= 10 deg: every track crosses 16 layers


# -- 2. several guns ---------------------------------------------------------------------------


def _three_guns() -> tuple[Gun, ...]:
    return (
        Gun("pi+", fraction=0.6, pt_GeV=(0.2, 2.0), eta=(-1.0, 1.0)),
        Gun("K+", fraction=0.3, p_GeV=(0.5, 3.0), dip_deg=(-20.0, 20.0)),
        Gun("mu-", fraction=0.1, pt_GeV=(1.0, 5.0), eta=(-0.5, 0.5), charge_sign="-"),
    )


def test_mixture_fractions_within_three_sigma():
    guns = _three_guns()
    prim = shoot_guns(guns, 5000, 10, LabelThreshold(1.0, "pt"), rng=5)
    n = len(prim.event)
    assert n == 50_000
    for pdg, frac in ((211, 0.6), (321, 0.3), (13, 0.1)):
        k = np.count_nonzero(np.abs(prim.pdg) == pdg)
        assert abs(k - n * frac) < 3 * math.sqrt(n * frac * (1 - frac)), (pdg, k)
    # masses per species (PDG): the propagation gets each particle's own mass
    pion, kaon, muon = 0.13957039, 0.493677, 0.1056583755
    for pdg, mass in ((211, pion), (321, kaon), (13, muon)):
        assert np.allclose(prim.mass_GeV[np.abs(prim.pdg) == pdg], mass, rtol=1e-6)
    # charge signs: random for pions and kaons, fixed negative for the muons
    mu = np.abs(prim.pdg) == 13
    assert np.all(prim.charge[mu] == -1) and np.all(prim.pdg[mu] == 13)
    pi = np.abs(prim.pdg) == 211
    n_pi, n_plus = np.count_nonzero(pi), np.count_nonzero(prim.charge[pi] == 1)
    assert abs(n_plus - n_pi / 2) < 3 * math.sqrt(n_pi / 4)
    assert np.all(np.sign(prim.pdg[pi]) == prim.charge[pi])


def test_guns_with_counts_fill_every_event_alike():
    guns = (
        Gun("e-", count=2, p_GeV=(1.0, 1.0), charge_sign="+"),
        Gun("p", count=3, p_GeV=(2.0, 4.0)),
    )
    prim = shoot_guns(guns, 30, 99, LabelThreshold(1.5, "p"), rng=6)
    assert np.array_equal(_per_event(prim.event, 30), np.full(30, 5))
    pdg = prim.pdg.reshape(30, 5)
    assert np.all(pdg[:, :2] == -11)  # "e-" with charge_sign "+": positrons
    assert np.all(np.abs(pdg[:, 2:]) == 2212)
    p = np.linalg.norm(prim.momentum, axis=1).reshape(30, 5)
    assert np.allclose(p[:, :2], 1.0, rtol=0, atol=1e-12)  # min == max: the fixed value
    assert np.all(prim.labels == 1)  # every event holds protons above 1.5 GeV/c


def test_mixture_propagates_with_the_masses_of_its_species():
    sim = Simulation(
        guns=(Gun("pi+", fraction=0.5, p_GeV=(1.0, 2.0)), Gun("He4", fraction=0.5, p_GeV=(4, 8))),
        label=LabelThreshold(3.0, "p"),
    )
    batch = simulate_events(sim, 20, rng=7)
    he = np.abs(batch.particles.pdg) == 1000020040
    assert set(np.abs(batch.particles.charge[he]).tolist()) == {2}
    pi = np.abs(batch.particles.pdg) == 211
    assert set(np.abs(batch.particles.charge[pi]).tolist()) == {1}
    assert he.any() and pi.any()


# -- 3. kinematics -----------------------------------------------------------------------------


def _kinematics(momentum: np.ndarray) -> dict[str, np.ndarray]:
    """p, p_T, eta (PDG: -ln tan(theta/2)) and dip [deg], computed here."""
    px, py, pz = momentum.T
    pt = np.hypot(px, py)
    theta = np.arctan2(pt, pz)
    return {
        "p": np.sqrt(px**2 + py**2 + pz**2),
        "pt": pt,
        "eta": -np.log(np.tan(theta / 2)),
        "dip": np.degrees(np.arctan2(pz, pt)),
        "phi": np.degrees(np.arctan2(py, px)) % 360.0,
    }


def _ks_uniform(x: np.ndarray, lo: float, hi: float) -> None:
    assert stats.kstest(x, stats.uniform(lo, hi - lo).cdf).pvalue > P_KS


@pytest.mark.parametrize(
    ("momentum", "mag", "direction", "rng"),
    [
        ("pt", (0.5, 3.0), ("eta", (-2.0, 1.5)), 8),
        ("p", (0.5, 3.0), ("eta", (0.0, 2.5)), 9),
        ("pt", (1.0, 2.0), ("dip", (-30.0, 60.0)), 10),
        ("p", (1.0, 2.0), ("dip", (-80.0, 80.0)), 11),
    ],
)
def test_generated_kinematics_follow_the_configured_ranges(momentum, mag, direction, rng):
    kind, rng_dir = direction
    key = "pt_GeV" if momentum == "pt" else "p_GeV"
    gun = Gun("pi+", fraction=1.0, **{key: mag}, **{"eta" if kind == "eta" else "dip_deg": rng_dir})
    prim = shoot_guns((gun,), 500, 10, LabelThreshold(1.0), rng=rng)
    k = _kinematics(prim.momentum)
    _ks_uniform(k[momentum], *mag)
    _ks_uniform(k[kind], *rng_dir)
    _ks_uniform(k["phi"], 0.0, 360.0)


def test_single_gun_pt_and_eta_keys():
    """[gun] momentum = "pt" and eta: p_low_GeV is a p_T range, eta replaces dip_deg."""
    gun = ParticleGun(momentum="pt", eta=(-1.0, 2.0), p_low_GeV=(0.3, 0.6))
    prim = shoot(gun, 2000, 5, 0.0, rng=12)
    k = _kinematics(prim.momentum)
    _ks_uniform(k["pt"], 0.3, 0.6)
    _ks_uniform(k["eta"], -1.0, 2.0)
    fixed = shoot(ParticleGun(eta=(0.5, 0.5), p_low_GeV=(1.0, 1.0)), 10, 3, 0.0, rng=13)
    kf = _kinematics(fixed.momentum)
    assert np.allclose(kf["eta"], 0.5, atol=1e-12) and np.allclose(kf["p"], 1.0, atol=1e-12)
    neg = shoot(ParticleGun(charge_sign="-"), 10, 3, 0.5, rng=14)
    assert np.all(neg.charge == -1) and np.all(neg.pdg == -211)


# -- 4. labels and per-event summaries -------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> dict:
    """The worked TOML example of the README's "Richer events" section, as parsed."""
    text = README.read_text().split("Worked example", 1)[1]
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    return tomllib.loads(block)


def _truth_summaries(path, variable: str, threshold: float):
    """Labels, counts and max p_T recomputed from /particles (h5py, not the reader)."""
    with h5py.File(path, "r") as f:
        n = int(f["images"].shape[0])
        ev = f["particles/event"][()]
        px, py, pz = (f[f"particles/{c}"][()] for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    var = pt if variable == "pt" else np.sqrt(px**2 + py**2 + pz**2)
    count = np.bincount(ev, weights=var >= threshold, minlength=n).astype(int)
    max_pt = np.array([pt[ev == i].max() for i in range(n)])
    return (count > 0).astype(np.uint8), count, max_pt


def test_worked_example_file_stores_threshold_labels_counts_and_max_pt(tmp_path):
    cfg = config_from_dict({**_readme_example(), "image": {"size": 32}})
    assert len(cfg.simulation.guns) == 3
    out = tmp_path / "mix.h5"
    generate_file(cfg, 120, out, seed=15, workers=1)
    labels, count, max_pt = _truth_summaries(out, "pt", 1.0)
    with open_events(out) as ev:
        assert np.array_equal(ev.labels, labels)
        assert 0 < labels.sum() < len(labels)
        assert np.array_equal(ev.read_n_above_threshold(), count)
        assert ev.read_n_above_threshold().dtype == np.int32
        assert np.array_equal(ev.read_max_pt(), max_pt)
        assert np.array_equal(ev.read_max_pt(10, 20), max_pt[10:20])
        assert ev.threshold == LabelThreshold(1.0, "pt")
        truth = ev.truth()
        assert np.array_equal(
            truth.particles.is_high, truth.particles.px**2 + truth.particles.py**2 >= 1.0
        )
        # the configuration round-trips through the file
        again = config_from_dict(ev.config)
    assert again.to_dict() == cfg.to_dict()
    assert again.simulation.guns == cfg.simulation.guns


def test_lecture_file_counts_the_high_momentum_particles(tmp_path):
    """Lecture recipe: the stored threshold is |p| >= 5 GeV/c, the low end of p_high_GeV."""
    out = tmp_path / "lecture.h5"
    generate_file(config_from_dict({"image": {"size": 32}}), 60, out, seed=16, workers=1)
    labels, count, max_pt = _truth_summaries(out, "p", 5.0)
    with open_events(out) as ev:
        assert np.array_equal(ev.labels, labels)
        assert np.array_equal(ev.read_n_above_threshold(), count)
        assert np.array_equal(ev.read_max_pt(), max_pt)
        assert ev.threshold == LabelThreshold(5.0, "p")


def test_threshold_label_on_the_single_gun_in_p():
    sim = config_from_dict(
        {"n_particles": 4, "label": {"threshold_GeV": 0.12, "variable": "p"}}
    ).simulation
    batch = simulate_events(sim, 200, rng=17)
    p = np.sqrt(batch.particles.px**2 + batch.particles.py**2 + batch.particles.pz**2)
    want = np.bincount(batch.particles.event, weights=p >= 0.12, minlength=200) > 0
    assert np.array_equal(batch.labels, want.astype(np.uint8))
    assert 0 < batch.labels.sum() < 200


def test_files_without_the_event_summaries_still_read(tmp_path):
    batch = simulate_events(Simulation(n_particles=3), 5, rng=18)
    cfg = config_from_dict({"image": {"size": 32}})
    out = tmp_path / "old.h5"
    write_events(out, batch, cfg.image, seed=1)  # no threshold: no /events, as before
    with open_events(out) as ev:
        assert ev.read_n_above_threshold() is None and ev.read_max_pt() is None
        assert ev.threshold is None
        assert np.array_equal(ev.labels, batch.labels)


def test_sharded_poisson_file_equals_the_single_file(tmp_path):
    """Shards place the particles of a varying multiplicity where the single file has them."""
    distributed = pytest.importorskip("distributed")
    from spectrocnn.dataset.shards import VIRTUAL_NAME, generate_sharded

    cfg = config_from_dict(
        {"n_particles": {"distribution": "poisson", "mean": 3.0}, "image": {"size": 32}}
    )
    n = 2 * CHUNK_EVENTS + 10
    generate_file(cfg, n, tmp_path / "one.h5", seed=19, workers=1)
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    )
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        generate_sharded(cfg, n, tmp_path / "sh", shards=3, seed=19, client=client)
    with h5py.File(tmp_path / "one.h5") as a, h5py.File(tmp_path / "sh" / VIRTUAL_NAME) as b:
        for name in (
            "labels",
            "particles/event",
            "particles/px",
            "hits/particle",
            "hits/x",
            "particles/offsets",
            "events/n_above_threshold",
            "events/max_pt_GeV",
        ):
            assert np.array_equal(a[name][()], b[name][()]), name


# -- configuration -----------------------------------------------------------------------------


def test_config_round_trip_and_defaults():
    cfg = config_from_dict(
        {
            "n_particles": {"distribution": "uniform", "range": [5, 15]},
            "gun": {"momentum": "pt", "eta": [-1.0, 1.0], "charge_sign": "+"},
            "label": {"threshold_GeV": 2.0},
        }
    )
    d = cfg.to_dict()
    assert d["n_particles"] == {"distribution": "uniform", "range": [5, 15]}
    assert d["gun"]["momentum"] == "pt" and d["gun"]["eta"] == [-1.0, 1.0]
    assert "dip_deg" not in d["gun"]  # eta replaces it
    assert d["label"] == {"threshold_GeV": 2.0, "variable": "pt"}
    assert config_from_dict(d).to_dict() == d
    lecture = config_from_dict({}).to_dict()
    assert "label" not in lecture and "guns" not in lecture and lecture["n_particles"] == 10
    assert "eta" not in lecture["gun"] and "momentum" not in lecture["gun"]


def test_eta_with_the_telescope_preset_replaces_its_dip_range():
    sim = config_from_dict({"gun": {"eta": [-0.1, 0.1]}}, preset="telescope").simulation
    assert sim.gun.eta == (-0.1, 0.1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"n_particles": {"distribution": "poisson"}}, "n_particles.mean must be a number"),
        ({"n_particles": {"mean": 3.0}}, "n_particles.distribution must be"),
        ({"guns": [{"particle": "pi+", "count": 1, "p_GeV": [1, 2]}]}, "need a [label] table"),
    ],
)
def test_config_errors(data, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        config_from_dict(data)
