"""Property-based tests (hypothesis): random valid configurations and geometries never crash
the simulator and give consistent events; random invalid ones always give a ConfigError
naming the key."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectrocnn.config import config_from_dict
from spectrocnn.dataset import ImageSpec, rasterize
from spectrocnn.dataset.raster import pixel_indices
from spectrocnn.errors import ConfigError
from spectrocnn.simulate import Simulation, simulate_events, simulate_particles
from spectrocnn.simulate.fields import UniformField
from spectrocnn.simulate.geometry import CylinderLayer, Detector, PlaneLayer

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
N_EVENTS = 3

# -- strategies of valid values -------------------------------------------------------------


def _num(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def _range(draw, lo: float, hi: float, min_width: float = 1e-3, fixed: bool = False) -> list[float]:
    if fixed and draw(st.booleans()):  # min == max: a fixed value (gun ranges)
        a = draw(_num(lo, hi))
        return [a, a]
    a = draw(_num(lo, hi - min_width))
    b = draw(_num(a + min_width, hi))
    return [a, b]


_response = st.fixed_dictionaries(
    {},
    optional={
        "resolution_um": _num(0.0, 500.0),
        "efficiency": _num(0.0, 1.0),
        "thickness_x0": _num(0.0, 0.05),
    },
)


@st.composite
def _cylinders(draw) -> list[dict]:
    radii = draw(st.lists(_num(5.0, 400.0), min_size=1, max_size=8, unique=True))
    return [
        {"kind": "cylinder", "radius_mm": r, "half_length_mm": draw(_num(10.0, 2000.0)),
         **draw(_response)}
        for r in radii
    ]  # fmt: skip


@st.composite
def _normal(draw) -> list[float]:
    n = draw(st.lists(_num(-1.0, 1.0), min_size=3, max_size=3))
    if math.hypot(*n) < 0.1:
        n = [1.0, 0.0, 0.0]
    return n


@st.composite
def _planes(draw) -> list[dict]:
    xs = draw(st.lists(_num(-400.0, 400.0), min_size=1, max_size=8, unique=True))
    return [
        {"kind": "plane", "center_mm": [x, draw(_num(-50, 50)), draw(_num(-50, 50))],
         "normal": draw(_normal()), "half_width_mm": draw(_num(5.0, 500.0)),
         "half_height_mm": draw(_num(5.0, 500.0)), **draw(_response)}
        for x in xs
    ]  # fmt: skip


@st.composite
def valid_configs(draw) -> dict:
    """A random valid configuration dictionary (docs/design.md 3.2)."""
    preset = draw(st.sampled_from(["lecture", "telescope"]))
    detector: dict = {"preset": preset, **draw(_response)}
    layers = draw(st.sampled_from(["preset", "cylinders", "planes", "mixed"]))
    if layers == "cylinders":
        detector["layers"] = draw(_cylinders())
    elif layers == "planes":
        detector["layers"] = draw(_planes())
    elif layers == "mixed":
        detector["layers"] = draw(_cylinders()) + draw(_planes())
    b_along_z = draw(st.booleans())
    b_field = [0.0, 0.0, draw(_num(-5.0, 5.0))] if b_along_z else draw(
        st.lists(_num(-3.0, 3.0), min_size=3, max_size=3)
    )  # fmt: skip
    p_low = draw(_range(0.02, 5.0, fixed=True))
    return {
        "n_particles": draw(st.integers(1, 12)),
        "high_fraction": draw(_num(0.0, 1.0)),
        "detector": detector,
        "field": {"B_T": b_field},
        "gun": {
            "particle": draw(st.sampled_from(["pi+", "mu-", "e+", "p", "K-", "He4", "Li6"])),
            "p_low_GeV": p_low,
            "p_high_GeV": draw(_range(p_low[0], 50.0, fixed=True)),
            "phi_deg": draw(_range(-360.0, 360.0, fixed=True)),
            "dip_deg": draw(_range(-80.0, 80.0, fixed=True)),
            "vertex_sigma_mm": draw(st.lists(_num(0.0, 5.0), min_size=3, max_size=3)),
        },
        "noise": {"hits_per_layer": draw(_num(0.0, 5.0))},
        "image": {
            "size": draw(st.integers(4, 96)),
            "window_mm": draw(_range(-600.0, 600.0, 1.0)) + draw(_range(-600.0, 600.0, 1.0)),
            "hit_radius_px": draw(st.integers(0, 3)),
        },
    }


def _check_events(config, seed: int) -> None:
    sim, spec = config.simulation, config.image
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings either
        batch = simulate_events(sim, N_EVENTS, seed)
        h, p = batch.hits, batch.particles
        images = rasterize(h.x, h.y, h.event, N_EVENTS, spec)
    # particles: n_particles per event, finite, the labels agree with is_high
    assert len(p.event) == N_EVENTS * sim.n_particles
    assert np.array_equal(np.bincount(p.event, minlength=N_EVENTS), [sim.n_particles] * N_EVENTS)
    for col in (p.px, p.py, p.pz, p.vx, p.vy, p.vz):
        assert np.all(np.isfinite(col))
    assert set(np.unique(batch.labels)) <= {0, 1}
    high = np.zeros(N_EVENTS, np.uint8)
    np.maximum.at(high, p.event, p.is_high)
    assert np.array_equal(batch.labels, high)
    # hits: finite, on a layer, grouped by event, at most one per particle and layer
    for col in (h.x, h.y, h.z):
        assert np.all(np.isfinite(col))
    assert np.all((h.layer >= 0) & (h.layer < sim.detector.n_layers))
    assert np.all(np.diff(h.event) >= 0)
    track = h.particle >= 0
    assert np.all(p.event[h.particle[track]] == h.event[track])
    pairs = h.particle[track] * sim.detector.n_layers + h.layer[track]
    assert len(np.unique(pairs)) == len(pairs)
    assert np.all(np.isfinite(h.true_x[track])) and np.all(np.isnan(h.true_x[~track]))
    # images: what is inside the window is drawn
    assert images.shape == (N_EVENTS, spec.size, spec.size) and images.dtype == np.uint8
    _, _, inside = pixel_indices(h.x, h.y, spec)
    drawn = np.bincount(h.event[inside], minlength=N_EVENTS)
    lit = images.reshape(N_EVENTS, -1).astype(np.int64).sum(axis=1)
    capped = images.reshape(N_EVENTS, -1).max(axis=1) == 255
    if spec.hit_radius_px == 0:
        assert np.all((lit == drawn) | capped)
    else:
        assert np.all((lit >= drawn) | capped)
    assert np.all((lit > 0) == (drawn > 0))


@SETTINGS
@given(data=valid_configs(), seed=st.integers(0, 2**32 - 1))
def test_random_valid_configurations_simulate(data, seed):
    config = config_from_dict(data)
    _check_events(config, seed)
    again = config_from_dict(config.to_dict())  # the resolved configuration round-trips
    assert _close(again.to_dict(), config.to_dict())


def _close(a, b) -> bool:
    """Equal, floats within 1e-12 (plane normals are normalised again)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


