"""Reading every image of an event file in blocks, fast: what the input pipeline of
``train-cnn`` and ``eval-cnn`` reads through (:meth:`spectrocnn.dataset.EventFile.image_blocks`).

Two ways to read
    *Decoding the chunks.* HDF5 serialises every read (h5py holds one lock) and its gzip
    filter inflates each chunk inside the read, so slicing ``/images`` uses one core.
    Files laid out as the schema says (one image per chunk, gzip or no compression,
    docs/design.md 3.3) are read as their raw compressed chunks (HDF5's direct chunk read,
    in the calling thread) and inflated by a pool of threads, which, as NumPy, release
    the GIL: about twice as fast as slicing with several cores
    (benchmarks/train_pipeline.py). A sharded event file (HDF5 virtual datasets over
    shard files, :mod:`spectrocnn.dataset.shards`) is read the same way from each shard
    file, each checked against the virtual file first
    (:func:`~spectrocnn.dataset.identity.check_shard`).

    *Slicing.* Any other layout (lzf, shuffle, other chunks, a virtual dataset that does
    not map whole source datasets one after the other) is read through HDF5 in blocks,
    one block ahead in a background thread.

Both give the same arrays; :func:`iter_image_blocks` (every image, in blocks of consecutive
events) and :func:`iter_image_groups` (the events of groups chosen by the caller, e.g. the
blocks of a shuffled epoch) pick the first when they can (:func:`direct_sources` says
whether it can, and where it reads). The chunks are inflated by ISA-L (the package
``isal``: the same bytes as :mod:`zlib`, 3 to 4 times as fast on these mostly-zero images),
or by :mod:`zlib` where ``isal`` is not installed.
:func:`virtual_sources` is the one parser of a virtual dataset's sources (also used by
:func:`~spectrocnn.dataset.open_events` to find missing shard files).
"""

from __future__ import annotations

import os
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from queue import Empty, Queue
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

try:  # ISA-L's inflate: the same bytes as zlib's, 3 to 4 times as fast (optional)
    from isal import isal_zlib as _inflater
except ImportError:  # pragma: no cover - isal is a dependency; zlib does the same, slower
    _inflater = zlib

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
    "iter_image_groups",
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


#: What the inflater raises on a corrupt stream.
_INFLATE_ERRORS: tuple[type[BaseException], ...] = tuple({zlib.error, _inflater.error})

#: Groups of events: 1-D arrays of event numbers (``0 <= i < n_events``).
Groups = Iterable[np.ndarray | Sequence[int]]


def _decode(path: str, events: np.ndarray, chunks: list[tuple[int, bytes]],
            shape: tuple[int, int], gzip: bool, buf: np.ndarray) -> None:  # fmt: skip
    """The images ``events`` (their numbers in ``path``, for the messages) from their raw
    chunks into ``buf`` (inflating releases the GIL)."""
    h, w = shape
    for j, (mask, data) in enumerate(chunks):
        try:
            raw = _inflater.decompress(data, bufsize=h * w) if gzip and not mask & 1 else data
        except _INFLATE_ERRORS as exc:
            raise EventFileError(f"{path}: image {events[j]} is corrupt ({exc})") from None
        if len(raw) != h * w:
            raise EventFileError(
                f"{path}: image {events[j]} has {len(raw)} bytes, expected {h * w}; corrupt"
            )
        buf[j] = np.frombuffer(raw, np.uint8).reshape(h, w)


#: Full-size images a decoding thread inflates before it transforms them (the transform
#: then reads them from the CPU cache): 2 MiB, 8 images of 512 x 512.
HOT_BYTES = 2 * 2**20

#: Each decoding thread's buffer of full-size images, reused from group to group when a
#: transform makes the images it keeps (a fresh array for each group costs more in page
#: faults than copying the images into it).
_SCRATCH = threading.local()


def _scratch(n: int, shape: tuple[int, int]) -> np.ndarray:
    buf = getattr(_SCRATCH, "images", None)
    if buf is None or buf.shape[0] < n or buf.shape[1:] != shape:
        buf = _SCRATCH.images = np.empty((n, *shape), np.uint8)
    return buf[:n]


def _raw_chunks(part: _Part, local: np.ndarray) -> list[tuple[int, bytes]]:
    """The raw chunks (filter mask, bytes) of images ``local`` (numbers in ``part``)."""
    dsid = part.images.id
    try:
        return [dsid.read_direct_chunk((int(i), 0, 0)) for i in local]
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise EventFileError(
            f"{part.path}: cannot read images {int(local.min())}:{int(local.max()) + 1} "
            f"({' '.join(str(exc).split())}); the file may be truncated or corrupt"
        ) from None


