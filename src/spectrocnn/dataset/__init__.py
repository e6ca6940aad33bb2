"""Detector images and the HDF5 event file.

Rasterization (:func:`rasterize`, pixel convention in :mod:`spectrocnn.dataset.raster`),
the event file of schema ``spectrocnn.events/2`` (:func:`open_events`,
:class:`EventFileWriter`; your own labels, :class:`LabelSpec`, and columns:
:mod:`spectrocnn.dataset.userdata`) and the gen-events pipeline (:func:`generate_file`;
sharded on a Dask cluster: :func:`generate_sharded`).
Never imports TensorFlow.

Example
-------
>>> from spectrocnn.config import preset_config
>>> from spectrocnn.dataset import generate_file, open_events
>>> generate_file(preset_config("lecture"), 1000, "events.h5", seed=1)  # doctest: +SKIP
>>> with open_events("events.h5") as ev:  # doctest: +SKIP
...     images, labels = ev.read_images(0, 100), ev.labels[:100]
"""

from __future__ import annotations

from spectrocnn.dataset.eventfile import (
    COMPRESSIONS,
    SCHEMA,
    EventFile,
    EventFileNotFoundError,
    EventFileWriter,
    open_events,
    write_events,
)
from spectrocnn.dataset.export import ExportResult, export_png, export_trackml
from spectrocnn.dataset.generate import GenerateResult, generate_file
from spectrocnn.dataset.pipeline import CHUNK_EVENTS
from spectrocnn.dataset.raster import (
    PROJECTIONS,
    ImageSpec,
    SparseImages,
    project,
    rasterize,
    rasterize_sparse,
)
from spectrocnn.dataset.shards import ShardedResult, generate_sharded
from spectrocnn.labels import LabelSpec

__all__ = [
    "CHUNK_EVENTS",
    "COMPRESSIONS",
    "PROJECTIONS",
    "SCHEMA",
    "EventFile",
    "EventFileNotFoundError",
    "EventFileWriter",
    "ExportResult",
    "GenerateResult",
    "ImageSpec",
    "LabelSpec",
    "ShardedResult",
    "SparseImages",
    "export_png",
    "export_trackml",
    "generate_file",
    "generate_sharded",
    "open_events",
    "project",
    "rasterize",
    "rasterize_sparse",
    "write_events",
]
