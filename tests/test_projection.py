"""Other views (issue 22 item 6): ``[image] projection = "xy" | "xz" | "yz"``.

- images of a forward spectrometer (planes normal to z, a dipole bending in x-z) in the
  x-z and y-z projections, read back with plain h5py, equal an independent rasterisation
  (numpy floor of the documented pixel formula) of the stored hit coordinates;
- the ``projection`` attribute round-trips, the configuration records it (only when it is
  not the default), readers use it, a file with an unknown one is refused;
- a bad ``[image] projection`` is a one-line configuration error with a suggestion;
- show-event draws every layer in every projection (the planes normal to z as lines
  z = z0 in x-z, rectangles in x-y; the cylinders as pairs of lines |x| = r), with the true
  trajectories projected alike;
- ``--arch auto`` trains the lecture network on x-z images, and says why.
"""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest
from matplotlib.lines import Line2D

from spectrocnn.config import Config, config_from_dict, load_config
from spectrocnn.dataset import ImageSpec, generate_file, open_events, write_events
from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.simulate import Simulation, simulate_events
from spectrocnn.simulate.fields import CallableField
from spectrocnn.simulate.geometry import Detector, PlaneLayer
from spectrocnn.simulate.gun import ParticleGun

Z_PLANES = (100.0, 200.0, 300.0, 700.0, 800.0, 900.0)  # [mm]
HALF_MM = 500.0  # half width and half height of every plane [mm]
Z_IN, Z_OUT = 350.0, 650.0  # the dipole's edges [mm]
WINDOW = {"xz": (-300.0, 300.0, 0.0, 1000.0), "yz": (-250.0, 250.0, -10.0, 990.0)}


def _dipole(points: np.ndarray) -> np.ndarray:
    """1 T along +y for Z_IN <= z <= Z_OUT (tracks bend in x-z), 0 elsewhere."""
    b = np.zeros((len(points), 3))
    b[:, 1] = np.where((points[:, 2] >= Z_IN) & (points[:, 2] <= Z_OUT), 1.0, 0.0)
    return b


def _forward_simulation() -> Simulation:
    planes = tuple(
        PlaneLayer(center_mm=(0.0, 0.0, z), normal=(0.0, 0.0, 1.0), half_width_mm=HALF_MM,
                   half_height_mm=HALF_MM)
        for z in Z_PLANES
    )  # fmt: skip
    det = Detector(planes, CallableField(_dipole, "dipole"), "forward")
    gun = ParticleGun(p_low_GeV=(0.3, 1.0), p_high_GeV=(5.0, 10.0), eta=(1.8, 3.0))
    return Simulation(det, gun, n_particles=6, noise_hits_per_layer=0.5)


def _forward_config(projection: str, size: int = 64, radius: int = 0) -> Config:
    spec = ImageSpec(size=size, window_mm=WINDOW.get(projection, (-300.0, 300.0, -300.0, 300.0)),
                     hit_radius_px=radius, projection=projection)  # fmt: skip
    return Config(_forward_simulation(), spec, "custom")


@pytest.fixture(scope="module")
def forward(tmp_path_factory):
    """Forward-spectrometer event files of 12 events: x-z (one pixel per hit), y-z (disks
    of radius 1) through gen-events' pipeline, and x-y."""
    d = tmp_path_factory.mktemp("forward")
    for projection, radius in (("xz", 0), ("yz", 1), ("xy", 0)):
        config = _forward_config(projection, radius=radius)
        generate_file(config, 12, d / f"{projection}.h5", seed=4, workers=1)
    return d


def independent_images(u, v, event, n_events, window, size, radius):
    """The documented convention with numpy's floor: col = floor((u - u_min) / (u_max -
    u_min) * W), row = floor((v_max - v) / (v_max - v_min) * H), kept when both lie in
    [0, size); a disk of the pixels (row + dr, col + dc), dr^2 + dc^2 <= radius^2."""
    u0, u1, v0, v1 = window
    col = np.floor((u - u0) / (u1 - u0) * size)
    row = np.floor((v1 - v) / (v1 - v0) * size)
    ok = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    counts = np.zeros((n_events, size, size), dtype=np.int64)
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            if dr * dr + dc * dc > radius * radius:
                continue
            r, c = row + dr, col + dc
            sel = ok & (r >= 0) & (r < size) & (c >= 0) & (c < size)
            np.add.at(counts, (event[sel], r[sel].astype(int), c[sel].astype(int)), 1)
    return np.minimum(counts, 255).astype(np.uint8)


