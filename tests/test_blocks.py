"""Reading every image of an event file in blocks (EventFile.image_blocks, dataset/blocks.py).

The right images are the ones written; the block layout is the documented one (consecutive
events from 0, DIRECT_BLOCK or SLICE_BLOCK events, or the ``block`` asked for). Sharded
files: tests/test_shards.py.
"""

from __future__ import annotations

import threading
import zlib

import h5py
import numpy as np
import pytest
from _helpers import sparse_images

from spectrocnn.dataset import EventFileWriter, ImageSpec, open_events
from spectrocnn.dataset.blocks import DIRECT_BLOCK, SLICE_BLOCK, direct_sources
from spectrocnn.errors import EventFileError
from spectrocnn.simulate.events import (
    HIT_COLUMNS,
    PARTICLE_COLUMNS,
    EventBatch,
    HitTable,
    ParticleTable,
)

N, SIZE = 150, 16


def write_images(path, images: np.ndarray, compression: str) -> None:
    """An event file of ``images`` (no truth rows) with the given image compression."""
    n = len(images)
    parts = ParticleTable(**{k: np.zeros(0, dt) for k, (dt, _) in PARTICLE_COLUMNS.items()})
    hits = HitTable(**{k: np.zeros(0, dt) for k, (dt, _) in HIT_COLUMNS.items()})
    spec = ImageSpec(size=images.shape[1], window_mm=(-1.0, 1.0, -1.0, 1.0))
    with EventFileWriter(path, n, spec, seed=0, compression=compression) as w:
        if n:
            w.append(EventBatch(np.zeros(n, np.uint8), parts, hits), images)


@pytest.fixture(scope="module", params=["gzip", "none", "lzf"])
def stored(request, tmp_path_factory):
    """(path, compression, images) of a file of N random images."""
    images = sparse_images(np.random.default_rng(3), N, SIZE, SIZE, 12)
    path = tmp_path_factory.mktemp("blocks") / f"{request.param}.h5"
    write_images(path, images, request.param)
    return path, request.param, images


@pytest.mark.parametrize("block", [None, 7, 1000])
@pytest.mark.parametrize("direct", [True, False])
def test_blocks_hold_every_image_once_in_order(stored, direct, block):
    path, compression, images = stored
    decoded = direct and compression != "lzf"  # the schema's layouts: gzip or none
    step = block or (DIRECT_BLOCK if decoded else SLICE_BLOCK)
    with open_events(path) as ev:
        blocks = list(ev.image_blocks(block=block, workers=3, direct=direct))
    assert [a for a, _ in blocks] == list(range(0, N, step))
    assert [len(b) for _, b in blocks] == [min(step, N - a) for a in range(0, N, step)]
    for _, b in blocks:
        assert b.dtype == np.uint8 and b.shape[1:] == (SIZE, SIZE)
    assert np.array_equal(np.concatenate([b for _, b in blocks]), images)


@pytest.mark.parametrize("direct", [True, False])
def test_transform_runs_where_documented(stored, direct):
    path, compression, images = stored
    threads: set[str] = set()

    def lit(x: np.ndarray) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return np.count_nonzero(x, axis=(1, 2))

    with open_events(path) as ev:
        out = np.concatenate(
            [b for _, b in ev.image_blocks(transform=lit, workers=2, direct=direct)]
        )
    assert np.array_equal(out, np.count_nonzero(images, axis=(1, 2)))
    if direct and compression != "lzf":  # in the decoding threads
        assert all(name.startswith("spectrocnn-decode") for name in threads), threads
    else:  # in the consumer's
        assert threads == {threading.current_thread().name}


def test_direct_sources_name_the_decoded_file(stored):
    path, compression, _ = stored
    with open_events(path) as ev:
        sources = direct_sources(ev)
    if compression == "lzf":
        assert sources is None
    else:
        assert sources == [(str(path), 0, N)]


@pytest.mark.parametrize("direct", [True, False])
def test_leaving_early_stops_the_threads(stored, direct):
    path, _, images = stored
    before = threading.active_count()
    with open_events(path) as ev:
        blocks = ev.image_blocks(block=5, workers=2, direct=direct)
        a, first = next(blocks)
        blocks.close()
    assert a == 0 and np.array_equal(first, images[:5])
    assert threading.active_count() == before


def test_an_empty_file_has_no_blocks_and_bad_arguments_are_refused(tmp_path):
    path = tmp_path / "empty.h5"
    write_images(path, np.zeros((0, SIZE, SIZE), np.uint8), "gzip")
    with open_events(path) as ev:
        assert list(ev.image_blocks(workers=np.int64(2))) == []
        for kwargs in ({"workers": 0}, {"workers": True}, {"block": 0}, {"block": 2.5}):
            with pytest.raises(ValueError, match=next(iter(kwargs))):
                list(ev.image_blocks(**kwargs))


