"""The TOML configuration (docs/design.md 3.2): defaults, presets, overrides and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spectrocnn.config import PRESETS, Config, config_from_dict, load_config, preset_config
from spectrocnn.errors import ConfigError
from spectrocnn.simulate import CylinderLayer, FieldMap, PlaneLayer, UniformField


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_lecture_preset():
    cfg = load_config()
    det = cfg.simulation.detector
    assert cfg.preset == "lecture"
    assert [layer.radius_mm for layer in det.layers] == list(np.arange(50.0, 201.0, 10.0))
    assert det.field.B_T == (0.0, 0.0, 2.0)
    assert cfg.simulation.n_particles == 10
    assert cfg.simulation.high_fraction == 0.5
    assert cfg.image.size == 512
    assert cfg.simulation.gun.particle == "pi+"
    assert cfg.simulation.gun.mass_GeV == pytest.approx(0.13957039, rel=1e-6)


def test_telescope_preset():
    cfg = preset_config("telescope")
    layers = cfg.simulation.detector.layers
    assert len(layers) == 16
    assert all(isinstance(layer, PlaneLayer) for layer in layers)
    assert all(layer.normal == (1.0, 0.0, 0.0) for layer in layers)
    assert [layer.center_mm[0] for layer in layers] == list(np.arange(50.0, 201.0, 10.0))


def test_full_file_round_trip(tmp_path):
    path = write(
        tmp_path,
        """
