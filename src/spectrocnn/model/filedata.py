"""The images of the event files a run trains on: read into memory, or streamed.

:func:`read_file_data` checks the training (and validation) files, splits the events
(:func:`~spectrocnn.model.data.split_indices`), and reads and downsamples the images into
memory (:func:`~spectrocnn.model.data.load_images`), or, when they exceed the run's memory
budget, plans to stream them from the files every epoch (:mod:`spectrocnn.model.streaming`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.model import rundir
from spectrocnn.model.architectures import check_projection
from spectrocnn.model.callbacks import progress_bar
from spectrocnn.model.data import (
    ImageSet,
    check_downsample,
    load_images,
    open_event_file,
    split_indices,
)
from spectrocnn.model.litpixels import LitPixels, load_lit_pixels
from spectrocnn.model.streaming import StreamPlan, choose_streaming, plan_streaming, streamed_set
from spectrocnn.model.task import check_training_labels
from spectrocnn.model.trainconfig import TrainConfig

__all__ = ["FileData", "read_file_data"]

log = logging.getLogger(__name__)


@dataclass
class FileData:
    """The images of a run in memory (or, with ``stream``, their files: streamed): ``val``
    is ``train`` without a validation file."""

    train: ImageSet
    val: ImageSet
    train_idx: np.ndarray
    val_idx: np.ndarray
    load_s: float
    tensors: tuple[Any, ...] = ()  # train images, labels, val images, labels (arrays)
    stream: StreamPlan | None = None
    cache: tempfile.TemporaryDirectory | None = None  # of lit pixels on disk (--lit-cache)

    def close(self) -> None:
        """Remove the lit pixels written to disk, if any (the end of the run)."""
        if self.cache is not None:
            self.cache.cleanup()
            self.cache = None

    @property
    def lit_pixels_on_disk(self) -> bool:
        """Whether the lit pixels are in files of ``--lit-cache`` (memory-mapped)."""
        return self.cache is not None

    @property
    def lit_pixels_mb(self) -> float | None:
        """MB of the images held as lit pixels (:mod:`spectrocnn.model.litpixels`), or
        None when they are dense in memory or streamed."""
        sets = {id(s.images): s.images for s in (self.train, self.val)}.values()
        if self.stream is not None or not any(isinstance(i, LitPixels) for i in sets):
            return None
        return round(sum(i.nbytes for i in sets) / 2**20, 3)

    def to_tensors(self, tf: Any) -> None:
        """The images and labels as :func:`~spectrocnn.model.data.make_dataset` reads them:
        the arrays in memory, in place (no copy)."""
        if self.stream is None:
            self.tensors = (self.train.images, self.train.labels, self.val.images, self.val.labels)


def _check_file(ev: Any, config: TrainConfig, role: str) -> None:
    if ev.n_events == 0:
        raise ConfigError(f"{role} file {ev.path} holds no events")
    check_projection(config.arch, ev.projection, ev.path)  # polar: x-y images only
    check_downsample(ev.image_shape, config.input_size, config.downsample, source=ev.path)
    if role == "training":
        check_training_labels(ev.labels, ev.label_spec, ev.path)


def read_file_data(
    config: TrainConfig,
    out: Path,
    *,
    resume: bool,
    report: Callable[[str], None],
    progress: bool,
    t0: float,
) -> FileData:
    """Check the input files of ``config`` (``resume``: that they are those of the run in
    ``out``), split the events, and read and downsample the images into memory, or plan
    to stream them (:func:`~spectrocnn.model.streaming.choose_streaming`, which says so
    through ``report``); ``load_s`` counts from ``t0`` (``time.perf_counter``).

    Raises
    ------
    ConfigError
        An empty file, images that cannot be downsampled as configured, training labels
        of one class, or (resuming) input files other than the run's.
    """
    with ExitStack() as stack:
        ev = stack.enter_context(open_event_file(config.input))
        vev = stack.enter_context(open_event_file(config.val)) if config.val else None
        if resume:
            rundir.check_resume_inputs(out, {"input_file": ev, "val_file": vev})
        _check_file(ev, config, "training")
        if vev is not None:
            _check_file(vev, config, "validation")
            if vev.image_shape != ev.image_shape or vev.window_mm != ev.window_mm:
                log.warning(
                    "the validation images (%dx%d px, window %s mm) differ from the training "
                    "images (%dx%d px, window %s mm)",
                    *vev.image_shape, list(vev.window_mm), *ev.image_shape, list(ev.window_mm),
                )  # fmt: skip
            train_idx, val_idx = np.arange(ev.n_events), np.arange(vev.n_events)
        else:
            train_idx, val_idx = split_indices(ev.n_events, config.val_fraction, config.seed)
            if np.unique(ev.labels[train_idx]).size < 2:
                raise ConfigError(
                    f"the training part of {ev.path} holds one class only; use more events, "
                    "another --val-fraction or --seed, or a --val file"
                )
        files = (ev, vev) if vev is not None else (ev,)
        n_all = sum(f.n_events for f in files)
        over = plan_streaming(config.cache_mb, config.input_size, n_all)
        sets = _lit_sets(files, config, progress) if over is not None else None
        where, cache = "kept in memory", None
        if sets is None and over is not None and config.lit_cache is not None:
            cache = _cache_directory(config.lit_cache)
            sets = _lit_sets(files, config, progress, cache.name)
            where = f"written to {cache.name} (--lit-cache)"
            if sets is None:
                cache.cleanup()
                cache = None
        if sets is not None:  # dense images over the budget, their lit pixels within
            held = sum(s.images.nbytes for s in sets) / 2**20
            report(
                f"Lit pixels: {over.needed_mb:.0f} MB of downsampled images exceed the budget "
                f"of {config.cache_mb:g} MB (--cache-mb); their lit pixels ({held:.0f} MB) are "
                f"{where}"
            )
            plan = None
        else:
            plan = choose_streaming(config.cache_mb, config.input_size, n_all, report)
            sets = [_dense_or_streamed(f, config, plan, progress) for f in files]
    if np.unique(sets[-1].labels[val_idx]).size < 2 and ev.label_spec.kind == "binary":
        log.warning("the validation events hold one class only: ROC AUC is undefined")
    load_s = time.perf_counter() - t0
    return FileData(sets[0], sets[-1], train_idx, val_idx, load_s, stream=plan, cache=cache)


def _cache_directory(parent: str) -> tempfile.TemporaryDirectory:
    """A fresh directory for lit pixels under ``parent`` (created if needed)."""
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix="spectrocnn-lit-pixels-", dir=parent)
    except OSError as exc:
        raise ConfigError(f"--lit-cache {parent}: cannot make a directory there ({exc})") from None


def _dense_or_streamed(
    f: Any, config: TrainConfig, plan: StreamPlan | None, progress: bool
) -> ImageSet:
    """A file's downsampled images read into memory, or (``plan``) its streamed set."""
    if plan is not None:
        return streamed_set(f, config.input_size, config.downsample)
    with progress_bar(progress, f.n_events, f"reading {Path(f.path).name}") as bar:
        return load_images(f, config.input_size, config.downsample, progress=bar.update)


def _lit_sets(
    files: tuple[Any, ...], config: TrainConfig, progress: bool, directory: str | None = None
) -> list[ImageSet] | None:
    """The files' downsampled images as lit pixels (:mod:`spectrocnn.model.litpixels`)
    within the run's budget together, or None when they exceed it; with ``directory``, in
    files there (one subdirectory per file) within the disk's free space."""
    if directory is None:
        left = float(config.cache_mb)
    else:
        left = shutil.disk_usage(directory).free * 0.9 / 2**20
    sets: list[ImageSet] = []
    for k, f in enumerate(files):
        sub = None
        if directory is not None:
            sub = Path(directory) / str(k)
            sub.mkdir()
        with progress_bar(progress, f.n_events, f"reading {Path(f.path).name}") as bar:
            lit = load_lit_pixels(
                f, config.input_size, config.downsample, left, directory=sub, progress=bar.update
            )
        if lit is None:
            return None
        left -= lit.images.nbytes / 2**20
        sets.append(lit)
    return sets
