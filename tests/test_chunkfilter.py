"""Truth chunks compressed by the writer (dataset/chunkfilter.py) against HDF5's own filters.

The expected bytes come from an independent computation: the shuffle as plain byte slicing
of the padded chunk (``raw[j::k]``, hdf5/src/H5Zshuffle.c) and HDF5's own shuffle + gzip
pipeline writing the same values (h5py assignment), whose chunks ``zlib`` inflates.
"""

from __future__ import annotations

import zlib

import h5py
import numpy as np
import pytest

from spectrocnn.dataset import chunkfilter
from spectrocnn.dataset.chunkfilter import encode_chunk, write_rows

FILTERS = {"shuffle": True, "compression": "gzip", "compression_opts": 1}
DTYPES = ["i1", "u1", "<i2", "<i4", "<i8", "<f4", "<f8", ">f4", ">i8"]


def _values(dtype: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        v = rng.normal(0.0, 300.0, n)
        v[::13] = np.nan
        v[5::17] = np.inf
        v[7::19] = -0.0
        return v.astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, n, endpoint=True).astype(dt)


def _shuffled(values: np.ndarray, rows: int) -> bytes:
    """HDF5's shuffle of one chunk padded with zeros, by byte slicing."""
    raw = values.tobytes() + b"\0" * ((rows - len(values)) * values.dtype.itemsize)
    k = values.dtype.itemsize
    return b"".join(raw[j::k] for j in range(k))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 6, 7, 500])
def test_chunk_inflates_to_the_shuffled_bytes(dtype, n):
    v = _values(dtype, n)
    for rows in (n, n + 3, 1000):
        assert zlib.decompress(encode_chunk(v, rows)) == _shuffled(v, rows)


@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_chunks_read_back_as_hdf5_filters_write_them(tmp_path, dtype):
    """Rows written as direct chunks read back exactly with plain h5py, and each chunk
    inflates to the bytes of HDF5's own filter pipeline for the same rows (the last,
    partial chunk included: HDF5 pads it with zeros too)."""
    v = _values(dtype, 1000 + 3)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        ours = f.create_dataset("ours", (0,), dtype, chunks=(100,), maxshape=(None,), **FILTERS)
        write_rows(ours, 0, v[:700])
        write_rows(ours, 700, v[700:])
        theirs = f.create_dataset("theirs", data=v, chunks=(100,), maxshape=(None,), **FILTERS)
        for start in range(0, len(v), 100):
            mask_a, a = ours.id.read_direct_chunk((start,))
            mask_b, b = theirs.id.read_direct_chunk((start,))
            assert mask_a == mask_b == 0
            assert zlib.decompress(a) == zlib.decompress(b)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        got = f["ours"][()]
        assert got.dtype == np.dtype(dtype) and got.shape == v.shape
        assert got.tobytes() == v.tobytes()  # NaN, -0.0 and the byte order kept


def test_zlib_makes_chunks_that_read_the_same(monkeypatch):
    """Without ISA-L (the ``isal`` package), zlib's level 1 makes the chunks."""
    v = _values("<f4", 300)
    monkeypatch.setattr(chunkfilter, "_deflate_module", zlib)
    monkeypatch.setattr(chunkfilter, "_LEVEL", 1)
    assert zlib.decompress(encode_chunk(v, 512)) == _shuffled(v, 512)


def test_write_rows_refuses_what_it_cannot_write(tmp_path):
    v = _values("<f4", 10)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        ok = f.create_dataset("ok", (0,), "<f4", chunks=(4,), maxshape=(None,), **FILTERS)
        with pytest.raises(ValueError, match="row 3 is not at a chunk boundary"):
            write_rows(ok, 3, v)
        lzf = f.create_dataset("lzf", (0,), "<f4", chunks=(4,), maxshape=(None,),
                               shuffle=True, compression="lzf")  # fmt: skip
        with pytest.raises(ValueError, match="shuffle and gzip only"):
            write_rows(lzf, 0, v)
    with pytest.raises(ValueError, match="cannot hold"):
        encode_chunk(v, 4)
    with pytest.raises(ValueError, match="cannot hold"):
        encode_chunk(v[:0], 4)
