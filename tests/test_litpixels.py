"""Downsampled images held as their lit pixels (``model.litpixels``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers import write_event_file

from spectrocnn.dataset import open_events
from spectrocnn.model.data import downsample
from spectrocnn.model.litpixels import LitPixels, load_lit_pixels

N, SIZE, INPUT = 300, 32, 16


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(path, images, labels) of a 300-event file of 32x32 images."""
    path = tmp_path_factory.mktemp("lit") / "events.h5"
    images, labels = write_event_file(path, n=N, size=SIZE, seed=4)
    return path, images, labels


def _sparse(rng, n, s, lit=0.03):
    values = rng.integers(1, 256, (n, s, s), dtype=np.uint8)
    return np.where(rng.random((n, s, s)) < lit, values, 0).astype(np.uint8)


@pytest.mark.parametrize("s", [5, 16, 300])  # 300 x 300 needs 32-bit positions
def test_lit_pixels_give_the_dense_images_back(s):
    rng = np.random.default_rng(1)
    dense = _sparse(rng, 9, s)
    dense[4] = 0  # an empty image
    lit = LitPixels.from_dense(dense)
    assert lit.shape == dense.shape and len(lit) == 9 and lit.dtype == np.uint8
    assert lit.position.dtype == (np.uint16 if s * s <= 2**16 else np.uint32)
    assert lit.nbytes == 10 * 8 + int((dense > 0).sum()) * (lit.position.itemsize + 1)
    for key in ([3, 0, 3, 8, 4], np.array([], int), slice(2, 7), slice(None, None, -2), [-1]):
        np.testing.assert_array_equal(lit[key], dense[key])
    np.testing.assert_array_equal(lit[6], dense[6])
    with pytest.raises(IndexError):
        lit[[9]]


def test_lit_pixels_concatenate():
    rng = np.random.default_rng(2)
    a, b = _sparse(rng, 4, 7), _sparse(rng, 3, 7)
    both = LitPixels.concatenate([LitPixels.from_dense(a), LitPixels.from_dense(b)], 7)
    np.testing.assert_array_equal(both[np.arange(7)], np.concatenate([a, b]))
    assert len(LitPixels.concatenate([], 7)) == 0


def test_reading_lit_pixels_keeps_to_the_budget(small):
    path, images, labels = small
    expected = downsample(images, INPUT, "max")
    need = LitPixels.from_dense(expected).nbytes / 2**20  # MB, computed apart
    with open_events(path) as ev:
        got = load_lit_pixels(ev, INPUT, "max", need * 1.01)
        assert got is not None
        np.testing.assert_array_equal(got.images[np.arange(N)], expected)
        np.testing.assert_array_equal(got.labels, labels)
        assert got.images.nbytes / 2**20 == pytest.approx(need)
        assert load_lit_pixels(ev, INPUT, "max", need * 0.99) is None


def _train(path, out, **kwargs):
    from spectrocnn.model.train import TrainConfig, train

    settings = {"epochs": 2, "batch_size": 16, "input_size": INPUT, "seed": 3,
                "arch": "lecture", "val_fraction": 0.2, "patience": 0} | kwargs  # fmt: skip
    return train(TrainConfig(input=str(path), **settings), out)


def test_a_run_on_lit_pixels_is_the_run_in_memory(small, tmp_path):
    """A budget that the dense images exceed and their lit pixels do not: the same
    events, order and model input as in memory, so the same weights and history."""
    from spectrocnn.model import rundir
    from spectrocnn.model.modelio import load_model

    path, images, _ = small
    dense_mb = N * INPUT * INPUT / 2**20
    lit_mb = LitPixels.from_dense(downsample(images, INPUT, "max")).nbytes / 2**20
    budget = (dense_mb + lit_mb) / 2
    lines: list[str] = []
    from spectrocnn.model.train import TrainConfig, train

    config = TrainConfig(input=str(path), epochs=2, batch_size=16, input_size=INPUT, seed=3,
                         arch="lecture", patience=0, cache_mb=budget)  # fmt: skip
    train(config, tmp_path / "lit", report=lines.append)
    _train(path, tmp_path / "mem", cache_mb=1)
    assert any(line.startswith("Lit pixels:") for line in lines)
    saved = json.loads((tmp_path / "lit" / "config.json").read_text())
    assert saved["streaming"] is None
    assert saved["lit_pixels_mb"] == pytest.approx(lit_mb, abs=1e-3)
    assert json.loads((tmp_path / "mem" / "config.json").read_text())["lit_pixels_mb"] is None
    weights = [load_model(tmp_path / r / "last_model.keras").get_weights() for r in ("lit", "mem")]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    history = [rundir.read_history(tmp_path / r / "history.csv") for r in ("lit", "mem")]
    for h in history:
        h.pop("epoch_time_s")
    assert history[0] == history[1]


def test_lit_pixels_on_disk_are_mapped_files(small, tmp_path):
    path, images, _ = small
    expected = downsample(images, INPUT, "max")
    need = LitPixels.from_dense(expected).nbytes / 2**20
    with open_events(path) as ev:
        got = load_lit_pixels(ev, INPUT, "max", 100.0, directory=tmp_path)
        assert got is not None
        assert isinstance(got.images.position, np.memmap) and isinstance(
            got.images.value, np.memmap
        )
        np.testing.assert_array_equal(got.images[np.arange(N)], expected)
        lit = (expected > 0).sum()
        assert (tmp_path / "position.bin").stat().st_size == 2 * lit  # uint16 positions
        assert (tmp_path / "value.bin").stat().st_size == lit
        other = tmp_path / "small"
        other.mkdir()
        assert load_lit_pixels(ev, INPUT, "max", need / 4, directory=other) is None


def test_a_run_on_lit_pixels_on_disk_is_the_run_in_memory(small, tmp_path):
    """A budget below the lit pixels, with --lit-cache: written to a fresh directory
    there, read every epoch, removed at the end; the same weights as in memory."""
    from spectrocnn.model.modelio import load_model
    from spectrocnn.model.train import TrainConfig, train

    path, _, _ = small
    cache = tmp_path / "scratch"
    lines: list[str] = []
    config = TrainConfig(input=str(path), epochs=2, batch_size=16, input_size=INPUT, seed=3,
                         arch="lecture", patience=0, cache_mb=0.001,
                         lit_cache=str(cache))  # fmt: skip
    train(config, tmp_path / "disk", report=lines.append)
    _train(path, tmp_path / "mem", cache_mb=1)
    assert any(line.startswith("Lit pixels:") and "--lit-cache" in line for line in lines)
    assert cache.is_dir() and not any(cache.iterdir())  # removed at the end of the run
    saved = json.loads((tmp_path / "disk" / "config.json").read_text())
    assert saved["lit_pixels_on_disk"] and saved["streaming"] is None
    assert saved["lit_cache"] == str(cache)
    weights = [load_model(tmp_path / r / "last_model.keras").get_weights() for r in ("disk", "mem")]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    from spectrocnn.errors import ConfigError

    with pytest.raises(ConfigError, match="lit_cache"):
        TrainConfig(generate={"image": {"size": 16}}, lit_cache=str(cache))
