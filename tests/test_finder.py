"""Track finding without truth: crowded events, displaced vertices, the performance report."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from spectrocnn.cli import fit_tracks
from spectrocnn.config import config_from_dict
from spectrocnn.dataset import generate_file, open_events
from spectrocnn.errors import ConfigError
from spectrocnn.reco import (
    FinderSettings,
    circle_from_moments,
    find_tracks,
    finder_resolution,
    finding_performance,
)
from spectrocnn.simulate import (
    ParticleGun,
    PlaneLayer,
    Simulation,
    lecture_detector,
    simulate_events,
)


def _owners(found, particle):
    """Truth particle of every hit of every found track (-2: no hit on that layer)."""
    return np.where(found.hits >= 0, particle[np.maximum(found.hits, 0)], -2)


def _complete_tracks(found, particle):
    """Particles found as one track made of all their hits and nothing else."""
    owner = _owners(found, particle)
    first = owner[np.arange(len(owner)), np.argmax(owner != -2, axis=1)]
    pure = np.all((owner == first[:, None]) | (owner == -2), axis=1) & (first >= 0)
    n_of = np.bincount(particle[particle >= 0])
    complete = pure & (found.n_hits == n_of[np.maximum(first, 0)])
    return first[complete]


def test_crowded_event_every_track_found_once():
    """300 particles per event: each particle is one track, no hit is shared."""
    det = lecture_detector()
    batch = simulate_events(Simulation(det, n_particles=300), 3, rng=11)
    h = batch.hits
    found = find_tracks(h.x, h.y, h.z, h.layer, h.event, 3, det.layers, 0.05)
    rows = found.hits[found.hits >= 0]
    assert len(rows) == len(np.unique(rows))  # a hit belongs to at most one track
    assert len(found.event) == 900  # as many tracks as particles
    # each track has >= 75 % of its hits from one particle, a different one for each track
    owner = _owners(found, h.particle)
    major = np.array([np.bincount(o[o >= 0]).argmax() for o in owner])
    share = (owner == major[:, None]).sum(axis=1) / found.n_hits
    assert np.all(share >= 0.75)
    assert np.array_equal(np.sort(major), np.arange(900))
    # and nearly all are exactly the particle's hits (two tracks crossing at a small
    # radius may swap an inner hit or two)
    assert len(_complete_tracks(found, h.particle)) >= 0.99 * 900
    # the event of each track is the event of its hits
    assert np.all(h.event[found.hits.max(axis=1)] == found.event)


def test_displaced_vertices_are_found():
    """Vertices spread by 10 mm in x and y, far off the beam line, are no obstacle."""
    det = lecture_detector()
    gun = ParticleGun(vertex_sigma_mm=(10.0, 10.0, 0.0))
    batch = simulate_events(Simulation(det, gun, n_particles=10), 100, rng=12)
    h = batch.hits
    found = find_tracks(h.x, h.y, h.z, h.layer, h.event, 100, det.layers, 0.05)
    complete = set(_complete_tracks(found, h.particle).tolist())
    p = batch.particles
    n_hits = np.bincount(h.particle[h.particle >= 0], minlength=len(p))
    # the true transverse impact parameter of each particle's helix (a closed form: the
    # distance from the z axis to the circle through the vertex, centre to the right of
    # the motion for a positive charge in a field along +z)
    pt = np.hypot(p.px, p.py)
    radius = pt / (0.299792458e-3 * 2.0)
    cx = p.vx + p.charge * radius * p.py / pt
    cy = p.vy - p.charge * radius * p.px / pt
    d0 = np.abs(np.hypot(cx, cy) - radius)
    findable = n_hits >= 8
    assert np.mean([i in complete for i in np.flatnonzero(findable)]) >= 0.99
    far = np.flatnonzero(findable & (d0 > 10.0))
    assert len(far) >= 50  # many tracks miss the beam line by more than 10 mm ...
    assert all(i in complete for i in far)  # ... and every one of them is found
    assert len(found.event) == len(complete)  # no fake, no duplicate


def test_finding_performance_definitions():
    """Matching, efficiency, fake and duplicate rates, counted by hand."""
    # particle 0: hits 0-9, particle 1: hits 10-19, particle 2: hits 20-24 (5 hits, not
    # findable with min_hits 8), noise: hits 25-34
    particle = np.r_[np.zeros(10), np.ones(10), np.full(5, 2), np.full(10, -1)].astype(int)

    def track(*rows):
        t = np.full(16, -1)
        t[: len(rows)] = rows
        return t

    tracks = np.array([
        track(*range(10)),                 # particle 0, pure
        track(*range(10, 16), 25, 26, 27, 28),  # particle 1: 6 of 10 hits > 50 %
        track(0, 1, 2, 3, 29, 30, 31, 32),  # 4 of 8 from particle 0: not > 50 %: fake
        track(4, 5, 6, 33, 34),             # 3 of 5 from particle 0: a duplicate
        track(*range(20, 25)),              # particle 2 (not findable): matched, not fake
    ])  # fmt: skip
    r = finding_performance(tracks, particle, min_hits=8)
    assert r["n_tracks"] == 5 and r["n_findable"] == 2 and r["n_findable_matched"] == 2
    assert r["efficiency"] == 1.0
    assert r["fake_rate"] == pytest.approx(1 / 5) and r["n_fake"] == 1
    assert r["duplicate_rate"] == pytest.approx(1 / 5) and r["n_duplicate"] == 1
    r = finding_performance(tracks[[0, 2]], particle, min_hits=8)
    assert r["efficiency"] == 0.5 and r["fake_rate"] == 0.5 and r["duplicate_rate"] == 0.0
    r = finding_performance(tracks[:0], particle, min_hits=8)
    assert r["efficiency"] == 0.0 and np.isnan(r["fake_rate"])


def _rates_from_truth(track_hits, particle, min_hits):
    """The rates computed here, one track at a time, from the truth."""
    matched = []
    for t in track_hits:
        rows = t[t >= 0]
        owner, n = Counter(particle[rows].tolist()).most_common(1)[0]
        matched.append(owner if owner >= 0 and 2 * n > len(rows) else None)
    counts = Counter(particle[particle >= 0].tolist())
    findable = {p for p, n in counts.items() if n >= min_hits}
    seen, dup = set(), 0
    for m in matched:
        if m is not None:
            dup += m in seen
            seen.add(m)
    n = len(matched)
    return {
        "efficiency": len(findable & seen) / len(findable),
        "fake_rate": sum(m is None for m in matched) / n,
        "duplicate_rate": dup / n,
    }


def test_fit_tracks_reports_finding_rates(tmp_path, capsys):
    """--json holds efficiency, fake and duplicate rates that agree with the truth."""
    cfg = config_from_dict({
        "n_particles": 100,
        "detector": {"efficiency": 0.9},
        "noise": {"hits_per_layer": 20.0},
        "image": {"size": 32},
    })  # fmt: skip
    path = tmp_path / "crowded.h5"
    generate_file(cfg, 20, path, seed=4, workers=1)
    assert fit_tracks.main([str(path), "--no-truth", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    finding = result["finding"]
    with open_events(path) as ev:
        h = ev.truth().hits
    det = cfg.simulation.detector
    settings, sigma = finder_resolution(det.layers, 2.0)
    found = find_tracks(h.x, h.y, h.z, h.layer, h.event, 20, det.layers, sigma, settings)
    assert finding["n_tracks"] == result["n_tracks"] == len(found.event)
    expected = _rates_from_truth(found.hits, h.particle, settings.min_hits)
    for key, value in expected.items():
        assert finding[key] == pytest.approx(value, abs=1e-12)
    assert finding["efficiency"] >= 0.97 and finding["fake_rate"] <= 0.02
    assert finding["findable_min_hits"] == 8 and finding["match_fraction"] == 0.5
    # the text output says the same
    assert fit_tracks.main([str(path), "--no-truth"]) == 0
    assert f"efficiency {finding['efficiency']:.4f}" in capsys.readouterr().out


def test_circle_from_moments_is_the_fit():
    """The closed form on a circle's moments gives the circle (radius 300 mm, d = 5 mm)."""
    R, d, phi0 = 300.0, 5.0, 0.4
    centre = (d + R) * np.array([np.sin(phi0), -np.cos(phi0)])
    a = np.linspace(0.5, 1.0, 12) + np.pi / 2 + phi0
    x, y = centre[0] + R * np.cos(a), centre[1] + R * np.sin(a)
    r2 = x * x + y * y
    m = {k: v.mean() for k, v in dict(x=x, y=y, r2=r2).items()}
    rho, phi, dd = circle_from_moments(
        m["x"], m["y"], m["r2"],
        np.mean(x * x) - m["x"] ** 2, np.mean(x * y) - m["x"] * m["y"],
        np.mean(y * y) - m["y"] ** 2, np.mean(x * r2) - m["x"] * m["r2"],
        np.mean(y * r2) - m["y"] * m["r2"], np.mean(r2 * r2) - m["r2"] ** 2,
    )  # fmt: skip
    if np.cos(phi - phi0) < 0:
        rho, phi, dd = -rho, phi + np.pi, -dd
    assert rho == pytest.approx(1 / R, rel=1e-9)
    assert dd == pytest.approx(d, abs=1e-7)


