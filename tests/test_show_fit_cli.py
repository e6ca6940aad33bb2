"""show-event and fit-tracks from the command line (small files)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spectrocnn.cli import fit_tracks, show_event
from spectrocnn.config import preset_config
from spectrocnn.dataset import generate_file


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ev") / "events.h5"
    generate_file(preset_config("lecture").with_image_size(64), 60, path, seed=3, workers=1)
    return path


def test_show_event_single_and_grid(small_file, tmp_path, capsys):
    out = tmp_path / "one.png"
    assert show_event.main([str(small_file), "--index", "5", "--truth", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = tmp_path / "grid.png"
    assert show_event.main([str(small_file), "--grid", "8", "--out", str(grid)]) == 0
    assert grid.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "one.png"]  # no temp left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--index", "60"], "--index 60"),
        (["--index", "-1"], "--index must be an integer >= 0, got -1"),
        (["--grid", "0"], "--grid must be a positive integer, got 0"),
        (["--out", "/nonexistent/dir/x.png"], "does not exist"),
    ],
)
def test_show_event_bad_input(small_file, tmp_path, capsys, args, message):
    assert show_event.main([str(small_file), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_show_event_existing_picture_replaced_only_on_success(small_file, tmp_path):
    out = tmp_path / "p.png"
    out.write_bytes(b"old")
    assert show_event.main([str(small_file), "--index", "99", "--out", str(out)]) == 2
    assert out.read_bytes() == b"old"
    assert show_event.main([str(small_file), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


#: The first bytes of each picture format (magic numbers).
MAGIC = {
    "png": b"\x89PNG\r\n\x1a\n",
    "pdf": b"%PDF-",
    "svg": b"<?xml",
    "jpg": b"\xff\xd8\xff",
    "jpeg": b"\xff\xd8\xff",
    "eps": b"%!PS-Adobe",
    "ps": b"%!PS-Adobe",
    "tif": b"II*\x00",
    "webp": b"RIFF",
}


@pytest.mark.parametrize("ext", sorted(MAGIC))
def test_show_event_writes_the_format_its_extension_names(small_file, tmp_path, ext):
    out = tmp_path / f"picture.{ext.upper() if ext == 'pdf' else ext}"  # case-insensitive
    assert show_event.main([str(small_file), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(MAGIC[ext])
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


@pytest.mark.parametrize("name", ["x.bmp", "x", "x.pgf"])
def test_show_event_refuses_an_unknown_picture_format(small_file, tmp_path, capsys, name):
    out = tmp_path / name
    assert show_event.main([str(small_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("show-event: error: --out ")
    assert "the picture formats are avif, eps, gif, jpeg, jpg, pdf, png" in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_fit_tracks_json(small_file, capsys):
    assert fit_tracks.main([str(small_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_events"] == 60
    assert result["n_tracks"] == 600
    assert result["accuracy"] >= 0.98
    assert fit_tracks.main([str(small_file), "--json", "--no-truth"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] >= 0.98
    assert "without truth" in result["method"]


def test_fit_tracks_errors(tmp_path, capsys):
    assert fit_tracks.main([str(tmp_path / "missing.h5")]) == 2
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5" * 100)
    assert fit_tracks.main([str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(line.startswith("fit-tracks: error:") for line in err)


def test_fit_tracks_finds_telescope_tracks_without_truth(tmp_path, capsys):
    """Planes parallel to the field: the finder applies, and reports against the truth."""
    path = tmp_path / "tel.h5"
    generate_file(preset_config("telescope").with_image_size(32), 40, path, seed=1, workers=1)
    assert fit_tracks.main([str(path), "--no-truth", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] >= 0.95
    finding = result["finding"]
    assert finding["efficiency"] >= 0.98
    assert finding["fake_rate"] <= 0.02 and finding["duplicate_rate"] <= 0.02
    assert fit_tracks.main([str(path)]) == 0


@pytest.mark.parametrize(("size", "max_pixels"), [(517, 256), (9, 4), (37, 37), (513, 256)])
def test_pooled_picture_draws_each_hit_over_its_own_pixel(size, max_pixels):
    """Max-pooling to picture resolution keeps every hit, and a pooled pixel is drawn where
    its stored pixels are, also when the factor does not divide the image (padding)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spectrocnn.display import draw_event

    window = (-30.0, 50.0, -7.0, 3.0)
    x0, x1, y0, y1 = window
    rng = np.random.default_rng(size)
    image = np.zeros((size, size), np.uint8)
    hits = [(0, 0), (size - 1, size - 1), (size - 1, 0), (0, size - 1)]
    hits += [tuple(p) for p in rng.integers(0, size, (20, 2)).tolist()]
    for r, c in hits:
        image[r, c] = 1
    fig, ax = plt.subplots()
    try:
        draw_event(ax, image, window, max_pixels=max_pixels)
        shown = ax.images[0].get_array()
        ex0, ex1, ey0, ey1 = ax.images[0].get_extent()
    finally:
        plt.close(fig)
    ph, pw = shown.shape
    f = math.ceil(size / max_pixels)  # the smallest factor that fits (documented)
    assert (ph, pw) == (math.ceil(size / f), math.ceil(size / f))
    for r, c in hits:
        # the stored pixel's area [mm] ...
        sx0, sx1 = x0 + c * (x1 - x0) / size, x0 + (c + 1) * (x1 - x0) / size
        sy1, sy0 = y1 - r * (y1 - y0) / size, y1 - (r + 1) * (y1 - y0) / size
        # ... lies inside the drawn pooled pixel that shows it
        pr, pc = r // f, c // f
        assert shown[pr, pc] == 1
        dx0, dx1 = ex0 + pc * (ex1 - ex0) / pw, ex0 + (pc + 1) * (ex1 - ex0) / pw
        dy1, dy0 = ey1 - pr * (ey1 - ey0) / ph, ey1 - (pr + 1) * (ey1 - ey0) / ph
        tol = 1e-9 * (x1 - x0)
        assert dx0 - tol <= sx0 and sx1 <= dx1 + tol
        assert dy0 - tol <= sy0 and sy1 <= dy1 + tol
