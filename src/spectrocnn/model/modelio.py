"""Saving, loading and applying models (the ``.keras`` files of a run directory).

Saves are atomic (temporary name, then rename); loading says why a file is not a model
(:mod:`spectrocnn._modelfile`) where Keras would say "File not found", and registers the
custom layers (:mod:`spectrocnn.model.layers`). Imports Keras only inside the functions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn._atomic import atomic_path
from spectrocnn.errors import ModelFileError
from spectrocnn.model.data import make_dataset

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = ["PREDICT_BATCH", "load_model", "predict", "predict_batches", "save_model"]

#: Events per batch when scoring.
#: Batch of the validation pass and of scoring. On 2 CPU cores 64 scored 1.2-2.1 x as many
#: images per second as 256 (both networks, fp32 and bf16), whose float32 batches of
#: 256 x 256 images (64 MiB) no longer fit the caches.
PREDICT_BATCH = 64


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """Silence Keras' absl warnings (legacy-format notices) for the duration."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def save_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` to ``path`` atomically; ``.h5`` in Keras' legacy format, anything else
    as ``.keras``."""
    with atomic_path(path) as tmp:
        if path.suffix != ".h5":
            model.save(tmp)
            return
        # Keras' legacy HDF5 writer pops "optimizer" from the model's compile config, so
        # that every later .keras save would lose the optimizer: restore it afterwards.
        compile_config = getattr(getattr(model, "_compile_config", None), "config", None)
        saved = dict(compile_config) if isinstance(compile_config, dict) else None
        try:
            with _quiet_absl():
                model.save(tmp)
        finally:
            if saved is not None:
                compile_config.clear()
                compile_config.update(saved)


def load_model(path: str | os.PathLike) -> keras.Model:
    """A saved model (``.keras`` or legacy ``.h5``), with spectrocnn's custom layers.

    Raises
    ------
    ModelFileError
        A file that is missing, unreadable or not a model (the real cause, from
        :func:`spectrocnn._modelfile.check_model_file`), or that Keras cannot load.
    """
    from spectrocnn._modelfile import check_model_file

    check_model_file(path)  # the real cause, where Keras would say "File not found"
    import keras

    import spectrocnn.model.layers  # noqa: F401  (registers the custom layers)

    try:
        with _quiet_absl():
            return keras.models.load_model(path)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors ...
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelFileError(f"{path}: cannot load the model ({msg})") from None


def predict(
    model: keras.Model,
    images: Any,
    labels: Any,
    order: np.ndarray,
    scale: float,
    *,
    progress: Callable[[int], Any] | None = None,
) -> np.ndarray:
    """Scores of the events ``order``: float64 ``(len(order),)``, the probability of class
    1 (binary labels) or the predicted value (regression); ``(len(order), k)``, the
    probability of each class, for a model of ``k > 1`` outputs (multiclass labels).

    Parameters
    ----------
    model : keras.Model
    images, labels : tf.Tensor
        uint8 ``(n, s, s)`` and ``(n,)`` in memory (:func:`~spectrocnn.model.data.make_dataset`).
    order : ndarray int (m,)
        The events to score, in this order.
    scale : float
        :func:`~spectrocnn.model.data.input_scale`.
    progress : callable, optional
        Receives the number of events scored after each batch.
    """
    if len(order) == 0:
        return np.zeros(0)
    ds = make_dataset(images, labels, order, batch_size=PREDICT_BATCH, scale=scale)
    return predict_batches(model, ds, len(order), progress=progress)


def predict_batches(
    model: keras.Model, ds: Any, n: int, *, progress: Callable[[int], Any] | None = None
) -> np.ndarray:
    """Scores of the ``n`` events of a dataset of batches of :data:`PREDICT_BATCH` ``(x, y)``
    (the last one may be short), float64 ``(n,)``; ``progress`` as :func:`predict`'s."""
    callbacks = []
    if progress is not None:
        import keras

        left = [n]

        class Tick(keras.callbacks.Callback):
            def on_predict_batch_end(self, batch, logs=None):
                k = min(PREDICT_BATCH, left[0])
                left[0] -= k
                progress(k)

        callbacks.append(Tick())
    p = np.asarray(model.predict(ds, verbose=0, callbacks=callbacks), dtype=np.float64)
    return p if p.ndim == 2 and p.shape[1] > 1 else p.reshape(-1)