@pytest.mark.parametrize(
    ("compression", "chunk", "message"),
    [
        ("gzip", b"\x78\x01garbage", "image 5 is corrupt"),
        ("gzip", zlib.compress(bytes(100)), f"image 5 has 100 bytes, expected {SIZE * SIZE}"),
    ],
)
def test_a_corrupt_chunk_is_an_event_file_error(tmp_path, compression, chunk, message):
    path = tmp_path / "ev.h5"
    write_images(path, np.ones((20, SIZE, SIZE), np.uint8), compression)
    with h5py.File(path, "r+") as f:
        f["images"].id.write_direct_chunk((5, 0, 0), chunk)
    with open_events(path) as ev, pytest.raises(EventFileError, match=message):
        list(ev.image_blocks(workers=2))


# -- groups of events chosen by the caller (EventFile.image_groups) ------------------------


@pytest.mark.parametrize("direct", [True, False])
def test_groups_hold_the_images_of_their_events_in_their_order(stored, direct):
    path, _, images = stored
    rng = np.random.default_rng(5)
    groups = [
        np.arange(10, 74),  # consecutive
        rng.permutation(N)[:40],  # scattered, any order
        np.array([3, 3, 149, 0]),  # repeats, both ends
        np.array([], np.int64),
        [7],  # a list
    ]
    with open_events(path) as ev:
        out = list(ev.image_groups(iter(groups), workers=2, direct=direct))
    assert len(out) == len(groups)
    for g, got in zip(groups, out, strict=True):
        assert got.dtype == np.uint8 and got.shape == (len(g), SIZE, SIZE)
        assert np.array_equal(got, images[np.asarray(g, np.int64)])


@pytest.mark.parametrize("direct", [True, False])
def test_groups_take_a_transform_and_refuse_bad_groups(stored, direct):
    path, _, images = stored
    with open_events(path) as ev:
        lit = list(ev.image_groups([np.array([4, 2])], transform=lambda x: x.sum(axis=(1, 2)),
                                   direct=direct))  # fmt: skip
        assert np.array_equal(lit[0], images[[4, 2]].sum(axis=(1, 2)))
        for bad, error in (([N], IndexError), ([-1], IndexError), ([[1, 2]], ValueError),
                           ([0.5], ValueError)):  # fmt: skip
            with pytest.raises(error):
                list(ev.image_groups([np.array(bad)], direct=direct))
        with pytest.raises(ValueError, match="workers"):
            list(ev.image_groups([[1]], workers=0))


def test_a_corrupt_chunk_in_a_group_is_an_event_file_error(tmp_path):
    path = tmp_path / "ev.h5"
    write_images(path, np.ones((20, SIZE, SIZE), np.uint8), "gzip")
    with h5py.File(path, "r+") as f:
        f["images"].id.write_direct_chunk((5, 0, 0), b"\x78\x01garbage")
    with open_events(path) as ev:
        assert len(next(ev.image_groups([[4, 6]]))) == 2
        with pytest.raises(EventFileError, match="image 5 is corrupt"):
            list(ev.image_groups([[1, 2], [9, 5]], workers=2))


def test_the_inflater_gives_zlibs_bytes(stored):
    """ISA-L (the inflater of the decoding threads) against zlib on the stored chunks."""
    isal_zlib = pytest.importorskip("isal.isal_zlib")
    path, compression, images = stored
    if compression != "gzip":
        pytest.skip("no deflate streams")
    with h5py.File(path, "r") as f:
        chunks = [f["images"].id.read_direct_chunk((i, 0, 0))[1] for i in range(N)]
    for i, c in enumerate(chunks):
        raw = isal_zlib.decompress(c)
        assert raw == zlib.decompress(c)
        assert np.array_equal(np.frombuffer(raw, np.uint8).reshape(SIZE, SIZE), images[i])


@pytest.mark.parametrize("direct", [True, False])
def test_a_transform_that_returns_a_view_keeps_its_images(stored, direct):
    """The decoding threads reuse their buffer of full-size images: what a transform
    returns must not change when the next block is decoded."""
    path, _, images = stored
    with open_events(path) as ev:
        blocks = list(ev.image_blocks(transform=lambda x: x[:, ::2], block=16, workers=2,
                                      direct=direct))  # fmt: skip
        groups = list(ev.image_groups([[1, 2], [3, 4, 5]], transform=lambda x: x, workers=1))
    assert np.array_equal(np.concatenate([b for _, b in blocks]), images[:, ::2])
    assert np.array_equal(groups[0], images[[1, 2]])