# -- invalid configurations: one key broken at a time ---------------------------------------

NAN, INF = math.nan, math.inf
#: (section, key, bad values); the message must name the key.
BROKEN: list[tuple[str, str, list]] = [
    ("", "n_particles", [0, -1, 1.5, "ten", True, NAN, None, [3]]),
    ("", "high_fraction", [-0.1, 1.5, NAN, INF, "half", True, [0.5]]),
    ("", "version", [2, 0, "1", True]),
    ("detector", "resolution_um", [-1.0, NAN, INF, "50", True, [50.0]]),
    ("detector", "efficiency", [-0.1, 1.01, NAN, "1", False]),
    ("detector", "thickness_x0", [-1e-3, INF, NAN, "0"]),
    ("detector", "thickness_mm", [-1e-3, INF, NAN, "0.3", True, [0.3]]),
    ("detector", "material", ["lead", "Silicon", 14, True, ["silicon"]]),
    ("detector", "energy_loss", ["yes", 1, 0, 1.0, "true", [True]]),
    ("detector", "preset", ["nosuch", 3]),
    ("field", "B_T", [[0.0, 0.0, NAN], [0.0, 0.0], [INF, 0.0, 0.0], "2", 2.0, [0, 0, "z"]]),
    ("field", "stepper_tolerance_mm", [0.0, -1.0, NAN, INF, "small"]),
    ("gun", "particle", ["nosuch", 211, "", "gamma", "pi0", "n", "u", "g"]),
    ("gun", "p_low_GeV", [[0.5, 0.1], [0.2, 0.19], [-1.0, 1.0], [0.0, 1.0], [0.0, 0.0],
                          [NAN, 1.0], [0.1], "0.1", [0.1, INF]]),
    ("gun", "p_high_GeV", [[10.0, 5.0], [-5.0, 1.0], [0.0, 1.0], [5.0, NAN], [5.0]]),
    ("gun", "phi_deg", [[10.0, 0.0], [0.0, NAN], [0.0, INF], [1.0]]),
    ("gun", "dip_deg", [[10.0, -10.0], [-100.0, 0.0], [0.0, 95.0], [NAN, 1.0]]),
    ("gun", "vertex_sigma_mm", [[-1.0, 0.0, 0.0], [0.0, 0.0], [NAN, 0.0, 0.0], "1"]),
    ("noise", "hits_per_layer", [-1.0, NAN, INF, "many"]),
    ("image", "size", [0, -5, 1.5, 10**6, "big", True, None]),
    ("image", "window_mm", [[210.0, -210.0, -210.0, 210.0], [0.0, 1.0, 0.0], [0.0, NAN, 0.0, 1.0],
                            [0.0, 0.0, 0.0, 1.0], "all"]),
    ("image", "hit_radius_px", [-1, 1.5, 1000, "one"]),
]  # fmt: skip


