"""Streaming the events from the file when their downsampled images do not fit a memory budget.

The budget (``train-cnn --cache-mb MB``, ``eval-cnn --cache-mb``; 1 MB = 2**20 bytes)
    The downsampled images of the input files take ``n * s * s`` bytes (``n`` events of
    ``s x s`` pixels, one byte each: 20 000 events take 330 MB at 128 x 128, 1 310 MB at
    256 x 256). When they fit the budget they are read into memory once, as before
    (:func:`~spectrocnn.model.data.load_images`); otherwise every epoch reads them from
    the file again (:func:`plan_streaming`). The default budget is half of the memory
    available when the run starts (:func:`default_cache_mb`: Linux's ``MemAvailable``,
    within a cgroup's memory limit). ``train-cnn`` records the budget in config.json
    (``cache_mb``): a resumed run keeps it, so that it reads and shuffles as before.

The order of a streamed epoch (:func:`stream_order`)
    The training events (in file order) are cut into *blocks* of :data:`STREAM_BLOCK`
    consecutive events. Epoch ``e`` draws from ``SeedSequence(seed, spawn_key=(STREAM_KEY,
    e))`` a random order of the blocks, groups it into *windows* of ``W`` blocks (the last
    one may be smaller) and visits each window's events in a random order drawn from the
    same stream. ``W`` is the largest number of blocks whose images take at most half the
    budget (at least one block: :func:`window_blocks`), so that the window being read and
    the window being trained on fit the budget together. The order depends on the seed,
    the epoch, the training events, ``s`` and the budget only: not on the number of
    decoding threads or workers. Validation and scoring read in file order.

How well it shuffles
    Every training event is visited once per epoch. An event's place in the epoch is
    uniform, as in a full shuffle: its block lands in any window with equal chance, and
    the event anywhere in that window; the correlation between file position and epoch
    position is 0 in expectation (per epoch it scatters as for a shuffle of the blocks,
    standard deviation about ``1 / sqrt(blocks)``). What differs from a full shuffle is how
    events that are neighbours in the file spread: two events of one block always share a
    window, so they end up about ``(L + 1) / 3`` places apart (``L = W * STREAM_BLOCK``
    events in a window; a full shuffle: ``(m + 1) / 3``), and a batch of ``b`` events holds
    events of about ``W (1 - (1 - 1/W)**b)`` different blocks (a full shuffle: nearly
    ``b``). A file whose order carries information (sorted by label, by generation run) is
    still mixed, block by block; within a block the events stay together for that epoch.
    ``benchmarks/streaming.py`` measures these statistics.

Memory
    Two windows of downsampled images (at most the budget), two windows of a global batch
    or so for validation and scoring (which read in file order), the labels (one byte per
    event) and the full-size images being decoded (2 MiB per decoding thread,
    :data:`spectrocnn.dataset.blocks.HOT_BYTES`): independent of the number of events.

Replicas and workers (:func:`batch_bounds`, :func:`worker_positions`)
    A step takes a global batch of ``batch_size x replicas`` consecutive events of the
    epoch's order, cut into one slice per replica (as equal as possible); each worker of
    ``--strategy multiworker`` reads only the events of its replicas' slices (and of its
    slices of the validation events). An epoch's last global batch, when it holds fewer
    events than there are replicas, is left out (with one replica nothing is).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectrocnn._validate import check_number
from spectrocnn.errors import ConfigError
from spectrocnn.model.data import ImageSet, check_downsample, file_info

__all__ = [
    "MEMORY_SHARE",
    "STREAM_BLOCK",
    "STREAM_KEY",
    "StreamPlan",
    "available_memory_mb",
    "batch_bounds",
    "check_cache_mb",
    "choose_streaming",
    "default_cache_mb",
    "images_mb",
    "plan_streaming",
    "resolve_cache_mb",
    "stream_order",
    "streamed_set",
    "window_blocks",
    "worker_positions",
]

log = logging.getLogger(__name__)

#: Share of the available memory that the default budget takes.
MEMORY_SHARE = 0.5

#: The budget when the available memory cannot be read (not Linux) [MB].
FALLBACK_CACHE_MB = 2048

#: Events per block: the unit that a streamed epoch shuffles, and that is read at once (as
#: many as a decoding task of :meth:`~spectrocnn.dataset.EventFile.image_blocks` takes).
STREAM_BLOCK = 64

#: Spawn-key prefix of the streamed epochs' random streams ("strm").
STREAM_KEY = 0x7374726D

_MB = 2**20


# -- the budget -----------------------------------------------------------------------------


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory_mb() -> float | None:
    """Memory available to this process [MB]: Linux's ``MemAvailable`` (/proc/meminfo),
    lowered to what a cgroup v2 memory limit leaves (``memory.max - memory.current``);
    None where neither can be read."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        avail = None
    limit = _read_int("/sys/fs/cgroup/memory.max")
    used = _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        left = max(0, limit - used)
        avail = left if avail is None else min(avail, left)
    return None if avail is None else avail / _MB


