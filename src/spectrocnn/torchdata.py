"""PyTorch datasets of detector images: over an event file, and over freshly simulated events.

Needs the optional extra ``torch`` (``pip install -e '.[torch]'``); importing this module
without PyTorch raises an :class:`ImportError` that says so. It never imports TensorFlow.

:class:`EventFileDataset` (map-style)
    Item ``i`` is event ``i`` of an event file: its image read from the file and downsampled
    as train-cnn does (:func:`spectrocnn.model.data.downsample`), its label and, with
    ``truth=True``, a few numbers of its truth. Each process opens the file itself on first
    use, so ``DataLoader(..., num_workers=W)`` works with any ``W`` (and any start method).
:class:`FreshEventsDataset` (iterable)
    Batches of events simulated on the fly from a configuration, rasterized and downsampled
    as gen-events and train-cnn would: an endless supply of new events, one epoch at a time
    (:meth:`FreshEventsDataset.set_epoch`). Use it with ``DataLoader(ds, batch_size=None)``.

Model input
    ``x`` is float32 ``(1, s, s)`` per event (channels first), ``min(v * scale, 1)`` of the
    downsampled stored values ``v`` (:func:`spectrocnn.model.data.input_scale`): the pixel
    occupancy (``max``, ``nearest``) or the fraction of lit pixels in each block (``mean``),
    exactly what train-cnn feeds its Keras model (which takes channels last). ``y`` is the
    label as float32 (for :class:`torch.nn.BCEWithLogitsLoss`).

Truth (``truth=True``)
    A dict of per-event numbers (:data:`TRUTH_FIELDS`): ``event`` (int64, the event's index
    in the file or in the epoch), ``n_particles`` and ``n_hits`` (int64, noise hits
    included), ``n_above_threshold`` (int64, particles at or above the labelling threshold)
    and ``max_pt_GeV`` (float32, the highest p_T of the event's particles [GeV/c]); the
    full truth of event ``i`` of a file is :meth:`spectrocnn.dataset.EventFile.truth`
    ``(i, i + 1)``.

Random streams of the fresh events
    Batch ``b`` of epoch ``e`` is simulated from its own stream,
    ``SeedSequence(epoch_seed(seed, e), spawn_key=(b,))``
    (:func:`spectrocnn.dataset.fresh.epoch_seed`, the streams train-cnn ``--generate``
    uses too; its images come from :func:`spectrocnn.dataset.fresh.batch_images`), the stream
    gen-events gives chunk ``b`` of a file made with seed ``epoch_seed(seed, e)``. Worker
    ``w`` of ``W`` makes batches ``w, w + W, w + 2W, ...``, which the ``DataLoader`` hands
    out in order: the batches, and their order, do not depend on the number of workers.
    With ``batch_size = chunk_events(config.simulation)`` (256 for every preset) the batches
    are gen-events' chunks: epoch ``e`` holds exactly the events (images, labels, truth) of
    ``gen-events --seed epoch_seed(seed, e)``, and epoch 0 those of ``--seed seed``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import torch
    from torch.utils.data import Dataset, IterableDataset, get_worker_info
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "spectrocnn.torchdata needs PyTorch, which is not installed: "
        "pip install -e '.[torch]' (the 'torch' extra)"
    ) from _exc

from spectrocnn.dataset.eventfile import EventFile, event_summaries, open_events
from spectrocnn.dataset.fresh import batch_images, check_count, epoch_seed
from spectrocnn.dataset.pipeline import simulate_chunk
from spectrocnn.errors import EventFileError
from spectrocnn.model.data import check_downsample, downsample, input_scale, load_images
from spectrocnn.seeds import check_seed, new_seed

if TYPE_CHECKING:  # pragma: no cover
    from spectrocnn.config import Config
    from spectrocnn.simulate.events import EventBatch

__all__ = ["TRUTH_FIELDS", "EventFileDataset", "FreshEventsDataset", "epoch_seed"]

#: The per-event truth given with ``truth=True``, in this order (see the module docstring).
TRUTH_FIELDS = ("event", "n_particles", "n_hits", "n_above_threshold", "max_pt_GeV")


def _model_input(values: np.ndarray, scale: float) -> np.ndarray:
    """float32 ``min(v * scale, 1)`` of uint8 stored values ``(k, s, s)``, as ``(k, 1, s, s)``."""
    x = values.astype(np.float32)
    if scale != 1.0:
        x *= np.float32(scale)
    np.minimum(x, np.float32(1.0), out=x)
    return x[:, np.newaxis]


def _truth_tensors(columns: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The :data:`TRUTH_FIELDS` columns as tensors: int64, and float32 ``max_pt_GeV``."""
    return {
        k: torch.from_numpy(
            np.ascontiguousarray(columns[k], np.float32 if k == "max_pt_GeV" else np.int64)
        )
        for k in TRUTH_FIELDS
    }