def _read_plain(path):
    with h5py.File(path, "r") as f:
        img = f["images"]
        out = {
            "images": img[:],
            "projection": img.attrs["projection"],
            "window": tuple(float(v) for v in img.attrs["window_mm"]),
            "radius": int(img.attrs["hit_radius_px"]),
            "description": str(img.attrs["description"]),
            "config": json.loads(f.attrs["config"]),
        }
        for c in ("x", "y", "z", "event"):
            out[c] = f[f"hits/{c}"][:]
    return out


# -- images and the attribute, read with plain h5py ---------------------------------------------


@pytest.mark.parametrize("projection", ["xz", "yz"])
def test_forward_images_are_the_projected_hits(forward, projection):
    got = _read_plain(forward / f"{projection}.h5")
    assert got["projection"] == projection
    assert got["window"] == WINDOW[projection]
    assert got["config"]["image"]["projection"] == projection
    coords = {"x": got["x"], "y": got["y"], "z": got["z"]}
    u, v = coords[projection[0]], coords[projection[1]]
    n, size = got["images"].shape[0], got["images"].shape[1]
    expected = independent_images(u, v, got["event"], n, got["window"], size, got["radius"])
    np.testing.assert_array_equal(got["images"], expected)
    # the images hold most hits (so that the comparison means something) and are not the
    # x-y view of the same hits
    assert np.count_nonzero(got["images"]) > 0.5 * len(u)
    wrong = independent_images(got["x"], got["y"], got["event"], n, got["window"], size, 0)
    assert not np.array_equal(got["images"], wrong)
    assert f"row 0 = {projection[1]}_max, col 0 = {projection[0]}_min" in got["description"]


def test_the_dipole_bends_in_xz_only(forward):
    """The fixture's tracks bend in x-z: a field along y turns the direction about y,
    keeping p_y and |p| (so the angle to y, dy / sqrt(dx^2 + dz^2) along a straight piece);
    the slope dx/dz before the dipole and after it differ."""
    with open_events(forward / "xz.h5") as ev:
        truth = ev.truth(0, ev.n_events)
    h = truth.hits
    bent = 0
    for p in range(len(truth.particles)):
        sel = (h.particle == p) & np.isin(h.layer, [0, 1, 2, 3, 4])
        if np.count_nonzero(sel) != 5:
            continue
        x, y, z = h.true_x[sel], h.true_y[sel], h.true_z[sel]
        sx_in, sx_out = (x[1] - x[0]) / (z[1] - z[0]), (x[4] - x[3]) / (z[4] - z[3])
        sy_in = (y[1] - y[0]) / np.hypot(x[1] - x[0], z[1] - z[0])
        sy_out = (y[4] - y[3]) / np.hypot(x[4] - x[3], z[4] - z[3])
        assert sy_out == pytest.approx(sy_in, abs=1e-6)
        bent += abs(sx_out - sx_in) > 1e-3
    assert bent >= 10


def test_write_events_uses_the_projection_too(tmp_path):
    batch = simulate_events(_forward_simulation(), 5, rng=2)
    spec = _forward_config("xz", size=32, radius=2).image
    write_events(tmp_path / "w.h5", batch, spec, compression="none")
    got = _read_plain(tmp_path / "w.h5")
    assert got["projection"] == "xz"
    expected = independent_images(got["x"], got["z"], got["event"], 5, WINDOW["xz"], 32, 2)
    np.testing.assert_array_equal(got["images"], expected)


