"""export-events: the lecture's PNG folders and TrackML-style CSV files (small files)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import write_event_file
from PIL import Image

from spectrocnn.cli import export_events
from spectrocnn.config import config_from_dict
from spectrocnn.dataset import export, generate_file, open_events
from spectrocnn.dataset.export import (
    PNG_CLASSES,
    PNG_SPLITS,
    TRACKML_COLUMNS,
    export_png,
    export_trackml,
)

N_SIM = 24


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """40 synthetic 32x32 events with hit counts 1..255 (no truth rows)."""
    path = tmp_path_factory.mktemp("syn") / "syn.h5"
    images, labels = write_event_file(path, n=40, size=32, seed=5)
    return path, images, labels


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A small simulated file with noise hits and missing hits (efficiency < 1)."""
    path = tmp_path_factory.mktemp("sim") / "sim.h5"
    cfg = config_from_dict(
        {"noise": {"hits_per_layer": 0.2}, "detector": {"efficiency": 0.9}, "image": {"size": 64}}
    )
    generate_file(cfg, N_SIM, path, seed=11, workers=1)
    return path


def read_png_folders(out: Path) -> dict[int, tuple[str, str, np.ndarray]]:
    """event index -> (split, class, pixels) of every PNG under ``out``."""
    found = {}
    for split in PNG_SPLITS:
        for cls in PNG_CLASSES:
            for f in sorted((out / split / cls).iterdir()):
                assert f.name.startswith("event") and f.suffix == ".png"
                with Image.open(f) as im:
                    assert im.mode == "L"
                    pixels = np.asarray(im)
                i = int(f.stem[5:])
                assert i not in found
                found[i] = (split, cls, pixels)
    return found


def assert_nothing_left(parent: Path, expected: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == expected  # no DIR, no hidden temp dir


# -- PNG -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "back"),
    [
        ("counts", lambda png: png),
        ("dark-on-white", lambda png: png < 128),
        ("light-on-black", lambda png: png >= 128),
    ],
)
def test_png_round_trip(synthetic, tmp_path, style, back):
    path, images, labels = synthetic
    out = tmp_path / "pngs"
    res = export_png(path, out, style=style, seed=1)
    assert res.n_events == 40 and res.n_files == 41 and res.format == "png"
    found = read_png_folders(out)
    assert sorted(found) == list(range(40))
    for i, (_, cls, png) in found.items():
        assert png.shape == (32, 32) and png.dtype == np.uint8  # stored size, not resampled
        assert cls == PNG_CLASSES[labels[i]]
        expected = images[i] if style == "counts" else images[i] > 0
        assert np.array_equal(back(png), expected), i
        if style == "dark-on-white":
            assert set(np.unique(png)) <= {0, 255}
            assert np.all(png[images[i] == 0] == 255)
    for split in PNG_SPLITS:
        for cls in PNG_CLASSES:
            assert res.counts[split][cls] == len(list((out / split / cls).iterdir()))
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["style"] == style
    assert manifest["counts"] == res.counts
    assert manifest["source_schema"] == "spectrocnn.events/2"


def test_png_split_is_deterministic_and_per_class(synthetic, tmp_path):
    path, _, labels = synthetic

    def split(seed, fraction, name):
        export_png(path, tmp_path / name, seed=seed, test_fraction=fraction)
        return {i: s for i, (s, _, _) in read_png_folders(tmp_path / name).items()}

    a, b, c = split(7, 0.25, "a"), split(7, 0.25, "b"), split(8, 0.25, "c")
    assert a == b
    assert a != c
    for cls in (0, 1):
        members = np.flatnonzero(labels == cls)
        n_test = sum(a[i] == "Testing" for i in members)
        assert n_test == round(0.25 * len(members))
    assert set(split(3, 0.0, "d").values()) == {"Training"}
    manifest = json.loads((tmp_path / "a" / "export.json").read_text())
    assert manifest["seed"] == 7 and manifest["test_fraction"] == 0.25


def test_png_fresh_seed_is_recorded(synthetic, tmp_path):
    res = export_png(synthetic[0], tmp_path / "x")
    assert isinstance(res.seed, int)
    assert json.loads((tmp_path / "x" / "export.json").read_text())["seed"] == res.seed


def test_png_streams_in_blocks(synthetic, tmp_path, monkeypatch):
    path = synthetic[0]
    monkeypatch.setattr(export, "_IMAGE_BLOCK_BYTES", 7 * 32 * 32)  # 7 images per block
    reads = []
    original = export.EventFile.read_images

    def spy(self, start=None, stop=None):
        reads.append(stop - start)
        return original(self, start, stop)

    monkeypatch.setattr(export.EventFile, "read_images", spy)
    steps = []
    export_png(path, tmp_path / "p", seed=0, progress=steps.append)
    assert max(reads) == 7 and sum(reads) == 40
    assert sum(steps) == 40 and len(steps) == 6


