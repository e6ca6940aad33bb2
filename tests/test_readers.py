"""Readers and commands on unusual files: NaN/inf truth, zero events, very many events."""

from __future__ import annotations

import json
import logging
import shutil
import time
import tracemalloc
import warnings

import h5py
import numpy as np
import pytest

from spectrocnn.cli import fit_tracks, show_event
from spectrocnn.config import preset_config
from spectrocnn.dataset import ImageSpec, generate_file, open_events, write_events
from spectrocnn.dataset.eventfile import slice_batch
from spectrocnn.reco import find_tracks, fit_truth_tracks
from spectrocnn.simulate import HIT_COLUMNS, PARTICLE_COLUMNS, lecture_detector

N = 24


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("readers") / "good.h5"
    generate_file(preset_config("lecture").with_image_size(64), N, path, seed=5, workers=1)
    return path


@pytest.fixture(scope="module")
def damaged(good, tmp_path_factory):
    """A copy of ``good`` with NaN/inf in truth columns; returns (path, bad hit rows)."""
    path = tmp_path_factory.mktemp("readers") / "nan.h5"
    shutil.copy(good, path)
    bad_hits = np.array([0, 17, 18, 40, 333])
    with h5py.File(path, "a") as f:
        for col, rows, values in (
            ("hits/x", bad_hits[:3], [np.nan, np.inf, -np.inf]),
            ("hits/y", bad_hits[3:], [np.nan, np.inf]),
            ("hits/true_x", [1, 2], [np.nan, np.inf]),
            ("particles/px", [0, 3, 7], [np.nan, np.inf, -np.inf]),
            ("particles/vy", [2], [np.nan]),
        ):
            a = f[col][:]
            a[rows] = values
            f[col][:] = a
    return path, bad_hits


def test_reader_returns_nan_and_inf_as_stored(damaged):
    path, _ = damaged
    with open_events(path) as ev:
        t = ev.truth()
        assert np.isnan(t.hits.x[0]) and np.isposinf(t.hits.x[17]) and np.isneginf(t.hits.x[18])
        assert np.isnan(t.particles.px[0]) and np.isposinf(t.particles.px[3])
        assert t.n_events == N and len(ev.labels) == N
        part = ev.truth(3, 5)  # a slice through damaged rows
        assert part.n_events == 2


def test_truth_fit_leaves_out_non_finite_hits(damaged):
    path, bad = damaged
    with open_events(path) as ev:
        batch = ev.truth()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value" warnings either
        fits = fit_truth_tracks(batch, 2.0, 50.0)
    assert np.all(np.isfinite(fits.pt_GeV))
    n_tracks = len(np.unique(batch.hits.particle[batch.hits.particle >= 0]))
    assert len(fits.pt_GeV) == n_tracks  # 16 hits each: every track keeps >= 3
    counts = np.bincount(batch.hits.particle[batch.hits.particle >= 0])
    expected = counts[fits.particle].copy()
    for row in bad:
        expected[fits.particle == batch.hits.particle[row]] -= 1
    assert np.array_equal(fits.n_hits, expected)


def test_finder_ignores_non_finite_hits_and_keeps_row_numbers(damaged, good):
    path, bad = damaged
    layers = lecture_detector().layers
    found = {}
    for name, p in (("good", good), ("damaged", path)):
        with open_events(p) as ev:
            h = ev.truth().hits
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            found[name] = find_tracks(h.x, h.y, h.z, h.layer, h.event, N, layers, 0.05)
    f = found["damaged"]
    rows = f.hits[f.hits >= 0]
    assert not np.isin(rows, bad).any()  # never a damaged hit
    with open_events(path) as ev:
        h = ev.truth().hits
    assert np.all(np.isfinite(h.x[rows]) & np.isfinite(h.y[rows]))
    assert np.all(h.event[f.hits.max(axis=1)] == f.event)  # row numbers of the caller's arrays
    assert abs(len(f.event) - len(found["good"].event)) <= len(bad)


@pytest.mark.parametrize("no_truth", [False, True], ids=["truth", "no-truth"])
def test_fit_tracks_command_warns_and_reports(damaged, capsys, caplog, no_truth):
    path, bad = damaged
    with caplog.at_level(logging.WARNING):
        rc = fit_tracks.main([str(path), "--json", *(["--no-truth"] if no_truth else [])])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_events"] == N and result["accuracy"] >= 0.9
    assert [r.getMessage() for r in caplog.records] == [
        f"{len(bad)} hits with a NaN or infinite x or y in {path} were left out"
    ]