#: One group's raw chunks, split by the dataset they lie in: (part, numbers there, chunks).
_Pieces = list[tuple[_Part, np.ndarray, list[tuple[int, bytes]]]]


def _read_group(parts: list[_Part], firsts: np.ndarray, group: np.ndarray) -> _Pieces:
    """The raw chunks of the events ``group`` (read in the calling thread: HDF5 holds one
    lock), split where the group passes from one part to another."""
    which = np.searchsorted(firsts, group, side="right") - 1
    pieces: _Pieces = []
    for idx in np.split(np.arange(len(group)), np.flatnonzero(np.diff(which)) + 1):
        if len(idx):
            part = parts[int(which[idx[0]])]
            local = group[idx] - part.first
            pieces.append((part, local, _raw_chunks(part, local)))
    return pieces


def _decode_group(pieces: _Pieces, shape: tuple[int, int], transform: Transform | None
                  ) -> np.ndarray:  # fmt: skip
    """One group's images, decoded (and transformed): the task of a decoding thread.

    With a transform, the images are inflated and transformed a few at a time
    (:data:`HOT_BYTES` of full-size images), so that the transform reads them from the
    CPU cache: about 0.7 times the CPU time of transforming the whole group at once
    (512 x 512 images max-pooled to 256 x 256)."""
    n = sum(len(chunks) for _, _, chunks in pieces)
    if transform is None:
        images = np.empty((n, *shape), np.uint8)
        a = 0
        for p, local, chunks in pieces:
            _decode(p.path, local, chunks, shape, p.gzip, images[a : a + len(chunks)])
            a += len(chunks)
        return images
    k = max(1, HOT_BYTES // (shape[0] * shape[1]))
    scratch = _scratch(min(k, n), shape)
    out: np.ndarray | None = None
    a = 0
    for p, local, chunks in pieces:
        for b in range(0, len(chunks), k):
            part = chunks[b : b + k]
            buf = scratch[: len(part)]
            _decode(p.path, local[b : b + k], part, shape, p.gzip, buf)
            small = transform(buf)
            if out is None:
                out = np.empty((n, *np.shape(small)[1:]), np.asarray(small).dtype)
            out[a : a + len(part)] = small  # a copy: the scratch buffer is reused
            a += len(part)
    return out if out is not None else np.asarray(transform(np.empty((0, *shape), np.uint8)))


def _decoded_groups(
    parts: list[_Part], shape: tuple[int, int], groups: Iterable[np.ndarray], workers: int,
    transform: Transform | None,
) -> Iterator[np.ndarray]:  # fmt: skip
    """The images of each group, their chunks read here, decoded (and transformed) by
    ``workers`` threads, in the groups' order; at most ``2 * workers + 1`` groups are in
    flight."""
    firsts = np.array([p.first for p in parts], np.int64)
    pending: deque[Future[np.ndarray]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="spectrocnn-decode") as pool:
        try:
            for group in groups:
                pieces = _read_group(parts, firsts, group)
                pending.append(pool.submit(_decode_group, pieces, shape, transform))
                while len(pending) > 2 * workers or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


# -- slicing --------------------------------------------------------------------------------


def _read_sliced(ev: EventFile, group: np.ndarray) -> np.ndarray:
    """The images of ``group`` through HDF5: one read per run of consecutive events."""
    if len(group) and np.array_equal(group, np.arange(group[0], group[0] + len(group))):
        return ev.read_images(int(group[0]), int(group[-1]) + 1)
    if not len(group):
        return np.empty((0, *ev.image_shape), np.uint8)
    events, inverse = np.unique(group, return_inverse=True)
    runs = np.split(events, np.flatnonzero(np.diff(events) != 1) + 1)
    images = np.concatenate([ev.read_images(int(r[0]), int(r[-1]) + 1) for r in runs])
    return images[inverse]


def _sliced_groups(
    ev: EventFile, groups: Iterable[np.ndarray], transform: Transform | None
) -> Iterator[np.ndarray]:
    """The images of each group read through HDF5 (:meth:`EventFile.read_images`), one
    group ahead in a background thread; ``transform`` runs in the consumer's thread."""
    queue: Queue = Queue(maxsize=1)
    stop = threading.Event()
    end = object()

    def reader() -> None:
        try:
            for group in groups:
                if stop.is_set():
                    return
                queue.put((None, _read_sliced(ev, group)))
        except BaseException as exc:  # handed to the consumer
            queue.put((exc, None))
            return
        queue.put((None, end))

    t = threading.Thread(target=reader, name="spectrocnn-reader", daemon=True)
    t.start()
    try:
        while True:
            exc, item = queue.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item if transform is None else transform(item)
    finally:
        stop.set()
        while t.is_alive():  # unblock a reader waiting on a full queue
            try:
                queue.get(timeout=0.05)
            except Empty:
                continue
        t.join()


# -- the public iterators -------------------------------------------------------------------


def _check_workers_block(workers: Any, block: Any) -> tuple[int, int | None]:
    for name, value in (("workers", workers), ("block", 1 if block is None else block)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(workers), None if block is None else int(block)


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
        without a transform); the blocks cover ``0 : n_events`` once, in order (decoding,
        a block never spans two shard files).

    Raises
    ------
    EventFileError
        A chunk that cannot be read or inflated, or of the wrong size ("PATH: image I is
        corrupt"); a shard that does not belong to the file.
    ValueError
        ``workers`` or ``block`` not a positive integer (on the first block asked for).
    """
    workers, block = _check_workers_block(workers, block)
    if ev.n_events == 0:
        return
    with ExitStack() as stack:
        parts = _direct_parts(ev, stack) if direct else None
        step = block or (SLICE_BLOCK if parts is None else DIRECT_BLOCK)
        bounds = [(0, ev.n_events)] if parts is None else [
            (p.first, p.first + int(p.images.shape[0])) for p in parts
        ]  # fmt: skip
        starts = [(a, min(a + step, stop)) for first, stop in bounds
                  for a in range(first, stop, step)]  # fmt: skip
        groups = (np.arange(a, b, dtype=np.int64) for a, b in starts)
        if parts is None:
            images = _sliced_groups(ev, groups, transform)
        else:
            images = _decoded_groups(parts, ev.image_shape, groups, workers, transform)
        try:
            for (a, _), block_images in zip(starts, images, strict=False):
                yield a, block_images
        finally:
            images.close()


def _checked(groups: Groups, n: int) -> Iterator[np.ndarray]:
    """Each group as an int64 array, checked to be 1-D event numbers of ``0:n``."""
    for group in groups:
        g = np.asarray(group)
        if g.ndim != 1 or (g.size and g.dtype.kind not in "iu"):
            raise ValueError(f"a group must be a 1-D array of event numbers, got {group!r}")
        g = g.astype(np.int64, copy=False)
        if g.size and (g.min() < 0 or g.max() >= n):
            bad = int(g.min()) if g.min() < 0 else int(g.max())
            raise IndexError(f"event {bad} outside 0:{n}")
        yield g


def iter_image_groups(
    ev: EventFile,
    groups: Groups,
    *,
    transform: Transform | None = None,
    workers: int = 1,
    direct: bool = True,
) -> Iterator[np.ndarray]:
    """The images of the events of each group, one group after the other.

    As :func:`iter_image_blocks` (chunks decoded by a pool of threads where the layout
    allows it, else read through HDF5 one group ahead), for groups of events chosen by the
    caller: the streaming input pipeline of ``train-cnn`` reads the events of each of its
    blocks that the epoch (or a worker) needs, and PyTorch's map-style dataset the runs
    of a batch.

    Parameters
    ----------
    ev : EventFile
        Open; keep it open while iterating.
    groups : iterable of 1-D int arrays
        Event numbers, in any order (repeats allowed), ``0 <= i < n_events``; consumed
        lazily, one group ahead of the decoding. Reading through HDF5 costs one read per
        run of consecutive events; decoding, one chunk read per event.
    transform : callable, optional
        Applied to each group's full-size images (in the decoding threads when decoding).
    workers : int
        Decoding threads; at most ``2 * workers + 1`` groups are in flight.
    direct : bool
        False: always read through HDF5.

    Yields
    ------
    ndarray
        ``transform`` of the images of the group's events, in the group's order (uint8
        ``(k, H, W)`` without a transform).

    Raises
    ------
    EventFileError
        An image that cannot be read or is corrupt; a shard that does not belong to the file.
    ValueError
        ``workers`` not a positive integer, a group that is not 1-D integers.
    IndexError
        An event number outside ``0:n_events``.
    """
    workers, _ = _check_workers_block(workers, None)
    checked = _checked(groups, ev.n_events)
    with ExitStack() as stack:
        parts = _direct_parts(ev, stack) if direct and ev.n_events else None
        if parts is None:
            images = _sliced_groups(ev, checked, transform)
        else:
            images = _decoded_groups(parts, ev.image_shape, checked, workers, transform)
        try:
            yield from images
        finally:
            images.close()
