"""The event file (schema spectrocnn.events/2): encoder, writer, reader and its errors."""

from __future__ import annotations

import errno
import json
import os
import zlib
from fractions import Fraction

import h5py
import numpy as np
import pytest
from _helpers import assert_truth_as_stored, stored_like

from spectrocnn.dataset import (
    SCHEMA,
    EventFileNotFoundError,
    EventFileWriter,
    ImageSpec,
    deflate,
    eventfile,
    open_events,
    rasterize,
    write_events,
)
from spectrocnn.dataset.deflate import LITLEN_TABLES, encode_zlib
from spectrocnn.dataset.eventfile import slice_batch
from spectrocnn.dataset.raster import SparseImages
from spectrocnn.dataset.schema import STORED_HIT_COLUMNS, STORED_PARTICLE_COLUMNS
from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.simulate.events import (
    HIT_COLUMNS,
    EventBatch,
    HitTable,
    ParticleTable,
)

SPEC = ImageSpec(size=32, window_mm=(-210.0, 210.0, -210.0, 210.0), hit_radius_px=0)


def hand_batch(n_events: int = 5, seed: int = 0) -> EventBatch:
    """A small batch built by hand: 2 particles per event, 3 hits each, noise in event 1."""
    rng = np.random.default_rng(seed)
    n_p = 2 * n_events
    p_event = np.repeat(np.arange(n_events), 2)
    labels = (np.arange(n_events) % 2).astype(np.uint8)
    is_high = np.zeros(n_p, np.uint8)
    is_high[1::2] = labels
    particles = ParticleTable(
        event=p_event,
        charge=np.where(rng.random(n_p) < 0.5, -1, 1),
        pdg=np.full(n_p, 211),
        px=rng.normal(size=n_p),
        py=rng.normal(size=n_p),
        pz=rng.normal(size=n_p),
        vx=np.zeros(n_p),
        vy=np.zeros(n_p),
        vz=np.zeros(n_p),
        is_high=is_high,
    )
    cols: dict[str, list] = {k: [] for k in HIT_COLUMNS}
    for e in range(n_events):
        for p in (2 * e, 2 * e + 1):
            for layer in range(3):
                r = 50.0 + 10 * layer
                phi = rng.uniform(0, 2 * np.pi)
                x, y, z = r * np.cos(phi), r * np.sin(phi), rng.normal()
                for k, v in zip(HIT_COLUMNS, (e, p, layer, x + 0.01, y, z, x, y, z), strict=True):
                    cols[k].append(v)
        if e == 1:  # a noise hit and a hit outside the window
            for k, v in zip(
                HIT_COLUMNS, (e, -1, 0, 300.0, 0.0, 0.0, np.nan, np.nan, np.nan), strict=True
            ):
                cols[k].append(v)
    hits = HitTable(**{k: np.asarray(v) for k, v in cols.items()})
    return EventBatch(labels, particles, hits)


# -- the zlib encoder --------------------------------------------------------------------


def _sparse(dense: np.ndarray) -> SparseImages:
    n, h, w = dense.shape
    idx = np.flatnonzero(dense)
    offsets = np.searchsorted(idx, np.arange(n + 1) * h * w)
    return SparseImages((n, h, w), idx, dense.ravel()[idx].astype(np.uint8), offsets)


def _check_encoding(dense: np.ndarray) -> list[bytes]:
    streams = encode_zlib(_sparse(dense))
    assert len(streams) == len(dense)
    for img, s in zip(dense, streams, strict=True):
        assert zlib.decompress(s) == img.tobytes()  # checks the Adler-32 too
    return streams


@pytest.mark.parametrize("density", [0.0, 0.001, 0.02, 0.3, 1.0])
def test_encoder_round_trips_random_images(density):
    rng = np.random.default_rng(int(density * 1000))
    for _ in range(10):
        n, h, w = rng.integers(1, 5), rng.integers(1, 70), rng.integers(1, 70)
        dense = ((rng.random((n, h, w)) < density) * rng.integers(1, 256, (n, h, w))).astype(
            np.uint8
        )
        _check_encoding(dense)


@pytest.mark.parametrize("gap", [0, 1, 2, 3, 4, 257, 258, 259, 260, 261, 516, 517, 518, 5000])
def test_encoder_zero_runs_of_every_kind(gap):
    # Runs of zeros around the 258-byte copy length, at the start, middle and end.
    for pattern in ([gap], [0, gap + 1], [gap, gap + 1, gap + 2], []):
        dense = np.zeros((1, 1, gap + 3), np.uint8)
        dense[0, 0, pattern] = [255, 1, 2][: len(pattern)]
        _check_encoding(dense)