def default_cache_mb() -> int:
    """The default budget: :data:`MEMORY_SHARE` of :func:`available_memory_mb`, in whole
    MB (at least 1), or :data:`FALLBACK_CACHE_MB` where the memory cannot be read."""
    avail = available_memory_mb()
    if avail is None:
        return FALLBACK_CACHE_MB
    return max(1, math.floor(MEMORY_SHARE * avail))


def check_cache_mb(value: Any, name: str = "cache_mb") -> float:
    """``value`` as a budget [MB]: a finite number > 0 (the message names ``name``).

    Raises
    ------
    ConfigError
        ``"cache_mb must be a positive number of MB, got 0"``.
    """
    value = check_number(name, value, what="a positive number of MB")
    if value <= 0:
        raise ConfigError(f"{name} must be a positive number of MB, got {value:g}")
    return value


def images_mb(n_events: int, size: int) -> float:
    """Memory of ``n_events`` downsampled ``size x size`` images [MB] (one byte a pixel)."""
    return n_events * size * size / _MB


def window_blocks(cache_mb: float, size: int, block: int = STREAM_BLOCK) -> int:
    """Blocks in a shuffle window: as many as half the budget holds, at least one."""
    return max(1, math.floor(cache_mb * _MB / 2 / (block * size * size)))


@dataclass(frozen=True)
class StreamPlan:
    """How a run that streams reads: the budget and what follows from it.

    Attributes
    ----------
    cache_mb : float
        The budget [MB].
    size : int
        Downsampled image size ``s`` [pixels].
    block : int
        Events per block.
    window_blocks : int
        Blocks per shuffle window.
    needed_mb : float
        What the images would take in memory [MB].
    """

    cache_mb: float
    size: int
    block: int
    window_blocks: int
    needed_mb: float

    @property
    def window_events(self) -> int:
        """Events per shuffle window."""
        return self.block * self.window_blocks

    def record(self) -> dict[str, Any]:
        """What config.json records (``streaming``)."""
        return {
            "cache_mb": self.cache_mb,
            "images_mb": round(self.needed_mb, 3),
            "block_events": self.block,
            "window_blocks": self.window_blocks,
            "window_events": self.window_events,
        }

    def describe(self) -> str:
        """One line for the console."""
        return (
            f"{self.needed_mb:.0f} MB of downsampled images exceed the budget of "
            f"{self.cache_mb:g} MB (--cache-mb): streaming them from the file, shuffled in "
            f"windows of {self.window_events} events ({self.window_blocks} blocks of "
            f"{self.block})"
        )


def plan_streaming(cache_mb: float | None, size: int, n_events: int) -> StreamPlan | None:
    """None when ``n_events`` downsampled images fit ``cache_mb``, else how to stream them.

    ``cache_mb`` None: no budget (everything in memory).
    """
    if cache_mb is None:
        return None
    needed = images_mb(n_events, size)
    if needed <= cache_mb:
        return None
    return StreamPlan(float(cache_mb), int(size), STREAM_BLOCK,
                      window_blocks(cache_mb, size), needed)  # fmt: skip


def resolve_cache_mb(
    cache_mb: float | None, strategy: str, saved: Callable[[], float | None] | None = None
) -> float | None:
    """The budget of a training run: ``cache_mb`` if given; else, resuming (``saved``
    returns the run's), the run's (None for runs made before the budget existed: they read
    into memory); else :func:`default_cache_mb`, except on several ``multiworker`` workers,
    whose memories may differ and whose order must not (None: in memory)."""
    if cache_mb is not None:
        return cache_mb
    if saved is not None:
        return saved()
    if strategy == "multiworker":
        from spectrocnn.model.distribute import multiworker_role

        if multiworker_role()[1] > 1:
            return None
    return default_cache_mb()


