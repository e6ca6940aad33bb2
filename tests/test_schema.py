"""The stored form of the truth (schema spectrocnn.events/2): dtypes, rounding, the momentum at
each hit, read back with plain h5py; files of schema version 1 read by every command."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from _helpers import assert_truth_as_stored, stored_like, to_v1

from spectrocnn.cli import export_events, fit_tracks, show_event
from spectrocnn.config import config_from_dict
from spectrocnn.dataset import generate_file, open_events
from spectrocnn.dataset.pipeline import chunk_rng
from spectrocnn.dataset.schema import (
    SCHEMA_V1,
    STORED_HIT_COLUMNS,
    check_rounding,
    measured_rounding_mm,
    round_to_step,
)
from spectrocnn.simulate import HIT_COLUMNS, PARTICLE_COLUMNS, simulate_events

N = 40
LAYOUT = Path(__file__).parent / "data" / "v1_layout.json"

#: A lecture detector with material and energy loss (the momentum changes at every layer)
#: and noise hits (NaN truth), small images.
CONFIG = {
    "detector": {"material": "silicon", "thickness_mm": 0.3, "energy_loss": True},
    "noise": {"hits_per_layer": 0.2},
    "image": {"size": 64},
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(config, path of a schema 2 file, path of the same file in the schema 1 layout)."""
    d = tmp_path_factory.mktemp("schema")
    cfg = config_from_dict(CONFIG)
    generate_file(cfg, N, d / "v2.h5", seed=7, workers=1)
    to_v1(d / "v2.h5", d / "v1.h5")
    return cfg, d / "v2.h5", d / "v1.h5"


# -- the rounding rule ------------------------------------------------------------------------


def test_measured_rounding_step_is_a_power_of_two_below_one_fiftieth_of_the_resolution():
    # 50 um / 50 = 1 um: 2**-10 mm = 0.977 um is the largest power of two below it
    assert measured_rounding_mm([50.0, 0.0, 20.0, 1000.0]).tolist() == [
        2.0**-10,
        0.0,  # resolution 0: no step (float32's nearest)
        2.0**-12,  # 0.4 um: 0.244 um
        2.0**-6,  # 20 um: 15.6 um
    ]
    for res in (0.3, 7.0, 50.0, 333.0):
        step = measured_rounding_mm([res])[0]
        assert step <= res * 1e-3 / 50 < 2 * step and math.log2(step).is_integer()
    with pytest.raises(ValueError, match="finite and >= 0"):
        measured_rounding_mm([-1.0])
    for bad in ([-(2.0**-10)], [np.nan], [0.001]):
        with pytest.raises(ValueError, match="rounding steps"):
            check_rounding(bad)


def test_round_to_step_closed_forms():
    s = 2.0**-10
    values = np.array([1.0 + s / 2, 1.0 + 3 * s / 2, -3.3, 0.0, np.nan, np.inf, -np.inf])
    out = round_to_step(values, s)
    assert out.dtype == np.float32
    # halves go to the even multiple; -3.3 to the nearest multiple of 2**-10
    expected = [1.0, 1.0 + 2 * s, -3379 * s, 0.0, np.nan, np.inf, -np.inf]
    assert np.array_equal(out, np.array(expected, np.float32), equal_nan=True)
    assert abs(-3379 * s + 3.3) <= s / 2
    # beyond 2**24 steps the value is float32's nearest; a step of 0 means the same
    big = np.array([2.0**24 * s * 1.5 + 0.1, 123.456789])
    assert np.array_equal(round_to_step(big, s)[:1], big[:1].astype(np.float32))
    assert np.array_equal(round_to_step(big, 0.0), big.astype(np.float32))
    # applying it again changes nothing
    rng = np.random.default_rng(3)
    x = rng.normal(0, 300, 10_000)
    once = round_to_step(x, s)
    assert np.array_equal(round_to_step(once.astype(np.float64), s), once)
    assert np.max(np.abs(once - x)) <= s / 2


# -- version 2 with plain h5py -------------------------------------------------------------


