"""Reading every image of an event file in blocks, fast: what the input pipeline of
``train-cnn`` and ``eval-cnn`` reads through (:meth:`spectrocnn.dataset.EventFile.image_blocks`).

Two ways to read
    *Decoding the chunks.* HDF5 serialises every read (h5py holds one lock) and its gzip
    filter inflates each chunk inside the read, so slicing ``/images`` uses one core.
    Files laid out as the schema says (one image per chunk, gzip or no compression,
    docs/design.md 3.3) are read as their raw compressed chunks (HDF5's direct chunk read,
    in the calling thread) and inflated with :mod:`zlib` by a pool of threads, which, as
    NumPy, release the GIL: about twice as fast as slicing with several cores
    (benchmarks/train_pipeline.py). A sharded event file (HDF5 virtual datasets over
    shard files, :mod:`spectrocnn.dataset.shards`) is read the same way from each shard
    file, each checked against the virtual file first
    (:func:`~spectrocnn.dataset.identity.check_shard`).

    *Slicing.* Any other layout (lzf, shuffle, other chunks, a virtual dataset that does
    not map whole source datasets one after the other) is read through HDF5 in blocks,
    one block ahead in a background thread.

Both give the same arrays; :func:`iter_image_blocks` picks the first when it can
(:func:`direct_sources` says whether it can, and where it reads).
:func:`virtual_sources` is the one parser of a virtual dataset's sources (also used by
:func:`~spectrocnn.dataset.open_events` to find missing shard files).
"""

from __future__ import annotations

import os
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from queue import Empty, Queue
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from spectrocnn.dataset.identity import check_shard, shard_expectations
from spectrocnn.errors import EventFileError

if TYPE_CHECKING:  # pragma: no cover
    from spectrocnn.dataset.eventfile import EventFile

__all__ = [
    "DIRECT_BLOCK",
    "SLICE_BLOCK",
    "VirtualSource",
    "direct_sources",
    "iter_image_blocks",
    "virtual_sources",
]

#: Events per decoding task when the chunks are decoded directly.
DIRECT_BLOCK = 64

#: Events per read when slicing through HDF5.
SLICE_BLOCK = 256

#: A function applied to each block of full-size images (e.g. downsampling).
Transform = Callable[[np.ndarray], np.ndarray]


# -- virtual datasets -----------------------------------------------------------------------


@dataclass(frozen=True)
class VirtualSource:
    """One source of an HDF5 virtual dataset.

    Attributes
    ----------
    file_name : str
        The source file as the virtual dataset names it (``"."``: the virtual file itself;
        a relative name is looked up beside the virtual file).
    path : str
        The source file, resolved.
    dataset : str
        The source dataset in that file.
    rows : (int, int) or None
        ``(start, stop)``: the rows of the virtual dataset that the whole source dataset
        fills (as sharded gen-events maps each shard); None for any other mapping.
    """

    file_name: str
    path: str
    dataset: str
    rows: tuple[int, int] | None


