"""Reading a streamed run's events: :class:`EventStream` (a background thread that reads
the shuffled windows of each epoch and cuts them into batches) and the ``tf.data``
datasets and predictions built on it.

What is read, in which order and how much memory it takes: :mod:`spectrocnn.model.streaming`.
Imports TensorFlow only inside the functions that take it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from queue import Full, Queue
from typing import Any

import numpy as np

from spectrocnn.model.data import ImageSet, downsample, model_input
from spectrocnn.model.modelio import PREDICT_BATCH, predict_batches
from spectrocnn.model.streaming import (
    STREAM_BLOCK,
    StreamPlan,
    batch_bounds,
    stream_order,
    worker_positions,
)

__all__ = [
    "Epoch",
    "EventStream",
    "FitData",
    "file_order",
    "file_window",
    "fit_data",
    "predict_streamed",
    "read_downsampled",
    "score_streamed",
    "stream_dataset",
    "training_epochs",
    "window_slots",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Window:
    """One window to read: its events in file order, where each goes in the window (its
    place in the epoch's order, minus the window's start), and the window's size."""

    events: np.ndarray
    places: np.ndarray
    n: int


#: An epoch to read: (the epoch's order, its windows, the positions to read, the pieces).
Epoch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class EventStream:
    """Batches of downsampled images read from an event file in a background thread.

    Parameters
    ----------
    source : ImageSet
        From :func:`streamed_set`: the file, its labels, the downsampling.
    epochs : callable
        Returns an iterator of epochs to read, each ``(order, windows, positions, pieces)``
        (:func:`stream_order`, :func:`worker_positions`): events ``order[positions]`` are
        read window by window and fed in ``pieces``.
    window_slots : int
        Windows of images in memory at a time (being read, or being fed): at least 2, and
        one more than a piece may span (:func:`window_slots`).
    workers : int, optional
        Decoding threads; default: the available cores.

    Iterating yields ``(images uint8 (k, s, s), labels (k,))`` per piece, the labels in the
    file's dtype. An error of
    the reading thread is raised there, and kept in :attr:`error` (TensorFlow wraps what a
    generator raises: :meth:`reraise` gives the original back).
    """

    def __init__(
        self,
        source: ImageSet,
        epochs: Callable[[], Iterator[Epoch]],
        *,
        window_slots: int = 2,
        workers: int | None = None,
    ) -> None:
        from spectrocnn.model._tf import available_cores

        self.source = source
        self.epochs = epochs
        self.slots = window_slots
        self.workers = workers or available_cores()
        self.error: BaseException | None = None

    # -- the reading thread --
    def _windows(self, ready: deque) -> Iterator[np.ndarray]:
        """The groups to decode, window after window; each window is queued in ``ready``
        before its first group is handed out (empty windows are skipped)."""
        for order, windows, positions, _ in self.epochs():
            cuts = np.searchsorted(positions, windows)
            for k in range(len(windows) - 1):
                pos = positions[cuts[k] : cuts[k + 1]]
                if not len(pos):
                    continue
                events = order[pos]
                sort = np.argsort(events, kind="stable")
                places = np.arange(len(pos), dtype=np.int64)[sort]
                ready.append(_Window(events[sort], places, len(pos)))
                yield from np.split(events[sort], range(STREAM_BLOCK, len(pos), STREAM_BLOCK))

    def _produce(self, out: Queue, slots: threading.Semaphore, stop: threading.Event) -> None:
        from spectrocnn.dataset import open_events

        s = self.source
        size, method = s.images.shape[1], s.method
        ready: deque[_Window] = deque()
        try:
            with open_events(s.path) as ev:
                groups = ev.image_groups(
                    self._windows(ready), workers=self.workers,
                    transform=lambda full: downsample(full, size, method),
                )  # fmt: skip
                try:
                    for first in groups:
                        while not slots.acquire(timeout=0.1):
                            if stop.is_set():
                                return
                        window = ready.popleft()
                        images = np.empty((window.n, size, size), np.uint8)
                        done = len(first)
                        images[window.places[:done]] = first
                        while done < window.n:
                            block = next(groups)
                            images[window.places[done : done + len(block)]] = block
                            done += len(block)
                        labels = np.empty(window.n, s.labels.dtype)
                        labels[window.places] = s.labels[window.events]
                        if not _put(out, (images, labels), stop):
                            return
                finally:
                    groups.close()
            _put(out, None, stop)
        except BaseException as exc:  # handed to the consumer
            _put(out, exc, stop)

    # -- the consumer --
    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        out: Queue = Queue(maxsize=self.slots)
        slots = threading.Semaphore(self.slots)
        stop = threading.Event()
        thread = threading.Thread(
            target=self._produce, args=(out, slots, stop), name="spectrocnn-stream", daemon=True
        )
        thread.start()
        try:
            yield from self._pieces(out, slots)
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                self.error = exc
            raise
        finally:
            stop.set()
            thread.join(timeout=10)

    def _pieces(
        self, out: Queue, slots: threading.Semaphore
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Cut the windows that the reading thread hands over into the epochs' pieces."""
        held: list[tuple[np.ndarray, np.ndarray]] = []  # window parts not yet fed
        have = 0
        for _, _, _, pieces in self.epochs():
            for k in pieces:
                while have < k:
                    item = out.get()
                    if isinstance(item, BaseException):
                        raise item
                    if item is None:
                        raise RuntimeError("the event stream ended early")
                    held.append(item)
                    have += len(item[1])
                yield _take(held, int(k), slots)
                have -= int(k)

    @contextmanager
    def reraise(self) -> Iterator[None]:
        """Give back the reading thread's own error when TensorFlow raises its wrapper."""
        try:
            yield
        except Exception:
            if self.error is not None:
                raise self.error from None
            raise


def _put(out: Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; whether it was put."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except Full:
            continue
    return False


def _take(held: list, k: int, slots: threading.Semaphore) -> tuple[np.ndarray, np.ndarray]:
    """The next ``k`` events of the held windows; a window used up frees its slot."""
    xs, ys = [], []
    while k > 0:
        images, labels = held[0]
        n = min(k, len(labels))
        xs.append(images[:n])
        ys.append(labels[:n])
        k -= n
        if n == len(labels):
            held.pop(0)
            slots.release()
        else:
            held[0] = (images[n:], labels[n:])
    if len(xs) == 1:
        return xs[0], ys[0]
    return np.concatenate(xs), np.concatenate(ys)


def window_slots(window_events: int, piece: int) -> int:
    """Windows of ``window_events`` an :class:`EventStream` needs in memory for pieces of up
    to ``piece`` events: the one being fed and the next one, or more when a piece spans
    more windows."""
    return max(2, math.ceil(piece / window_events) + 1)


def file_window(plan: StreamPlan, global_batch: int) -> int:
    """Events per window of a pass in file order: the fewest whole blocks that hold a global
    batch (no shuffling to do: validation and scoring take little memory beside the
    training windows), at most the plan's window."""
    return min(plan.window_events, plan.block * math.ceil(global_batch / plan.block))


# -- the epochs a stream reads --------------------------------------------------------------


def training_epochs(
    indices: np.ndarray,
    seed: int,
    epochs: range,
    plan: StreamPlan,
    global_batch: int,
    *,
    replicas: int = 1,
    worker: int = 0,
    workers: int = 1,
) -> Callable[[], Iterator[Epoch]]:
    """The streamed training epochs ``epochs`` of the events ``indices`` (file order), as
    :class:`EventStream` reads them for worker ``worker`` of ``workers``
    (:func:`~spectrocnn.model.streaming.stream_order`, ``batch_bounds``, ``worker_positions``)."""
    indices = np.asarray(indices, np.int64)

    def epoch_list() -> Iterator[Epoch]:
        for e in epochs:
            order, windows = stream_order(
                indices, seed, e, block=plan.block, window_blocks=plan.window_blocks
            )
            bounds = batch_bounds(len(order), global_batch, replicas)
            yield (order, windows, *worker_positions(bounds, worker, workers))

    return epoch_list


def file_order(
    events: np.ndarray,
    plan: StreamPlan,
    global_batch: int,
    *,
    replicas: int = 1,
    worker: int = 0,
    workers: int = 1,
) -> Callable[[], Iterator[Epoch]]:
    """One pass over ``events`` in file order (validation, scoring), in windows of
    :func:`file_window` events, for worker ``worker`` of ``workers``."""
    order = np.sort(np.asarray(events, np.int64))
    m = len(order)
    windows = np.append(np.arange(0, m, file_window(plan, global_batch), dtype=np.int64), m)
    positions, pieces = worker_positions(batch_bounds(m, global_batch, replicas), worker, workers)

    def one_pass() -> Iterator[Epoch]:
        yield order, windows, positions, pieces

    return one_pass


# -- tf.data ----------------------------------------------------------------------------------


def stream_dataset(tf: Any, stream: EventStream) -> Any:
    """``tf.data`` batches ``(x float32 (b, s, s, 1), y float32 (b,))`` of ``stream``'s
    pieces (:func:`~spectrocnn.model.data.model_input`), two batches ahead."""
    s = stream.source.images.shape[1]
    scale = stream.source.scale
    labels = tf.as_dtype(stream.source.labels.dtype)  # uint8, int64 or float64
    signature = (tf.TensorSpec((None, s, s), tf.uint8), tf.TensorSpec((None,), labels))
    ds = tf.data.Dataset.from_generator(lambda: iter(stream), output_signature=signature)
    n = sum(len(pieces) for *_, pieces in stream.epochs())  # Keras counts the batches
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    ds = ds.map(lambda v, y: model_input(v, y, scale), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclass
class FitData:
    """The datasets of a streamed ``model.fit``: training (``steps`` global batches an
    epoch) and validation, each per worker under a distribution strategy."""

    train: Any
    val: Any
    steps: int
    streams: list[EventStream] = field(default_factory=list)

    @contextmanager
    def reraise(self) -> Iterator[None]:
        """The first reading error of any stream, instead of TensorFlow's wrapper of it."""
        try:
            yield
        except Exception:
            for s in self.streams:
                if s.error is not None:
                    raise s.error from None
            raise


def fit_data(
    tf: Any,
    strategy: Any,
    sets: tuple[ImageSet, ImageSet],
    indices: tuple[np.ndarray, np.ndarray],
    plan: StreamPlan,
    *,
    seed: int,
    epochs: range,
    batch_size: int,
    val_batch: int,
) -> FitData:
    """Streamed training and validation datasets for ``model.fit`` over ``epochs``.

    Without a strategy one stream of each; with one,
    ``strategy.distribute_datasets_from_function``: each worker (input pipeline) reads the
    slices of its replicas only, ``batch_size`` events per replica and step.
    """
    (tset, vset), (train_idx, val_idx) = sets, indices
    replicas = int(strategy.num_replicas_in_sync) if strategy is not None else 1
    steps = len(batch_bounds(len(train_idx), batch_size * replicas, replicas))
    data = FitData(None, None, steps)

    def make(which: str, worker: int, workers: int) -> Any:
        share = {"replicas": replicas, "worker": worker, "workers": workers}
        if which == "train":
            epochs_fn = training_epochs(train_idx, seed, epochs, plan, batch_size * replicas,
                                        **share)  # fmt: skip
            stream = EventStream(
                tset, epochs_fn, window_slots=window_slots(plan.window_events, batch_size)
            )
        else:
            stream = EventStream(vset, file_order(val_idx, plan, val_batch, **share),
                                 window_slots=window_slots(file_window(plan, val_batch),
                                                           val_batch))  # fmt: skip
        data.streams.append(stream)
        return stream_dataset(tf, stream)

    if strategy is None:
        data.train, data.val = make("train", 0, 1), make("val", 0, 1)
        return data
    for which in ("train", "val"):
        setattr(data, which, strategy.distribute_datasets_from_function(
            lambda ctx, w=which: make(w, ctx.input_pipeline_id, ctx.num_input_pipelines)
        ))  # fmt: skip
    return data


# -- prediction, single images --------------------------------------------------------------


def predict_streamed(
    model: Any,
    source: ImageSet,
    events: np.ndarray,
    plan: StreamPlan,
    *,
    progress: Callable[[int], Any] | None = None,
) -> np.ndarray:
    """Scores of ``events`` (increasing event numbers) of ``source``'s file, read in file
    order: float64 ``(len(events),)``; ``progress`` as
    :func:`~spectrocnn.model.modelio.predict`'s.

    Raises
    ------
    EventFileError
        An image that cannot be read or is corrupt.
    """
    import tensorflow as tf

    events = np.asarray(events, np.int64)
    if np.any(np.diff(events) < 0):
        raise ValueError("events must be in increasing order")
    if not len(events):
        return np.zeros(0)
    stream = EventStream(source, file_order(events, plan, PREDICT_BATCH),
                         window_slots=window_slots(file_window(plan, PREDICT_BATCH),
                                                   PREDICT_BATCH))  # fmt: skip
    with stream.reraise():
        return predict_batches(model, stream_dataset(tf, stream), len(events), progress=progress)


def read_downsampled(source: ImageSet, events: np.ndarray) -> np.ndarray:
    """The downsampled images (stored values) of a few ``events`` of ``source``'s file, uint8
    ``(k, s, s)``, in the order given."""
    from spectrocnn.dataset import open_events

    size = source.images.shape[1]
    with open_events(source.path) as ev:
        groups = ev.image_groups(
            [np.asarray(events, np.int64)], transform=lambda x: downsample(x, size, source.method)
        )
        try:
            return next(groups)
        finally:
            groups.close()


def score_streamed(
    model: Any,
    sets: tuple[ImageSet, ImageSet],
    indices: tuple[np.ndarray, np.ndarray],
    plan: StreamPlan,
    *,
    progress: Callable[[int], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the events ``indices[i]`` of ``sets[i]``'s file (validation, training), each
    in the order given: one pass over a file that holds both."""
    (a, b), (ia, ib) = sets, indices
    if a is b:  # one file: read it once
        events = np.union1d(ia, ib)
        scores = predict_streamed(model, a, events, plan, progress=progress)
        return scores[np.searchsorted(events, ia)], scores[np.searchsorted(events, ib)]
    out = []
    for source, idx in ((a, ia), (b, ib)):
        events, inverse = np.unique(idx, return_inverse=True)
        out.append(predict_streamed(model, source, events, plan, progress=progress)[inverse])
    return out[0], out[1]
