"""Rasterization: the pixel convention of docs/design.md 3.3, window edges, the cap, hit disks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import brute_force_images, exact_pixel

from spectrocnn.dataset.raster import (
    ImageSpec,
    disk_offsets,
    pixel_floor,
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


# -- exactness at pixel and window edges (issue 14, item 5) ----------------------------------


def _random_window(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """x_min < x_max, y_min < y_max at random scales and offsets (widths 1e-3..1e4 mm)."""
    out = []
    for _ in range(2):
        width = 10.0 ** rng.uniform(-3, 4)
        lo = rng.uniform(-2, 1) * width * rng.choice([1.0, 10.0, 1000.0])
        out += [lo, lo + width]
    return tuple(out)


def _ulp_steps(v: float, k: int) -> list[float]:
    """``v`` and its k nearest floats on either side."""
    out, lo, hi = [v], v, v
    for _ in range(k):
        lo, hi = np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)
        out += [float(lo), float(hi)]
    return out


def _check_exact(x: np.ndarray, y: np.ndarray, spec: ImageSpec) -> int:
    row, col, inside = pixel_indices(x, y, spec)
    sp = rasterize_sparse(x, y, np.arange(len(x)), len(x), spec)
    n = spec.size
    for i, (xi, yi) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
        pix = exact_pixel(xi, yi, spec)
        got = (int(row[i]), int(col[i])) if inside[i] else None
        assert got == pix, (xi, yi, spec)
        lit = sp.index[sp.offsets[i] : sp.offsets[i + 1]] - i * n * n
        assert lit.tolist() == ([] if pix is None else [pix[0] * n + pix[1]]), (xi, yi, spec)
    return int(inside.sum())


@pytest.mark.parametrize("size", [1, 2, 37, 512, 513, 16384])
def test_window_edges_a_few_ulp_away_light_theexact_pixel(size):
    """nextafter at all four edges of random windows: the half-open window is honoured."""
    rng = np.random.default_rng(size)
    n_inside = 0
    for _ in range(40):
        spec = ImageSpec(size=size, window_mm=_random_window(rng), hit_radius_px=0)
        x0, x1, y0, y1 = spec.window_mm
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        xs = _ulp_steps(x0, 3) + _ulp_steps(x1, 3)
        ys = _ulp_steps(y0, 3) + _ulp_steps(y1, 3)
        x = np.array(xs + [xm] * len(ys))
        y = np.array([ym] * len(xs) + ys)
        n_inside += _check_exact(x, y, spec)
        # the documented corner cases, spelled out
        row, col, inside = pixel_indices(
            np.array([x0, np.nextafter(x1, -np.inf), x1, xm, xm, xm]),
            np.array([ym, ym, ym, y1, np.nextafter(y0, np.inf), y0]),
            spec,
        )
        assert inside.tolist() == [True, True, False, True, True, False]
        assert col[0] == 0 and col[1] == size - 1
        assert row[3] == 0 and row[4] == size - 1
    assert n_inside > 0


@pytest.mark.parametrize("size", [37, 512, 513])
def test_interior_pixel_edges_a_few_ulp_away(size):
    rng = np.random.default_rng(100 + size)
    for _ in range(10):
        spec = ImageSpec(size=size, window_mm=_random_window(rng), hit_radius_px=0)
        x0, x1, y0, y1 = spec.window_mm
        k = rng.integers(0, size + 1, 8)
        ex = [x0 + float(i) * (x1 - x0) / size for i in k]  # pixel edges, rounded
        ey = [y1 - float(i) * (y1 - y0) / size for i in k]
        xs = [v for e in ex for v in _ulp_steps(e, 2)]
        ys = [v for e in ey for v in _ulp_steps(e, 2)]
        _check_exact(np.array(xs), np.array(ys), spec)


def test_thousands_of_random_hits_match_exact_arithmetic():
    rng = np.random.default_rng(11)
    for size in (37, 513):
        spec = ImageSpec(size=size, window_mm=_random_window(rng), hit_radius_px=0)
        x0, x1, y0, y1 = spec.window_mm
        n = 3000
        x = rng.uniform(x0 - 0.1 * (x1 - x0), x1 + 0.1 * (x1 - x0), n)
        y = rng.uniform(y0 - 0.1 * (y1 - y0), y1 + 0.1 * (y1 - y0), n)
        row, col, inside = pixel_indices(x, y, spec)
        exact = [exact_pixel(a, b, spec) for a, b in zip(x.tolist(), y.tolist(), strict=True)]
        got = [
            (r, c) if i else None
            for r, c, i in zip(row.tolist(), col.tolist(), inside, strict=True)
        ]
        assert got == exact
        assert 0 < inside.sum() < n


def test_ulp_below_x_max_in_the_issue_window():
    """The issue's example: 512 px over [-400, 400] mm, x = nextafter(400, 0)."""
    spec = ImageSpec(size=512, window_mm=(-400.0, 400.0, -400.0, 400.0), hit_radius_px=0)
    x = np.nextafter(400.0, 0.0)
    y = np.nextafter(-400.0, 0.0)
    img = rasterize([x, 0.0], [0.0, y], [0, 1], 2, spec)
    assert img[0, 256, 511] == 1 and img[0].sum() == 1
    assert img[1, 511, 256] == 1 and img[1].sum() == 1


