"""Freshly simulated events as model input: the random streams of the epochs and the images.

The one home of what ``train-cnn --generate`` (:mod:`spectrocnn.model.fresh`) and
:class:`spectrocnn.torchdata.FreshEventsDataset` share. Never imports TensorFlow or PyTorch.

Random streams
    Epoch ``e`` of a run with seed ``s`` holds the events of a file made with
    ``gen-events --seed epoch_seed(s, e)`` (:func:`epoch_seed`; epoch 0: ``s`` itself):
    batch ``b`` of ``n`` events is chunk ``b`` of that file,
    :func:`~spectrocnn.dataset.pipeline.simulate_chunk` ``(simulation, epoch_seed(s, e), b, n)``
    (:func:`spectrocnn.dataset.pipeline.simulate_chunk`, the stream
    ``SeedSequence(epoch_seed(s, e), spawn_key=(b,))``). The fixed validation set of a run
    is the file ``gen-events --seed validation_seed(s)`` (:func:`validation_seed`), a stream
    apart from every epoch's. With batches of ``chunk_events(config.simulation)`` events
    (256 for every preset; what :func:`fresh_images` uses) the events are exactly the
    file's, images, labels and truth.

Images
    :func:`batch_images`: the hits projected onto the image's view
    (:meth:`spectrocnn.dataset.raster.ImageSpec.project`) and rasterized as gen-events
    does (:func:`spectrocnn.dataset.raster.rasterize_sparse`), up to :data:`RASTER_GROUP` events
    at full size at a time (2 MiB of them), each group handed to a ``transform`` (train-cnn's and
    :mod:`spectrocnn.torchdata`'s: :func:`spectrocnn.model.data.downsample`, which this
    module does not import: dataset/ imports nothing of model/). The images equal
    ``transform(EventFile.read_images(...))`` of the file.

>>> from functools import partial
>>> from spectrocnn.config import preset_config
>>> from spectrocnn.dataset.fresh import epoch_seed, fresh_images
>>> from spectrocnn.model.data import downsample
>>> config, to_input = preset_config("lecture"), partial(downsample, size=128, method="nearest")
>>> images, labels = fresh_images(config, 1000, epoch_seed(1, 3), to_input)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn.dataset.blocks import HOT_BYTES
from spectrocnn.dataset.pipeline import chunk_events, simulate_chunk
from spectrocnn.dataset.raster import rasterize_sparse
from spectrocnn.errors import ConfigError
from spectrocnn.seeds import check_seed

if TYPE_CHECKING:  # pragma: no cover
    from spectrocnn.config import Config
    from spectrocnn.dataset.raster import ImageSpec
    from spectrocnn.simulate.events import EventBatch

__all__ = [
    "RASTER_GROUP",
    "batch_images",
    "check_count",
    "epoch_chunks",
    "epoch_seed",
    "fresh_images",
    "validation_seed",
]

#: Events rasterized at full size at once, at most: the transform reads a group of
#: full-size images from the CPU cache when they take at most ``HOT_BYTES`` (2 MiB: 8
#: images of 512 x 512; 0.9 times the CPU time per lecture event of groups of 64,
#: simulation included).
RASTER_GROUP = 64

#: Spawn-key prefixes of the derived seeds: the epochs' (``"torc"``, kept from the first
#: version of :class:`~spectrocnn.torchdata.FreshEventsDataset`) and the validation set's
#: (``"vali"``); two-word keys, apart from gen-events' one-word chunk streams.
_EPOCH_KEY = 0x746F7263
_VALIDATION_KEY = 0x76616C69


def check_count(name: str, value: Any, *, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``.

    Raises
    ------
    ConfigError
        ``"{name} must be an integer >= {minimum}, got {value!r}"``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _derived_seed(seed: int, key: int, index: int) -> int:
    """The 64-bit integer drawn from ``SeedSequence(seed, spawn_key=(key, index))``."""
    words = np.random.SeedSequence(seed, spawn_key=(key, index)).generate_state(2)
    return int(words[0]) | (int(words[1]) << 32)


def epoch_seed(seed: int, epoch: int) -> int:
    """The gen-events seed of the events of epoch ``epoch`` of a run with seed ``seed``.

    ``seed`` itself for epoch 0; for epoch ``e > 0`` the 64-bit integer drawn from
    ``SeedSequence(seed, spawn_key=(0x746F7263, e))`` (so that, unlike ``seed + e``, the
    epochs of seed 1 never repeat the events of seed 2).

    Parameters
    ----------
    seed : int
        In ``[0, 2**64)``.
    epoch : int
        >= 0 (0-based).

    Returns
    -------
    int
        In ``[0, 2**64)``.

    Raises
    ------
    ConfigError
        For a seed or epoch out of range.
    """
    seed = check_seed(seed)
    epoch = check_count("epoch", epoch, minimum=0)
    return seed if epoch == 0 else _derived_seed(seed, _EPOCH_KEY, epoch)


def validation_seed(seed: int) -> int:
    """The gen-events seed of the fixed validation events of a run with seed ``seed``.

    The 64-bit integer drawn from ``SeedSequence(seed, spawn_key=(0x76616C69, 0))``: a
    stream apart from every epoch's (:func:`epoch_seed`), so that no validation event is
    ever a training event. ``gen-events --n M --seed validation_seed(seed)`` writes the
    validation events of ``train-cnn --generate --val-events M --seed seed`` to a file.

    Raises
    ------
    ConfigError
        For a seed out of ``[0, 2**64)``.
    """
    return _derived_seed(check_seed(seed), _VALIDATION_KEY, 0)


def epoch_chunks(n_events: int, chunk: int) -> Iterator[tuple[int, int]]:
    """``(index, n)`` of the chunks of ``n_events`` events: ``chunk`` events each, fewer
    in the last one."""
    for index, start in enumerate(range(0, n_events, chunk)):
        yield index, min(chunk, n_events - start)


def batch_images(
    events: EventBatch,
    image: ImageSpec,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """The images of a batch of events, as gen-events stores them, or transformed.

    Parameters
    ----------
    events : EventBatch
        ``n`` events numbered from 0.
    image : ImageSpec
        The image (view, window, size ``H x W``, hit radius).
    transform : callable, optional
        Applied to each group of at most :data:`RASTER_GROUP` full-size images, uint8
        ``(k, H, W)`` (hits per pixel), e.g. train-cnn's downsampling
        ``functools.partial(spectrocnn.model.data.downsample, size=s, method=m)`` (as
        :meth:`spectrocnn.dataset.EventFile.image_blocks` takes it): only a group is in
        memory at full size.

    Returns
    -------
    ndarray
        ``(n, H, W)`` uint8 without ``transform``; else its outputs, concatenated.
    """
    h, n = events.hits, events.n_events
    u, v = image.project(h.x, h.y, h.z)
    sparse = rasterize_sparse(u, v, h.event, n, image)
    parts = []
    group = max(1, min(RASTER_GROUP, HOT_BYTES // (image.shape[0] * image.shape[1])))
    for a in range(0, max(n, 1), group):
        full = sparse.todense(a, min(n, a + group))
        parts.append(full if transform is None else transform(full))
    return np.concatenate(parts)


def fresh_images(
    config: Config,
    n_events: int,
    seed: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of the first ``n_events`` events of ``gen-events --seed seed``.

    Parameters
    ----------
    config : Config
        The physics and the image.
    n_events : int
        >= 0.
    seed : int
        The gen-events seed (:func:`epoch_seed`, :func:`validation_seed`).
    transform : callable, optional
        Applied to the full-size images, as in :func:`batch_images`.

    Returns
    -------
    images : ndarray
        uint8 ``(n_events, H, W)`` (hits per pixel) without ``transform``, else its
        outputs, concatenated.
    labels : ndarray uint8, shape (n_events,)

    Raises
    ------
    ConfigError
        For a negative ``n_events`` or a bad seed.
    """
    n_events = check_count("n_events", n_events, minimum=0)
    seed = check_seed(seed)
    images, labels = [], []
    for index, n in epoch_chunks(n_events, chunk_events(config.simulation)):
        events = simulate_chunk(config.simulation, seed, index, n)
        images.append(batch_images(events, config.image, transform))
        labels.append(events.labels.astype(np.uint8))
    if not images:
        full = np.zeros((0, *config.image.shape), np.uint8)
        return (full if transform is None else transform(full)), np.empty(0, np.uint8)
    return np.concatenate(images), np.concatenate(labels)
