"""Training on events simulated afresh every epoch (``train-cnn --generate``): the data side.

:func:`fresh_data` makes the :class:`FreshData` of a run whose
:class:`~spectrocnn.model.trainconfig.TrainConfig` has ``generate`` (a resolved
configuration), which :func:`spectrocnn.model.train.train` uses in place of the images of
an event file:

Training events
    Epoch ``k`` (counted from 1, as on the console) trains on the first
    ``events_per_epoch`` events of ``gen-events --seed epoch_seed(seed, k - 1)``
    (:func:`spectrocnn.dataset.fresh.epoch_seed`: epoch 1 on those of ``--seed seed``
    itself), in their order, simulated chunk by chunk
    (``chunk_events(simulation)`` events, 256 for every preset) while the model trains:
    :meth:`FreshData.train_dataset` is a ``tf.data`` generator with a prefetch buffer of
    two chunks, so the next chunk is simulated, rasterized and downsampled in a
    ``tf.data`` thread while the model trains on the current one. Every epoch gets the same
    events whatever came before, so a resumed run continues the same stream.
Validation events
    The first ``val_events`` events of ``gen-events --seed validation_seed(seed)``
    (:func:`spectrocnn.dataset.fresh.validation_seed`, a stream apart from every epoch's),
    simulated once before the first epoch and kept in memory (``val_events * s * s``
    bytes: 66 MB for 4 000 events at 128 x 128). config.json records the seed
    (``generation.validation_seed``): ``gen-events --n M --seed V`` with the run's
    configuration writes the same events to a file, for eval-cnn.
Scored training events
    After the last epoch, the best model is scored on the training events of its own
    epoch (``best_epoch``), simulated again.

Never imported without ``generate``; imports TensorFlow only in the functions that build
tensors and datasets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn.dataset.fresh import (
    batch_images,
    epoch_chunks,
    epoch_seed,
    fresh_images,
    validation_seed,
)
from spectrocnn.dataset.pipeline import chunk_events, simulate_chunk
from spectrocnn.errors import ConfigError
from spectrocnn.model.architectures import check_projection
from spectrocnn.model.data import ImageSet, check_downsample, downsample, model_input

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from spectrocnn.config import Config
    from spectrocnn.model.trainconfig import TrainConfig

__all__ = ["FreshData", "fresh_data", "generation_config", "generation_view"]

log = logging.getLogger(__name__)


def generation_config(config: TrainConfig) -> Config:
    """``config.generate``, the :class:`~spectrocnn.config.Config` to simulate from.

    Raises
    ------
    ConfigError
        When it is the resolved configuration as a dict (config.json's, from
        :func:`~spectrocnn.model.rundir.load_run_config`), which this part of the package
        cannot turn into a ``Config`` (it imports nothing of :mod:`spectrocnn.config`).
    """
    if isinstance(config.generate, dict):
        raise ConfigError(
            "generate is the recorded configuration (a dict): make it a Config with "
            "spectrocnn.config.config_from_dict before training"
        )
    return config.generate


def generation_view(config: TrainConfig) -> tuple[dict[str, Any], list[float], str]:
    """What :func:`~spectrocnn.model.architectures.choose_architecture` reads of an event
    file, for the events ``config.generate`` makes: the resolved configuration, the image
    window [mm] and the projection."""
    gen = generation_config(config)
    return gen.to_dict(), list(gen.image.window_mm), gen.image.projection


def _source(gen: Config) -> str:
    """How the messages name the generated events."""
    return f"the events simulated from the {gen.preset} configuration (--generate)"


@dataclass
class FreshData:
    """The events of a run on fresh events (module docstring); made by :func:`fresh_data`.

    The attributes ``train``, ``val``, ``train_idx``, ``val_idx``, ``load_s`` and
    ``tensors`` are those of the images of an event file in :func:`~spectrocnn.model.train.
    train`: ``train`` holds no images until :meth:`load_epoch` (the epoch the best model is
    scored on), ``train_idx`` numbers the ``events_per_epoch`` events of an epoch.

    Attributes
    ----------
    gen : Config
        The configuration the events are simulated from.
    seed : int
        The run's seed.
    generation : dict
        What config.json records under ``generation``.
    """

    gen: Config
    seed: int
    size: int
    method: str
    train: ImageSet
    val: ImageSet
    train_idx: np.ndarray
    val_idx: np.ndarray
    load_s: float
    generation: dict[str, Any]
    tensors: tuple[Any, ...] = ()
    stream: None = None  # never streamed: an epoch's events are simulated into memory
    chunk: int = field(init=False)
    downsample: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.chunk = chunk_events(self.gen.simulation)
        self.downsample = partial(downsample, size=self.size, method=self.method)

    @property
    def events_per_epoch(self) -> int:
        """Training events per epoch."""
        return len(self.train_idx)

    def to_tensors(self, tf: Any) -> None:
        """The validation images and labels as :func:`~spectrocnn.model.data.make_dataset`
        reads them, in place (the training events come with :meth:`load_epoch`)."""
        self.tensors = (None, None, self.val.images, self.val.labels)

    def epoch_images(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Images uint8 ``(events_per_epoch, s, s)`` and labels of epoch ``epoch`` (0-based)."""
        n = self.events_per_epoch
        return fresh_images(self.gen, n, epoch_seed(self.seed, epoch), self.downsample)

    def load_epoch(self, epoch: int) -> None:
        """Simulate the training events of epoch ``epoch`` (0-based) again and make them the
        ``train`` images and tensors (what the best model is scored on)."""

        images, labels = self.epoch_images(epoch)
        self.train = ImageSet(
            images, labels, self.train.path, self.method, self.train.factor, self.train.info
        )
        self.tensors = (images, labels, *self.tensors[2:])

    def batches(
        self, first_epoch: int, last_epoch: int, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stored values uint8 ``(b, s, s)`` and labels ``(b,)`` of the training batches of
        epochs ``first_epoch`` to ``last_epoch - 1`` (0-based), simulated chunk by chunk;
        ``batch_size`` events each but the last of an epoch (batches never span epochs)."""
        sim, image = self.gen.simulation, self.gen.image
        for e in range(first_epoch, last_epoch):
            seed = epoch_seed(self.seed, e)
            x = np.empty((0, self.size, self.size), np.uint8)
            y = np.empty(0, np.uint8)
            for index, n in epoch_chunks(self.events_per_epoch, self.chunk):
                events = simulate_chunk(sim, seed, index, n)
                x = np.concatenate([x, batch_images(events, image, self.downsample)])
                y = np.concatenate([y, events.labels.astype(np.uint8)])
                whole = len(y) - len(y) % batch_size
                for a in range(0, whole, batch_size):
                    yield x[a : a + batch_size], y[a : a + batch_size]
                x, y = x[whole:], y[whole:]
            if len(y):
                yield x, y

    def train_dataset(self, first_epoch: int, last_epoch: int, batch_size: int) -> tf.data.Dataset:
        """The ``tf.data`` batches ``(x, y)`` of :meth:`batches` as model input
        (:func:`~spectrocnn.model.data.model_input`), simulated ahead in a ``tf.data``
        thread: the prefetch buffer holds two chunks of batches."""
        import tensorflow as tf

        s = self.size
        signature = (
            tf.TensorSpec((None, s, s), tf.uint8),
            tf.TensorSpec((None,), tf.uint8),
        )
        ds = tf.data.Dataset.from_generator(
            lambda: self.batches(first_epoch, last_epoch, batch_size),
            output_signature=signature,
        )
        scale = self.train.scale
        ahead = 2 * -(-self.chunk // batch_size)
        return ds.map(lambda v, y: model_input(v, y, scale)).prefetch(ahead)


def fresh_data(config: TrainConfig) -> FreshData:
    """Check the generated images against the input size and simulate the validation
    events of a run on fresh events (``config.generate`` and ``config.seed`` set).

    Raises
    ------
    ConfigError
        Images of the configuration that cannot be downsampled to ``config.input_size`` by
        ``config.downsample``, or that ``config.arch`` cannot take (``polar`` on another
        ``[image] projection`` than x-y); a validation set of one class only is logged as a warning.
    """
    t0 = time.perf_counter()
    gen = generation_config(config)
    source = _source(gen)
    check_projection(config.arch, gen.image.projection, source)  # polar: x-y images only
    factor = check_downsample(gen.image.shape, config.input_size, config.downsample, source=source)
    v_seed = validation_seed(config.seed)
    to_input = partial(downsample, size=config.input_size, method=config.downsample)
    images, labels = fresh_images(gen, config.val_events, v_seed, to_input)
    if np.unique(labels).size < 2:
        log.warning("the validation events hold one class only: ROC AUC is undefined")
    info = {
        "image_shape": [int(v) for v in gen.image.shape],
        "window_mm": [float(v) for v in gen.image.window_mm],
    }
    generation = {
        "preset": gen.preset,
        "events_per_epoch": config.events_per_epoch,
        "val_events": config.val_events,
        "chunk_events": chunk_events(gen.simulation),
        "epoch_seeds": "epoch k (from 1) trains on the events of gen-events --seed "
        "epoch_seed(seed, k - 1) (spectrocnn.dataset.fresh); epoch 1: --seed seed",
        "validation_seed": v_seed,
        "validation": "in memory; gen-events --n val_events --seed validation_seed with this "
        "configuration writes the same events",
    }
    method = config.downsample
    empty = np.empty((0, config.input_size, config.input_size), np.uint8)
    train = ImageSet(empty, np.empty(0, np.uint8), source, method, factor, info)
    val = ImageSet(images, labels, source, method, factor, info)
    return FreshData(
        gen, config.seed, config.input_size, method, train, val,
        np.arange(config.events_per_epoch), np.arange(config.val_events),
        time.perf_counter() - t0, generation,
    )  # fmt: skip