def test_version_2_truth_with_plain_h5py(made):
    """dtypes, filters, the rounding of the measured positions, the true positions on their
    cylinders and the momentum at each hit, read with h5py alone."""
    cfg, path, _ = made
    layers = cfg.simulation.detector.layers
    radius = np.array([layer.radius_mm for layer in layers])
    with h5py.File(path, "r") as f:
        assert f.attrs["schema"] == "spectrocnn.events/2"
        h = {k: f["hits"][k][()] for k in f["hits"]}
        steps = f["hits/x"].attrs["rounding_mm"]
        for col, (dtype, unit) in STORED_HIT_COLUMNS.items():
            ds = f["hits"][col]
            assert ds.dtype == dtype and ds.attrs.get("units") == unit, col
            assert (ds.compression, ds.shuffle) == ("gzip", True)  # no plugin needed
    assert steps.tolist() == [2.0**-10] * len(layers)  # 50 um everywhere
    track, noise = h["particle"] >= 0, h["particle"] < 0
    assert noise.any() and track.any()
    # measured positions: multiples of the step of their layer
    for col in ("x", "y", "z"):
        k = h[col].astype(np.float64) / steps[h["layer"]]
        assert np.array_equal(k, np.round(k)), col
    # true positions on their cylinders to 2**-24 r (README, "The event file")
    r = np.hypot(h["true_x"][track].astype(np.float64), h["true_y"][track].astype(np.float64))
    big_r = radius[h["layer"][track]]
    assert np.all(np.abs(r - big_r) <= 2.0**-24 * big_r + 1e-9)
    for col in ("true_x", "true_px", "true_py", "true_pz"):
        assert np.all(np.isnan(h[col][noise])) and np.all(np.isfinite(h[col][track])), col
    # the momentum arriving at each layer: float32 of the simulation's, falling along the
    # track (energy loss), below the vertex momentum
    batch = simulate_events(cfg.simulation, N, chunk_rng(7, 0))
    for col in ("true_px", "true_py", "true_pz"):
        assert np.array_equal(h[col], getattr(batch.hits, col).astype(np.float32), equal_nan=True)
    p = np.sqrt(sum(h[c][track].astype(np.float64) ** 2 for c in ("true_px", "true_py", "true_pz")))
    part = h["particle"][track]
    same = np.flatnonzero(part[1:] == part[:-1]) + 1
    assert len(same) > 100 and np.all(p[same] < p[same - 1])
    with h5py.File(path, "r") as f:
        pv = np.sqrt(sum(f["particles"][c][()] ** 2 for c in ("px", "py", "pz")))
    assert np.all(p <= pv[part] * (1 + 2.0**-22))  # float32's rounding at the first layer


def test_version_2_truth_through_the_reader(made):
    cfg, path, _ = made
    res = [layer.resolution_um for layer in cfg.simulation.detector.layers]
    with open_events(path) as ev:
        assert ev.schema == "spectrocnn.events/2" and ev.has_hit_momentum
        assert_truth_as_stored(ev.truth(), simulate_events(cfg.simulation, N, chunk_rng(7, 0)), res)


def test_stored_values_change_by_at_most_the_documented_amount(made):
    cfg = made[0]
    batch = simulate_events(cfg.simulation, N, chunk_rng(7, 0))
    res = [layer.resolution_um for layer in cfg.simulation.detector.layers]
    stored = stored_like(batch, res).hits
    h = batch.hits
    for col in ("x", "y", "z"):  # at most half a step: 1 % of the resolution
        assert np.max(np.abs(getattr(stored, col) - getattr(h, col))) <= 2.0**-11
    for col in ("true_x", "true_y", "true_z", "true_px", "true_py", "true_pz"):
        a, b = getattr(stored, col), getattr(h, col)
        ok = np.isfinite(b)
        assert np.all(np.abs(a[ok] - b[ok]) <= 2.0**-24 * np.abs(b[ok])), col


# -- version 1 files ---------------------------------------------------------------------------


def _layout(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, o):
            if isinstance(o, h5py.Dataset) and name.split("/")[0] in ("particles", "hits"):
                out[name] = {
                    "dtype": o.dtype.str,
                    "chunks": list(o.chunks) if o.chunks else None,
                    "compression": o.compression,
                    "compression_opts": o.compression_opts,
                    "shuffle": o.shuffle,
                    "attrs": {k: v if isinstance(v, str) else None for k, v in o.attrs.items()},
                }

        f.visititems(visit)
        return {"datasets": out, "root_attrs": sorted(f.attrs), "schema": f.attrs["schema"]}