@pytest.mark.parametrize("projection", ["xy", "xz", "yz"])
def test_projection_attribute_round_trip(tmp_path, projection):
    config = config_from_dict({"image": {"projection": projection, "size": 16}})
    assert config.image.projection == projection
    batch = simulate_events(config.simulation, 2, rng=1)
    path = tmp_path / "e.h5"
    write_events(path, batch, config.image, config=config.to_dict())
    with h5py.File(path, "r") as f:
        assert f["images"].attrs["projection"] == projection
        recorded = json.loads(f.attrs["config"])["image"]
    # the configuration records a projection other than the default (an x-y file keeps
    # the bytes it always had) and reads back to the same ImageSpec
    assert ("projection" in recorded) == (projection != "xy")
    assert config_from_dict({"image": recorded}).image == config.image
    with open_events(path) as ev:
        assert ev.projection == projection
        assert ev.image_spec.projection == projection


def test_a_file_without_the_attribute_is_xy_and_a_bad_one_is_refused(tmp_path):
    path = tmp_path / "e.h5"
    spec = ImageSpec(size=8, window_mm=(-300.0, 300.0, 0.0, 1000.0), projection="xz")
    write_events(path, simulate_events(_forward_simulation(), 2, rng=1), spec)
    with h5py.File(path, "r+") as f:
        del f["images"].attrs["projection"]
    with open_events(path) as ev:
        assert ev.projection == "xy"
    with h5py.File(path, "r+") as f:
        f["images"].attrs["projection"] = "zx"
    with pytest.raises(EventFileError, match=r"projection 'zx', expected one of 'xy', 'xz', 'yz'"):
        open_events(path)


def test_track_focus_projects_the_hits_as_the_images(forward):
    """The attribution check finds the high-momentum track's hits where an x-z image has
    them: pixels from the documented formula on the stored (x, z), computed here."""
    from spectrocnn.model.explain import track_focus

    with open_events(forward / "xz.h5") as ev:
        i = int(np.flatnonzero(ev.labels == 1)[0])
        truth, window = ev.truth(i, i + 1), ev.window_mm
    s = 32
    h = truth.hits
    on = h.particle == int(np.flatnonzero(truth.particles.is_high == 1)[0])
    seen = independent_images(h.x[on], h.z[on], np.zeros(on.sum(), int), 1, window, s, 0)
    assert seen.sum() >= 4
    attribution = (seen > 0).astype(np.float32)
    assert track_focus(attribution, truth, window, projection="xz")[0] == 1.0
    # the same maps read as x-y: the track's (x, y) pixels are elsewhere, or outside
    share = track_focus(attribution, truth, window)[0]
    assert np.isnan(share) or share < 1.0


def test_png_export_records_the_projection(forward, tmp_path):
    from spectrocnn.dataset import export_png

    export_png(forward / "yz.h5", tmp_path / "png", seed=1)
    manifest = json.loads((tmp_path / "png" / "export.json").read_text())
    assert manifest["projection"] == "yz" and manifest["window_mm"] == list(WINDOW["yz"])


# -- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hint"),
    [("zx", "; did you mean 'xz'?"), ("XZ", "; did you mean 'xz'?"), ("yx", "; did you mean 'xy'?"),
     ("x-z", "; did you mean 'xz'?"), ("rz", ""), (3, "")],
)  # fmt: skip
def test_bad_projection_is_one_line_naming_the_value_and_the_allowed_ones(value, hint):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"image": {"projection": value}})
    msg = str(err.value)
    assert msg == f"image.projection must be one of 'xy', 'xz', 'yz', got {value!r}{hint}"
    with pytest.raises(ConfigError, match=r"^projection must be one of 'xy', 'xz', 'yz'"):
        ImageSpec(projection=value)


def test_misspelt_projection_key_and_a_file(tmp_path):
    hint = r"unknown key 'image.projektion' in \[image\]; did you mean 'projection'\?"
    with pytest.raises(ConfigError, match=hint):
        config_from_dict({"image": {"projektion": "xz"}})
    toml = tmp_path / "c.toml"
    toml.write_text('[image]\nprojection = "xzz"\n')
    with pytest.raises(ConfigError) as err:
        load_config(toml)
    assert str(err.value) == (
        f"{toml}: image.projection must be one of 'xy', 'xz', 'yz', got 'xzz'; did you mean 'xz'?"
    )
    toml.write_text('[image]\nprojection = "yz"\nwindow_mm = [1.0, 0.0, 0.0, 1.0]\n')
    with pytest.raises(ConfigError, match=r"window_mm must be \[y_min, y_max, z_min, z_max\]"):
        load_config(toml)