# -- TrackML --------------------------------------------------------------------------------


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_trackml_agrees_with_hdf5_truth(simulated, tmp_path):
    out = tmp_path / "tml"
    res = export_trackml(simulated, out)
    files = {p.name for p in out.iterdir()}
    assert len(files) == 3 * N_SIM + 1 == res.n_files
    n_noise = n_missing = 0
    with open_events(simulated) as ev:
        truth = ev.truth()
    po, ho = truth.event_offsets("particles"), truth.event_offsets("hits")
    p, h = truth.particles, truth.hits
    assert res.n_particles == len(p) and res.n_hits == len(h)
    for e in range(N_SIM):
        prefix = f"event{e:09d}"
        parts = {}
        for part in ("hits", "particles", "truth"):
            header, rows = read_csv(out / f"{prefix}-{part}.csv")
            assert tuple(header) == TRACKML_COLUMNS[part]
            parts[part] = rows
        hits, particles, tru = parts["hits"], parts["particles"], parts["truth"]
        p0, p1, h0, h1 = po[e], po[e + 1], ho[e], ho[e + 1]
        assert len(particles) == p1 - p0 and len(hits) == len(tru) == h1 - h0
        # particles: ids 1..n, PDG id, charge, vertex, momentum, nhits
        local = h.particle[h0:h1] - p0
        noise = h.particle[h0:h1] < 0
        for j, row in enumerate(particles):
            k = p0 + j
            assert int(row["particle_id"]) == j + 1
            assert int(row["particle_type"]) == p.pdg[k]
            assert int(row["q"]) == p.charge[k]
            for col in ("vx", "vy", "vz", "px", "py", "pz"):
                assert float(row[col]) == getattr(p, col)[k]
            nhits = int(np.sum(~noise & (local == j)))
            assert int(row["nhits"]) == nhits
            n_missing += nhits < 16
        # hits: ids 1..n, measured positions, layer ids
        for j, row in enumerate(hits):
            k = h0 + j
            assert int(row["hit_id"]) == j + 1
            for col in ("x", "y", "z"):
                assert float(row[col]) == getattr(h, col)[k]
            assert int(row["layer_id"]) == 2 * (h.layer[k] + 1)
            assert int(row["volume_id"]) == 1 and int(row["module_id"]) == 1
        # truth: association, true positions, momenta, weights
        weights = []
        by_particle = {}
        for j, row in enumerate(tru):
            k = h0 + j
            assert int(row["hit_id"]) == j + 1
            pid = int(row["particle_id"])
            weights.append(float(row["weight"]))
            if noise[j]:
                n_noise += 1
                assert pid == 0 and weights[-1] == 0.0
                assert all(float(row[c]) == 0.0 for c in TRACKML_COLUMNS["truth"][2:8])
                continue
            assert pid == local[j] + 1
            by_particle[pid] = by_particle.get(pid, 0) + 1
            for col, src in (("tx", h.true_x), ("ty", h.true_y), ("tz", h.true_z)):
                assert float(row[col]) == src[k]
            for col, src in (("tpx", h.true_px), ("tpy", h.true_py), ("tpz", h.true_pz)):
                assert float(row[col]) == src[k]  # the momentum at the hit, as stored
        assert by_particle == {
            int(r["particle_id"]): int(r["nhits"]) for r in particles if int(r["nhits"])
        }
        if by_particle:
            assert sum(weights) == pytest.approx(1.0)
            for row in tru:
                pid = int(row["particle_id"])
                if pid:
                    expected = 1.0 / (by_particle[pid] * len(by_particle))
                    assert float(row["weight"]) == pytest.approx(expected)
    assert n_noise > 0 and n_missing > 0  # the conventions were exercised
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == "trackml" and manifest["n_hits"] == len(h)
    assert manifest["conventions"]["tpx_tpy_tpz"].startswith("the true momentum at the hit")


def test_trackml_file_without_truth_rows(synthetic, tmp_path):
    res = export_trackml(synthetic[0], tmp_path / "t")
    assert res.n_hits == res.n_particles == 0
    header, rows = read_csv(tmp_path / "t" / "event000000039-truth.csv")
    assert tuple(header) == TRACKML_COLUMNS["truth"] and rows == []


# -- command line -----------------------------------------------------------------------------


def test_cli_png_and_trackml(simulated, tmp_path, capsys):
    out = tmp_path / "pngs"
    args = [str(simulated), "--format", "png", "--out", str(out), "--seed", "2"]
    assert export_events.main([*args, "--test-fraction", "0.5", "--style", "counts"]) == 0
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1
    assert line.startswith(f"export-events: wrote {N_SIM} events to {out} as PNG")
    assert "Testing 12" in line and "seed 2" in line
    found = read_png_folders(out)
    with open_events(simulated) as ev:
        images = ev.read_images()
        labels = ev.labels
    for i, (_, cls, png) in found.items():
        assert png.shape == (64, 64) and np.array_equal(png, images[i])
        assert cls == PNG_CLASSES[labels[i]]
    tml = tmp_path / "tml"
    assert export_events.main([str(simulated), "--format", "trackml", "--out", str(tml)]) == 0
    assert "as TrackML CSV" in capsys.readouterr().out
    again = [str(simulated), "--format", "trackml", "--out", str(tml), "--overwrite", "--quiet"]
    assert export_events.main(again) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert_nothing_left(tmp_path, {"pngs", "tml"})