def test_encoder_mixes_sparse_and_dense_images():
    rng = np.random.default_rng(4)
    dense = np.zeros((9, 40, 40), np.uint8)
    for i in range(9):
        lit = [1, 200, 5, 800, 0, 1600, 30, 33, 31][i]  # above and below 1/50 of 1600 pixels
        dense[i].flat[rng.choice(1600, lit, replace=False)] = rng.integers(1, 256, lit)
    _check_encoding(dense)


def test_encoder_on_full_and_empty_images_and_large_batches():
    _check_encoding(np.full((2, 8, 8), 255, np.uint8))
    _check_encoding(np.zeros((3, 512, 512), np.uint8))
    rng = np.random.default_rng(1)
    dense = np.zeros((40, 128, 128), np.uint8)  # several groups of images
    for i in range(40):
        dense[i, rng.integers(0, 128, 3000), rng.integers(0, 128, 3000)] += 1
    _check_encoding(dense)
    assert encode_zlib(_sparse(np.zeros((0, 4, 4), np.uint8))) == []


def test_code_tables_are_complete_prefix_codes():
    for lengths in LITLEN_TABLES:
        assert len(lengths) == 286 and min(lengths) >= 1 and max(lengths) <= 15
        assert sum(Fraction(1, 2**n) for n in lengths) == 1  # Kraft: complete
        assert lengths[285] == 1 and lengths.count(1) == 1  # the 258-copy: the 1-bit code "0"


def _tables_cleared():
    deflate._tables.cache_clear()
    deflate._stacked.cache_clear()


def test_disk_images_take_the_disk_table(monkeypatch):
    """Images of hits drawn as disks (the lecture's) are shorter with table 1, images of
    single-pixel hits keep table 0's streams; a batch mixing both round-trips."""
    rng = np.random.default_rng(8)
    x, y = rng.uniform(-200, 200, (2, 8 * 160))
    event = np.repeat(np.arange(8), 160)
    window = (-400.0, 400.0, -400.0, 400.0)
    disks = rasterize(x, y, event, 8, ImageSpec(size=512, window_mm=window, hit_radius_px=2))
    dots = rasterize(x, y, event, 8, ImageSpec(size=512, window_mm=window, hit_radius_px=0))
    dense = np.concatenate([disks[:4], dots[:4], disks[4:], dots[4:]])
    both = [len(s) for s in _check_encoding(dense)]
    monkeypatch.setattr(deflate, "LITLEN_TABLES", (LITLEN_TABLES[0], LITLEN_TABLES[0]))
    _tables_cleared()
    try:
        table0 = [len(s) for s in _check_encoding(dense)]
    finally:
        monkeypatch.undo()
        _tables_cleared()
    disk = np.r_[0:4, 8:12]
    assert np.all(np.array(both)[disk] < 0.95 * np.array(table0)[disk])
    assert np.array_equal(np.delete(both, disk), np.delete(table0, disk))


def test_encoded_chunks_are_read_by_hdf5_gzip_filter(tmp_path):
    rng = np.random.default_rng(2)
    dense = np.zeros((6, 64, 64), np.uint8)
    dense[:, rng.integers(0, 64, 50), rng.integers(0, 64, 50)] = rng.integers(1, 256, 50)
    path = tmp_path / "direct.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "images", shape=dense.shape, chunks=(1, 64, 64), dtype=np.uint8,
            compression="gzip", compression_opts=1,
        )  # fmt: skip
        for i, s in enumerate(encode_zlib(_sparse(dense))):
            ds.id.write_direct_chunk((i, 0, 0), s)
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["images"][:], dense)


# -- writer and reader ---------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "lzf", "none"])
def test_schema_round_trip(tmp_path, compression):
    batch = hand_batch(7)
    path = tmp_path / "ev.h5"
    config = {"image": {"size": 32}, "note": "hand made"}
    write_events(path, batch, SPEC, seed=2**64 - 1, config=config, compression=compression)
    with open_events(path) as ev:
        assert ev.n_events == 7 and len(ev) == 7
        assert ev.image_shape == (32, 32)
        assert ev.window_mm == (-210.0, 210.0, -210.0, 210.0)
        assert ev.seed == 2**64 - 1
        assert ev.config == config
        assert ev.labels.dtype == np.uint8
        assert np.array_equal(ev.labels, batch.labels)
        stored = stored_like(batch).hits  # the images are made from the stored positions
        expected = rasterize(stored.x, stored.y, stored.event, 7, SPEC)
        assert np.array_equal(ev.read_images(), expected)
        assert np.array_equal(ev.read_images(2, 5), expected[2:5])
        assert np.array_equal(ev.images[3], expected[3])  # lazy h5py dataset
        assert_truth_as_stored(ev.truth(), batch)
        assert_truth_as_stored(ev.truth(1, 4), slice_batch(batch, 1, 4))
        assert_truth_as_stored(ev.truth(3, 3), slice_batch(batch, 3, 3))
        assert ev.image_spec == SPEC
        with pytest.raises(IndexError):
            ev.read_images(5, 9)
        with pytest.raises(IndexError):
            ev.truth(-1, 2)
    assert not ev.images.id.valid  # closed by the context manager