# -- pictures -----------------------------------------------------------------------------------


def _layer_artists(ax, i: int) -> list:
    return [a for a in [*ax.lines, *ax.patches] if a.get_gid() == f"layer {i}"]


def _show_event(monkeypatch, path, out, *extra) -> object:
    """Run show-event; return the figure it saved."""
    import spectrocnn.display as display
    from spectrocnn.cli.show_event import main

    figures = []
    original = display.event_figure

    def spy(*args, **kwargs):
        figures.append(original(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(display, "event_figure", spy)
    assert main([str(path), "--out", str(out), *extra]) == 0
    assert out.is_file() and out.stat().st_size > 0
    (fig,) = figures
    return fig


def test_show_event_draws_the_planes_in_xz(forward, tmp_path, monkeypatch):
    with open_events(forward / "xz.h5") as ev:
        i = int(np.flatnonzero(ev.labels == 1)[0])
        truth = ev.truth(i, i + 1)
    fig = _show_event(monkeypatch, forward / "xz.h5", tmp_path / "xz.png", "--index", str(i),
                      "--truth")  # fmt: skip
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x [mm]", "z [mm]")
    for k, z0 in enumerate(Z_PLANES):  # the line z = z0 over the plane's x extent
        (line,) = _layer_artists(ax, k)
        assert isinstance(line, Line2D)
        np.testing.assert_allclose(sorted(line.get_xdata()), [-HALF_MM, HALF_MM])
        np.testing.assert_allclose(line.get_ydata(), [z0, z0])
    # the true trajectories are projected as the image: vertex, then the true (x, z)
    p, h = truth.particles, truth.hits
    high = int(np.flatnonzero(p.is_high == 1)[0])
    (halo,) = [c for c in ax.collections if c.get_label() == "high-momentum track"]
    seg = halo.get_segments()[0]
    on = h.particle == high
    np.testing.assert_array_equal(seg[0], [p.vx[high], p.vz[high]])
    np.testing.assert_array_equal(seg[1:], np.column_stack([h.true_x[on], h.true_z[on]]))


def test_planes_normal_to_z_are_rectangles_in_xy_and_lines_in_yz(forward, tmp_path, monkeypatch):
    from spectrocnn.display import event_figure

    with open_events(forward / "xy.h5") as ev:
        fig = event_figure(ev, [0], truth=True)
    ax = fig.axes[0]
    for k in range(len(Z_PLANES)):
        (outline,) = _layer_artists(ax, k)
        pts = np.column_stack([outline.get_xdata(), outline.get_ydata()])
        assert len(pts) == 5 and np.array_equal(pts[0], pts[-1])  # closed
        np.testing.assert_allclose(np.abs(pts), HALF_MM)  # the corners (+-500, +-500)
        assert len({(float(a), float(b)) for a, b in pts}) == 4
    fig = _show_event(monkeypatch, forward / "yz.h5", tmp_path / "yz.svg", "--truth",
                      "--grid", "2")  # fmt: skip
    for ax in [a for a in fig.axes if a.images]:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("y [mm]", "z [mm]")
        for k, z0 in enumerate(Z_PLANES):
            (line,) = _layer_artists(ax, k)
            np.testing.assert_allclose(line.get_ydata(), [z0, z0])


def test_barrel_cylinders_are_pairs_of_lines_in_xz(tmp_path, monkeypatch):
    config = config_from_dict({"image": {"projection": "xz", "size": 32}})
    generate_file(config, 2, tmp_path / "b.h5", seed=1, workers=1)
    fig = _show_event(monkeypatch, tmp_path / "b.h5", tmp_path / "b.png", "--truth")
    ax = fig.axes[0]
    for k, r in enumerate(range(50, 201, 10)):  # |x| = r over the half length 1000 mm
        lines = _layer_artists(ax, k)
        assert len(lines) == 2
        xs = sorted(float(line.get_xdata()[0]) for line in lines)
        assert xs == [-r, r]
        for line in lines:
            assert line.get_xdata()[0] == line.get_xdata()[1]
            np.testing.assert_allclose(sorted(line.get_ydata()), [-1000.0, 1000.0])
    # in x-y the same layers are circles
    with open_events(tmp_path / "b.h5") as ev:
        layers = ev.config["detector"]["layers"]
    from matplotlib.figure import Figure

    from spectrocnn.display import draw_event

    ax = Figure().add_subplot()
    draw_event(ax, np.zeros((4, 4), np.uint8), (-400, 400, -400, 400), layers=layers)
    assert [a.get_radius() for a in ax.patches] == [float(r) for r in range(50, 201, 10)]


# -- the architecture train-cnn chooses -------------------------------------------------------


def test_auto_chooses_lecture_on_xz_images_and_says_why(forward, tmp_path, caplog):
    from spectrocnn.cli.train_cnn import main as train_main
    from spectrocnn.model.architectures import choose_architecture

    with open_events(forward / "xz.h5") as ev:
        arch, why = choose_architecture(ev.config, ev.window_mm, ev.projection)
    assert arch == "lecture" and "x-z plane" in why
    # a barrel seen in x-z, with the beam line inside the window: still not polar
    barrel = tmp_path / "barrel_xz.h5"
    config = config_from_dict({"image": {"projection": "xz", "size": 16, "hit_radius_px": 0}})
    generate_file(config, 32, barrel, seed=2, workers=1)
    out = tmp_path / "run"
    args = [str(barrel), "--out", str(out), "--input-size", "16", "--epochs", "1",
            "--batch-size", "16", "--seed", "1", "--quiet"]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="spectrocnn"):
        assert train_main(args) == 0
    choice = json.loads((out / "config.json").read_text())["arch_choice"]
    assert choice["requested"] == "auto" and choice["chosen"] == "lecture"
    assert "x-z plane" in choice["reason"] and "beam line" in choice["reason"]
    assert any("architecture lecture (auto: the images show the x-z plane" in r.getMessage()
               for r in caplog.records)  # fmt: skip


@pytest.mark.parametrize("projection", ["xz", "yz"])
def test_polar_is_refused_on_other_planes_wherever_it_meets_them(projection):
    """A forced polar network on x-z or y-z images is a one-line ConfigError naming the value
    and the flag (build_model, model_geometry, check_projection); --generate with such a
    configuration lets auto choose the lecture network."""
    from spectrocnn.model.architectures import (
        build_model,
        check_projection,
        choose_architecture,
        model_geometry,
    )
    from spectrocnn.model.fresh import generation_view
    from spectrocnn.model.trainconfig import TrainConfig

    window = (-200.0, 200.0, -200.0, 200.0)  # holds the beam line: only the plane is wrong
    plane = f"{projection[0]}-{projection[1]}"
    expected = (
        f"--arch polar on f.h5: the images show the {plane} plane ([image] projection = "
        f'"{projection}"), where the beam line is the line {projection[0]} = 0, not a point: '
        "polar images need x-y images; use --arch lecture or --arch auto"
    )
    with pytest.raises(ConfigError) as info:
        check_projection("polar", projection, "f.h5")
    assert str(info.value) == expected
    for call in (
        lambda: build_model("polar", 16, window_mm=window, projection=projection),
        lambda: model_geometry("polar", 16, window, projection=projection),
    ):
        with pytest.raises(ConfigError, match=rf"^--arch polar: the images show the {plane}"):
            call()
    check_projection("lecture", projection, "f.h5")  # the lecture network takes any plane
    check_projection("seed", projection)
    assert model_geometry("lecture", 16, window, projection=projection) == {}
    assert model_geometry("polar", 16, window)["r_max_mm"] > 0  # x-y as ever
    gen = config_from_dict({"image": {"projection": projection}})
    arch, why = choose_architecture(*generation_view(TrainConfig(generate=gen)))
    assert arch == "lecture" and f"the images show the {plane} plane" in why
