"""Chunks of the truth columns compressed here, as HDF5's shuffle and gzip filters store them.

The truth columns of the event file (:data:`~spectrocnn.dataset.schema.TRUTH_FILTER`) are
chunked datasets with HDF5's standard shuffle filter followed by its deflate (gzip) filter.
On reading, HDF5 inflates a chunk's zlib stream (RFC 1950 around RFC 1951 deflate) and
un-shuffles the bytes; *any* valid zlib stream of the shuffled bytes reads back exactly,
whatever encoder made it. The writer therefore compresses each chunk itself
(:func:`encode_chunk`) and stores it with HDF5's direct chunk write (:func:`write_rows`),
which skips the filter pipeline; every HDF5 reader reads the file as before, no plugin
needed.

The stored bytes of one chunk of ``C`` rows of a ``k``-byte type (HDF5's ``H5Z_filter_shuffle``
and ``H5Z_filter_deflate``, hdf5/src/H5Zshuffle.c and H5Zdeflate.c):

* shuffle: byte ``j`` of element ``i`` goes to position ``j * C + i`` (``k`` byte planes,
  the least significant first for a little-endian type); a 1-byte type is left as it is;
* deflate: one zlib stream of those ``k * C`` bytes.

Here each byte plane is deflated in blocks of its own (a full flush between planes): the
Huffman codes fit each plane, the random low bytes of a float and the nearly constant high
bytes of an index alike. The deflate encoder is ISA-L's (:mod:`isal.isal_zlib`, level 2),
four to five times faster than zlib's level 1 on these columns, with streams of about the
same size (the lecture preset's truth: 3 681.6 B per event against 3 663.2 B with HDF5's
filters and zlib level 1, ``benchmarks/file_size.py``); without the ``isal`` package,
zlib's level 1 makes them (the same values, other bytes).
The last chunk of a column, which the column ends inside, is stored whole (HDF5 keeps
every chunk at its full size), padded with zeros as HDF5 pads it; no reader sees them.

The stream of a chunk depends on its rows alone, so the file's bytes do not depend on how
the rows arrived (the number of worker processes or of appends).
"""

from __future__ import annotations

import zlib

import h5py
import numpy as np

try:  # ISA-L's deflate: the same streams' format, about five times faster
    from isal import isal_zlib as _deflate_module

    _LEVEL = 2
except ImportError:  # pragma: no cover - isal is a dependency; zlib reads the same
    _deflate_module = zlib
    _LEVEL = 1

__all__ = ["encode_chunk", "write_rows"]


def encode_chunk(values: np.ndarray, chunk_rows: int) -> bytes:
    """One chunk of a column as HDF5's shuffle then deflate filters store it.

    Parameters
    ----------
    values : ndarray (n,)
        The chunk's rows, ``1 <= n <= chunk_rows``, of the dataset's dtype (its byte
        order included).
    chunk_rows : int
        Rows of a chunk of the dataset; a chunk of fewer rows (the column's last) is padded
        with zeros to this.

    Returns
    -------
    bytes
        A zlib stream: ``zlib.decompress`` gives the shuffled bytes of the padded chunk
        (module docstring), what HDF5's filters would store for it.

    Raises
    ------
    ValueError
        ``values`` not one-dimensional, empty or longer than ``chunk_rows``.
    """
    a = np.asarray(values)
    n = len(a) if a.ndim == 1 else -1
    if not 1 <= n <= chunk_rows:
        raise ValueError(f"a chunk of {chunk_rows} rows cannot hold values of shape {a.shape}")
    a = np.ascontiguousarray(a)
    if n < chunk_rows:
        full = np.zeros(chunk_rows, dtype=a.dtype)
        full[:n] = a
        a = full
    k = a.dtype.itemsize
    planes = np.ascontiguousarray(a.view(np.uint8).reshape(chunk_rows, k).T)
    c = _deflate_module.compressobj(_LEVEL, zlib.DEFLATED, 15)
    out: list[bytes] = []
    for plane in planes[:-1]:
        out.append(c.compress(plane))
        out.append(c.flush(zlib.Z_FULL_FLUSH))  # the next plane in blocks of its own
    out.append(c.compress(planes[-1]))
    out.append(c.flush(zlib.Z_FINISH))
    return b"".join(out)


def write_rows(dset: h5py.Dataset, start: int, values: np.ndarray) -> None:
    """Write ``values`` as rows ``start:start + len(values)`` of a one-dimensional chunked
    dataset with the shuffle and gzip filters (in this order, nothing else), chunk by chunk
    with HDF5's direct chunk write; the dataset is extended to the last row when shorter.

    Parameters
    ----------
    dset : h5py.Dataset
        Filters shuffle then gzip, chunks ``(C,)``, resizable.
    start : int
        A multiple of ``C``, the first row to write.
    values : ndarray (n,)
        Converted to the dataset's dtype (``astype``: the caller gives values of it).

    Raises
    ------
    ValueError
        A ``start`` that is not at a chunk boundary, or a dataset with other filters.
    """
    (rows,) = dset.chunks
    if _filter_ids(dset) != [h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE]:
        raise ValueError(f"{dset.name}: the chunks are written for shuffle and gzip only")
    if start % rows:
        raise ValueError(f"{dset.name}: row {start} is not at a chunk boundary ({rows} rows)")
    a = np.ascontiguousarray(np.asarray(values).astype(dset.dtype, copy=False))
    stop = start + len(a)
    if dset.shape[0] < stop:
        dset.resize((stop,))
    dsid = dset.id
    for r in range(0, len(a), rows):
        dsid.write_direct_chunk((start + r,), encode_chunk(a[r : r + rows], rows))


def _filter_ids(dset: h5py.Dataset) -> list[int]:
    """The ids of the dataset's filters, in pipeline order."""
    plist = dset.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
