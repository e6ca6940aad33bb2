"""Rasterization: the pixel convention of DESIGN 3.3, window edges, the cap, hit disks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spectrocnn.dataset.raster import (
    ImageSpec,
    disk_offsets,
    pixel_indices,
    rasterize,
    rasterize_sparse,
)
from spectrocnn.errors import ConfigError

# 64 x 64 pixels over x in [-210, 210) mm, y in (-105, 105] mm: 6.5625 mm by 3.28125 mm.
SPEC = ImageSpec(size=64, window_mm=(-210.0, 210.0, -105.0, 105.0), hit_radius_px=0)


def _expected_pixel(x: float, y: float, spec: ImageSpec) -> tuple[int, int] | None:
    """The documented convention, written out per hit (independent of the code)."""
    x0, x1, y0, y1 = spec.window_mm
    w = h = spec.size
    col = math.floor((x - x0) / (x1 - x0) * w)
    row = math.floor((y1 - y) / (y1 - y0) * h)
    if 0 <= col < w and 0 <= row < h:
        return row, col
    return None


@pytest.mark.parametrize(
    ("x", "y", "row", "col"),
    [
        (0.0, 0.0, 32, 32),  # the centre of the window is the corner of 4 pixels
        (-210.0, 105.0, 0, 0),  # x = x_min is column 0, y = y_max is row 0 (top left)
        (-209.0, 104.0, 0, 0),
        (209.999, -104.999, 63, 63),  # just inside the bottom right corner
        (6.5625, -3.28125, 33, 33),  # one pixel right of and below the centre
        (6.56, -3.28, 32, 32),  # just short of that
        (-100.0, 50.0, 16, 16),  # floor(110/420*64) = 16, floor(55/210*64) = 16
        (100.0, -50.0, 47, 47),  # floor(310/420*64) = 47, floor(155/210*64) = 47
    ],
)
def test_hit_lands_on_documented_pixel(x, y, row, col):
    img = rasterize([x], [y], [0], 1, SPEC)
    assert img.shape == (1, 64, 64) and img.dtype == np.uint8
    assert img[0, row, col] == 1
    assert img.sum() == 1


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (210.0, 0.0),  # x = x_max is outside (the window is half open)
        (0.0, -105.0),  # y = y_min is outside
        (-210.000001, 0.0),
        (0.0, 105.000001),
        (1e9, 0.0),
        (np.nan, 0.0),
        (0.0, np.inf),
    ],
)
def test_hits_outside_window_are_not_drawn(x, y):
    img = rasterize([x, 0.0], [y, 0.0], [0, 0], 1, SPEC)
    assert img.sum() == 1  # only the hit at the centre
    assert img[0, 32, 32] == 1


def test_every_in_window_hit_lights_its_pixel():
    rng = np.random.default_rng(7)
    n_events, n_hits = 5, 400
    x = rng.uniform(-260, 260, n_hits)
    y = rng.uniform(-130, 130, n_hits)
    ev = np.sort(rng.integers(0, n_events, n_hits))
    img = rasterize(x, y, ev, n_events, SPEC)
    expected = np.zeros((n_events, 64, 64), dtype=np.int64)
    n_inside = 0
    for xi, yi, ei in zip(x, y, ev, strict=True):
        pix = _expected_pixel(xi, yi, SPEC)
        if pix is not None:
            n_inside += 1
            expected[ei, pix[0], pix[1]] += 1
            assert img[ei, pix[0], pix[1]] >= 1
    assert 0 < n_inside < n_hits
    assert np.array_equal(img, expected)  # counts, and nothing else lit
    row, col, inside = pixel_indices(x, y, SPEC)
    assert inside.sum() == n_inside
    pix = [_expected_pixel(xi, yi, SPEC) for xi, yi in zip(x[inside], y[inside], strict=True)]
    assert pix == list(zip(row[inside].tolist(), col[inside].tolist(), strict=True))


def test_events_go_to_their_own_image():
    img = rasterize([0.0, 0.0, 100.0], [0.0, 0.0, -50.0], [2, 2, 0], 3, SPEC)
    assert img[2, 32, 32] == 2
    assert img[0, 47, 47] == 1
    assert img[1].sum() == 0
    assert img.sum() == 3


def test_unsorted_events_and_empty_input():
    a = rasterize([0.0, 100.0], [0.0, -50.0], [1, 0], 2, SPEC)
    b = rasterize([100.0, 0.0], [-50.0, 0.0], [0, 1], 2, SPEC)
    assert np.array_equal(a, b)
    empty = rasterize(np.empty(0), np.empty(0), np.empty(0, np.int64), 4, SPEC)
    assert empty.shape == (4, 64, 64) and empty.sum() == 0
    assert rasterize([], [], [], 0, SPEC).shape == (0, 64, 64)


def test_event_index_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="event_index"):
        rasterize([0.0], [0.0], [3], 3, SPEC)
    with pytest.raises(ValueError, match="event_index"):
        rasterize([0.0], [0.0], [-1], 3, SPEC)


@pytest.mark.parametrize(("n", "value"), [(1, 1), (254, 254), (255, 255), (256, 255), (1000, 255)])
def test_counts_are_capped_at_255(n, value):
    img = rasterize(np.full(n, 1.0), np.full(n, 1.0), np.zeros(n, np.int64), 1, SPEC)
    assert img.max() == value
    assert np.count_nonzero(img) == 1


@pytest.mark.parametrize(("radius", "count"), [(0, 1), (1, 5), (2, 13), (3, 29), (4, 49)])
def test_disk_offsets_are_pixel_centres_within_radius(radius, count):
    dr, dc = disk_offsets(radius)
    assert len(dr) == count  # Gauss circle numbers: #{(i, j): i^2 + j^2 <= r^2}
    assert np.all(dr**2 + dc**2 <= radius**2)
    assert len(set(zip(dr.tolist(), dc.tolist(), strict=True))) == count


def test_hit_radius_draws_a_disk_and_clips_at_the_border():
    spec = ImageSpec(size=64, window_mm=SPEC.window_mm, hit_radius_px=1)
    img = rasterize([0.0], [0.0], [0], 1, spec)[0]
    lit = {tuple(p) for p in np.argwhere(img)}
    assert lit == {(32, 32), (31, 32), (33, 32), (32, 31), (32, 33)}
    # Two overlapping disks count twice where they overlap.
    img2 = rasterize([0.0, 6.6], [0.0, 0.0], [0, 0], 1, spec)[0]
    assert img2[32, 32] == 2 and img2[32, 33] == 2 and img2.sum() == 10
    # At the top left corner a radius-2 disk keeps its 6 on-image pixels.
    spec2 = ImageSpec(size=64, window_mm=SPEC.window_mm, hit_radius_px=2)
    corner = rasterize([-210.0], [105.0], [0], 1, spec2)[0]
    assert {tuple(p) for p in np.argwhere(corner)} == {
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)
    }  # fmt: skip
    # A hit outside the window is not drawn even when its disk would reach inside.
    assert rasterize([210.5], [0.0], [0], 1, spec2).sum() == 0


def test_sparse_and_dense_agree():
    rng = np.random.default_rng(3)
    x = rng.uniform(-220, 220, 3000)
    y = rng.uniform(-110, 110, 3000)
    ev = rng.integers(0, 7, 3000)
    spec = ImageSpec(size=64, window_mm=SPEC.window_mm, hit_radius_px=1)
    sp = rasterize_sparse(x, y, ev, 7, spec)
    dense = rasterize(x, y, ev, 7, spec)
    assert sp.shape == (7, 64, 64)
    assert np.all(np.diff(sp.index) > 0) and np.all(sp.value >= 1)
    assert np.array_equal(sp.todense(), dense)
    assert np.array_equal(sp.todense(2, 5), dense[2:5])
    assert np.array_equal(np.diff(sp.offsets), np.count_nonzero(dense, axis=(1, 2)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": -4},
        {"size": 2.5},
        {"window_mm": (1.0, 0.0, 0.0, 1.0)},
        {"window_mm": (0.0, 1.0, 0.0)},
        {"window_mm": (0.0, np.nan, 0.0, 1.0)},
        {"hit_radius_px": -1},
        {"hit_radius_px": 1.5},
    ],
)
def test_invalid_image_spec_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        ImageSpec(**kwargs)