def _file_truth(ev: EventFile) -> dict[str, np.ndarray]:
    """The :data:`TRUTH_FIELDS` of every event of an open event file."""
    n_above, max_pt = ev.read_n_above_threshold(), ev.read_max_pt()
    if n_above is None or max_pt is None:
        raise EventFileError(
            f"{ev.path}: truth=True needs /events/n_above_threshold and /events/max_pt_GeV, "
            "which this older event file lacks; write it again with gen-events, or use "
            "truth=False"
        )
    return {
        "event": np.arange(ev.n_events, dtype=np.int64),
        "n_particles": np.diff(ev.particle_offsets),
        "n_hits": np.diff(ev.hit_offsets),
        "n_above_threshold": n_above,
        "max_pt_GeV": max_pt,
    }


class EventFileDataset(Dataset):
    """Map-style dataset of the events of an event file, downsampled as train-cnn does.

    Parameters
    ----------
    path : path-like
        An event file (schema ``spectrocnn.events/2`` or ``/1``; sharded files too).
    input_size : int
        Output height and width ``s`` [pixels], as train-cnn's ``--input-size``.
    downsample : {"max", "mean", "nearest"}
        As train-cnn's ``--downsample`` (:func:`spectrocnn.model.data.downsample`).
    truth : bool
        Also give each event's :data:`TRUTH_FIELDS`.
    in_memory : bool
        Read and downsample every image here, at once, as train-cnn does
        (:func:`spectrocnn.model.data.load_images`: compressed chunks inflated by a pool of
        threads), and serve the items from memory (``n * s * s`` bytes: 330 MB for 20 000
        events at 128 x 128). Epochs after the first then cost no reading; forked workers
        share the array, spawned ones get a copy each. Default: read each batch from the
        file when it is asked for.

    Items
    -----
    ``dataset[i]`` is ``(x, y)``, or ``(x, y, truth)`` with ``truth=True``: ``x`` float32
    ``(1, s, s)``, ``y`` float32 ``()`` (the label; int64, the class, for a file of
    multiclass labels: :attr:`label_spec`), ``truth`` a dict of 0-d tensors (module
    docstring). A ``DataLoader`` batches them to ``(b, 1, s, s)``, ``(b,)`` and a dict of
    ``(b,)`` tensors; it fetches a batch with one call of :meth:`__getitems__`, which reads
    the batch's images as train-cnn does (:meth:`~spectrocnn.dataset.EventFile.image_groups`:
    their compressed chunks inflated directly, not through HDF5's filter) and downsamples
    them together.

    The file is opened here to read its labels (and truth numbers), then closed; each
    process reading images opens it again on first use (a ``DataLoader`` worker, forked or
    spawned, never uses a handle of its parent). Call :meth:`close` to close this process's
    handle early.

    Raises
    ------
    ConfigError
        When the file does not exist, or the images cannot be downsampled to ``input_size``
        by ``downsample`` (the message names the option to change).
    EventFileError
        When the file is not a readable event file, or ``truth=True`` on a file written
        before ``/events/`` existed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        input_size: int = 128,
        downsample: str = "max",
        *,
        truth: bool = False,
        in_memory: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self._images: np.ndarray | None = None
        with open_events(self.path) as ev:
            self.factor = check_downsample(
                ev.image_shape,
                input_size,
                downsample,
                source=self.path,
                size_flag="input_size",
                method_flag="downsample",
            )
            self.image_shape = ev.image_shape
            self.window_mm = ev.window_mm
            self.label_spec = ev.label_spec
            self.labels = np.array(ev.labels)  # uint8, int64 (multiclass) or float64
            self._truth = _file_truth(ev) if truth else None
            if in_memory:
                self._images = load_images(ev, input_size, downsample).images
        self.input_size = int(input_size)
        self.downsample = downsample
        self.scale = input_scale(downsample, self.factor)
        self._ev: EventFile | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        s = self.input_size
        return (
            f"<EventFileDataset {self.path!r}: {len(self)} events, {s}x{s} by {self.downsample}"
            f"{', truth' if self._truth is not None else ''}"
            f"{', in memory' if self._images is not None else ''}>"
        )

    def _file(self) -> EventFile:
        """This process's handle of the file, opened on first use."""
        if self._ev is None or self._pid != os.getpid():
            self._ev = open_events(self.path)  # a forked child drops its parent's handle
            self._pid = os.getpid()
        return self._ev

    def close(self) -> None:
        """Close this process's handle of the file (it reopens on the next read)."""
        if self._ev is not None and self._pid == os.getpid():
            self._ev.close()
        self._ev = self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_ev"] = state["_pid"] = None  # h5py handles do not travel between processes
        return state

    def _index(self, i: Any) -> int:
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            if isinstance(i, torch.Tensor) and i.ndim == 0 and not i.is_floating_point():
                i = int(i)
            else:
                raise TypeError(f"event index must be an integer, got {i!r}")
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"event {int(i)} outside 0:{n}")
        return j

    def _values(self, idx: np.ndarray) -> np.ndarray:
        """Downsampled stored values uint8 ``(k, s, s)`` of events ``idx`` (in that order),
        read as train-cnn reads (:meth:`~spectrocnn.dataset.EventFile.image_groups`: the
        compressed chunks decoded directly, or one HDF5 read per run of consecutive
        events), or from memory."""
        if self._images is not None:
            return self._images[idx]
        size, method = self.input_size, self.downsample
        groups = self._file().image_groups([idx], transform=lambda x: downsample(x, size, method))
        try:
            return next(groups)
        finally:
            groups.close()

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, ...]]:
        """The items of ``indices`` (what a ``DataLoader`` calls for each batch)."""
        idx = np.array([self._index(i) for i in indices], dtype=np.int64)
        x = torch.from_numpy(_model_input(self._values(idx), self.scale))
        y_dtype = np.int64 if self.label_spec.kind == "multiclass" else np.float32
        y = torch.from_numpy(self.labels[idx].astype(y_dtype))
        if self._truth is None:
            return [(x[k], y[k]) for k in range(len(idx))]
        t = _truth_tensors({k: v[idx] for k, v in self._truth.items()})
        return [(x[k], y[k], {f: v[k] for f, v in t.items()}) for k in range(len(idx))]

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        return self.__getitems__([i])[0]