def _set(data: dict, section: str, key: str, value) -> dict:
    target = data.setdefault(section, {}) if section else data
    target[key] = value
    return data


@SETTINGS
@given(data=valid_configs(), broken=st.sampled_from(BROKEN), pick=st.integers(0, 100))
def test_one_broken_value_names_its_key(data, broken, pick):
    section, key, values = broken
    value = values[pick % len(values)]
    with pytest.raises(ConfigError) as info:
        config_from_dict(_set(data, section, key, value))
    msg = str(info.value)
    assert key in msg or (key == "preset" and "preset" in msg), msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [(sec, key, v) for sec, key, values in BROKEN for v in values],
    ids=[f"{key}={v!r}" for _, key, values in BROKEN for v in values],
)
def test_every_broken_value_of_the_lecture_preset(section, key, value):
    with pytest.raises(ConfigError) as info:
        config_from_dict(_set({}, section, key, value))
    assert key in str(info.value)


_IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)


@SETTINGS
@given(
    data=valid_configs(),
    section=st.sampled_from(["", "detector", "field", "gun", "noise", "image"]),
    name=_IDENT,
)
def test_unknown_key_is_named(data, section, name):
    from spectrocnn.config import _KEYS

    if name in _KEYS[section]:
        name += "_x"
    with pytest.raises(ConfigError, match="unknown key") as info:
        config_from_dict(_set(data, section, name, 1))
    assert name in str(info.value)


_NOT_A_TABLE = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2))


@SETTINGS
@given(
    data=valid_configs(),
    section=st.sampled_from(["detector", "field", "gun", "image"]),
    value=_NOT_A_TABLE,
)
def test_section_of_wrong_type_is_named(data, section, value):
    data[section] = value
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert section in str(info.value)


# -- geometries built in Python -------------------------------------------------------------

_BAD_LAYER = {
    "radius_mm": [0.0, -1.0, NAN, INF, "r"],
    "half_length_mm": [0.0, -5.0, NAN],
    "center_mm": [[0.0, NAN, 0.0], [1.0, 2.0], "c"],
    "normal": [[0.0, 0.0, 0.0], [NAN, 1.0, 0.0], [1.0]],
    "half_width_mm": [0.0, -1.0, INF],
    "half_height_mm": [-2.0, NAN],
    "resolution_um": [-1.0, NAN],
    "efficiency": [1.5, -0.5, NAN],
    "thickness_x0": [-0.1, INF],
}
_CYLINDER_KEYS = {"radius_mm", "half_length_mm", "resolution_um", "efficiency", "thickness_x0"}
_PLANE_KEYS = set(_BAD_LAYER) - {"radius_mm", "half_length_mm"}