def test_cli_existing_output_needs_overwrite(synthetic, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    args = [str(synthetic[0]), "--format", "png", "--out", str(out)]
    assert export_events.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert_nothing_left(tmp_path, {"out"})
    assert export_events.main([*args, "--overwrite", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["Testing", "Training", "export.json"]
    assert_nothing_left(tmp_path, {"out"})


def test_cli_refuses_to_overwrite_the_input_directory(tmp_path, capsys):
    path = tmp_path / "ev.h5"
    write_event_file(path, n=4, size=16)
    args = [str(path), "--format", "png", "--out", str(tmp_path), "--overwrite"]
    assert export_events.main(args) == 2
    assert "holds the input file" in capsys.readouterr().err
    assert path.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--test-fraction", "1"], "--test-fraction must be a number in [0, 1), got '1'"),
        (["--test-fraction", "-0.1"], "--test-fraction must be a number in [0, 1), got '-0.1'"),
        (["--test-fraction", "nan"], "--test-fraction must be a number in [0, 1), got 'nan'"),
        (["--test-fraction", "abc"], "--test-fraction must be a number in [0, 1), got 'abc'"),
        (["--seed", "-1"], "--seed must be an integer in [0, 2**64), got -1"),
        (["--format", "jpeg"], "invalid choice: 'jpeg'"),
        (["--style", "rainbow"], "invalid choice: 'rainbow'"),
        (["--format", "trackml", "--seed", "1"], "--seed applies to --format png only"),
    ],
)
def test_cli_bad_flags(synthetic, tmp_path, capsys, extra, message):
    args = [str(synthetic[0]), "--format", "png", "--out", str(tmp_path / "o"), *extra]
    assert export_events.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("export-events: error:")
    assert message in err
    assert_nothing_left(tmp_path, set())


def test_cli_bad_input(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert export_events.main([str(tmp_path / "missing.h5"), "--format", "png", "--out", out]) == 2
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5" * 100)
    assert export_events.main([str(bad), "--format", "trackml", "--out", out]) == 1
    missing_parent = str(tmp_path / "no" / "dir")
    assert export_events.main([str(bad), "--format", "png", "--out", missing_parent]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("export-events: error:") for line in err)
    assert "missing.h5" in err[0] and "does not exist" in err[0]
    assert_nothing_left(tmp_path, {"bad.h5"})


def test_cli_missing_output_parent(synthetic, tmp_path, capsys):
    out = tmp_path / "no" / "dir"
    assert export_events.main([str(synthetic[0]), "--format", "png", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["png", "trackml"])
@pytest.mark.parametrize(
    ("exc", "code"), [(OSError(28, "No space left on device"), 1), (KeyboardInterrupt(), 130)]
)
def test_failure_midway_leaves_nothing(synthetic, tmp_path, monkeypatch, capsys, fmt, exc, code):
    name = "_save_png" if fmt == "png" else "_trackml_event"
    original = getattr(export, name)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(export, name, failing)
    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("old")
    h5 = str(synthetic[0])
    assert export_events.main([h5, "--format", fmt, "--out", str(tmp_path / "new")]) == code
    assert export_events.main([h5, "--format", fmt, "--out", str(old), "--overwrite"]) == code
    err = capsys.readouterr().err
    if code == 1:
        assert "No space left on device" in err
    assert_nothing_left(tmp_path, {"old"})
    assert [p.name for p in old.iterdir()] == ["keep.txt"]


def test_sigterm_midway_leaves_nothing(synthetic, tmp_path, monkeypatch):
    original = export._save_png
    calls = []

    def terminated(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(export, "_save_png", terminated)
    out = tmp_path / "new"
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:
        export_events.main([str(synthetic[0]), "--format", "png", "--out", str(out)])
    assert info.value.code == 128 + signal.SIGTERM
    assert_nothing_left(tmp_path, set())
    assert signal.getsignal(signal.SIGTERM) == before  # restored


def test_console_script_does_not_import_tensorflow(synthetic, tmp_path):
    code = (
        "import sys\n"
        "from spectrocnn.cli.export_events import main\n"
        f"rc = main([{str(synthetic[0])!r}, '--format', 'png', '--out', {str(tmp_path / 'o')!r},"
        " '--quiet'])\n"
        "assert rc == 0, rc\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    # the tests' directory, and the code under test where PYTHONPATH points to it
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    assert (tmp_path / "o" / "export.json").exists()


def test_trackml_never_writes_negative_zero(simulated, tmp_path):
    """A vertex of sigma 0 is stored as +-0.0; the CSV says 0.0 for both."""
    with open_events(simulated) as ev:
        truth = ev.truth()
    p = truth.particles
    assert np.any(np.signbit(p.vx) & (p.vx == 0.0))  # the file does hold a -0.0
    out = tmp_path / "tml"
    export_trackml(simulated, out)
    for f in out.glob("*.csv"):
        _, rows = read_csv(f)
        cells = {cell for row in rows for cell in row.values()}
        assert "-0.0" not in cells, f.name