version = 1
n_particles = 4
high_fraction = 0.25
[detector]
resolution_um = 20.0
efficiency = 0.95
thickness_x0 = 0.01
[[detector.layers]]
kind = "cylinder"
radius_mm = 40.0
half_length_mm = 500.0
[[detector.layers]]
kind = "plane"
center_mm = [100.0, 0.0, 0.0]
normal = [2.0, 0.0, 0.0]
half_width_mm = 300.0
half_height_mm = 300.0
efficiency = 0.5
[field]
B_T = [0.0, 0.0, 1.5]
[gun]
particle = "mu-"
p_low_GeV = [0.2, 0.4]
p_high_GeV = [3.0, 4.0]
[noise]
hits_per_layer = 0.5
[image]
size = 64
window_mm = [-100.0, 100.0, -50.0, 50.0]
hit_radius_px = 1
""",
    )
    cfg = load_config(path)
    sim = cfg.simulation
    assert sim.n_particles == 4 and sim.high_fraction == 0.25
    cyl, plane = sim.detector.layers
    assert isinstance(cyl, CylinderLayer) and cyl.radius_mm == 40.0
    assert cyl.resolution_um == 20.0 and cyl.efficiency == 0.95 and cyl.thickness_x0 == 0.01
    assert plane.normal == (1.0, 0.0, 0.0) and plane.efficiency == 0.5
    assert sim.detector.field.B_T == (0.0, 0.0, 1.5)
    assert sim.gun.particle == "mu-" and sim.gun.mass_GeV == pytest.approx(0.1056584, rel=1e-5)
    assert sim.noise_hits_per_layer == 0.5
    assert cfg.image.window_mm == (-100.0, 100.0, -50.0, 50.0) and cfg.image.hit_radius_px == 1
    resolved = cfg.to_dict()
    json.dumps(resolved)  # JSON-able
    assert config_from_dict(resolved).to_dict() == resolved


def test_preset_flag_overrides_file(tmp_path):
    path = write(tmp_path, '[detector]\npreset = "lecture"\n')
    assert load_config(path, preset="telescope").preset == "telescope"


def test_field_map_file(tmp_path):
    grid = np.linspace(-300, 300, 4)
    b = np.zeros((4, 4, 4, 3))
    b[..., 2] = 1.0
    np.savez(tmp_path / "map.npz", x_mm=grid, y_mm=grid, z_mm=grid, B_T=b)
    cfg = load_config(write(tmp_path, '[field]\nmap = "map.npz"\n'))  # relative to the file
    fld = cfg.simulation.detector.field
    assert isinstance(fld, FieldMap)
    np.testing.assert_allclose(
        fld(np.array([[10.0, 20.0, 30.0], [1e4, 0, 0]])), [[0, 0, 1.0], [0, 0, 0]]
    )
    assert cfg.to_dict()["field"]["map"].endswith("map.npz")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("foo = 1", "'foo'"),
        ("[detector]\nradius = 3", "detector.radius"),
        ("[[detector.layers]]\nradius_mm = -5.0", "radius_mm must be positive, got -5.0"),
        ("[detector]\nefficiency = 1.5", "efficiency must be in [0, 1], got 1.5"),
        ("[detector]\nefficiency = nan", "efficiency must be finite, got nan"),
        ("[detector]\nresolution_um = -1.0", "resolution_um must be >= 0, got -1.0"),
        (
            '[[detector.layers]]\nkind = "plane"\nnormal = [0.0, 0.0, 0.0]',
            "normal must be a non-zero vector",
        ),
        ("[detector]\nlayers = []", "at least one layer"),
        ('[[detector.layers]]\nkind = "sphere"', "'sphere'"),
        ("[gun]\np_low_GeV = [0.5, 0.4]", "p_low_GeV must be a range [min, max] with min <= max"),
        ('[gun]\nparticle = "gamma"', "gun.particle 'gamma' has charge 0"),
        ("[gun]\np_high_GeV = [-1.0, 2.0]", "p_high_GeV"),
        ('[gun]\nparticle = "pion"', "'pion'"),
        ("n_particles = 0", "n_particles must be a positive integer, got 0"),
        ("high_fraction = 1.5", "high_fraction must be in [0, 1], got 1.5"),
        ("[field]\nB_T = [0.0, 2.0]", "B_T"),
        ('[field]\nmap = "missing.npz"', "missing.npz"),
        ("[image]\nsize = 0", "image.size must be a positive integer, got 0"),
        ("[image]\nwindow_mm = [1.0, 0.0, 0.0, 1.0]", "window_mm"),
        ('[detector]\npreset = "barrel"', "unknown preset 'barrel'"),
        ("version = 2", "version must be 1, got 2"),
        ("n_particles = [", "not valid TOML"),
    ],
)
def test_invalid_configuration_names_key_and_value(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_field_map_contents(tmp_path):
    grid = np.linspace(-1, 1, 3)
    np.savez(
        tmp_path / "nan.npz", x_mm=grid, y_mm=grid, z_mm=grid, B_T=np.full((3, 3, 3, 3), np.nan)
    )
    np.savez(tmp_path / "shape.npz", x_mm=grid, y_mm=grid, z_mm=grid, B_T=np.zeros((3, 3, 3)))
    np.savez(
        tmp_path / "order.npz", x_mm=grid[::-1], y_mm=grid, z_mm=grid, B_T=np.zeros((3, 3, 3, 3))
    )
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    for name, msg in [
        ("nan", "NaN"),
        ("shape", "shape"),
        ("order", "increasing"),
        ("junk", "not an .npz file"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            load_config(write(tmp_path, f'[field]\nmap = "{name}.npz"\n'))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_python_built_config_without_toml():
    from spectrocnn.dataset.raster import ImageSpec
    from spectrocnn.simulate import Detector, Simulation

    det = Detector((CylinderLayer(radius_mm=80.0),), UniformField((0, 0, 1.0)))
    cfg = Config(Simulation(det, n_particles=3), ImageSpec(size=32))
    d = cfg.to_dict()
    assert d["detector"]["layers"][0]["radius_mm"] == 80.0
    assert d["image"]["size"] == 32
    assert set(PRESETS) == {"lecture", "telescope"}


def test_hit_radius_in_mm_or_in_pixels():
    lecture = preset_config("lecture")
    assert lecture.image.hit_radius_mm == 3.125 and lecture.image.hit_radius_px == 2
    assert lecture.with_image_size(64).image.hit_radius_px == 0  # 12.5 mm pixels
    assert lecture.with_image_size(1024).image.hit_radius_px == 4  # 0.78125 mm pixels
    # a radius in pixels given by the user keeps its meaning and replaces the preset's mm
    px = config_from_dict({"image": {"hit_radius_px": 2}})
    assert px.image.hit_radius_mm is None and px.with_image_size(64).image.hit_radius_px == 2
    assert "hit_radius_mm" not in px.to_dict()["image"]
    # the telescope preset draws single pixels at any size; in mm on request
    telescope = preset_config("telescope")
    assert telescope.image.hit_radius_px == 0 and telescope.image.hit_radius_mm is None
    mm = config_from_dict({"detector": {"preset": "telescope"}, "image": {"hit_radius_mm": 1.0}})
    assert mm.image.hit_radius_px == 2  # 210 mm / 512 px = 0.41 mm pixels: floor(2.44)
    # the resolved configuration records both, and reads back to the same
    for cfg in (lecture, lecture.with_image_size(64), px, mm):
        resolved = cfg.to_dict()
        assert config_from_dict(resolved).image == cfg.image
    assert lecture.with_image_size(64).to_dict()["image"] == {
        "size": 64, "window_mm": [-400.0, 400.0, -400.0, 400.0], "hit_radius_px": 0,
        "hit_radius_mm": 3.125,
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"image\.hit_radius_px = 3 disagrees"):
        config_from_dict({"image": {"hit_radius_px": 3, "hit_radius_mm": 3.125}})