def test_the_v1_helper_writes_the_layout_of_the_code_before_schema_2(made):
    recorded = json.loads(LAYOUT.read_text())
    recorded.pop("_comment")
    assert _layout(made[2]) == recorded


def test_v1_file_reads_as_before(made):
    _, v2, v1 = made
    with open_events(v1) as old, open_events(v2) as new:
        assert old.schema == SCHEMA_V1 and not old.has_hit_momentum
        a, b = old.truth(), new.truth()
        assert a.hits.true_px is None and b.hits.true_px is not None
        for name, spec in (("particles", PARTICLE_COLUMNS), ("hits", HIT_COLUMNS)):
            for col, (dtype, _) in spec.items():
                x = getattr(getattr(a, name), col)
                assert x.dtype == dtype
                assert np.array_equal(x, getattr(getattr(b, name), col), equal_nan=True), col
        assert np.array_equal(old.read_images(), new.read_images())


def test_every_command_reads_a_v1_file(made, tmp_path, capsys):
    _, _, v1 = made
    assert (
        show_event.main([str(v1), "--index", "3", "--truth", "--out", str(tmp_path / "e.png")]) == 0
    )
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    assert fit_tracks.main([str(v1), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_events"] == N
    assert (
        export_events.main([str(v1), "--format", "png", "--out", str(tmp_path / "p"), "--quiet"])
        == 0
    )
    manifest = json.loads((tmp_path / "p" / "export.json").read_text())
    assert manifest["source_schema"] == SCHEMA_V1
    out = tmp_path / "t"
    assert export_events.main([str(v1), "--format", "trackml", "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["conventions"]["tpx_tpy_tpz"].startswith(
        "the particle's momentum at its vertex"
    )
    # without the momentum at the hits, TrackML's tpx..tpz is the vertex momentum
    with h5py.File(v1, "r") as f:
        off, part = f["hits/offsets"][()], f["hits/particle"][()]
        px = f["particles/px"][()]
    with open(out / "event000000005-truth.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for j, row in enumerate(rows):
        k = part[off[5] + j]
        assert float(row["tpx"]) == (px[k] + 0.0 if k >= 0 else 0.0)


def test_train_and_eval_read_a_v1_file(made, tmp_path, capsys):
    from spectrocnn.cli.eval_cnn import main as eval_main
    from spectrocnn.cli.train_cnn import main as train_main

    _, _, v1 = made
    run = tmp_path / "run"
    args = [str(v1), "--out", str(run), "--epochs", "1", "--batch-size", "8", "--input-size",
            "16", "--arch", "lecture", "--val-fraction", "0.25", "--quiet"]  # fmt: skip
    assert train_main(args) == 0
    assert (
        eval_main(
            [str(run / "best_model.keras"), str(v1), "--out", str(tmp_path / "ev"), "--quiet"]
        )
        == 0
    )
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_events"] == N


# -- TrackML: the momentum at the hit -------------------------------------------------------


def test_trackml_gives_the_stored_momentum_at_each_hit(made, tmp_path):
    _, v2, _ = made
    out = tmp_path / "t"
    assert export_events.main([str(v2), "--format", "trackml", "--out", str(out), "--quiet"]) == 0
    with h5py.File(v2, "r") as f:
        off, part = f["hits/offsets"][()], f["hits/particle"][()]
        at_hit = {c: f["hits"][c][()] for c in ("true_px", "true_py", "true_pz")}
        px = f["particles/px"][()]
    differs = 0
    for e in range(N):
        with open(out / f"event{e:09d}-truth.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        for j, row in enumerate(rows):
            k = off[e] + j
            for col, src in zip(("tpx", "tpy", "tpz"), at_hit.values(), strict=True):
                want = 0.0 if part[k] < 0 else float(src[k])
                assert float(row[col]) == want
            differs += part[k] >= 0 and float(row["tpx"]) != px[part[k]]
    assert differs > 100  # with material it is not the vertex momentum
