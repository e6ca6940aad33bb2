"""Export an event file to other tools' formats: the lecture's PNG folders, TrackML CSV.

Two formats, both written event by event (constant memory: images and truth are read in
blocks of a few dozen to a few hundred events; only a few bytes per event, the labels,
the train/test assignment and the reader's offsets, are held for the whole file) into a
directory that appears complete or not at all:

``png`` (:func:`export_png`)
    The folder layout of the lecture's Keras loader,
    ``flow_from_directory(DIR/Training, classes=["LoPt", "HiPt"], color_mode="grayscale")``::

        DIR/Training/HiPt/event000000123.png   label 1: the event has a high-momentum track
        DIR/Training/LoPt/event000000007.png   label 0
        DIR/Testing/HiPt/...
        DIR/Testing/LoPt/...
        DIR/export.json                        manifest: source, image shape, projection
                                               and window, style, seed, split, counts

    One 8-bit grayscale PNG per event, named by the event's index in the file (9 digits),
    at the stored image size (512 x 512 for the lecture preset; other sizes are written as
    they are, never resampled). Pixel values, from the stored hit count ``c`` of a pixel
    (:data:`PNG_STYLES`):

    - ``dark-on-white`` (default, like the lecture's pictures): 255 where ``c == 0``,
      0 where ``c >= 1``;
    - ``light-on-black``: 0 where ``c == 0``, 255 where ``c >= 1``;
    - ``counts``: ``c`` itself (0..255; lossless, but a single hit is a value of 1 and
      looks black).

    Back to the stored image: ``counts`` gives it exactly; the two binary styles give the
    hit map, ``stored > 0``, as ``png < 128`` (dark-on-white) or ``png >= 128``
    (light-on-black). The events are split into Training and Testing per class (the same
    fraction of each label in both folders), by a permutation drawn from ``seed``. Your
    own labels (:mod:`spectrocnn.dataset.userdata`) go to folders named by their
    ``class_names``, else LoPt/HiPt (binary) or ``class0``, ``class1``, ... (multiclass);
    a regression target has no class folders and is refused.

``trackml`` (:func:`export_trackml`)
    Per event ``eventNNNNNNNNN-hits.csv``, ``-particles.csv`` and ``-truth.csv`` (the
    TrackML challenge's files, without ``-cells.csv``), plus ``export.json``. Lengths in
    mm, momenta in GeV/c. Conventions (:data:`TRACKML_COLUMNS` lists the columns):

    - ``hit_id``: 1, 2, ... within the event, in stored order; ``x, y, z`` measured.
    - ``volume_id`` = :data:`TRACKML_VOLUME_ID` (1) for every hit, ``layer_id`` =
      ``2 * (layer + 1)`` (TrackML numbers layers 2, 4, 6, ...), ``module_id`` =
      :data:`TRACKML_MODULE_ID` (1): a layer is one module.
    - ``particle_id``: 1, 2, ... within the event, in stored order; 0 marks noise hits
      (as in TrackML). ``particle_type`` is the PDG id, ``q`` the charge [e], ``vx..vz``
      the vertex, ``px..pz`` the momentum at the vertex, ``nhits`` the particle's hits.
    - truth: ``tx..tz`` the hit's true position; ``tpx..tpz`` the true momentum at the hit
      as stored (``/hits/true_px..``: arriving at the layer), else (schema 1, or NaN) the
      particle's momentum *at its vertex*; ``export.json`` says which. ``weight`` =
      ``1 / (nhits * n_p)``, ``n_p`` the event's particles with at least one hit, so the
      weights of an event sum to 1 as in TrackML. Noise hits: ``particle_id`` 0,
      ``tx..tpz`` = 0 and ``weight`` 0 (every value is finite).

The output is built in a hidden temporary directory beside ``out`` (``.NAME.<pid>.<random>.tmp``)
and renamed to ``out`` only when complete; on any error or interrupt it is removed. An
existing ``out`` is an error unless ``overwrite`` is true, and then it is replaced only
after the new directory is complete.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from spectrocnn._atomic import atomic_output, write_reason
from spectrocnn._validate import check_number
from spectrocnn.dataset.eventfile import EventFile, open_events
from spectrocnn.dataset.pipeline import Throughput
from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.labels import require_kind
from spectrocnn.seeds import check_seed, new_seed, stream

__all__ = [
    "EXPORT_FORMATS",
    "PNG_CLASSES",
    "PNG_SPLITS",
    "PNG_STYLES",
    "TRACKML_COLUMNS",
    "TRACKML_MODULE_ID",
    "TRACKML_VOLUME_ID",
    "ExportResult",
    "export_png",
    "export_trackml",
    "png_name",
    "split_test_mask",
    "trackml_prefix",
]

log = logging.getLogger(__name__)

#: The export formats.
EXPORT_FORMATS = ("png", "trackml")

#: PNG styles: name -> how a stored hit count ``c`` becomes a pixel value.
PNG_STYLES: dict[str, str] = {
    "dark-on-white": "255 where c == 0, 0 where c >= 1 (hits black on white)",
    "light-on-black": "0 where c == 0, 255 where c >= 1 (hits white on black)",
    "counts": "c, the stored hit count (0..255), unchanged",
}

#: Class folders of the PNG layout: label -> folder (the lecture's classes=["LoPt", "HiPt"]).
PNG_CLASSES = ("LoPt", "HiPt")

#: Split folders of the PNG layout: (training, testing).
PNG_SPLITS = ("Training", "Testing")

#: TrackML ``volume_id`` of every hit.
TRACKML_VOLUME_ID = 1

#: TrackML ``module_id`` of every hit (a layer is one module).
TRACKML_MODULE_ID = 1

#: Columns of the TrackML files: part -> column names, in file order.
TRACKML_COLUMNS: dict[str, tuple[str, ...]] = {
    "hits": ("hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"),
    "particles": ("particle_id", "particle_type", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits"),
    "truth": ("hit_id", "particle_id", "tx", "ty", "tz", "tpx", "tpy", "tpz", "weight"),
}

_MANIFEST = "export.json"
_IMAGE_BLOCK_BYTES = 1 << 24  # images read per block: about 16 MiB
_TRUTH_BLOCK_EVENTS = 256  # events of truth read per block
_TPX_AT_HIT = "the true momentum at the hit (at the particle's vertex where not stored)"
_TPX_VERTEX = "the particle's momentum at its vertex (the file stores none at the hits)"
_PNG_COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class ExportResult(Throughput):
    """What :func:`export_png` or :func:`export_trackml` wrote.

    Attributes
    ----------
    path : str
        The output directory.
    format : {"png", "trackml"}
    n_events : int
        Events exported.
    n_files : int
        Files written, the manifest ``export.json`` included.
    elapsed_s : float
        Wall time [s].
    counts : dict
        PNG: ``{"Training": {"LoPt": n, "HiPt": n}, "Testing": {...}}``; TrackML: ``{}``.
    seed : int or None
        Seed of the train/test split (PNG); None for TrackML.
    n_particles, n_hits : int
        Particles and hits written (TrackML); 0 for PNG.
    """

    path: str
    format: str
    n_events: int
    n_files: int
    elapsed_s: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seed: int | None = None
    n_particles: int = 0
    n_hits: int = 0


def png_name(index: int) -> str:
    """File name of event ``index`` in the PNG layout, e.g. ``event000000123.png``."""
    return f"event{int(index):09d}.png"


def trackml_prefix(index: int) -> str:
    """TrackML file prefix of event ``index``, e.g. ``event000000123`` (9 digits)."""
    return f"event{int(index):09d}"


# -- checks -----------------------------------------------------------------------------------


def _check_fraction(test_fraction: float) -> float:
    return check_number("test_fraction", test_fraction, minimum=0.0, below=1.0)


def _check_style(style: str) -> str:
    if style not in PNG_STYLES:
        raise ConfigError(f"style must be one of {', '.join(PNG_STYLES)}, got {style!r}")
    return style


def _contains(directory: str, path: str) -> bool:
    """Whether ``path`` is ``directory`` or lies below it (after resolving links)."""
    d, p = os.path.realpath(directory), os.path.realpath(path)
    return p == d or p.startswith(d.rstrip(os.sep) + os.sep)


def _check_output(source: str | os.PathLike, out: str | os.PathLike, overwrite: bool) -> str:
    """The normalised output directory; raises ConfigError for an unusable one."""
    text = os.fspath(out)
    if not text:
        raise ConfigError("the output directory name is empty")
    target = os.path.abspath(text)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise ConfigError(f"the directory {parent!r} of the output {text!r} does not exist")
    if os.path.lexists(target):
        if not overwrite:
            raise ConfigError(f"output directory {text!r} exists (overwrite it with --overwrite)")
        if _contains(target, os.fspath(source)):
            raise ConfigError(
                f"output directory {text!r} holds the input file {os.fspath(source)!r}; "
                "it cannot be overwritten"
            )
    return target


@contextmanager
def _atomic_dir(target: str, overwrite: bool) -> Iterator[Path]:
    """A hidden temporary directory beside ``target``, renamed to it when the block succeeds
    (:func:`spectrocnn._atomic.atomic_output`): removed on any exception, KeyboardInterrupt
    included; an existing ``target`` (allowed with ``overwrite``) is replaced only then."""
    with atomic_output(
        target,
        overwrite=overwrite,
        directory=True,
        exists=lambda: ConfigError(
            f"output directory {target!r} appeared meanwhile (overwrite it with --overwrite)"
        ),
    ) as tmp:
        yield Path(tmp)


def _write_error(out: str | os.PathLike, exc: OSError) -> EventFileError:
    return EventFileError(f"cannot write {os.fspath(out)!r}: {write_reason(exc)}")


def _manifest(ev: EventFile, fmt: str, **extra: Any) -> dict[str, Any]:
    from spectrocnn import __version__

    return {
        "format": fmt,
        "source": os.path.abspath(ev.path),
        "source_schema": ev.schema,
        "source_seed": ev.seed,
        "n_events": ev.n_events,
        **extra,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spectrocnn_version": __version__,
    }


def _write_manifest(directory: Path, data: dict[str, Any]) -> None:
    (directory / _MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# -- PNG ----------------------------------------------------------------------------------------


def _style_lut(style: str) -> np.ndarray:
    """uint8 (256,): pixel value of each stored hit count."""
    counts = np.arange(256)
    if style == "dark-on-white":
        lut = np.where(counts == 0, 255, 0)
    elif style == "light-on-black":
        lut = np.where(counts == 0, 0, 255)
    else:
        lut = counts
    return lut.astype(np.uint8)


def split_test_mask(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Which events go to Testing: per class, ``round(test_fraction * n_class)`` at random.

    Parameters
    ----------
    labels : ndarray int (N,)
        Event classes ``0 .. k - 1`` (binary: 0 LoPt, 1 HiPt).
    test_fraction : float
        In [0, 1).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray bool (N,)
    """
    y = np.asarray(labels).astype(np.int64)
    test = np.zeros(len(y), dtype=bool)
    for cls in range(max(2, int(y.max(initial=0)) + 1)):
        idx = np.flatnonzero(y == cls)
        n_test = round(test_fraction * len(idx))
        test[rng.permutation(idx)[:n_test]] = True
    return test