def test_file_layout_follows_design_3_3(tmp_path):
    path = tmp_path / "ev.h5"
    write_events(path, hand_batch(4), SPEC, seed=11, config={"a": 1})
    with h5py.File(path, "r") as f:  # plain h5py, no spectrocnn needed to read
        assert f.attrs["schema"] == SCHEMA == "spectrocnn.events/2"
        assert int(f.attrs["seed"]) == 11 and int(f.attrs["n_events"]) == 4
        assert json.loads(f.attrs["config"]) == {"a": 1}
        assert isinstance(f.attrs["version"], str)
        assert "T" in f.attrs["created"]  # ISO 8601
        img = f["images"]
        assert img.dtype == np.uint8 and img.shape == (4, 32, 32)
        assert img.chunks == (1, 32, 32)
        assert img.compression == "gzip" and img.compression_opts == 1
        assert list(img.attrs["window_mm"]) == [-210.0, 210.0, -210.0, 210.0]
        assert img.attrs["projection"] == "xy"
        assert f["labels"].dtype == np.uint8 and f["labels"].shape == (4,)
        for group, spec in (("particles", STORED_PARTICLE_COLUMNS), ("hits", STORED_HIT_COLUMNS)):
            assert set(f[group]) == {*spec, "offsets"}
            for col, (dtype, unit) in spec.items():
                ds = f[group][col]
                assert ds.dtype == dtype, (group, col)
                assert ds.attrs.get("units") == unit, (group, col)
                # standard filters only: any HDF5 reader reads them without plugins
                assert (ds.compression, ds.compression_opts, ds.shuffle) == ("gzip", 1, True)
                assert ds.chunks == (65536,)
            off = f[group]["offsets"][:]
            assert off.dtype == np.int64 and off.shape == (5,)
            assert off[0] == 0 and off[-1] == f[group]["event"].shape[0]
        assert f["particles/px"].attrs["units"] == "GeV/c"
        assert f["hits/x"].attrs["units"] == "mm"
        for col in ("x", "true_x", "true_px"):
            assert f["hits"][col].dtype == np.float32
        assert f["hits/true_px"].attrs["units"] == "GeV/c"
        assert "rounding_mm" not in f["hits/x"].attrs  # none given: float32's nearest
        # hits point at their particle rows; noise hits at -1
        part = f["hits/particle"][:]
        assert np.all(f["particles/event"][:][part[part >= 0]] == f["hits/event"][:][part >= 0])
        assert np.sum(part == -1) == 1


def test_zero_events(tmp_path):
    path = tmp_path / "empty.h5"
    batch = slice_batch(hand_batch(2), 0, 0)
    write_events(path, batch, SPEC)
    with open_events(path) as ev:
        assert ev.n_events == 0
        assert ev.read_images().shape == (0, 32, 32)
        assert ev.truth().n_events == 0 and len(ev.labels) == 0


def test_reader_without_offsets_datasets(tmp_path):
    path = tmp_path / "ev.h5"
    batch = hand_batch(6)
    write_events(path, batch, SPEC)
    with h5py.File(path, "a") as f:
        del f["hits/offsets"], f["particles/offsets"]
    with open_events(path) as ev:
        assert_truth_as_stored(ev.truth(2, 6), slice_batch(batch, 2, 6))


def test_truth_does_not_depend_on_chunks_or_flushes(tmp_path, monkeypatch):
    """The writer writes whole chunks of truth rows and keeps the rest for later: the same
    content with tiny chunks and flushes after every few appends."""
    batch = hand_batch(30)
    write_events(tmp_path / "a.h5", batch, SPEC)
    monkeypatch.setattr(eventfile, "TRUTH_CHUNK_ROWS", 7)
    monkeypatch.setattr(eventfile, "_FLUSH_ROWS", 20)
    with EventFileWriter(tmp_path / "b.h5", 30, SPEC, seed=0) as w:
        for a in range(0, 30, 4):
            sub = slice_batch(batch, a, min(30, a + 4))
            w.append(sub, rasterize(sub.hits.x, sub.hits.y, sub.hits.event, sub.n_events, SPEC))
    with h5py.File(tmp_path / "a.h5", "r") as fa, h5py.File(tmp_path / "b.h5", "r") as fb:
        assert fb["hits/x"].chunks == (7,)
        for g in ("particles", "hits"):
            for col in fa[g]:
                assert np.array_equal(fa[g][col][()], fb[g][col][()], equal_nan=True), col


