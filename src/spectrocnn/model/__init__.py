"""The CNN: input pipeline from the HDF5 event file, architectures, training, evaluation.

The only part of spectrocnn that uses TensorFlow/Keras, and it imports them lazily:
importing this package (or any of its modules) does not import TensorFlow; the functions
that need it do, on first call.

>>> from spectrocnn.model import TrainConfig, train            # doctest: +SKIP
>>> result = train(TrainConfig("events.h5", epochs=10), "runs/lecture")  # doctest: +SKIP
>>> result.metrics["roc_auc"]                                  # doctest: +SKIP
"""

from __future__ import annotations

from spectrocnn.metrics import binary_metrics, roc_auc, roc_curve
from spectrocnn.model.architectures import (
    ARCHITECTURES,
    build_model,
    get_architecture,
    register_architecture,
)
from spectrocnn.model.data import DOWNSAMPLE_METHODS, downsample, load_images, split_indices
from spectrocnn.model.evaluate import EvalResult, evaluate
from spectrocnn.model.modelio import ModelFileError
from spectrocnn.model.rundir import load_run_config
from spectrocnn.model.train import train
from spectrocnn.model.trainconfig import TrainConfig, TrainResult

__all__ = [
    "ARCHITECTURES",
    "DOWNSAMPLE_METHODS",
    "EvalResult",
    "ModelFileError",
    "TrainConfig",
    "TrainResult",
    "binary_metrics",
    "build_model",
    "downsample",
    "evaluate",
    "get_architecture",
    "load_images",
    "load_run_config",
    "register_architecture",
    "roc_auc",
    "roc_curve",
    "split_indices",
    "train",
]
