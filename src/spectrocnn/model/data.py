"""The input pipeline: event file -> downsampled images in memory -> ``tf.data`` batches.

Reading
    Images are read in blocks of events, downsampled at once and kept in memory as uint8
    ``(n, s, s)`` arrays (20 000 events at 128 x 128 take 330 MB); the full-size images
    of a few blocks only are in memory at any time. The event file reads them
    (:meth:`spectrocnn.dataset.EventFile.image_blocks`): files laid out as the schema says
    are decoded straight from their compressed chunks by a pool of threads, one per
    available core, which also downsample; any other layout is read through HDF5, one
    block ahead in a background thread (:func:`load_images`). This module never opens
    HDF5 itself.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from spectrocnn.dataset import EventFile

__all__ = [
    "DOWNSAMPLE_METHODS",
    "ImageSet",
    "check_downsample",
    "check_preprocessing",
    "downsample",
    "epoch_order",
    "file_geometry",
    "input_scale",
    "load_images",
    "make_dataset",
    "model_input",
    "open_event_file",
    "recorded_geometry",
    "split_indices",
]

log = logging.getLogger(__name__)

#: Downsampling methods, the default first.
DOWNSAMPLE_METHODS = ("max", "mean", "nearest")


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


def check_preprocessing(
    input_size: Any = None,
    downsample: Any = None,
    *,
    size_flag: str = "input_size",
    method_flag: str = "downsample",
    required: bool = False,
) -> tuple[int | None, str | None]:
    """The one check of an input size and a downsampling method by themselves.

    :class:`~spectrocnn.model.train.TrainConfig`, :func:`check_downsample` (which then
    checks them against the images), :func:`~spectrocnn.model.evaluate.evaluate` and the
    ``--input-size`` option of ``train-cnn`` and ``eval-cnn`` use it.

    Parameters
    ----------
    input_size : int, optional
        Model input height and width [pixels]; None: not given (not checked).
    downsample : {"max", "mean", "nearest"}, optional
        None: not given (not checked).
    size_flag, method_flag : str
        The option or key that sets each value, named in the messages.
    required : bool
        None is an error too (both values are needed).

    Returns
    -------
    (int or None, str or None)
        ``input_size`` as an ``int``, ``downsample``.

    Raises
    ------
    ConfigError
        ``"downsample must be one of max, mean, nearest, got 'x'"``,
        ``"input_size must be a positive integer, got 0"`` (with the flags given).
    """
    if (downsample is not None or required) and downsample not in DOWNSAMPLE_METHODS:
        raise ConfigError(
            f"{method_flag} must be one of {', '.join(DOWNSAMPLE_METHODS)}, got {downsample!r}"
        )
    if input_size is None and not required:
        return None, downsample
    s = input_size
    if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1:
        raise ConfigError(f"{size_flag} must be a positive integer, got {s!r}")
    return int(s), downsample


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
    size, method = check_preprocessing(
        size, method, size_flag=size_flag or "input size",
        method_flag=method_flag or "downsample method", required=True,
    )  # fmt: skip
    h, w = (int(v) for v in image_shape)
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
    labels : ndarray (n,)
        uint8 (binary), int64 (multiclass) or float64 (regression).
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


def load_images(
    ev: EventFile,
    size: int,
    method: str = "max",
    *,
    block: int | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImageSet:
    """Read and downsample every image of an open event file.

    The file's blocks (:meth:`~spectrocnn.dataset.EventFile.image_blocks`) are downsampled
    by the threads that decode them: files written as the schema says (one image per
    chunk, gzip or no compression) and the shard files behind a sharded (virtual) event
    file are decoded by ``workers`` threads straight from their compressed chunks; any
    other layout is read through HDF5, one block ahead in a background thread.

    Parameters
    ----------
    ev : EventFile
        From :func:`open_event_file`.
    size : int
        Output size [pixels].
    method : {"max", "mean", "nearest"}
    block : int, optional
        Events per block (default: the event file's, 64 decoding chunks, 256 through HDF5).
    workers : int, optional
        Decoding threads; default: the cores available to the process.
    progress : callable, optional
        Called with the number of events done after each block.

    Returns
    -------
    ImageSet

    Raises
    ------
    ConfigError
        Images that cannot be downsampled to ``size`` by ``method`` (:func:`check_downsample`).
    EventFileError
        An image that cannot be read or is corrupt.
    """
    from spectrocnn.model._tf import available_cores

    factor = check_downsample(ev.image_shape, size, method)
    labels = np.asarray(ev.labels)  # uint8, int64 or float64 (EventFile.label_spec)
    out = np.empty((ev.n_events, size, size), np.uint8)
    blocks = ev.image_blocks(
        transform=lambda full: downsample(full, size, method),
        block=block,
        workers=workers or available_cores(),
    )
    for a, small in blocks:
        out[a : a + len(small)] = small
        if progress is not None:
            progress(len(small))
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
    images: np.ndarray | tf.Tensor,
    labels: np.ndarray | tf.Tensor,
    order: np.ndarray,
    *,
    batch_size: int,
    scale: float,
) -> tf.data.Dataset:
    """Batches ``(x, y)`` of the events ``order`` (one row per epoch, or one flat order).

    Each batch gathers its rows from the images in memory and converts them to the model
    input, ``x = min(v * scale, 1)`` float32 ``(b, s, s, 1)``, ``y`` float32 ``(b,)``;
    batches never span two epochs (the last one may be short). NumPy arrays are read where
    they are (``tf.numpy_function``): no copy of the images is made (``tf.constant`` of
    1.25 GB of images, 20 000 events at 256 x 256, took 5.6 GB at the peak and 3.3 GB while
    training, as ``tf.data`` copied the captured tensor again), at the same images/s.

    Parameters
    ----------
    images : ndarray or tf.Tensor, uint8 (n, s, s)
        Not to be changed while the dataset is in use; or
        :class:`~spectrocnn.model.litpixels.LitPixels`.
    labels : ndarray or tf.Tensor (n,)
        Of any numeric dtype (cast to float32: a class or a target value).
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
    take = _host_rows(tf, images, labels)

    def to_input(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return model_input(*take(idx), scale)

    return ds.map(to_input, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _host_rows(tf: Any, images: Any, labels: Any) -> Callable[[Any], tuple[Any, Any]]:
    """``idx -> (images[idx], labels[idx])`` inside ``tf.data``: ``tf.gather`` of tensors;
    indexing in place of arrays in host memory (NumPy, or
    :class:`~spectrocnn.model.litpixels.LitPixels`, made dense by indexing)."""
    if tf.is_tensor(images):
        return lambda idx: (tf.gather(images, idx), tf.gather(labels, idx))
    labels = np.asarray(labels)
    shape = images.shape[1:]
    types = (tf.as_dtype(images.dtype), tf.as_dtype(labels.dtype))

    def rows(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return images[idx], labels[idx]

    def take(idx: Any) -> tuple[Any, Any]:
        x, y = tf.numpy_function(rows, [idx], types, stateful=False)
        x.set_shape((None, *shape))
        y.set_shape((None,))
        return x, y

    return take


def model_input(values: tf.Tensor, labels: tf.Tensor, scale: float) -> tuple[tf.Tensor, tf.Tensor]:
    """The model input of a batch of stored values (in a ``tf.data`` map).

    Parameters
    ----------
    values : tf.Tensor uint8 (b, s, s)
        Stored values (:func:`downsample`).
    labels : tf.Tensor uint8 (b,)
    scale : float
        See :func:`input_scale`.

    Returns
    -------
    x : tf.Tensor float32 (b, s, s, 1)
        ``min(v * scale, 1)``.
    y : tf.Tensor float32 (b,)
    """
    import tensorflow as tf

    v = tf.cast(values, tf.float32)
    x = tf.minimum(v * scale, 1.0) if scale != 1.0 else tf.minimum(v, 1.0)
    return x[..., tf.newaxis], tf.cast(labels, tf.float32)


def file_geometry(info: dict[str, Any]) -> dict[str, Any]:
    """The event file's geometry that the architecture builders take: ``window_mm`` and
    ``barrel_radius_mm`` of a :func:`~spectrocnn.model.data.file_info` record."""
    return {"window_mm": info["window_mm"], "barrel_radius_mm": info.get("barrel_radius_mm")}


def recorded_geometry(name: str, input_size: int, info: dict[str, Any]) -> dict[str, Any]:
    """config.json's ``model_geometry``: :func:`model_geometry` on the file described by
    ``info``; {} when the architecture cannot be built on its window (the build then
    fails with the reason)."""
    from spectrocnn.model.architectures import model_geometry

    try:
        return model_geometry(name, input_size, **file_geometry(info))
    except ConfigError:
        return {}