def test_writer_checks_counts_and_shapes(tmp_path):
    batch = hand_batch(3)
    imgs = rasterize(batch.hits.x, batch.hits.y, batch.hits.event, 3, SPEC)
    w = EventFileWriter(tmp_path / "a.h5", 4, SPEC, seed=0)
    with pytest.raises(ValueError, match="must be uint8"):
        w.append(batch, imgs[:2])
    w.append(batch, imgs)
    with pytest.raises(ValueError, match="3 of 4 events"):
        w.close()
    with pytest.raises(EventFileError, match="schema"):
        open_events(tmp_path / "a.h5")  # never marked complete
    with pytest.raises(ConfigError, match="seed"):
        EventFileWriter(tmp_path / "b.h5", 1, SPEC, seed=-1)
    with pytest.raises(ConfigError, match="compression"):
        EventFileWriter(tmp_path / "c.h5", 1, SPEC, seed=0, compression="blosc")


# -- bad files -----------------------------------------------------------------------------


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(EventFileNotFoundError, match="does not exist") as info:
        open_events(tmp_path / "nope.h5")
    assert isinstance(info.value, ConfigError) and isinstance(info.value, EventFileError)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"time,x,y\n1,2,3\n" * 100, "not an HDF5 file")],
)
def test_not_hdf5(tmp_path, content, message):
    path = tmp_path / "bad.h5"
    path.write_bytes(content)
    with pytest.raises(EventFileError, match=message) as info:
        open_events(path)
    assert str(path) in str(info.value)


def _read_everything(path: os.PathLike) -> None:
    with open_events(path) as ev:
        ev.read_images()
        ev.truth()


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.02])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "ev.h5"
    write_events(path, hand_batch(20), ImageSpec(size=64))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(EventFileError) as info:
        _read_everything(path)
    assert str(path) in str(info.value)


def test_other_schema_and_foreign_hdf5(tmp_path):
    path = tmp_path / "ev.h5"
    write_events(path, hand_batch(2), SPEC)
    with h5py.File(path, "a") as f:
        f.attrs["schema"] = "spectrocnn.events/3"
    with pytest.raises(EventFileError, match=r"schema is 'spectrocnn.events/3', expected 'spec"):
        open_events(path)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(EventFileError, match="not a spectrocnn event file"):
        open_events(foreign)


@pytest.mark.parametrize("victim", ["images", "labels", "hits/x", "particles/is_high"])
def test_missing_dataset(tmp_path, victim):
    path = tmp_path / "ev.h5"
    write_events(path, hand_batch(2), SPEC)
    with h5py.File(path, "a") as f:
        del f[victim]
    with pytest.raises(EventFileError, match=f"missing /{victim}"):
        open_events(path)


def test_corrupt_image_chunk_is_an_event_file_error(tmp_path):
    path = tmp_path / "ev.h5"
    write_events(path, hand_batch(4), SPEC)
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info(2)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 2)
        fh.write(b"\xff" * (info.size - 2))
    with open_events(path) as ev:
        ev.read_images(0, 2)  # other chunks still read
        with pytest.raises(EventFileError, match="images 0:4"):
            ev.read_images()


def test_directory_is_not_an_event_file(tmp_path):
    with pytest.raises(EventFileError, match="directory"):
        open_events(tmp_path)
    assert os.path.isdir(tmp_path)


def test_unreadable_file_says_so(tmp_path, monkeypatch):
    """No read permission is reported as such (simulated: root reads files of mode 000)."""
    import spectrocnn._files

    path = tmp_path / "ev.h5"
    write_events(path, hand_batch(2), SPEC)

    def denied(name, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)

    monkeypatch.setattr(spectrocnn._files, "open", denied, raising=False)
    with pytest.raises(EventFileError, match=r"ev.h5: cannot read the event file: no read perm"):
        open_events(path)


def test_locked_file_names_the_lock_and_the_variable(tmp_path):
    """A file another process holds open for writing is locked, not corrupt."""
    import subprocess
    import sys

    path = tmp_path / "ev.h5"
    write_events(path, hand_batch(2), SPEC)
    code = "import h5py, sys; f = h5py.File(sys.argv[1], 'a'); print('open', flush=True); input()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout.readline().strip() == b"open"
        with pytest.raises(EventFileError) as info:
            open_events(path)
        assert "locked" in str(info.value) and "HDF5_USE_FILE_LOCKING" in str(info.value)
        assert "corrupt" not in str(info.value)
    finally:
        proc.communicate(b"\n", timeout=60)
    with open_events(path) as ev:  # released: readable again
        assert ev.n_events == 2