def test_fit_tracks_when_no_hit_is_usable(good, tmp_path, capsys):
    path = tmp_path / "all_nan.h5"
    shutil.copy(good, path)
    with h5py.File(path, "a") as f:
        f["hits/x"][:] = np.full(f["hits/x"].shape, np.nan)
    assert fit_tracks.main([str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_tracks"] == 0 and result["n_events"] == N


def test_show_event_draws_damaged_truth(damaged, tmp_path):
    path, _ = damaged
    out = tmp_path / "e.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for args in (["--index", "0"], ["--index", "3"], ["--grid", "8"]):
            assert show_event.main([str(path), *args, "--truth", "--out", str(out)]) == 0
            assert out.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.png"]


def test_zero_event_file_reads_as_empty(good, tmp_path):
    path = tmp_path / "zero.h5"
    with open_events(good) as ev:
        batch, config = ev.truth(0, 1), ev.config
    write_events(path, slice_batch(batch, 0, 0), ImageSpec(size=64), config=config)
    with open_events(path) as ev:
        assert ev.n_events == 0 and len(ev) == 0
        assert ev.read_images().shape == (0, 64, 64)
        assert ev.read_labels().shape == (0,) and ev.labels.shape == (0,)
        t = ev.truth()
        assert t.n_events == 0 and len(t.particles.event) == 0 and len(t.hits.event) == 0
        with pytest.raises(IndexError):
            ev.read_images(0, 1)


# -- a file of ten million events -----------------------------------------------------------

BIG = 10**7


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A valid event file of 10**7 64x64 events whose chunks are mostly never written (they
    read as zeros): 40 GB of images declared, a few hundred kB on disk. Event 5 holds one
    lit pixel and label 1."""
    path = tmp_path_factory.mktemp("big") / "big.h5"
    with h5py.File(path, "w") as f:
        images = f.create_dataset(
            "images", shape=(BIG, 64, 64), chunks=(1, 64, 64), dtype=np.uint8,
            compression="gzip", compression_opts=1,
        )  # fmt: skip
        images.attrs["window_mm"] = np.array([-210.0, 210.0, -210.0, 210.0])
        images.attrs["projection"] = "xy"
        image = np.zeros((64, 64), np.uint8)
        image[10, 20] = 7
        images[5] = image
        labels = f.create_dataset("labels", shape=(BIG,), chunks=(1 << 16,), dtype=np.uint8)
        labels[5] = 1
        for group, spec in (("particles", PARTICLE_COLUMNS), ("hits", HIT_COLUMNS)):
            g = f.create_group(group)
            for col, (dtype, _) in spec.items():
                g.create_dataset(col, shape=(0,), maxshape=(None,), chunks=(1024,), dtype=dtype)
            g.create_dataset("offsets", shape=(BIG + 1,), chunks=(1 << 16,), dtype=np.int64)
        # float64 columns without the momentum at the hits: the layout of schema version 1
        f.attrs.update(
            seed=np.uint64(1), n_events=np.int64(BIG), config="{}", schema="spectrocnn.events/1"
        )
    assert path.stat().st_size < 1 << 20
    return path


def test_big_file_is_read_lazily(big):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with open_events(big) as ev:
            assert ev.n_events == BIG
            image = ev.read_images(5, 6)
            truth = ev.truth(5, 6)
            last = ev.truth(BIG - 1, BIG)
            label = ev.read_labels(5, 6)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    assert image[0, 10, 20] == 7 and image.sum() == 7
    assert truth.n_events == 1 and last.n_events == 1 and label.tolist() == [1]
    assert peak < 1 << 20, f"{peak} bytes allocated: something read the whole file"
    assert elapsed < 5.0


def test_show_event_on_a_big_file_reads_one_event(big, tmp_path):
    out = tmp_path / "e.png"
    import matplotlib.figure  # noqa: F401  (imported before measuring)

    show_event.main([str(big), "--index", "0", "--out", str(out)])  # warm up the imports
    tracemalloc.start()
    try:
        rc = show_event.main([str(big), "--index", str(BIG - 1), "--truth", "--out", str(out)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rc == 0 and out.read_bytes()[:4] == b"\x89PNG"
    # drawing takes about 8 MB; the labels alone are 10 MB, each offsets table 80 MB
    assert peak < 16 << 20, f"{peak} bytes allocated: something read the whole file"