def export_png(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    seed: int | None = None,
    style: str = "dark-on-white",
    overwrite: bool = False,
    progress: Callable[[int], Any] | None = None,
) -> ExportResult:
    """Write the images of an event file as the lecture's PNG folders (atomically).

    Parameters
    ----------
    path : path-like
        The event file.
    out : path-like
        Output directory ``DIR`` (made; its parent must exist): ``DIR/Training/{HiPt,LoPt}``
        and ``DIR/Testing/{HiPt,LoPt}`` with one PNG per event, plus ``DIR/export.json``.
    test_fraction : float
        Fraction of each class that goes to Testing, in [0, 1).
    seed : int, optional
        Seed of the split, in ``[0, 2**64)``; None draws a fresh one (recorded in the
        manifest and the result).
    style : {"dark-on-white", "light-on-black", "counts"}
        Pixel mapping (:data:`PNG_STYLES`, module docstring).
    overwrite : bool
        Replace an existing ``out`` (only once the new directory is complete).
    progress : callable, optional
        Called with the number of events just written, after every block.

    Returns
    -------
    ExportResult

    Raises
    ------
    ConfigError
        Bad arguments, missing input file, existing ``out`` without ``overwrite``.
    EventFileError
        Unreadable or corrupt input, or an I/O error while writing. Nothing is left behind.
    """
    from PIL import Image

    test_fraction = _check_fraction(test_fraction)
    seed = new_seed() if seed is None else check_seed(seed)
    lut = _style_lut(_check_style(style))
    t0 = time.perf_counter()
    with open_events(path) as ev:
        spec = ev.label_spec
        require_kind(spec, ("binary", "multiclass"), "export-events --format png", path)
        target = _check_output(path, out, overwrite)
        labels = ev.labels
        test = split_test_mask(labels, test_fraction, stream(seed))
        h, w = ev.image_shape
        default = PNG_CLASSES if spec.kind == "binary" else None
        classes = spec.class_names or default or tuple(f"class{c}" for c in range(spec.n_classes))
        counts = {s: dict.fromkeys(classes, 0) for s in PNG_SPLITS}
        log.info("exporting %d events of %s as PNG into %s", ev.n_events, ev.path, target)
        try:
            with _atomic_dir(target, overwrite) as tmp:
                dirs = {}
                for s in PNG_SPLITS:
                    for c in classes:
                        d = tmp / s / c
                        d.mkdir(parents=True)
                        dirs[s, c] = d
                step = max(1, _IMAGE_BLOCK_BYTES // max(1, h * w))
                for a in range(0, ev.n_events, step):
                    b = min(ev.n_events, a + step)
                    block = lut[ev.read_images(a, b)]
                    for k in range(b - a):
                        i = a + k
                        s = PNG_SPLITS[int(test[i])]
                        c = classes[int(labels[i])]
                        _save_png(Image, block[k], dirs[s, c] / png_name(i))
                        counts[s][c] += 1
                    if progress is not None:
                        progress(b - a)
                _write_manifest(
                    tmp,
                    _manifest(
                        ev,
                        "png",
                        image_shape=[h, w],
                        projection=ev.projection,
                        window_mm=[float(v) for v in ev.window_mm],
                        style=style,
                        mapping=PNG_STYLES[style],
                        classes={str(i): c for i, c in enumerate(classes)},
                        test_fraction=test_fraction,
                        seed=seed,
                        split="per class: a random permutation from the seed, "
                        "round(test_fraction * n_class) events to Testing",
                        counts=counts,
                    ),
                )
        except OSError as exc:
            raise _write_error(out, exc) from None
    n = ev.n_events
    return ExportResult(
        path=os.fspath(out),
        format="png",
        n_events=n,
        n_files=n + 1,
        elapsed_s=time.perf_counter() - t0,
        counts=counts,
        seed=seed,
    )


def _save_png(image_module: Any, pixels: np.ndarray, path: Path) -> None:
    """Write one uint8 (H, W) array as an 8-bit grayscale ('L') PNG."""
    image_module.fromarray(np.ascontiguousarray(pixels)).save(
        path, format="PNG", compress_level=_PNG_COMPRESS_LEVEL
    )


# -- TrackML --------------------------------------------------------------------------------------


def _write_csv(path: Path, header: tuple[str, ...], columns: list[list]) -> None:
    with open(path, "w", newline="", encoding="ascii") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(*columns, strict=True))