def choose_streaming(
    cache_mb: float | None, size: int, n_events: int, report: Callable[[str], None]
) -> StreamPlan | None:
    """:func:`plan_streaming`, said through ``report`` when it streams; without a budget
    (several multiworker workers), a warning when the images exceed the default one."""
    plan = plan_streaming(cache_mb, size, n_events)
    if plan is not None:
        report(f"Streaming: {plan.describe()}")
    elif cache_mb is None and images_mb(n_events, size) > default_cache_mb():
        log.warning(
            "the downsampled images (%.0f MB) exceed half of this worker's memory; give "
            "--cache-mb (the same on every worker) to stream them from the file",
            images_mb(n_events, size),
        )
    return plan


# -- the order of an epoch ------------------------------------------------------------------


def stream_order(
    indices: np.ndarray, seed: int, epoch: int, *, block: int, window_blocks: int
) -> tuple[np.ndarray, np.ndarray]:
    """The order in which streamed epoch ``epoch`` visits ``indices`` (module docstring).

    Parameters
    ----------
    indices : ndarray int (m,)
        The training events, in file order.
    seed, epoch : int
    block, window_blocks : int
        Events per block, blocks per window.

    Returns
    -------
    order : ndarray int64 (m,)
        The events in the order of the epoch.
    windows : ndarray int64 (k + 1,)
        Where each window starts in ``order``, and ``m``.
    """
    indices = np.asarray(indices, np.int64)
    m = len(indices)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAM_KEY, epoch)))
    blocks = rng.permutation(math.ceil(m / block))
    parts, windows = [], [0]
    for k in range(0, len(blocks), window_blocks):
        events = np.concatenate(
            [indices[b * block : (b + 1) * block] for b in blocks[k : k + window_blocks]]
        )
        parts.append(events[rng.permutation(len(events))])
        windows.append(windows[-1] + len(events))
    order = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return order, np.asarray(windows, np.int64)


def batch_bounds(n: int, global_batch: int, replicas: int = 1) -> np.ndarray:
    """Where each replica's slice of each global batch of ``n`` events lies.

    Returns
    -------
    ndarray int64 (steps, replicas + 1)
        Row ``g``: positions ``bounds[g, r] : bounds[g, r + 1]`` are replica ``r``'s slice
        of global batch ``g`` (``global_batch`` events, the last one fewer, cut as
        ``np.array_split`` cuts: the first slices one event larger where it does not
        divide). A last global batch with fewer than ``replicas`` events is left out.
    """
    starts = np.arange(0, n, global_batch, dtype=np.int64)
    sizes = np.minimum(global_batch, n - starts)
    if replicas > 1 and len(sizes) and sizes[-1] < replicas:
        starts, sizes = starts[:-1], sizes[:-1]
    r = np.arange(replicas + 1, dtype=np.int64)[None, :]
    q, rem = np.divmod(sizes, replicas)  # as np.array_split: the first `rem` slices one larger
    return starts[:, None] + r * q[:, None] + np.minimum(r, rem[:, None])


def worker_positions(
    bounds: np.ndarray, worker: int, workers: int
) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the epoch that worker ``worker`` of ``workers`` reads.

    The replicas are shared equally between the workers, in order: worker ``w`` has
    replicas ``w * R / workers`` to ``(w + 1) * R / workers - 1`` of ``R = bounds.shape[1] -
    1``.

    Returns
    -------
    positions : ndarray int64
        Increasing positions (into the epoch's order) of the worker's events.
    pieces : ndarray int64
        Events in each of the worker's per-replica batches, in the order it feeds them
        (global batch by global batch, its replicas in order).
    """
    replicas = bounds.shape[1] - 1
    if replicas % workers:
        raise ValueError(f"{replicas} replicas cannot be shared by {workers} workers")
    lo, hi = worker * replicas // workers, (worker + 1) * replicas // workers
    a, b = bounds[:, lo], bounds[:, hi]
    positions = np.concatenate([np.arange(s, e) for s, e in zip(a, b, strict=True)] or [[]])
    return positions.astype(np.int64), np.diff(bounds[:, lo : hi + 1], axis=1).ravel()


# -- reading --------------------------------------------------------------------------------


def streamed_set(ev: Any, size: int, method: str) -> ImageSet:
    """An :class:`ImageSet` of an open event file without its images (they stream): its
    labels, path, downsampling and file record."""
    factor = check_downsample(ev.image_shape, size, method)
    labels = np.asarray(ev.labels)  # uint8, int64 or float64 (EventFile.label_spec)
    images = np.empty((0, size, size), np.uint8)
    return ImageSet(images, labels, os.path.abspath(ev.path), method, factor, file_info(ev))