def _rows(src: Any, shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The rows of a virtual dataset of ``shape`` that source ``src`` fills whole, or None."""
    try:
        if (
            src.src_space.get_select_type() != h5py.h5s.SEL_ALL
            or src.vspace.get_select_type() != h5py.h5s.SEL_HYPERSLABS
        ):
            return None
        start, stride, count, block = src.vspace.get_regular_hyperslab()
    except (AttributeError, OSError, RuntimeError, ValueError, TypeError):
        return None
    ones = (1,) * len(shape)
    if (
        tuple(stride) != ones
        or tuple(count) != ones
        or any(start[1:])
        or tuple(block[1:]) != tuple(shape[1:])
    ):
        return None
    return int(start[0]), int(start[0]) + int(block[0])


def virtual_sources(path: str | os.PathLike, ds: h5py.Dataset) -> list[VirtualSource]:
    """The sources of the virtual dataset ``ds`` of the file ``path``, in the order HDF5
    lists them; ``[]`` when ``ds`` is not virtual.

    Raises
    ------
    OSError, RuntimeError, ValueError
        From HDF5, when the virtual dataset's mapping cannot be read.
    """
    if not ds.is_virtual:
        return []
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    shape = tuple(ds.shape)
    return [
        VirtualSource(
            file_name=src.file_name,
            path=path if src.file_name == "." else os.path.join(base, src.file_name),
            dataset=src.dset_name,
            rows=_rows(src, shape),
        )
        for src in ds.virtual_sources()
    ]


# -- decoding chunks ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    """A dataset whose chunks are decoded directly: events ``first : first + n``."""

    images: h5py.Dataset
    path: str
    gzip: bool
    first: int


def _decodable(ds: h5py.Dataset) -> bool | None:
    """True (gzip) or False (no filter) when each image is one chunk that we may decode
    ourselves; None otherwise."""
    try:
        if ds.is_virtual or ds.chunks != (1, *ds.shape[1:]):
            return None
        if ds.shuffle or ds.fletcher32 or ds.scaleoffset is not None:
            return None
        nfilters = ds.id.get_create_plist().get_nfilters()
    except (AttributeError, OSError, RuntimeError, ValueError):
        return None
    if ds.compression == "gzip" and nfilters == 1:
        return True
    if ds.compression is None and nfilters == 0:
        return False
    return None


def _direct_parts(ev: EventFile, stack: ExitStack) -> list[_Part] | None:
    """The datasets whose chunks hold the images of ``ev``, in event order: ``/images``
    itself, or the shard datasets behind a virtual ``/images`` that maps whole shards one
    after the other (each opened, kept open by ``stack``, and checked); None for any other
    layout."""
    gzip = _decodable(ev.images)
    if gzip is not None:
        return [_Part(ev.images, ev.path, gzip, 0)]
    try:
        sources = virtual_sources(ev.path, ev.images)
    except (OSError, RuntimeError, ValueError, TypeError):
        return None
    if not sources or any(s.rows is None for s in sources):
        return None
    sources.sort(key=lambda s: s.rows)
    ends = [0] + [s.rows[1] for s in sources]  # type: ignore[index]
    if [s.rows[0] for s in sources] != ends[:-1] or ends[-1] != ev.n_events:  # type: ignore
        return None
    expected = shard_expectations(ev.path, ev.attrs)
    parts = []
    for s in sources:
        a, b = s.rows  # type: ignore[misc]
        try:
            f = stack.enter_context(h5py.File(s.path, "r"))
            sds = f[s.dataset]
        except (OSError, KeyError, ValueError):
            return None
        check_shard(ev.path, os.path.basename(s.path), f, expected)  # read directly: check it
        gzip = _decodable(sds)
        if gzip is None or tuple(sds.shape) != (b - a, *ev.image_shape):
            return None
        parts.append(_Part(sds, s.path, gzip, a))
    return parts


def direct_sources(ev: EventFile) -> list[tuple[str, int, int]] | None:
    """Where :func:`iter_image_blocks` decodes the chunks of ``ev``: ``(file, start, stop)``
    for each dataset, the events ``start:stop`` it holds, in event order (the file itself,
    or the shard files of a sharded file); None when it slices through HDF5 instead.

    Raises
    ------
    EventFileError
        A shard that does not belong to the file.
    """
    with ExitStack() as stack:
        parts = _direct_parts(ev, stack)
        if parts is None:
            return None
        return [(p.path, p.first, p.first + int(p.images.shape[0])) for p in parts]


def _decode(path: str, start: int, chunks: list[tuple[int, bytes]], shape: tuple[int, int],
            gzip: bool) -> np.ndarray:  # fmt: skip
    """The images ``start, start + 1, ...`` from their raw chunks (inflating releases the GIL)."""
    h, w = shape
    buf = np.empty((len(chunks), h, w), np.uint8)
    for j, (mask, data) in enumerate(chunks):
        try:
            raw = zlib.decompress(data, bufsize=h * w) if gzip and not mask & 1 else data
        except zlib.error as exc:
            raise EventFileError(f"{path}: image {start + j} is corrupt ({exc})") from None
        if len(raw) != h * w:
            raise EventFileError(
                f"{path}: image {start + j} has {len(raw)} bytes, expected {h * w}; corrupt"
            )
        buf[j] = np.frombuffer(raw, np.uint8).reshape(h, w)
    return buf


def _raw_chunks(part: _Part, a: int, b: int) -> list[tuple[int, bytes]]:
    """The raw chunks (filter mask, bytes) of images ``a:b`` of ``part``."""
    dsid = part.images.id
    try:
        return [dsid.read_direct_chunk((i, 0, 0)) for i in range(a, b)]
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise EventFileError(
            f"{part.path}: cannot read images {a}:{b} ({' '.join(str(exc).split())}); "
            "the file may be truncated or corrupt"
        ) from None


def _decoded_blocks(
    part: _Part, shape: tuple[int, int], step: int, workers: int, transform: Transform | None
) -> Iterator[tuple[int, np.ndarray]]:
    """Blocks of ``part``, read here, decoded (and transformed) by ``workers`` threads, in
    order; at most ``2 * workers + 1`` blocks are in flight."""
    n = int(part.images.shape[0])

    def task(a: int, chunks: list[tuple[int, bytes]]) -> np.ndarray:
        full = _decode(part.path, a, chunks, shape, part.gzip)
        return full if transform is None else transform(full)

    pending: deque[tuple[int, Future[np.ndarray]]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="spectrocnn-decode") as pool:
        try:
            for a in range(0, n, step):
                chunks = _raw_chunks(part, a, min(n, a + step))
                pending.append((part.first + a, pool.submit(task, a, chunks)))
                while len(pending) > 2 * workers or (pending and pending[0][1].done()):
                    first, done = pending.popleft()
                    yield first, done.result()
            while pending:
                first, done = pending.popleft()
                yield first, done.result()
        finally:
            for _, f in pending:
                f.cancel()


# -- slicing --------------------------------------------------------------------------------


def _sliced_blocks(
    ev: EventFile, block: int, transform: Transform | None
) -> Iterator[tuple[int, np.ndarray]]:
    """Blocks read through HDF5 (:meth:`EventFile.read_images`), one block ahead in a
    background thread; ``transform`` runs in the consumer's thread."""
    queue: Queue = Queue(maxsize=1)
    stop = threading.Event()

    def reader() -> None:
        try:
            for a in range(0, ev.n_events, block):
                if stop.is_set():
                    return
                queue.put((a, ev.read_images(a, min(ev.n_events, a + block))))
        except BaseException as exc:  # handed to the consumer
            queue.put((None, exc))
            return
        queue.put((None, None))

    t = threading.Thread(target=reader, name="spectrocnn-reader", daemon=True)
    t.start()
    try:
        while True:
            a, item = queue.get()
            if a is None:
                if item is not None:
                    raise item
                return
            yield a, item if transform is None else transform(item)
    finally:
        stop.set()
        while t.is_alive():  # unblock a reader waiting on a full queue
            try:
                queue.get(timeout=0.05)
            except Empty:
                continue
        t.join()


def iter_image_blocks(
    ev: EventFile,
    *,
    transform: Transform | None = None,
    block: int | None = None,
    workers: int = 1,
    direct: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """Every image of ``ev`` in blocks of consecutive events, in event order.

    Decodes the compressed chunks in a pool of threads where the layout allows it (also
    for the shard files of a sharded file), else slices through HDF5 one block ahead in a
    background thread (see the module docstring).

    Parameters
    ----------
    ev : EventFile
        Open (:func:`~spectrocnn.dataset.open_events`); keep it open while iterating.
    transform : callable, optional
        Applied to each block of full-size images, uint8 ``(k, H, W)``, before it is
        yielded (in the decoding threads when decoding chunks): e.g. downsampling, so that
        only a few blocks of full-size images are in memory at any time.
    block : int, optional
        Events per block; default :data:`DIRECT_BLOCK` (decoding) or :data:`SLICE_BLOCK`
        (slicing).
    workers : int
        Decoding threads; at most ``2 * workers + 1`` blocks are in memory at a time.
    direct : bool
        False: always slice through HDF5 (for comparisons and benchmarks).

    Yields
    ------
    start : int
        The first event of the block.
    images : ndarray
        ``transform`` of the images of events ``start : start + k`` (uint8 ``(k, H, W)``
        without a transform); the blocks cover ``0 : n_events`` once, in order.

    Raises
    ------
    EventFileError
        A chunk that cannot be read or inflated, or of the wrong size ("PATH: image I is
        corrupt"); a shard that does not belong to the file.
    ValueError
        ``workers`` or ``block`` not a positive integer (on the first block asked for).
    """
    for name, value in (("workers", workers), ("block", 1 if block is None else block)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    workers, block = int(workers), None if block is None else int(block)
    if ev.n_events == 0:
        return
    with ExitStack() as stack:
        parts = _direct_parts(ev, stack) if direct else None
        if parts is None:
            yield from _sliced_blocks(ev, block or SLICE_BLOCK, transform)
            return
        for part in parts:
            yield from _decoded_blocks(
                part, ev.image_shape, block or DIRECT_BLOCK, workers, transform
            )
