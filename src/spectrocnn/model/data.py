# Over 600 lines because its own HDF5 chunk reader is still here; issue 16 item 1 moves that
# reader into dataset/, which brings this file under 600.
"""The input pipeline: event file -> downsampled images in memory -> ``tf.data`` batches.

Reading
    Images are read in blocks of events, downsampled at once and kept in memory as uint8
    ``(n, s, s)`` arrays (20 000 events at 128 x 128 take 330 MB); the full-size images
    of a few blocks only are in memory at any time. Files laid out as the schema says (one
    image per chunk, gzip or no compression) are decoded straight from their compressed
    chunks by a pool of threads, one per available core; any other layout is read through
    HDF5, one block ahead in a background thread (:func:`load_images`).

Downsampling (``method``), by the factor ``f = H / s``:

``max`` (default)
    Max-pooling over ``f x f`` blocks: output pixel ``(i, j)`` is the largest value of
    input pixels ``(f i .. f i + f - 1, f j .. f j + f - 1)``. Every hit survives: a pixel
    lit at ``(r, c)`` shows in output pixel ``(r // f, c // f)``.
``nearest``
    What the lecture's image loader did: Keras' ``flow_from_directory(target_size=...)``
    resizes with PIL's NEAREST filter, which takes for output pixel ``i`` the input pixel
    whose area contains the output pixel's centre, ``floor((i + 0.5) * H / s)`` (for
    ``f = 4``: pixels 2, 6, 10, ...; non-integer ratios reproduce PIL's rounding exactly,
    see :func:`_pil_nearest_index`). It keeps only the hits that fall on those pixels
    (``1 / f**2`` of single-pixel hits). Works for any ``s <= H``.
``mean``
    Average pooling (area averaging, what an anti-aliased resize does): the model sees the
    fraction of lit pixels in each ``f x f`` block (``1 / f**2`` for one hit). Kept exact
    in memory as the *number* of lit pixels (uint8, saturating at 255), divided by
    ``f**2`` in the pipeline. (Rounded to an 8-bit image, as a PNG resize would, single
    hits vanish altogether: 1/16 of a level rounds to 0.)

Pixel values
    A stored pixel holds the number of hits in it (docs/design.md 3.3). The model input is the
    pixel *occupancy*, ``min(count, 1)``: 1.0 where there is a hit, 0.0 elsewhere, as a
    PNG with bright hits rescaled by 1/255 gave the lecture's network; for ``mean`` the
    block average of the occupancy. The transform, ``x = min(v * scale, 1)`` on the
    stored values ``v``, runs inside the ``tf.data`` pipeline (:func:`input_scale`).

Splitting and shuffling
    ``val_fraction`` takes ``round(f * n)`` events at random for validation, from the
    stream ``SeedSequence(seed, spawn_key=(0,))``; epoch ``e`` visits the training events
    in the order drawn from ``SeedSequence(seed, spawn_key=(1, e))``. Both depend on the
    seed only, so a resumed run sees the same split and the same later epochs.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from queue import Empty, Queue
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn.errors import ConfigError, EventFileError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from spectrocnn.dataset import EventFile

__all__ = [
    "DOWNSAMPLE_METHODS",
    "READ_BLOCK",
    "ImageSet",
    "check_downsample",
    "downsample",
    "epoch_order",
    "input_scale",
    "load_images",
    "make_dataset",
    "open_event_file",
    "split_indices",
]

log = logging.getLogger(__name__)

#: Downsampling methods, the default first.
DOWNSAMPLE_METHODS = ("max", "mean", "nearest")

#: Events read from the file per block (HDF5 path).
READ_BLOCK = 256

#: Events per decoding task (direct chunk path).
_DIRECT_BLOCK = 64


# -- the event file -------------------------------------------------------------------------


def open_event_file(path: str | os.PathLike) -> EventFile:
    """Open an event file (:func:`spectrocnn.dataset.open_events`).

    Raises
    ------
    ConfigError
        When the file does not exist (exit code 2).
    EventFileError
        When it exists but is not a readable event file (exit code 1).
    """
    from spectrocnn.dataset import open_events

    return open_events(path)


# -- downsampling ---------------------------------------------------------------------------


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_downsample(
    image_shape: tuple[int, int],
    size: int,
    method: str,
    *,
    source: str | os.PathLike | None = None,
    size_flag: str | None = "--input-size",
    method_flag: str | None = "--downsample",
) -> tuple[int, int]:
    """Check that ``(H, W)`` images can be downsampled to ``size x size`` by ``method``.

    Parameters
    ----------
    image_shape : (int, int)
        ``(H, W)`` of the images [pixels].
    size : int
        Output size [pixels].
    method : {"max", "mean", "nearest"}
    source : path-like, optional
        The event file of the images, named in the messages.
    size_flag, method_flag : str or None
        The options that set ``size`` and ``method``, which the messages tell the user to
        change (None: the value was not the user's choice, e.g. a saved model's input).

    Returns
    -------
    (int, int)
        The pooling factors ``(H // size, W // size)`` (for ``nearest``: rounded down).

    Raises
    ------
    ConfigError
        Unknown method, ``size`` larger than the images, or (``max``, ``mean``) ``size``
        not dividing ``H`` and ``W``; the message names the file and the option to change.
    """
    if method not in DOWNSAMPLE_METHODS:
        raise ConfigError(
            f"{method_flag or 'downsample method'} must be one of "
            f"{', '.join(DOWNSAMPLE_METHODS)}, got {method!r}"
        )
    h, w = (int(v) for v in image_shape)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ConfigError(f"{size_flag or 'input size'} must be a positive integer, got {size!r}")
    of = f" of {os.fspath(source)}" if source is not None else ""
    if size > min(h, w):
        fix = f"; set {size_flag} to {min(h, w)} or less" if size_flag else ""
        raise ConfigError(
            f"input size {size} is larger than the {h}x{w} images{of} (downsampling only){fix}"
        )
    if method != "nearest" and (h % size or w % size):
        common = [d for d in _divisors(math.gcd(h, w)) if d >= 8][-4:]
        hint = ", ".join(str(d) for d in reversed(common)) or str(math.gcd(h, w))
        what = f"set {size_flag} to a divisor of" if size_flag else "it must divide"
        alt = f", or use {method_flag} nearest" if method_flag else ""
        raise ConfigError(
            f"input size {size} cannot be {method}-pooled from {h}x{w} images{of}: {what} "
            f"{h if h % size else w} (e.g. {hint}){alt}"
        )
    return h // size, w // size


def _max_pool(images: np.ndarray, size: int, out: np.ndarray) -> None:
    """Block maximum by strided ``np.maximum`` (rows first: contiguous, vectorised)."""
    k, h, w = images.shape
    fh, fw = h // size, w // size
    step = 16  # images per pass: the intermediate stays in cache
    for a in range(0, k, step):
        v = images[a : a + step].reshape(-1, size, fh, w)
        rows = v[:, :, 0].copy()
        for j in range(1, fh):
            np.maximum(rows, v[:, :, j], out=rows)
        o = out[a : a + step]
        o[...] = rows[:, :, 0::fw]
        for j in range(1, fw):
            np.maximum(o, rows[:, :, j::fw], out=o)


def _pil_nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source pixel of each output pixel in PIL's NEAREST resize (``ImagingScaleAffine``).

    ``floor((i + 0.5) * n_in / n_out)``, evaluated as PIL does: the position starts at half a
    step and the step is added in double precision, so that at exact pixel boundaries of
    non-integer ratios the rounding may pick the pixel before. Integer ratios ``f`` give
    ``f * i + f // 2`` exactly.
    """
    step = n_in / n_out
    x = step * 0.5
    out = np.empty(n_out, np.intp)
    for i in range(n_out):
        out[i] = min(int(x), n_in - 1)
        x += step
    return out


def downsample(images: np.ndarray, size: int, method: str = "max") -> np.ndarray:
    """Downsample detector images to ``size x size`` pixels (see the module docstring).

    Parameters
    ----------
    images : ndarray uint8, shape (k, H, W)
        Hits per pixel.
    size : int
        Output height and width [pixels].
    method : {"max", "mean", "nearest"}
        ``max``: block maximum of the counts (every hit kept). ``nearest``: the count at
        input pixel ``floor((i + 0.5) * H / size)`` (PIL's NEAREST). ``mean``: the number
        of lit pixels in each block, saturating at 255 (divide by ``f**2`` for the mean
        occupancy, :func:`input_scale`).

    Returns
    -------
    ndarray uint8, shape (k, size, size)
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (k, H, W), got {images.shape}")
    if images.dtype != np.uint8:
        images = images.astype(np.uint8)
    k, h, w = images.shape
    check_downsample((h, w), size, method)
    if method == "nearest":
        ri, ci = _pil_nearest_index(h, size), _pil_nearest_index(w, size)
        return np.ascontiguousarray(images[:, ri][:, :, ci])
    if (h, w) == (size, size):
        return (images > 0).astype(np.uint8) if method == "mean" else images.copy()
    out = np.empty((k, size, size), np.uint8)
    if method == "max":
        _max_pool(images, size, out)
        return out
    fh, fw = h // size, w // size
    lit = (images > 0).reshape(k, size, fh, size, fw)
    np.minimum(lit.sum(axis=(2, 4), dtype=np.uint16), 255, out=out, casting="unsafe")
    return out


def input_scale(method: str, factor: tuple[int, int] | int) -> float:
    """The factor ``scale`` of the model input ``x = min(v * scale, 1)`` of stored values ``v``.

    1 for ``max`` and ``nearest`` (occupancy), ``1 / (fh * fw)`` for ``mean`` (fraction of
    lit pixels in the block).
    """
    fh, fw = (factor, factor) if isinstance(factor, int) else factor
    return 1.0 / (fh * fw) if method == "mean" and fh * fw > 1 else 1.0


# -- loading --------------------------------------------------------------------------------


@dataclass
class ImageSet:
    """Downsampled images of one event file, in memory.

    Attributes
    ----------
    images : ndarray uint8 (n, s, s)
        Stored values (see :func:`downsample`).
    labels : ndarray uint8 (n,)
    path : str
    method : str
        Downsampling method.
    factor : (int, int)
        Pooling factors ``(H // s, W // s)``.
    info : dict
        :func:`file_info`: the file's identity, ``image_shape``, ``window_mm`` and
        ``barrel_radius_mm``.
    """

    images: np.ndarray
    labels: np.ndarray
    path: str
    method: str
    factor: tuple[int, int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of events."""
        return int(self.labels.shape[0])

    @property
    def scale(self) -> float:
        """See :func:`input_scale`."""
        return input_scale(self.method, self.factor)


def file_info(ev: EventFile) -> dict[str, Any]:
    """What a run records about an event file: its identity (path, run_id, seed, n_events,
    content fingerprint: :meth:`~spectrocnn.dataset.EventFile.identity`), image shape,
    window and, for a barrel detector, how far from the beam line its images can have a
    lit pixel (``barrel_radius_mm``, :func:`~spectrocnn.model.architectures.barrel_radius_mm`;
    None otherwise)."""
    from spectrocnn.model.architectures import barrel_radius_mm

    return {
        **ev.identity(),
        "image_shape": [int(v) for v in ev.image_shape],
        "window_mm": [float(v) for v in ev.window_mm],
        "barrel_radius_mm": barrel_radius_mm(ev.config),
    }


def _blocks(ev: EventFile, block: int) -> Iterator[tuple[int, np.ndarray]]:
    """Blocks of full-size images, read one block ahead in a background thread."""
    starts = range(0, ev.n_events, block)
    queue: Queue = Queue(maxsize=1)
    stop = threading.Event()

    def reader() -> None:
        try:
            for a in starts:
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
            yield a, item
    finally:
        stop.set()
        while t.is_alive():  # unblock a reader waiting on a full queue
            try:
                queue.get(timeout=0.05)
            except Empty:
                continue
        t.join()


def _direct_filter(ds: Any) -> str | None:
    """``"gzip"`` or ``"none"`` when each image is one chunk that we may decode ourselves."""
    try:
        if ds.is_virtual or ds.chunks != (1, *ds.shape[1:]):
            return None
        if ds.shuffle or ds.fletcher32 or ds.scaleoffset is not None:
            return None
        nfilters = ds.id.get_create_plist().get_nfilters()
    except (AttributeError, OSError, RuntimeError, ValueError):
        return None
    if ds.compression == "gzip" and nfilters == 1:
        return "gzip"
    if ds.compression is None and nfilters == 0:
        return "none"
    return None


def _decode_block(
    path: str, start: int, chunks: list[tuple[int, bytes]], shape: tuple[int, int]
) -> np.ndarray:
    """Inflate the raw chunks of images ``start, start + 1, ...`` (releases the GIL)."""
    h, w = shape
    buf = np.empty((len(chunks), h, w), np.uint8)
    for j, (mask, data) in enumerate(chunks):
        try:
            raw = data if mask & 1 else zlib.decompress(data, bufsize=h * w)
        except zlib.error as exc:
            raise EventFileError(f"{path}: image {start + j} is corrupt ({exc})") from None
        if len(raw) != h * w:
            raise EventFileError(
                f"{path}: image {start + j} has {len(raw)} bytes, expected {h * w}; corrupt"
            )
        buf[j] = np.frombuffer(raw, np.uint8).reshape(h, w)
    return buf


def _load_direct(
    ev: EventFile,
    filt: str,
    size: int,
    method: str,
    out: np.ndarray,
    workers: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Read raw chunks in this thread; inflate and downsample them in a thread pool.

    HDF5 (and h5py's lock) serialise every read, and the gzip filter inflates inside the
    read; reading the compressed chunks as they are (HDF5's direct chunk read, fast) and
    inflating them with :mod:`zlib` in threads (which release the GIL, as NumPy does in
    :func:`downsample`) uses every core.
    """
    ds, n, shape = ev.images, ev.n_events, ev.image_shape
    dsid = ds.id
    step = _DIRECT_BLOCK

    def task(a: int, chunks: list[tuple[int, bytes]]) -> int:
        if filt == "gzip":
            full = _decode_block(ev.path, a, chunks, shape)
        else:
            full = np.stack([np.frombuffer(c, np.uint8) for _, c in chunks]).reshape(-1, *shape)
        out[a : a + len(full)] = downsample(full, size, method)
        return len(full)

    def raw(a: int, b: int) -> list[tuple[int, bytes]]:
        try:
            return [dsid.read_direct_chunk((i, 0, 0)) for i in range(a, b)]
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise EventFileError(
                f"{ev.path}: cannot read images {a}:{b} ({' '.join(str(exc).split())}); "
                "the file may be truncated or corrupt"
            ) from None

    pending: deque[Future[int]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="spectrocnn-decode") as pool:
        try:
            for a in range(0, n, step):
                pending.append(pool.submit(task, a, raw(a, min(n, a + step))))
                while len(pending) > 2 * workers or (pending and pending[0].done()):
                    done = pending.popleft().result()
                    if progress is not None:
                        progress(done)
            while pending:
                done = pending.popleft().result()
                if progress is not None:
                    progress(done)
        finally:
            for f in pending:
                f.cancel()


def _virtual_parts(ev: EventFile) -> list[tuple[str, str, int, int]] | None:
    """``(file, dataset, start, stop)`` of the sources of a virtual ``/images`` that maps
    whole source datasets, one after the other (as sharded gen-events writes it); None for
    any other layout."""
    import h5py

    ds = ev.images
    try:
        if not ds.is_virtual:
            return None
        base = os.path.dirname(os.path.abspath(ev.path))
        parts = []
        for src in ds.virtual_sources():
            if (
                src.src_space.get_select_type() != h5py.h5s.SEL_ALL
                or src.vspace.get_select_type() != h5py.h5s.SEL_HYPERSLABS
            ):
                return None
            start, stride, count, block = src.vspace.get_regular_hyperslab()
            if (
                tuple(stride) != (1, 1, 1)
                or tuple(count) != (1, 1, 1)
                or tuple(start[1:]) != (0, 0)
                or tuple(block[1:]) != tuple(ds.shape[1:])
            ):
                return None
            a = int(start[0])
            parts.append((os.path.join(base, src.file_name), src.dset_name, a, a + int(block[0])))
    except (AttributeError, OSError, RuntimeError, ValueError, TypeError):
        return None
    parts.sort(key=lambda p: p[2])
    ends = [0] + [p[3] for p in parts]
    if not parts or [p[2] for p in parts] != ends[:-1] or ends[-1] != ev.n_events:
        return None
    return parts


def _load_virtual_direct(
    ev: EventFile,
    size: int,
    method: str,
    out: np.ndarray,
    workers: int,
    progress: Callable[[int], None] | None,
) -> bool:
    """:func:`_load_direct` on each source file of a virtual ``/images`` (a sharded event
    file); False, having read nothing, when the layout does not allow it."""
    import h5py

    from spectrocnn.dataset.identity import check_shard, shard_expectations

    parts = _virtual_parts(ev)
    if not parts:
        return False
    expected = shard_expectations(ev.path, ev.attrs)
    with ExitStack() as stack:
        views = []
        for path, name, a, b in parts:
            try:
                f = stack.enter_context(h5py.File(path, "r"))
                sds = f[name]
            except (OSError, KeyError, ValueError):
                return False
            check_shard(ev.path, os.path.basename(path), f, expected)  # read directly: check it
            filt = _direct_filter(sds)
            if filt is None or tuple(sds.shape) != (b - a, *ev.image_shape):
                return False
            view = SimpleNamespace(
                images=sds, n_events=b - a, image_shape=ev.image_shape, path=path
            )
            views.append((view, filt, a, b))
        for view, filt, a, b in views:
            _load_direct(view, filt, size, method, out[a:b], workers, progress)  # type: ignore
    return True


def load_images(
    ev: EventFile,
    size: int,
    method: str = "max",
    *,
    block: int = READ_BLOCK,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImageSet:
    """Read and downsample every image of an open event file.

    Files written as the schema says (one image per chunk, gzip or no compression) are
    decoded by ``workers`` threads straight from their compressed chunks, and so are the
    shard files behind a sharded (virtual) event file; any other layout (other filters,
    other virtual datasets) is read through HDF5 in blocks of ``block`` events, one block
    ahead in a background thread.

    Parameters
    ----------
    ev : EventFile
        From :func:`open_event_file`.
    size : int
        Output size [pixels].
    method : {"max", "mean", "nearest"}
    block : int
        Events per block (HDF5 path).
    workers : int, optional
        Decoding threads; default: the cores available to the process.
    progress : callable, optional
        Called with the number of events done after each block.

    Returns
    -------
    ImageSet
    """
    from spectrocnn.model._tf import available_cores

    factor = check_downsample(ev.image_shape, size, method)
    labels = np.asarray(ev.labels, dtype=np.uint8)
    out = np.empty((ev.n_events, size, size), np.uint8)
    filt = _direct_filter(ev.images)
    if filt is not None and ev.n_events:
        _load_direct(ev, filt, size, method, out, workers or available_cores(), progress)
    elif ev.n_events and _load_virtual_direct(
        ev, size, method, out, workers or available_cores(), progress
    ):
        pass
    else:
        for a, full in _blocks(ev, block):
            out[a : a + len(full)] = downsample(full, size, method)
            if progress is not None:
                progress(len(full))
    return ImageSet(out, labels, os.path.abspath(ev.path), method, factor, file_info(ev))


# -- splitting and shuffling ----------------------------------------------------------------


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` events into training and validation at random (deterministic for a seed).

    Returns
    -------
    train, val : ndarray int64
        Sorted event indices; ``len(val) == round(val_fraction * n)``.

    Raises
    ------
    ConfigError
        When ``val_fraction`` is not in (0, 1) or leaves either part empty.
    """
    if not (isinstance(val_fraction, int | float) and 0.0 < val_fraction < 1.0):
        raise ConfigError(f"--val-fraction must be in (0, 1), got {val_fraction!r}")
    n_val = round(val_fraction * n)
    if not 0 < n_val < n:
        raise ConfigError(
            f"--val-fraction {val_fraction} of {n} events leaves {n_val} validation and "
            f"{n - n_val} training events; both need at least one (change --val-fraction, "
            "or give more events)"
        )
    perm = _stream(seed, 0).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` (0-based) visits ``indices``."""
    return np.asarray(indices)[_stream(seed, 1, epoch).permutation(len(indices))]


# -- tf.data --------------------------------------------------------------------------------


def make_dataset(
    images: tf.Tensor,
    labels: tf.Tensor,
    order: np.ndarray,
    *,
    batch_size: int,
    scale: float,
) -> tf.data.Dataset:
    """Batches ``(x, y)`` of the events ``order`` (one row per epoch, or one flat order).

    Each batch gathers its rows from the in-memory uint8 tensor and converts them to the
    model input, ``x = min(v * scale, 1)`` float32 ``(b, s, s, 1)``, ``y`` float32
    ``(b,)``; batches never span two epochs (the last one of an epoch may be short).

    Parameters
    ----------
    images : tf.Tensor uint8 (n, s, s)
    labels : tf.Tensor uint8 (n,)
    order : ndarray int, shape (m,) or (epochs, m)
        Event indices in the order to visit them.
    batch_size : int
    scale : float
        See :func:`input_scale`.
    """
    import tensorflow as tf

    order = np.asarray(order, dtype=np.int64)
    if order.ndim == 1:
        ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
    else:
        ds = tf.data.Dataset.from_tensor_slices(order).flat_map(
            lambda row: tf.data.Dataset.from_tensor_slices(row).batch(batch_size)
        )

    def to_input(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        v = tf.cast(tf.gather(images, idx), tf.float32)
        x = tf.minimum(v * scale, 1.0) if scale != 1.0 else tf.minimum(v, 1.0)
        return x[..., tf.newaxis], tf.cast(tf.gather(labels, idx), tf.float32)

    return ds.map(to_input, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