class FreshEventsDataset(IterableDataset):
    """Batches of freshly simulated events, ``n_events`` per epoch, downsampled as train-cnn does.

    Parameters
    ----------
    config : Config
        The physics and the image, e.g. :func:`spectrocnn.config.preset_config` or
        :func:`spectrocnn.config.load_config` (what gen-events' ``--config``/``--preset``
        give).
    n_events : int
        Events per epoch, >= 0.
    batch_size : int
        Events per batch, >= 1; also the unit of the random streams, so the events depend
        on it (module docstring): ``chunk_events(config.simulation)`` gives gen-events'
        events.
    input_size : int
        Output height and width ``s`` [pixels] (train-cnn's ``--input-size``).
    downsample : {"max", "mean", "nearest"}
        As train-cnn's ``--downsample``.
    seed : int, optional
        In ``[0, 2**64)``; None draws one (kept in :attr:`seed`, so that every worker uses
        the same).
    truth : bool
        Also give each event's :data:`TRUTH_FIELDS`; ``event`` is the index in the epoch.
    epoch : int
        The first epoch (>= 0); see :meth:`set_epoch`.

    Items
    -----
    Batches ``(x, y)`` or ``(x, y, truth)``: ``x`` float32 ``(b, 1, s, s)``, ``y`` float32
    ``(b,)``, ``truth`` a dict of ``(b,)`` tensors; every batch has ``batch_size`` events
    but the epoch's last. Load them with ``DataLoader(ds, batch_size=None,
    num_workers=W)``; ``len(ds)`` is the number of batches per epoch.

    Epochs
        Each iteration yields the batches of the current epoch. Call ``set_epoch(e)``
        before iterating over epoch ``e`` (as with ``DistributedSampler``): a ``DataLoader``
        hands its workers a copy of the dataset when it starts an epoch, so with
        ``persistent_workers=True`` the workers keep the epoch they started with.

    Raises
    ------
    ConfigError
        For a bad ``n_events``, ``batch_size``, ``seed`` or ``epoch``, or images that cannot
        be downsampled to ``input_size`` by ``downsample``.
    """

    def __init__(
        self,
        config: Config,
        n_events: int,
        *,
        batch_size: int = 32,
        input_size: int = 128,
        downsample: str = "max",
        seed: int | None = None,
        truth: bool = False,
        epoch: int = 0,
    ) -> None:
        self.n_events = check_count("n_events", n_events, minimum=0)
        self.batch_size = check_count("batch_size", batch_size, minimum=1)
        self.simulation = config.simulation
        self.image = config.image
        self.factor = check_downsample(
            self.image.shape,
            input_size,
            downsample,
            size_flag="input_size",
            method_flag="downsample",
        )
        self.input_size = int(input_size)
        self.downsample = downsample
        self.scale = input_scale(downsample, self.factor)
        self.seed = new_seed() if seed is None else check_seed(seed)
        self.truth = bool(truth)
        self.epoch = check_count("epoch", epoch, minimum=0)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iterations yield epoch ``epoch`` (>= 0)."""
        self.epoch = check_count("epoch", epoch, minimum=0)

    def __len__(self) -> int:
        return -(-self.n_events // self.batch_size)

    def __repr__(self) -> str:
        s = self.input_size
        return (
            f"<FreshEventsDataset: {self.n_events} events per epoch in batches of "
            f"{self.batch_size}, {s}x{s} by {self.downsample}, seed {self.seed}, "
            f"epoch {self.epoch}>"
        )

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        seed = epoch_seed(self.seed, self.epoch)
        for b in range(worker, len(self), workers):
            yield self._make(seed, b)

    def batch(self, index: int) -> tuple[Any, ...]:
        """Batch ``index`` of the current epoch, made in this process.

        Returns
        -------
        tuple
            ``(x, y)`` or ``(x, y, truth)`` (class docstring).

        Raises
        ------
        IndexError
            Unless ``0 <= index < len(self)``.
        """
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"batch index must be an integer, got {index!r}")
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} outside 0:{len(self)}")
        return self._make(epoch_seed(self.seed, self.epoch), int(index))

    def _make(self, seed: int, index: int) -> tuple[Any, ...]:
        """Batch ``index`` of the events of gen-events seed ``seed`` (module docstring)."""
        start = index * self.batch_size
        n = min(self.batch_size, self.n_events - start)
        events = simulate_chunk(self.simulation, seed, index, n)
        values = batch_images(events, self.image, self._transform)
        x = torch.from_numpy(_model_input(values, self.scale))
        y = torch.from_numpy(events.labels.astype(np.float32))
        if not self.truth:
            return x, y
        return x, y, _truth_tensors(self._truth(events, start))

    def _transform(self, full: np.ndarray) -> np.ndarray:
        """Full-size images uint8 ``(k, H, W)`` downsampled as train-cnn does."""
        return downsample(full, self.input_size, self.downsample)

    def _truth(self, events: EventBatch, start: int) -> dict[str, np.ndarray]:
        n = events.n_events
        summary = event_summaries(events, self.simulation.threshold)
        return {
            "event": np.arange(start, start + n, dtype=np.int64),
            "n_particles": np.bincount(events.particles.event, minlength=n),
            "n_hits": np.bincount(events.hits.event, minlength=n),
            **summary,
        }