def test_finder_refuses_what_it_cannot_do():
    det = lecture_detector()
    with pytest.raises(ConfigError, match="planes parallel to the field"):
        find_tracks(np.zeros(3), np.zeros(3), np.zeros(3), np.arange(3), np.zeros(3, int), 1,
                    [*det.layers[:2], PlaneLayer(normal=(0.6, 0.0, 0.8))], 0.05)  # fmt: skip
    with pytest.raises(ConfigError, match="min_hits"):
        FinderSettings(min_hits=2)
    with pytest.raises(ConfigError, match="seed_layers"):
        FinderSettings(seed_layers=((0, 0, 1),))


def test_roads_widen_for_multiple_scattering():
    """1 % X0 layers: without the widening most tracks are lost, with it nearly none."""
    det = lecture_detector(thickness_x0=0.01)
    batch = simulate_events(Simulation(det, n_particles=50), 20, rng=13)
    h = batch.hits
    settings, sigma = finder_resolution(det.layers, 2.0)
    assert sigma > 0.2 and settings.road_mm == pytest.approx(8 * sigma)
    found = find_tracks(h.x, h.y, h.z, h.layer, h.event, 20, det.layers, sigma, settings)
    r = _rates_from_truth(found.hits, h.particle, 8)
    assert r["efficiency"] >= 0.98 and r["fake_rate"] <= 0.02 and r["duplicate_rate"] == 0
    narrow = find_tracks(h.x, h.y, h.z, h.layer, h.event, 20, det.layers, 0.05)
    assert len(narrow.event) < 0.5 * len(found.event)
    # no scattering: the settings stay as they are
    assert finder_resolution(lecture_detector().layers, 2.0) == (FinderSettings(), 0.05)