def test_pixel_floor_tiny_negative_offsets_and_overflow():
    # (x - x_min) a subnormal negative number: the float quotient underflows to -0.0
    assert pixel_floor(np.array([-5e-324]), 0.0, 0.0, 1e300, 4)[0] == -1
    assert pixel_floor(np.array([5e-324]), 0.0, 0.0, 1e300, 4)[0] == 0
    # a window so wide that its width overflows a float
    v = pixel_floor(np.array([0.0, -1e308, np.nextafter(1e308, 0)]), -1e308, -1e308, 1e308, 512)
    assert v.tolist() == [256.0, 0.0, 511.0]
    v = pixel_floor(np.array([np.nan, np.inf, -np.inf]), 0.0, 0.0, 1.0, 4)
    assert np.isnan(v[0]) and v[1] == np.inf and v[2] == -np.inf


@pytest.mark.parametrize("radius", [1, 2, 5])
def test_disks_at_the_window_edges_follow_the_documented_rule(radius):
    """A disk is centred on the hit's (exact) pixel and clipped by the image; a hit a few
    ulp outside the half-open window draws nothing."""
    rng = np.random.default_rng(radius)
    dr, dc = disk_offsets(radius)
    for size in (37, 513):
        spec = ImageSpec(size=size, window_mm=_random_window(rng), hit_radius_px=radius)
        x0, x1, y0, y1 = spec.window_mm
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        x = np.array([x0, np.nextafter(x1, -np.inf), xm, xm, x1, xm])
        y = np.array([ym, ym, y1, np.nextafter(y0, np.inf), ym, y0])
        img = rasterize(x, y, np.arange(6), 6, spec)
        for i in range(6):
            pix = exact_pixel(float(x[i]), float(y[i]), spec)
            expected = set()
            if pix is not None:
                for a, b in zip(dr.tolist(), dc.tolist(), strict=True):
                    r, c = pix[0] + a, pix[1] + b
                    if 0 <= r < size and 0 <= c < size:
                        expected.add((r, c))
            assert {tuple(p) for p in np.argwhere(img[i]).tolist()} == expected
            assert (pix is None) == (i >= 4)


@pytest.mark.parametrize(("stamp", "band"), [(None, None), (64, 50), (7, 37)])
@pytest.mark.parametrize("radius", [0, 3, 9])
def test_bounded_batches_give_the_same_images(monkeypatch, stamp, band, radius):
    """Small stamp and band budgets (many batches, heavy events counted in bands) give
    the images of the pixel-by-pixel definition, light and heavy events mixed."""
    import spectrocnn.dataset.raster as raster

    if stamp is not None:
        monkeypatch.setattr(raster, "STAMP_BUDGET", stamp)
        monkeypatch.setattr(raster, "_BAND_PIXELS", band)
    rng = np.random.default_rng(radius)
    spec = ImageSpec(size=37, window_mm=(-10.0, 27.0, -3.0, 5.0), hit_radius_px=radius)
    n_events = 9
    per_event = [0, 1, 3, 40, 2, 120, 0, 5, 400]  # empty, light and heavy events
    ev = np.repeat(np.arange(n_events), per_event)
    x = rng.uniform(-12, 29, len(ev))
    y = rng.uniform(-4, 6, len(ev))
    x[::17] = 27.0  # on the excluded edge
    y[::13] = np.nextafter(-3.0, 0.0)  # one ulp inside the bottom edge
    perm = rng.permutation(len(ev))  # hits need not be sorted by event
    sp = rasterize_sparse(x[perm], y[perm], ev[perm], n_events, spec)
    assert np.all(np.diff(sp.index) > 0)
    assert np.array_equal(sp.todense(), brute_force_images(x, y, ev, n_events, spec))


def test_hit_radius_mm_sets_the_radius_in_pixels_for_every_size():
    import dataclasses

    lecture = ImageSpec(size=512, hit_radius_mm=3.125)  # 800 mm window: 1.5625 mm pixels
    assert lecture.hit_radius_px == 2
    # floor(3.125 mm / (800 mm / size)): the same size on the detector at every image size
    for size, r in [(64, 0), (128, 0), (256, 1), (1024, 4), (16384, 64)]:
        assert dataclasses.replace(lecture, size=size).hit_radius_px == r
    # a window 400 x 100 mm on 100 px: pixels 4 x 1 mm, the larger (4 mm) counts
    wide = ImageSpec(size=100, window_mm=(0.0, 400.0, 0.0, 100.0), hit_radius_mm=9.0)
    assert wide.pitch_mm == 4.0 and wide.hit_radius_px == 2
    # 0.3 mm on 0.1 mm pixels is 3 pixels, not 2 (0.3 / 0.1 = 2.9999999999999996)
    assert (
        ImageSpec(size=100, window_mm=(0.0, 10.0, 0.0, 10.0), hit_radius_mm=0.3).hit_radius_px == 3
    )
    # given in pixels, the radius keeps its meaning
    assert dataclasses.replace(ImageSpec(size=512, hit_radius_px=2), size=64).hit_radius_px == 2
    for bad, words in [(-1.0, ">= 0"), (math.nan, "finite"), ("3", "finite"), (110.0, "70 pixels")]:
        with pytest.raises(ConfigError, match=words):
            ImageSpec(size=512, hit_radius_mm=bad)