def _trackml_event(directory: Path, index: int, batch: Any, e: int, po: np.ndarray, ho: np.ndarray):
    """Write the three CSV files of event ``e`` of ``batch`` (file event ``index``)."""
    p, hits = batch.particles, batch.hits
    p0, p1, h0, h1 = int(po[e]), int(po[e + 1]), int(ho[e]), int(ho[e + 1])
    n_p, n_h = p1 - p0, h1 - h0
    part = hits.particle[h0:h1]
    is_noise = part < 0
    local = np.where(is_noise, 0, part - p0)  # particle row within the event
    if np.any(~is_noise & ((local < 0) | (local >= n_p))):
        raise EventFileError(f"event {index}: a hit names a particle outside its event")
    nhits = np.bincount(local[~is_noise], minlength=n_p).astype(np.int64)
    n_with_hits = int(np.count_nonzero(nhits))
    pid = np.where(is_noise, 0, local + 1)
    weight = np.zeros(n_h)
    if n_with_hits:
        weight[~is_noise] = 1.0 / (nhits[local[~is_noise]] * n_with_hits)

    # "+ 0.0" turns IEEE -0.0 into 0.0, which the CSV would otherwise print as "-0.0"
    def hitcol(a: np.ndarray) -> list:
        return (a[h0:h1] + 0.0).tolist()

    def partcol(a: np.ndarray) -> list:
        return (a[p0:p1] + 0.0).tolist()

    def truecol(a: np.ndarray) -> list:
        return (np.where(is_noise, 0.0, a[h0:h1]) + 0.0).tolist()

    def momcol(vertex: np.ndarray, at_hit: np.ndarray | None) -> list:  # at the hit if stored
        p = vertex[p0:p1][local] if n_p else np.zeros(n_h)
        p = p if at_hit is None else np.where(np.isnan(at_hit[h0:h1]), p, at_hit[h0:h1])
        return (np.where(is_noise, 0.0, p) + 0.0).tolist()

    hit_id = list(range(1, n_h + 1))
    prefix = trackml_prefix(index)
    cols = TRACKML_COLUMNS
    _write_csv(
        directory / f"{prefix}-hits.csv",
        cols["hits"],
        [
            hit_id,
            hitcol(hits.x),
            hitcol(hits.y),
            hitcol(hits.z),
            [TRACKML_VOLUME_ID] * n_h,
            (2 * (hits.layer[h0:h1].astype(np.int64) + 1)).tolist(),
            [TRACKML_MODULE_ID] * n_h,
        ],
    )
    _write_csv(
        directory / f"{prefix}-particles.csv",
        cols["particles"],
        [
            list(range(1, n_p + 1)),
            p.pdg[p0:p1].tolist(),
            partcol(p.vx),
            partcol(p.vy),
            partcol(p.vz),
            partcol(p.px),
            partcol(p.py),
            partcol(p.pz),
            p.charge[p0:p1].tolist(),
            nhits.tolist(),
        ],
    )
    _write_csv(
        directory / f"{prefix}-truth.csv",
        cols["truth"],
        [
            hit_id,
            pid.tolist(),
            truecol(hits.true_x),
            truecol(hits.true_y),
            truecol(hits.true_z),
            momcol(p.px, hits.true_px),
            momcol(p.py, hits.true_py),
            momcol(p.pz, hits.true_pz),
            weight.tolist(),
        ],
    )
    return n_p, n_h


