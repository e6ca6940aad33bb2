"""Downsampled images held in memory as their lit pixels, when the dense ones exceed the budget.

Detector images are nearly empty: a lecture event max-pooled to 256 x 256 lights about 900
of its 65 536 pixels (1.4 %), so its lit pixels (a 16-bit position and the 8-bit value
each) take about 2.8 KB instead of 64 KB. When the dense downsampled images of a run exceed
the memory budget (``--cache-mb``, :mod:`spectrocnn.model.streaming`) but their lit pixels
fit it, train-cnn reads the file once, as for images in memory, and keeps the lit pixels
(:class:`LitPixels`); every batch is made dense again when ``tf.data`` takes it
(:func:`~spectrocnn.model.data.make_dataset`), a few microseconds per image. Training then
shuffles fully every epoch and reads nothing from the disk, as in memory, and only sets
whose lit pixels exceed the budget too are streamed from the file every epoch.

:func:`load_lit_pixels` estimates the lit pixels' size from the first blocks of the file
and gives up (None) when they would not fit, or as soon as they do not while reading.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectrocnn.model.data import ImageSet, check_downsample, downsample, file_info

__all__ = ["ESTIMATE_EVENTS", "LitPixels", "load_lit_pixels"]

log = logging.getLogger(__name__)

#: Events read before the size of the lit pixels of the whole file is estimated.
ESTIMATE_EVENTS = 256

_MB = 2**20


@dataclass(frozen=True)
class LitPixels:
    """``n`` images of ``size x size`` uint8 pixels, stored as their lit (non-zero) pixels.

    Indexing with an integer array or a slice gives the dense images, uint8 ``(k, size,
    size)`` (what :func:`~spectrocnn.model.data.make_dataset` asks of an array).

    Attributes
    ----------
    size : int
        Image height and width [pixels].
    offsets : ndarray int64 (n + 1,)
        The lit pixels of image ``i`` are ``position[offsets[i]:offsets[i + 1]]``.
    position : ndarray uint16 or uint32 (m,)
        Flat index ``row * size + col`` of each lit pixel in its image (uint16 up to
        256 x 256).
    value : ndarray uint8 (m,)
        Its value (>= 1).
    """

    size: int
    offsets: np.ndarray
    position: np.ndarray
    value: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n, size, size)`` of the dense images."""
        return (len(self.offsets) - 1, self.size, self.size)

    @property
    def dtype(self) -> np.dtype:
        """uint8, the dtype of the dense images."""
        return np.dtype(np.uint8)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self.offsets.nbytes + self.position.nbytes + self.value.nbytes

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, key: Any) -> np.ndarray:
        idx = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key)
        scalar = idx.ndim == 0
        idx = np.atleast_1d(idx).astype(np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"image index out of range 0:{len(self)}")
        idx = idx % max(len(self), 1)
        npix = self.size * self.size
        out = np.zeros((len(idx), self.size, self.size), np.uint8)
        start, stop = self.offsets[idx], self.offsets[idx + 1]
        counts = stop - start
        if counts.sum():
            # the rows of the lit pixels of each chosen image, in one gather
            rows = np.repeat(start - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            image = np.repeat(np.arange(len(idx), dtype=np.int64) * npix, counts)
            out.reshape(-1)[image + self.position[rows]] = self.value[rows]
        return out[0] if scalar else out

    @classmethod
    def from_dense(cls, images: np.ndarray) -> LitPixels:
        """The lit pixels of dense images, uint8 ``(n, s, s)``."""
        n, s, _ = images.shape
        flat = images.reshape(n, -1)
        image, position = np.nonzero(flat)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(image, minlength=n), out=offsets[1:])
        kind = np.uint16 if s * s <= 2**16 else np.uint32
        return cls(s, offsets, position.astype(kind), flat[image, position])

    @classmethod
    def concatenate(cls, parts: list[LitPixels], size: int) -> LitPixels:
        """The images of ``parts``, one after the other."""
        if not parts:
            kind = np.uint16 if size * size <= 2**16 else np.uint32
            return cls(size, np.zeros(1, np.int64), np.zeros(0, kind), np.zeros(0, np.uint8))
        shift = np.cumsum([0] + [p.offsets[-1] for p in parts[:-1]])
        offsets = np.concatenate(
            [[0]] + [p.offsets[1:] + d for p, d in zip(parts, shift, strict=True)]
        ).astype(np.int64)
        return cls(
            size,
            offsets,
            np.concatenate([p.position for p in parts]),
            np.concatenate([p.value for p in parts]),
        )


def load_lit_pixels(
    ev: Any,
    size: int,
    method: str,
    budget_mb: float,
    *,
    directory: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImageSet | None:
    """The downsampled images of an open event file as :class:`LitPixels`, or None when
    they would exceed ``budget_mb`` [MB] (then nothing is kept).

    The first :data:`ESTIMATE_EVENTS` events estimate the size of the whole file (None at
    once when it exceeds the budget); reading stops as soon as the lit pixels read exceed
    it. ``progress`` as :func:`~spectrocnn.model.data.load_images`'.

    Parameters
    ----------
    directory : path-like, optional
        Write the lit pixels to files ``position.bin`` and ``value.bin`` in this (existing,
        empty) directory and map them into memory (``np.memmap``), so that the system's
        page cache holds what fits; ``budget_mb`` then bounds the files. Only the offsets
        (8 bytes per event) stay in memory.

    Returns
    -------
    ImageSet or None
        Its ``images`` are a :class:`LitPixels`.
    """
    from spectrocnn.model._tf import available_cores

    factor = check_downsample(ev.image_shape, size, method)
    n = ev.n_events
    budget = budget_mb * _MB
    kind = np.uint16 if size * size <= 2**16 else np.uint32
    parts: list[LitPixels] = []
    counts: list[np.ndarray] = []
    held = done = 0
    blocks = ev.image_blocks(
        transform=lambda full: downsample(full, size, method),
        workers=workers or available_cores(),
    )
    with ExitStack() as files:
        sink = None
        if directory is not None:
            sink = [files.enter_context(open(Path(directory) / f"{k}.bin", "wb"))
                    for k in ("position", "value")]  # fmt: skip
        try:
            for _, small in blocks:
                part = LitPixels.from_dense(small)
                if sink is None:
                    parts.append(part)
                else:
                    part.position.astype(kind).tofile(sink[0])
                    part.value.tofile(sink[1])
                    counts.append(np.diff(part.offsets))
                held += part.nbytes
                done += len(part)
                if progress is not None:
                    progress(len(part))
                if held > budget or (done >= min(ESTIMATE_EVENTS, n) and held / done * n > budget):
                    log.info(
                        "the lit pixels of %s (about %.0f MB) exceed the budget of %.0f MB",
                        ev.path, held / done * n / _MB, budget_mb,
                    )  # fmt: skip
                    return None
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()
    if sink is None:
        lit = LitPixels.concatenate(parts, size)
    else:
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.concatenate(counts) if counts else [], out=offsets[1:])
        lit = LitPixels(
            size,
            offsets,
            *(
                _mapped(Path(directory) / f"{k}.bin", t, int(offsets[-1]))
                for k, t in (("position", kind), ("value", np.uint8))
            ),
        )
    labels = np.asarray(ev.labels)  # uint8, int64 or float64 (EventFile.label_spec)
    return ImageSet(lit, labels, os.path.abspath(ev.path), method, factor, file_info(ev))


def _mapped(path: Path, dtype: Any, count: int) -> np.ndarray:
    """The ``count`` values of ``dtype`` in ``path``, mapped read-only (an empty array for
    none: a map cannot be empty)."""
    if count == 0:
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))