@SETTINGS
@given(
    layers=st.one_of(_cylinders(), _planes(), st.builds(list.__add__, _cylinders(), _planes())),
    bz=_num(-4.0, 4.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_geometries_simulate(layers, bz, seed):
    built = [
        (CylinderLayer if spec["kind"] == "cylinder" else PlaneLayer)(
            **{k: v for k, v in spec.items() if k != "kind"}
        )
        for spec in layers
    ]
    detector = Detector(tuple(built), UniformField((0.0, 0.0, bz)))
    sim = Simulation(detector=detector, n_particles=4, noise_hits_per_layer=0.5)
    _check_events(SimpleNamespace(simulation=sim, image=ImageSpec(size=64)), seed)


@SETTINGS
@given(kind=st.sampled_from(["cylinder", "plane"]), data=st.data())
def test_invalid_layer_names_the_field(kind, data):
    cls = CylinderLayer if kind == "cylinder" else PlaneLayer
    keys = sorted(_CYLINDER_KEYS if kind == "cylinder" else _PLANE_KEYS)
    key = data.draw(st.sampled_from(keys))
    value = data.draw(st.sampled_from(_BAD_LAYER[key]))
    with pytest.raises(ConfigError) as info:
        cls(**{key: value})
    assert key in str(info.value)


@SETTINGS
@given(layers=st.one_of(_cylinders(), _planes()), data=st.data())
def test_duplicate_surface_is_refused(layers, data):
    i = data.draw(st.integers(0, len(layers) - 1))
    spec = dict(layers[i])
    if spec["kind"] == "plane":  # the same plane, seen from the other side
        spec["normal"] = [-x for x in spec["normal"]]
    built = [
        (CylinderLayer if s["kind"] == "cylinder" else PlaneLayer)(
            **{k: v for k, v in s.items() if k != "kind"}
        )
        for s in [*layers, spec]
    ]
    with pytest.raises(ConfigError, match=f"layers {i} and {len(layers)} are the same surface"):
        Detector(tuple(built), UniformField((0.0, 0.0, 2.0)))


@pytest.mark.parametrize("dip_deg", [5e-324, 1e-310, -2.2e-308])
def test_subnormal_dip_is_a_flat_track(dip_deg):
    """A dip so small that pz/p_T is subnormal: no overflow warning (the z limit of the path
    is infinite), and the crossings are those of the flat track (dip 0) to rounding."""

    def run(dip):
        config = config_from_dict({"n_particles": 3, "field": {"B_T": [0, 0, 2.0]},
                                   "gun": {"dip_deg": [dip, dip]}})  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return simulate_events(config.simulation, 4, 7)

    tiny, flat = run(dip_deg), run(0.0)
    assert np.array_equal(tiny.hits.layer, flat.hits.layer)
    np.testing.assert_allclose(tiny.hits.true_x, flat.hits.true_x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(tiny.hits.true_z, flat.hits.true_z, rtol=0, atol=1e-9)


@pytest.mark.parametrize("bz", [8.071430987762142e-101, 1e-200, 5e-324])
def test_vanishing_field_is_a_straight_line(bz):
    """A field so weak that the stepper's curvature cubed underflows (found by Hypothesis):
    no overflow warning, and the crossings of a plane are those of the straight line."""
    plane = PlaneLayer(center_mm=(0.0, 0.0, 100.0), normal=(0.0, 0.0, 1.0),
                       half_width_mm=500.0, half_height_mm=500.0, resolution_um=0.0)  # fmt: skip
    detector = Detector((plane,), UniformField((0.0, 0.0, bz)))
    momentum = np.array([[0.1, 0.0, 1.0], [0.0, -0.2, 2.0], [0.3, 0.3, 0.5]])  # [GeV/c]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = simulate_particles(detector, np.zeros((3, 3)), momentum, [211, -13, 2212], rng=0)
    h = batch.hits
    assert np.array_equal(h.particle, [0, 1, 2])
    t = 100.0 / momentum[:, 2]  # the straight line from the origin to z = 100 mm
    np.testing.assert_allclose(h.true_x, t * momentum[:, 0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(h.true_y, t * momentum[:, 1], rtol=0, atol=1e-6)