def export_trackml(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: Callable[[int], Any] | None = None,
) -> ExportResult:
    """Write the truth of an event file as TrackML-style CSV files (atomically).

    Parameters
    ----------
    path : path-like
        The event file.
    out : path-like
        Output directory (made; its parent must exist): per event ``i``
        ``event{i:09d}-hits.csv``, ``-particles.csv``, ``-truth.csv``, plus ``export.json``.
        Columns: :data:`TRACKML_COLUMNS`; conventions in the module docstring. Lengths in
        mm, momenta in GeV/c, charge in e.
    overwrite : bool
        Replace an existing ``out`` (only once the new directory is complete).
    progress : callable, optional
        Called with the number of events just written, after every block.

    Returns
    -------
    ExportResult

    Raises
    ------
    ConfigError
        Missing input file, existing ``out`` without ``overwrite``.
    EventFileError
        Unreadable or corrupt input, or an I/O error while writing. Nothing is left behind.
    """
    t0 = time.perf_counter()
    n_particles = n_hits = 0
    with open_events(path) as ev:
        target = _check_output(path, out, overwrite)
        log.info("exporting %d events of %s as TrackML CSV into %s", ev.n_events, ev.path, target)
        try:
            with _atomic_dir(target, overwrite) as tmp:
                for a in range(0, ev.n_events, _TRUTH_BLOCK_EVENTS):
                    b = min(ev.n_events, a + _TRUTH_BLOCK_EVENTS)
                    batch = ev.truth(a, b)
                    po = batch.event_offsets("particles")
                    ho = batch.event_offsets("hits")
                    for e in range(b - a):
                        n_p, n_h = _trackml_event(tmp, a + e, batch, e, po, ho)
                        n_particles += n_p
                        n_hits += n_h
                    if progress is not None:
                        progress(b - a)
                _write_manifest(
                    tmp,
                    _manifest(
                        ev,
                        "trackml",
                        columns={k: list(v) for k, v in TRACKML_COLUMNS.items()},
                        units={"length": "mm", "momentum": "GeV/c", "charge": "e"},
                        conventions={
                            "hit_id": "1, 2, ... within the event, in stored order",
                            "particle_id": "1, 2, ... within the event, in stored order; 0 = noise",
                            "volume_id": TRACKML_VOLUME_ID,
                            "layer_id": "2 * (layer + 1)",
                            "module_id": TRACKML_MODULE_ID,
                            "tpx_tpy_tpz": _TPX_AT_HIT if ev.has_hit_momentum else _TPX_VERTEX,
                            "weight": "1 / (nhits * number of particles with hits); "
                            "0 for noise; sums to 1 per event",
                            "noise_truth": "particle_id 0, tx..tpz 0, weight 0",
                        },
                        n_particles=n_particles,
                        n_hits=n_hits,
                    ),
                )
        except OSError as exc:
            raise _write_error(out, exc) from None
    n = ev.n_events
    return ExportResult(
        path=os.fspath(out),
        format="trackml",
        n_events=n,
        n_files=3 * n + 1,
        elapsed_s=time.perf_counter() - t0,
        n_particles=n_particles,
        n_hits=n_hits,
    )
