# size: one file so that the event-file schema (docs/design.md 3.3) has one home: its writer
# and its reader are kept together.
"""The HDF5 event file, schema ``spectrocnn.events/2`` (docs/design.md 3.3): writer and reader.

Layout::

    /images            uint8 (N, H, W), chunks (1, H, W), gzip (default), lzf or none
                       attrs: window_mm [mm] (u_min, u_max, v_min, v_max), projection
                       "xy" | "xz" | "yz" (the plane shown, (u, v) = (x, y), (x, z) or
                       (y, z); dataset/raster.py), hit_radius_px
    /labels            uint8 (N,)  1 = the event contains a high-momentum particle (lecture
                       recipe) or a particle at or above the [label] threshold; or your
                       own labels (attrs label_kind "binary" | "multiclass" | "regression",
                       n_classes, class_names, label_name; dtype by kind; absent: binary)
    /events/user/<name>, /particles/user/<name>  your own per-event and per-particle
                       columns, optional (:mod:`spectrocnn.dataset.userdata`)
    /events/n_above_threshold  int32 (N,)  particles at or above the threshold (attrs:
                       threshold_GeV, variable = "p" | "pt"); optional (older files lack it)
    /events/max_pt_GeV float64 (N,)  highest p_T of the event's particles [GeV/c] (0 for an
                       event without particles); optional (older files lack it)
    /particles/<col>   one row per particle, grouped by event, in event order
                       (columns, dtypes and units: schema.STORED_PARTICLE_COLUMNS)
    /particles/offsets int64 (N + 1,)  rows of event i are offsets[i]:offsets[i + 1]
    /hits/<col>        one row per hit, grouped by event (schema.STORED_HIT_COLUMNS);
                       ``particle`` is the row in /particles (-1 = noise); float32
                       positions and momenta, ``true_px, true_py, true_pz`` the momentum at
                       the crossing; ``x, y, z`` carry ``rounding_mm`` (the step of each
                       layer) when rounded
    /hits/offsets      int64 (N + 1,)
    root attrs         schema, version (of spectrocnn), seed, created (ISO 8601, UTC),
                       n_events, config (JSON of the fully resolved configuration),
                       run_id (identifier of the generation run, docs/design.md 3.3)

Columns with a unit carry a ``units`` attribute. The truth columns are chunked by
65 536 rows with HDF5's shuffle and gzip filters (the writer compresses each chunk itself
and writes it with HDF5's direct chunk write, :mod:`spectrocnn.dataset.chunkfilter`:
every HDF5 reader inflates it as it would its own); their dtypes and rounding, and the
version 1 layout that every reader still takes (float64, no momentum at the hits), are in
:mod:`spectrocnn.dataset.schema`. The ``offsets`` datasets are extras that
make per-event access cheap; the reader rebuilds them from the ``event`` columns when a
file lacks them. The ``schema`` attribute is written last, when the file is complete: a
file whose writing was cut short does not pass :func:`open_events`.

The images of a gzip file are zlib streams made by :mod:`spectrocnn.dataset.deflate`
straight from the lit pixels; HDF5's standard gzip filter reads them (no plugin needed).

A sharded event file (``gen-events --shards``, :mod:`spectrocnn.dataset.shards`) has this
layout with HDF5 virtual datasets over its shard files; it reads like any other, and
:func:`open_events` refuses it when a shard file is missing or does not belong to it
(another generation run, place or shape: :mod:`spectrocnn.dataset.identity`).

Every image of a file, read fast in blocks (its compressed chunks inflated by a pool of
threads, a sharded file's too): :meth:`EventFile.image_blocks`, or the events of groups
chosen by the caller: :meth:`EventFile.image_groups` (:mod:`spectrocnn.dataset.blocks`),
what train-cnn's and eval-cnn's input pipeline reads.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import h5py
import numpy as np

from spectrocnn._files import hdf5_open_problem, unreadable_reason
from spectrocnn._validate import check_int
from spectrocnn.dataset.blocks import (
    Groups,
    Transform,
    iter_image_blocks,
    iter_image_groups,
    virtual_sources,
)
from spectrocnn.dataset.chunkfilter import write_rows
from spectrocnn.dataset.deflate import encode_zlib
from spectrocnn.dataset.identity import RUN_ID_ATTR, check_shards, file_identity, new_run_id
from spectrocnn.dataset.raster import PROJECTIONS, ImageSpec, SparseImages, rasterize_sparse
from spectrocnn.dataset.schema import (
    SCHEMA,
    SCHEMA_V1,
    SCHEMAS,
    STORED_HIT_COLUMNS,
    STORED_PARTICLE_COLUMNS,
    TRUTH_CHUNK_ROWS,
    TRUTH_FILTER,
    as_stored,
    check_rounding,
    stored_columns,
    stored_hit_columns,
)
from spectrocnn.dataset.userdata import (
    USER_GROUP,
    UserColumnsWriter,
    check_labels_dataset,
    check_user_columns,
    column_dtypes,
    read_label_spec,
    user_column_names,
    write_label_attrs,
)
from spectrocnn.errors import ConfigError, EventFileError, EventFileNotFoundError
from spectrocnn.labels import LabelSpec
from spectrocnn.seeds import check_seed
from spectrocnn.simulate.events import (
    EVENT_COLUMNS,
    EventBatch,
    HitTable,
    ParticleTable,
)
from spectrocnn.simulate.gun import LabelThreshold

__all__ = [
    "COMPRESSIONS",
    "SCHEMA",
    "EventFile",
    "EventFileNotFoundError",
    "EventFileWriter",
    "event_summaries",
    "open_events",
    "slice_batch",
    "write_events",
]

log = logging.getLogger(__name__)

#: Image compressions the writer offers (all readable without plugins).
COMPRESSIONS = ("gzip", "lzf", "none")

_FLUSH_ROWS = 1 << 18  # truth rows buffered before writing (about 16 MiB)

#: The truth groups the writer makes, with their stored columns.
_TRUTH = (("particles", STORED_PARTICLE_COLUMNS), ("hits", STORED_HIT_COLUMNS))
_ROW_BYTES = 64  # at most, per buffered truth row (for the free-space check)

#: Free disk space [bytes] the writer leaves untouched. HDF5 cannot recover from a failed
#: metadata write (closing such a file crashes the process), so the writer raises ENOSPC
#: itself, before writing, when what it is about to write would leave less than this.
SPACE_MARGIN = 4 << 20


def _check_space(path: str, nbytes: int) -> None:
    """Raise ``OSError(ENOSPC)`` unless ``nbytes`` and :data:`SPACE_MARGIN` fit on the disk."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except (AttributeError, OSError):  # no statvfs here: HDF5 will find out
        return
    if st.f_bavail * st.f_frsize < nbytes + SPACE_MARGIN:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def _describe_hits(g: h5py.Group, rounding_mm: np.ndarray | None) -> None:
    """The ``description`` (and ``rounding_mm``) attributes of the /hits columns."""
    g["particle"].attrs["description"] = "row in /particles, -1 = noise hit"
    for c in ("x", "y", "z"):
        if rounding_mm is None:
            g[c].attrs["description"] = "measured position, float32 nearest"
        else:
            g[c].attrs["rounding_mm"] = rounding_mm
            g[c].attrs["description"] = (
                "measured position, a multiple of rounding_mm[layer] (0: float32 nearest)"
            )
    for c in ("true_x", "true_y", "true_z"):
        g[c].attrs["description"] = "true crossing, float32 nearest; NaN for noise hits"
    for c in ("true_px", "true_py", "true_pz"):
        g[c].attrs["description"] = (
            "true momentum arriving at the layer (before its scattering and energy loss), "
            "float32 nearest; NaN for noise hits and where not known"
        )


def check_compression(compression: str) -> str:
    """``compression`` if it is one of :data:`COMPRESSIONS`, else ConfigError naming it."""
    if compression not in COMPRESSIONS:
        raise ConfigError(
            f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}"
        )
    return compression


def slice_batch(batch: EventBatch, start: int, stop: int) -> EventBatch:
    """Events ``start:stop`` of a batch, renumbered from 0.

    Parameters
    ----------
    batch : EventBatch
    start, stop : int
        ``0 <= start <= stop <= batch.n_events``.

    Returns
    -------
    EventBatch
        Event indices run from 0 and ``hits.particle`` indexes the returned particle rows.
    """
    if not 0 <= start <= stop <= batch.n_events:
        raise IndexError(f"event range {start}:{stop} outside 0:{batch.n_events}")
    po = batch.event_offsets("particles")
    ho = batch.event_offsets("hits")
    p0, p1, h0, h1 = po[start], po[stop], ho[start], ho[stop]
    pc = {k: v[p0:p1] for k, v in batch.particles.columns().items()}
    hc = {k: v[h0:h1] for k, v in batch.hits.columns(momentum=True).items()}
    pc["event"] = pc["event"] - start
    hc["event"] = hc["event"] - start
    hc["particle"] = np.where(hc["particle"] >= 0, hc["particle"] - p0, -1)
    return EventBatch(batch.labels[start:stop], ParticleTable(**pc), HitTable(**hc))


def event_summaries(batch: EventBatch, threshold: LabelThreshold) -> dict[str, np.ndarray]:
    """Per-event ``n_above_threshold`` (int32) and ``max_pt_GeV`` (float64) of a batch.

    Parameters
    ----------
    batch : EventBatch
    threshold : LabelThreshold

    Returns
    -------
    dict
        ``n_above_threshold``: particles with |p| or p_T (``threshold.variable``) at or
        above ``threshold.threshold_GeV``; ``max_pt_GeV``: the highest p_T =
        sqrt(px^2 + py^2) [GeV/c], 0 for an event without particles.
    """
    p = batch.particles
    k = batch.n_events
    above = threshold.above(p.px, p.py, p.pz)
    n_above = np.bincount(p.event[above], minlength=k).astype(np.int32)
    pt = np.hypot(p.px, p.py)
    max_pt = np.zeros(k, dtype=np.float64)
    off = batch.event_offsets("particles")
    full = off[1:] > off[:-1]
    if np.any(full):
        max_pt[full] = np.maximum.reduceat(pt, off[:-1][full])
    return {"n_above_threshold": n_above, "max_pt_GeV": max_pt}


class EventFileWriter:
    """Write an event file chunk by chunk (streaming).

    Parameters
    ----------
    path : path-like
        The file to create (truncated if it exists; atomic replacement of a target is the
        caller's business, see :func:`spectrocnn.dataset.generate_file`).
    n_events : int
        Number of events the file will hold, >= 0.
    spec : ImageSpec
    seed : int
        Seed recorded in the file, in ``[0, 2**64)``.
    config : dict, optional
        The fully resolved configuration (JSON-able), recorded as the ``config`` attribute.
    compression : {"gzip", "lzf", "none"}
        Filter of the images (gzip at level 1). The truth columns always get shuffle and
        gzip level 1 (:data:`~spectrocnn.dataset.schema.TRUTH_FILTER`; their chunks
        compressed here, :mod:`~spectrocnn.dataset.chunkfilter`); your own integer
        columns the images' filter with shuffle, your own float columns none.
    first_event, first_particle : int
        For one shard of a larger set of events (:mod:`spectrocnn.dataset.shards`): the
        index of this file's first event and first particle row in the whole set, added
        to the stored ``event`` columns and to ``hits/particle``; the ``offsets`` stay
        rows of this file. Default 0 (a file by itself).
    run_id : str, optional
        Identifier of the generation run, recorded as the ``run_id`` attribute (the same
        for every shard of a run); default: a fresh one
        (:func:`~spectrocnn.dataset.identity.new_run_id`).
    threshold : LabelThreshold, optional
        When given, the per-event ``/events/n_above_threshold`` (particles with |p| or p_T
        at or above the threshold) and ``/events/max_pt_GeV`` are computed from each
        batch's particles and written (``Simulation.threshold`` is the one of a
        simulation).
    label_spec : LabelSpec, optional
        Your own labels (:mod:`spectrocnn.dataset.userdata`): their kind is recorded as
        attributes of ``/labels`` and :meth:`append` takes them (``labels=``); without
        it ``/labels`` holds the batches' binary labels, without attributes, as always.
    event_columns, particle_columns : mapping, optional
        Your own per-event and per-particle columns, name -> dtype (or an array whose
        dtype is taken): ``/events/user/<name>`` and ``/particles/user/<name>``, filled
        by every :meth:`append` (``event_columns=``, ``particle_columns=``).
    measured_rounding_mm : array-like (L,), optional
        Rounding step of the stored measured positions of each layer [mm], powers of two
        or 0 (:func:`~spectrocnn.dataset.schema.measured_rounding_mm` of the detector, as
        gen-events does), recorded as the ``rounding_mm`` attribute of ``/hits/x, y, z``;
        default: none (float32's nearest value). Images given to :meth:`append` should be
        made from the rounded positions (:func:`~spectrocnn.dataset.schema.as_stored`).

    Examples
    --------
    >>> with EventFileWriter("events.h5", batch.n_events, spec, seed=1) as w:  # doctest: +SKIP
    ...     u, v = spec.project(batch.hits.x, batch.hits.y, batch.hits.z)
    ...     w.append(batch, rasterize_sparse(u, v, batch.hits.event, batch.n_events, spec))
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_events: int,
        spec: ImageSpec,
        *,
        seed: int,
        config: dict[str, Any] | None = None,
        compression: str = "gzip",
        first_event: int = 0,
        first_particle: int = 0,
        run_id: str | None = None,
        threshold: LabelThreshold | None = None,
        label_spec: LabelSpec | None = None,
        event_columns: Mapping[str, Any] | None = None,
        particle_columns: Mapping[str, Any] | None = None,
        measured_rounding_mm: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        self.threshold = threshold
        self.measured_rounding_mm = check_rounding(measured_rounding_mm)
        self.label_spec = label_spec
        user_dtypes = {
            "events": column_dtypes(event_columns, "events"),
            "particles": column_dtypes(particle_columns, "particles"),
        }
        self.path = os.fspath(path)
        self.n_events = check_int("n_events", n_events, minimum=0)
        self.spec = spec
        self.compression = check_compression(compression)
        self._seed = check_seed(seed)
        self._first_event, self._first_particle = int(first_event), int(first_particle)
        self.run_id = new_run_id() if run_id is None else str(run_id)
        config_json = json.dumps({} if config is None else config, sort_keys=True)
        self._n_done = 0
        self._n_particles = 0
        self._n_hits = 0
        self._rows_written = {g: 0 for g, _ in _TRUTH}  # truth rows on disk, per group
        self._closed = False
        _check_space(self.path, 0)
        f = h5py.File(self.path, "w")
        self._file = f
        try:
            self._create(config_json)
            self._user = UserColumnsWriter(f, self.n_events, user_dtypes, self._filter)
        except BaseException:
            f.close()
            raise

    def _filter(self, integer: bool) -> dict[str, Any]:
        """Filter of your own columns (``/events/user``, ``/particles/user``)."""
        if not integer or self.compression == "none":
            return {}
        if self.compression == "gzip":
            return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        return {"compression": "lzf", "shuffle": True}

    def _create(self, config_json: str) -> None:
        from spectrocnn import __version__

        f = self._file
        n = self.n_events
        h, w = self.spec.shape
        img_filter: dict[str, Any] = {}
        if self.compression == "gzip":
            img_filter = {"compression": "gzip", "compression_opts": 1}
        elif self.compression == "lzf":
            img_filter = {"compression": "lzf"}
        images = f.create_dataset(
            "images",
            shape=(n, h, w),
            maxshape=(None, h, w),
            chunks=(1, h, w),
            dtype=np.uint8,
            **img_filter,
        )
        images.attrs["window_mm"] = np.asarray(self.spec.window_mm, dtype=np.float64)
        images.attrs["projection"] = self.spec.projection
        images.attrs["hit_radius_px"] = np.int64(self.spec.hit_radius_px)
        u, v = self.spec.axes
        images.attrs["description"] = (
            f"hits per pixel (capped at 255); row 0 = {v}_max, col 0 = {u}_min: "
            f"col = floor(({u} - {u}_min) / ({u}_max - {u}_min) * W), "
            f"row = floor(({v}_max - {v}) / ({v}_max - {v}_min) * H)"
        )
        spec = self.label_spec
        labels = f.create_dataset(
            "labels", shape=(n,), dtype=np.uint8 if spec is None else spec.stored_dtype
        )
        labels.attrs["description"] = "1 = the event contains a high-momentum particle"
        if spec is not None:
            write_label_attrs(labels, spec)
        for group, spec in _TRUTH:
            g = f.create_group(group)
            for name, (dtype, unit) in spec.items():
                ds = g.create_dataset(
                    name,
                    shape=(0,),
                    maxshape=(None,),
                    chunks=(TRUTH_CHUNK_ROWS,),
                    dtype=dtype,
                    **TRUTH_FILTER,
                )
                if unit is not None:
                    ds.attrs["units"] = unit
            off = g.create_dataset("offsets", shape=(n + 1,), dtype=np.int64)
            off.attrs["description"] = f"rows of event i in /{group} are offsets[i]:offsets[i+1]"
            off[0] = 0
        _describe_hits(f["hits"], self.measured_rounding_mm)
        if self.threshold is not None:
            g = f.create_group("events")
            for name, (dtype, unit) in EVENT_COLUMNS.items():
                ds = g.create_dataset(name, shape=(n,), dtype=dtype, **self._filter(False))
                if unit is not None:
                    ds.attrs["units"] = unit
            ds = g["n_above_threshold"]
            ds.attrs["threshold_GeV"] = self.threshold.threshold_GeV
            ds.attrs["variable"] = self.threshold.variable
            ds.attrs["description"] = (
                f"particles of the event with {self.threshold.variable} >= threshold_GeV"
            )
            g["max_pt_GeV"].attrs["description"] = "highest p_T of the event's particles, 0 if none"
        f.attrs["version"] = __version__
        f.attrs["seed"] = np.uint64(self._seed)
        f.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        f.attrs["n_events"] = np.int64(n)
        f.attrs["config"] = config_json
        f.attrs[RUN_ID_ATTR] = self.run_id
        names = ["labels", "images"]
        for g, spec in _TRUTH:
            names += [f"{g}/{c}" for c in spec] + [f"{g}/offsets"]
        if self.threshold is not None:
            names += [f"events/{c}" for c in EVENT_COLUMNS]
        self._datasets: dict[str, h5py.Dataset] = {k: f[k] for k in names}
        self._buffer: dict[str, list[np.ndarray]] = {k: [] for k in names if k != "images"}
        self._buffered_rows = 0
        self._n_flushed_events = 0

    @property
    def n_written(self) -> int:
        """Events written so far."""
        return self._n_done

    def append(
        self,
        batch: EventBatch,
        images: np.ndarray | SparseImages | None = None,
        *,
        encoded: Sequence[bytes] | None = None,
        labels: Any = None,
        event_columns: Mapping[str, Any] | None = None,
        particle_columns: Mapping[str, Any] | None = None,
        stored: bool = False,
    ) -> None:
        """Append the next events: truth, labels and images.

        Parameters
        ----------
        batch : EventBatch
            The events' truth (event indices from 0, grouped by event); renumbered to
            file-wide event and particle indices on writing.
        images : ndarray uint8 (k, H, W) or SparseImages, optional
            The events' images.
        encoded : sequence of k bytes, optional
            Instead of ``images``: each image already in the file's chunk encoding (gzip:
            a zlib stream, e.g. from :func:`~spectrocnn.dataset.deflate.encode_zlib`;
            none: the ``H * W`` raw bytes). Written with HDF5's direct chunk write.
        labels : array-like (k,), optional
            The events' own labels, of the writer's ``label_spec``
            (:meth:`~spectrocnn.labels.LabelSpec.check_values`); default ``batch.labels``
            (binary labels only).
        event_columns, particle_columns : mapping, optional
            Values of the columns declared when the writer was made: ``k`` per event
            column, one per row of ``batch.particles`` per particle column.
        stored : bool
            The hit values are already as this writer stores them (the batch is
            :func:`~spectrocnn.dataset.schema.as_stored` with its ``measured_rounding_mm``,
            as in gen-events): they are not rounded again.

        Raises
        ------
        ConfigError
            Labels or columns that do not fit (checked before anything is written).
        """
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        k = batch.n_events
        own = self._own_labels(batch, labels)
        user = self._user.check(
            {"events": event_columns, "particles": particle_columns},
            {"events": k, "particles": len(batch.particles.event)},
        )
        n0 = self._n_done
        if n0 + k > self.n_events:
            raise ValueError(
                f"{self.path}: {n0 + k} events appended, the file holds {self.n_events}"
            )
        if (images is None) == (encoded is None):
            raise ValueError("give exactly one of images and encoded")
        h, w = self.spec.shape
        rows = self._buffered_rows + k + len(batch.particles.event) + len(batch.hits.event)
        size = sum(len(c) for c in encoded) if encoded is not None else k * h * w
        _check_space(self.path, size + _ROW_BYTES * rows)  # a full disk: fail before HDF5
        if encoded is not None:
            if len(encoded) != k:
                raise ValueError(f"{len(encoded)} encoded images for {k} events")
            if self.compression == "lzf":
                raise ValueError("encoded images are not supported with lzf compression")
            self._write_encoded(encoded, n0)
        elif isinstance(images, SparseImages):
            if images.shape != (k, h, w):
                raise ValueError(f"images have shape {images.shape}, expected {(k, h, w)}")
            if self.compression == "gzip":
                self._write_encoded(encode_zlib(images), n0)
            else:
                step = max(1, (1 << 22) // (h * w))  # dense blocks of about 4 MiB
                for a in range(0, k, step):
                    b = min(k, a + step)
                    self._datasets["images"][n0 + a : n0 + b] = images.todense(a, b)
        else:
            arr = np.asarray(images)
            if arr.shape != (k, h, w) or arr.dtype != np.uint8:
                raise ValueError(f"images must be uint8 {(k, h, w)}, got {arr.dtype} {arr.shape}")
            if k:
                self._datasets["images"][n0 : n0 + k] = arr
        self._append_truth(batch, n0, own, user, stored)
        self._n_done = n0 + k

    def _own_labels(self, batch: EventBatch, labels: Any) -> np.ndarray:
        """The labels of appended events, checked against the writer's ``label_spec``."""
        spec = self.label_spec
        if labels is None:
            if spec is not None and spec.kind != "binary":
                raise ConfigError(f"{self.path}: append needs the events' {spec.kind} labels")
            return batch.labels
        values = (spec or LabelSpec()).check_values(labels)
        if len(values) != batch.n_events:
            raise ConfigError(f"{len(values)} labels for {batch.n_events} events")
        return values

    def _write_encoded(self, encoded: Sequence[bytes], n0: int) -> None:
        dsid = self._datasets["images"].id
        raw = self.compression == "none"
        size = self.spec.n_pixels
        for i, chunk in enumerate(encoded):
            if raw and len(chunk) != size:
                raise ValueError(f"a raw image chunk must have {size} bytes, got {len(chunk)}")
            dsid.write_direct_chunk((n0 + i, 0, 0), chunk)

    def _append_truth(
        self,
        batch: EventBatch,
        n0: int,
        labels: np.ndarray,
        user: dict[str, np.ndarray],
        stored: bool,
    ) -> None:
        k = batch.n_events
        pcols = batch.particles.columns()
        hcols = stored_hit_columns(batch.hits, None if stored else self.measured_rounding_mm)
        for cols, name in ((pcols, "particles"), (hcols, "hits")):
            ev = cols["event"]
            if len(ev) and (ev[0] < 0 or ev[-1] >= k or np.any(ev[1:] < ev[:-1])):
                raise ValueError(f"{name} must be grouped by event in order, events 0..{k - 1}")
        p_base, h_base = self._n_particles, self._n_hits
        pcols["event"] = pcols["event"] + (n0 + self._first_event)
        hcols["event"] = hcols["event"] + (n0 + self._first_event)
        part = hcols["particle"]
        hcols["particle"] = np.where(part >= 0, part + (p_base + self._first_particle), -1)
        buf = self._buffer
        buf["labels"].append(labels)
        self._user.append(user)  # written by _flush with the rest
        if self.threshold is not None:
            for col, arr in event_summaries(batch, self.threshold).items():
                buf[f"events/{col}"].append(arr)
        buf["particles/offsets"].append(batch.event_offsets("particles")[1:] + p_base)
        buf["hits/offsets"].append(batch.event_offsets("hits")[1:] + h_base)
        for col, arr in pcols.items():
            buf[f"particles/{col}"].append(arr)
        for col, arr in hcols.items():
            buf[f"hits/{col}"].append(arr)
        self._n_particles += len(pcols["event"])
        self._n_hits += len(hcols["event"])
        self._buffered_rows += len(hcols["event"]) + len(pcols["event"]) + k
        if self._buffered_rows >= _FLUSH_ROWS:
            self._flush()

    def _flush(self, final: bool = False) -> None:
        """Write the buffered truth (fewer, larger HDF5 writes than one per chunk): the
        per-event datasets and your own columns whole, the truth columns in whole chunks
        only (each chunk compressed once, here: :mod:`~spectrocnn.dataset.chunkfilter`)
        unless ``final``; the rows of a partial chunk stay buffered."""
        buf = self._buffer
        ds = self._datasets
        if buf["labels"]:
            e0 = self._n_flushed_events
            labels = np.concatenate(buf["labels"])
            e1 = e0 + len(labels)
            if len(labels):
                ds["labels"][e0:e1] = labels
                if self.threshold is not None:
                    for col in EVENT_COLUMNS:
                        ds[f"events/{col}"][e0:e1] = np.concatenate(buf[f"events/{col}"])
                for g, _ in _TRUTH:
                    ds[f"{g}/offsets"][e0 + 1 : e1 + 1] = np.concatenate(buf[f"{g}/offsets"])
            self._user.flush(e0, e1, self._n_particles)
            self._n_flushed_events = e1
            for name in ("labels", "particles/offsets", "hits/offsets"):
                buf[name].clear()
            for col in EVENT_COLUMNS if self.threshold is not None else ():
                buf[f"events/{col}"].clear()
        for g, spec in _TRUTH:
            start = self._rows_written[g]
            pending = self._n_rows(g) - start
            stop = start + (pending if final else pending // TRUTH_CHUNK_ROWS * TRUTH_CHUNK_ROWS)
            if stop == start:
                continue
            for col in spec:
                arr = np.concatenate(buf[f"{g}/{col}"])
                write_rows(ds[f"{g}/{col}"], start, arr[: stop - start])
                buf[f"{g}/{col}"] = [arr[stop - start :]] if stop - start < pending else []
            self._rows_written[g] = stop
        self._buffered_rows = sum(self._n_rows(g) - self._rows_written[g] for g, _ in _TRUTH)

    def _n_rows(self, group: str) -> int:
        """Rows of ``group`` appended so far."""
        return self._n_particles if group == "particles" else self._n_hits

    def close(self) -> None:
        """Finish the file: check that every event was written, mark it complete, close it.

        Raises
        ------
        ValueError
            When fewer events were appended than announced (the file is closed, unmarked).
        OSError
            When the file cannot be written (e.g. a full disk: ``ENOSPC`` is raised before
            the disk is fuller than :data:`SPACE_MARGIN`); it is then discarded as by
            :meth:`abort`.
        """
        if self._closed:
            return
        if self._n_done != self.n_events:
            self._closed = True
            self._file.close()
            raise ValueError(f"{self.path}: {self._n_done} of {self.n_events} events were written")
        try:
            _check_space(self.path, _ROW_BYTES * self._buffered_rows)
            self._flush(final=True)
            self._file.attrs["schema"] = SCHEMA
            self._file.flush()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._file.close()

    def abort(self) -> None:
        """Close the file without marking it complete, discarding what is not on disk yet.

        Never fails, even on a full disk: HDF5's pending writes are sent to the null device
        (closing a file whose flush fails would leave HDF5 to crash the interpreter at
        exit). The file is left incomplete and unreadable; delete it.
        """
        if self._closed:
            return
        self._closed = True
        try:
            fd = self._file.id.get_vfd_handle()
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except Exception as exc:  # pragma: no cover - not the default (sec2) driver
            log.debug("could not redirect the writes of %s: %s", self.path, exc)
        try:
            self._file.close()
        except Exception as exc:  # pragma: no cover - defensive
            log.debug("closing %s failed: %s", self.path, exc)  # it is discarded anyway

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_events(
    path: str | os.PathLike,
    batch: EventBatch,
    spec: ImageSpec,
    *,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    compression: str = "gzip",
    threshold: LabelThreshold | None = None,
    labels: Any = None,
    label_spec: LabelSpec | str | None = None,
    event_columns: Mapping[str, Any] | None = None,
    particle_columns: Mapping[str, Any] | None = None,
    measured_rounding_mm: Sequence[float] | np.ndarray | None = None,
) -> None:
    """Rasterize a batch of events and write it as one event file (not atomically).

    The images are made from the measured positions as stored (rounded:
    :func:`~spectrocnn.dataset.schema.as_stored`), as gen-events makes them.

    Parameters
    ----------
    path : path-like
    batch : EventBatch
    spec : ImageSpec
    seed : int
        Recorded in the file.
    config : dict, optional
        Recorded in the file (``{}`` when not given).
    compression : {"gzip", "lzf", "none"}
    threshold : LabelThreshold, optional
        Also write ``/events`` (:class:`EventFileWriter`).
    labels : array-like (n_events,), optional
        Your own labels instead of ``batch.labels``: 0/1 (binary), classes
        ``0 .. n_classes - 1`` (multiclass) or finite numbers (regression).
    label_spec : LabelSpec or str, optional
        Their kind (:class:`~spectrocnn.labels.LabelSpec`), recorded with ``/labels``; a
        str is the kind alone (``"multiclass"`` then has ``max(labels) + 1`` classes).
        Default with ``labels``: binary.
    event_columns : mapping, optional
        Name -> array (n_events,): written as ``/events/user/<name>``.
    particle_columns : mapping, optional
        Name -> array, one value per row of ``batch.particles``: ``/particles/user/<name>``.
    measured_rounding_mm : array-like (L,), optional
        Rounding step of the measured positions of each layer [mm]
        (:class:`EventFileWriter`; gen-events uses
        :func:`~spectrocnn.dataset.schema.measured_rounding_mm` of the detector).

    Raises
    ------
    ConfigError
        Labels or columns that do not fit the batch or their kind (nothing is written).

    Examples
    --------
    >>> n_hits = np.bincount(batch.hits.event, minlength=batch.n_events)  # doctest: +SKIP
    >>> write_events("mine.h5", batch, spec, labels=n_hits >= 150,
    ...              event_columns={"n_hits": n_hits})  # doctest: +SKIP
    """
    n = batch.n_events
    if labels is not None or label_spec is not None:
        label_spec = _label_spec(labels, label_spec)
        labels = label_spec.check_values(batch.labels if labels is None else labels)
        if len(labels) != n:
            raise ConfigError(f"{len(labels)} labels for {n} events")
    ecols = _own_columns(event_columns, n, "event")
    pcols = _own_columns(particle_columns, len(batch.particles), "particle")
    step = 256
    with EventFileWriter(
        path, n, spec, seed=seed, config=config, compression=compression, threshold=threshold,
        label_spec=label_spec, event_columns=ecols, particle_columns=pcols,
        measured_rounding_mm=measured_rounding_mm,
    ) as w:  # fmt: skip
        po = batch.event_offsets("particles")
        for a in range(0, n, step):
            b = min(n, a + step)
            sub = as_stored(slice_batch(batch, a, b), w.measured_rounding_mm)
            h = sub.hits
            u, v = spec.project(h.x, h.y, h.z)
            w.append(
                sub, rasterize_sparse(u, v, h.event, sub.n_events, spec),
                labels=None if labels is None else labels[a:b],
                event_columns={k: c[a:b] for k, c in ecols.items()},
                particle_columns={k: c[po[a] : po[b]] for k, c in pcols.items()},
                stored=True,
            )  # fmt: skip


def _own_columns(columns: Mapping[str, Any] | None, rows: int, what: str) -> dict:
    """``columns`` as arrays, each checked to hold ``rows`` values (ConfigError)."""
    out = {k: np.asarray(v) for k, v in (columns or {}).items()}
    for k, c in out.items():
        if c.shape != (rows,):
            raise ConfigError(
                f"{what} column {k!r} has shape {c.shape}, expected ({rows},): one value per {what}"
            )
    return out


def _label_spec(labels: Any, spec: LabelSpec | str | None) -> LabelSpec:
    """The :class:`LabelSpec` of :func:`write_events`' ``label_spec`` (binary by default;
    a bare ``"multiclass"`` takes ``max(labels) + 1`` classes, at least 2)."""
    if isinstance(spec, LabelSpec):
        return spec
    kind = "binary" if spec is None else spec
    if kind == "multiclass":
        a = np.asarray(labels)
        top = int(np.max(a)) if a.size and a.dtype.kind in "biuf" and np.isfinite(a).all() else 1
        return LabelSpec(kind, n_classes=max(2, top + 1))
    return LabelSpec(kind)


def _projection(attrs: Any) -> str:
    """The ``projection`` attribute of ``/images`` as a str (``"xy"`` when absent)."""
    value = attrs.get("projection")
    return "xy" if value is None else _attr_str(value)


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value[()])
    return str(value)


class EventFile:
    """An open event file (schema ``spectrocnn.events/2`` or ``/1``); use :func:`open_events`.

    Images and truth are read lazily; only the labels (and, on first use, the per-event
    offsets) are held in memory.

    Attributes
    ----------
    path : str
    n_events : int
    image_shape : (int, int)
        ``(H, W)`` [pixels].
    window_mm : (float, float, float, float)
        ``u_min, u_max, v_min, v_max`` [mm] in the coordinates of ``projection``.
    projection : str
        ``"xy"``, ``"xz"`` or ``"yz"``: the plane the images show, ``(u, v)`` = ``(x, y)``,
        ``(x, z)`` or ``(y, z)`` (:mod:`spectrocnn.dataset.raster`); ``"xy"`` for a file
        without the attribute.
    seed : int
    schema : str
        The file's schema, ``"spectrocnn.events/2"`` or ``"spectrocnn.events/1"`` (float64
        truth, no momentum at the hits).
    images : h5py.Dataset
        uint8 (n_events, H, W), lazy.
    """

    def __init__(self, path: str, file: h5py.File) -> None:
        self.path = path
        self._file = file
        self.images: h5py.Dataset = file["images"]
        self.n_events = int(self.images.shape[0])
        self.image_shape: tuple[int, int] = (int(self.images.shape[1]), int(self.images.shape[2]))
        self.window_mm: tuple[float, float, float, float] = tuple(
            float(v) for v in self.images.attrs["window_mm"]
        )  # type: ignore[assignment]
        self.projection: str = _projection(self.images.attrs)
        self.seed = int(file.attrs["seed"])
        self.schema = _attr_str(file.attrs["schema"])
        self._columns = stored_columns(self.schema)

    @property
    def has_hit_momentum(self) -> bool:
        """Whether the file stores the true momentum at each hit (``/hits/true_px`` ...;
        schema version 2). :meth:`truth` then fills ``hits.true_px`` ... (NaN for noise
        hits), else leaves them None."""
        return "true_px" in self._columns[1]

    # -- metadata -------------------------------------------------------------------------
    @cached_property
    def config(self) -> dict[str, Any]:
        """The resolved configuration the file was made with (``{}`` if not recorded)."""
        text = _attr_str(self._file.attrs.get("config", "{}"))
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise EventFileError(f"{self.path}: the config attribute is not JSON ({exc})") from None
        return data if isinstance(data, dict) else {}

    @property
    def attrs(self) -> dict[str, Any]:
        """The root attributes (schema, version, seed, created, n_events, config)."""
        return {k: self._file.attrs[k] for k in self._file.attrs}

    @property
    def run_id(self) -> str | None:
        """Identifier of the generation run (None for a file written before run identifiers)."""
        value = self._file.attrs.get(RUN_ID_ATTR)
        return None if value is None else _attr_str(value)

    def identity(self) -> dict[str, Any]:
        """What a training run records about this file: path, run_id, seed, n_events and a
        content fingerprint (:func:`spectrocnn.dataset.identity.file_identity`)."""
        return file_identity(self.path, self._file)

    @property
    def image_spec(self) -> ImageSpec:
        """The :class:`ImageSpec` of the images (square images only)."""
        h, w = self.image_shape
        if h != w:
            raise EventFileError(f"{self.path}: images are {h}x{w}, not square")
        radius = int(self.images.attrs.get("hit_radius_px", 0))
        return ImageSpec(
            size=h, window_mm=self.window_mm, hit_radius_px=radius, projection=self.projection
        )

    @cached_property
    def label_spec(self) -> LabelSpec:
        """What the labels are (:class:`~spectrocnn.labels.LabelSpec`): binary for a file
        without the ``label_kind`` attribute (every file gen-events writes)."""
        return read_label_spec(self.path, self._file["labels"])

    @cached_property
    def labels(self) -> np.ndarray:
        """(n_events,): binary uint8, 1 = the event contains a high-momentum particle (or
        class 1 of your own binary label); multiclass int64; regression float64
        (:attr:`label_spec`)."""
        values = self._read(self._file["labels"], slice(None), "labels")
        return values.astype(self.label_spec.dtype, copy=False)

    @property
    def event_columns(self) -> tuple[str, ...]:
        """Names of your own per-event columns (``/events/user``), sorted."""
        return user_column_names(self._file, "events")

    @property
    def particle_columns(self) -> tuple[str, ...]:
        """Names of your own per-particle columns (``/particles/user``), sorted."""
        return user_column_names(self._file, "particles")

    def read_event_column(
        self, name: str, start: int | None = None, stop: int | None = None
    ) -> np.ndarray:
        """Your own per-event column ``name`` for events ``start:stop``, as stored.

        Raises
        ------
        ConfigError
            No such column (the message lists those the file has).
        """
        start, stop = self._range(start, stop)
        key = self._user_key("events", name)
        return self._read(self._file[key], slice(start, stop), key)

    def read_particle_column(
        self, name: str, start: int | None = None, stop: int | None = None
    ) -> np.ndarray:
        """Your own per-particle column ``name`` for the particles of events
        ``start:stop`` (the rows of :meth:`truth`'s particle table), as stored.

        Raises
        ------
        ConfigError
            No such column (the message lists those the file has).
        """
        start, stop = self._range(start, stop)
        key = self._user_key("particles", name)
        a, b = self._rows("particles", start, stop)
        return self._read(self._file[key], slice(a, b), key)

    def _user_key(self, table: str, name: str) -> str:
        """The dataset path of user column ``name`` of ``table``; ConfigError if none."""
        names = user_column_names(self._file, table)
        if name not in names:
            what = "per-event" if table == "events" else "per-particle"
            raise ConfigError(
                f"{self.path} has no {what} column {name!r} (it has: {', '.join(names) or 'none'})"
            )
        return f"{table}/{USER_GROUP}/{name}"

    def _events_column(self, name: str, start: int | None, stop: int | None) -> np.ndarray | None:
        g = self._file.get("events")
        if not isinstance(g, h5py.Group) or name not in g:
            return None
        start, stop = self._range(start, stop)
        dtype = EVENT_COLUMNS[name][0]
        return self._read(g[name], slice(start, stop), f"events/{name}").astype(dtype, copy=False)

    def read_n_above_threshold(
        self, start: int | None = None, stop: int | None = None
    ) -> np.ndarray | None:
        """Particles at or above the threshold in events ``start:stop`` (int32), or None for
        a file without ``/events/n_above_threshold`` (written before issue 19); the
        threshold is :attr:`threshold`."""
        return self._events_column("n_above_threshold", start, stop)

    def read_max_pt(self, start: int | None = None, stop: int | None = None) -> np.ndarray | None:
        """Highest p_T [GeV/c] of the particles of events ``start:stop`` (float64), or None
        for a file without ``/events/max_pt_GeV`` (written before issue 19)."""
        return self._events_column("max_pt_GeV", start, stop)

    @property
    def threshold(self) -> LabelThreshold | None:
        """The threshold of ``/events/n_above_threshold`` (None when the file lacks it)."""
        g = self._file.get("events")
        if not isinstance(g, h5py.Group) or "n_above_threshold" not in g:
            return None
        a = g["n_above_threshold"].attrs
        return LabelThreshold(float(a["threshold_GeV"]), _attr_str(a["variable"]))

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        h, w = self.image_shape
        return f"<EventFile {self.path!r}: {self.n_events} events, {h}x{w} images>"

    # -- data -----------------------------------------------------------------------------
    def _range(self, start: int | None, stop: int | None) -> tuple[int, int]:
        start = 0 if start is None else int(start)
        stop = self.n_events if stop is None else int(stop)
        if not 0 <= start <= stop <= self.n_events:
            raise IndexError(f"event range {start}:{stop} outside 0:{self.n_events}")
        return start, stop

    def _read(self, ds: h5py.Dataset, sel: slice, what: str) -> np.ndarray:
        try:
            return ds[sel]
        except (OSError, RuntimeError, KeyError) as exc:
            raise EventFileError(
                f"{self.path}: cannot read {what} ({' '.join(str(exc).split())}); "
                "the file may be corrupt"
            ) from None

    def read_images(self, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Images of events ``start:stop``.

        Returns
        -------
        ndarray uint8 (stop - start, H, W)
        """
        start, stop = self._range(start, stop)
        return self._read(self.images, slice(start, stop), f"images {start}:{stop}")

    def image_blocks(
        self,
        *,
        transform: Transform | None = None,
        block: int | None = None,
        workers: int = 1,
        direct: bool = True,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Every image in blocks of consecutive events, in event order, fast: the chunks
        decoded by ``workers`` threads where the layout allows it, shards of a sharded
        file too (:func:`spectrocnn.dataset.blocks.iter_image_blocks`, which documents the
        parameters).

        Yields
        ------
        start : int
            First event of the block.
        images : ndarray
            ``transform(images)`` of events ``start : start + k``, uint8 ``(k, H, W)``
            without a transform.

        Examples
        --------
        >>> for start, images in ev.image_blocks(workers=4):  # doctest: +SKIP
        ...     total[start : start + len(images)] = images.sum(axis=(1, 2))
        """
        return iter_image_blocks(
            self, transform=transform, block=block, workers=workers, direct=direct
        )

    def image_groups(
        self,
        groups: Groups,
        *,
        transform: Transform | None = None,
        workers: int = 1,
        direct: bool = True,
    ) -> Iterator[np.ndarray]:
        """The images of the events of each group (1-D arrays of event numbers), group
        after group, read as fast as :meth:`image_blocks` reads (chunks decoded by
        ``workers`` threads where the layout allows it): the blocks of a shuffled epoch,
        the runs of a batch (:func:`spectrocnn.dataset.blocks.iter_image_groups`, which
        documents the parameters).

        Yields
        ------
        ndarray
            ``transform(images)`` of the group's events in the group's order, uint8
            ``(k, H, W)`` without a transform.

        Examples
        --------
        >>> groups = [np.array([5, 1, 2]), np.arange(100, 164)]
        >>> for images in ev.image_groups(groups, workers=4):  # doctest: +SKIP
        ...     print(images.shape)
        """
        return iter_image_groups(self, groups, transform=transform, workers=workers, direct=direct)

    def read_labels(self, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Labels of events ``start:stop``, read alone (:attr:`labels` reads them all).

        Returns
        -------
        ndarray (stop - start,)
            uint8 for binary labels, int64 multiclass, float64 regression.
        """
        start, stop = self._range(start, stop)
        if "labels" in self.__dict__:  # already read
            return self.labels[start:stop]
        values = self._read(self._file["labels"], slice(start, stop), "labels")
        return values.astype(self.label_spec.dtype)

    def _rows(self, group: str, start: int, stop: int) -> tuple[int, int]:
        """Rows ``[a, b)`` of events ``start:stop`` in /group, without reading every offset
        of a large file unless they were read already."""
        name = "particle_offsets" if group == "particles" else "hit_offsets"
        g = self._file[group]
        if name not in self.__dict__ and "offsets" in g:
            off = g["offsets"]
            a, b = (self._read(off, slice(i, i + 1), f"{group}/offsets")[0] for i in (start, stop))
            return int(a), int(b)
        off = getattr(self, name)
        return int(off[start]), int(off[stop])

    def _offsets(self, group: str) -> np.ndarray:
        g = self._file[group]
        if "offsets" in g:
            return self._read(g["offsets"], slice(None), f"{group}/offsets").astype(np.int64)
        ev = self._read(g["event"], slice(None), f"{group}/event")
        return np.searchsorted(ev, np.arange(self.n_events + 1)).astype(np.int64)

    @cached_property
    def particle_offsets(self) -> np.ndarray:
        """int64 (n_events + 1,): rows of event i in /particles are ``[i]:[i + 1]``."""
        return self._offsets("particles")

    @cached_property
    def hit_offsets(self) -> np.ndarray:
        """int64 (n_events + 1,): rows of event i in /hits are ``[i]:[i + 1]``."""
        return self._offsets("hits")

    def truth(self, start: int | None = None, stop: int | None = None) -> EventBatch:
        """The simulated truth of events ``start:stop``, renumbered from 0.

        Returns
        -------
        EventBatch
            ``particles.event`` and ``hits.event`` run from 0; ``hits.particle`` indexes
            the returned particle rows (-1 = noise). ``labels`` are the file's binary
            labels; for a file of multiclass or regression labels (:attr:`label_spec`,
            read with :meth:`read_labels`), whether the event holds a particle with
            ``is_high`` set (the simulation's label). Columns as in memory (float64, the
            stored values); ``hits.true_px, true_py, true_pz`` from a file that stores
            them (:attr:`has_hit_momentum`), else None.
        """
        start, stop = self._range(start, stop)
        (p0, p1), (h0, h1) = self._rows("particles", start, stop), self._rows("hits", start, stop)
        particle_columns, hit_columns = self._columns
        pc = {
            k: self._read(self._file["particles"][k], slice(p0, p1), f"particles/{k}")
            for k in particle_columns
        }
        hc = {k: self._read(self._file["hits"][k], slice(h0, h1), f"hits/{k}") for k in hit_columns}
        pc["event"] = pc["event"].astype(np.int64) - start
        hc["event"] = hc["event"].astype(np.int64) - start
        part = hc["particle"].astype(np.int64)
        hc["particle"] = np.where(part >= 0, part - p0, -1)
        if self.label_spec.kind == "binary":
            labels = self.read_labels(start, stop)
        else:
            high = pc["event"][pc["is_high"].astype(bool)]
            labels = np.bincount(high, minlength=stop - start) > 0
        return EventBatch(labels, ParticleTable(**pc), HitTable(**hc))

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> EventFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def _validate(path: str, f: h5py.File) -> None:
    """Raise EventFileError unless ``f`` follows the schema."""
    schema = f.attrs.get("schema")
    if schema is None:
        raise EventFileError(
            f"{path}: not a spectrocnn event file (no 'schema' attribute; "
            "an incomplete or foreign file)"
        )
    schema = _attr_str(schema)
    if schema not in SCHEMAS:
        raise EventFileError(
            f"{path}: schema is {schema!r}, expected {SCHEMA!r} (or the older {SCHEMA_V1!r})"
        )
    for name in ("images", "labels", "particles", "hits"):
        if name not in f:
            raise EventFileError(f"{path}: missing /{name}")
    images = f["images"]
    if not isinstance(images, h5py.Dataset) or images.ndim != 3 or images.dtype != np.uint8:
        raise EventFileError(f"{path}: /images must be a uint8 (N, H, W) dataset")
    n = images.shape[0]
    check_labels_dataset(path, f["labels"], n)  # its kind, dtype and length
    if "n_events" in f.attrs and int(f.attrs["n_events"]) != n:
        raise EventFileError(f"{path}: n_events is {int(f.attrs['n_events'])}, /images has {n}")
    if "seed" not in f.attrs:
        raise EventFileError(f"{path}: missing root attribute 'seed'")
    window = images.attrs.get("window_mm")
    if window is None or np.shape(window) != (4,):
        raise EventFileError(f"{path}: /images needs a window_mm attribute of 4 numbers")
    projection = _projection(images.attrs)
    if projection not in PROJECTIONS:
        raise EventFileError(
            f"{path}: /images has projection {projection!r}, expected one of "
            f"{', '.join(repr(p) for p in PROJECTIONS)}"
        )
    for group, spec in zip(("particles", "hits"), stored_columns(schema), strict=True):
        g = f[group]
        if not isinstance(g, h5py.Group):
            raise EventFileError(f"{path}: /{group} must be a group")
        length = None
        for col, (dtype, _) in spec.items():
            if col not in g:
                raise EventFileError(f"{path}: missing /{group}/{col}")
            ds = g[col]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind != dtype.kind:
                raise EventFileError(f"{path}: /{group}/{col} must be a 1-D {dtype} dataset")
            if length is None:
                length = ds.shape[0]
            elif ds.shape[0] != length:
                raise EventFileError(
                    f"{path}: /{group}/{col} has {ds.shape[0]} rows, expected {length}"
                )
        if "offsets" in g:
            off = g["offsets"]
            if off.shape != (n + 1,):
                raise EventFileError(f"{path}: /{group}/offsets must have {n + 1} entries")
            ends = off[[0, n]] if n else off[[0]]
            if ends[0] != 0 or (n and ends[-1] != length):
                raise EventFileError(
                    f"{path}: /{group}/offsets do not span the {length} rows of /{group}"
                )
    check_user_columns(path, f, n, f["particles/event"].shape[0])


def _check_virtual_sources(path: str, f: h5py.File) -> None:
    """Refuse a virtual event file (sharded gen-events) whose shard files are missing.

    HDF5 reads a missing source of a virtual dataset as fill values (zeros) without an
    error; a relative source name is looked up beside the virtual file.
    """
    names = ["images", "labels"]
    for group in ("particles", "hits"):
        names += [f"{group}/{k}" for k in f[group]]
    seen: set[str] = set()
    for name in names:
        ds = f[name]
        if not isinstance(ds, h5py.Dataset):
            continue
        for src in virtual_sources(path, ds):
            fn = src.file_name
            if fn == "." or fn in seen:
                continue
            seen.add(fn)
            if not os.path.isfile(src.path):
                raise EventFileError(
                    f"{path}: {fn!r}, a source file of the virtual dataset /{name}, is "
                    "missing (a sharded event file needs its shard files beside it)"
                )


def open_events(path: str | os.PathLike) -> EventFile:
    """Open an event file for reading and check its schema.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    EventFile
        A context manager; close it (or use ``with``) when done.

    Raises
    ------
    EventFileNotFoundError
        When the file does not exist (a :class:`~spectrocnn.errors.ConfigError` too).
    EventFileError
        When it cannot be read (permission), is locked or being written by another
        process, is not HDF5, is truncated or corrupt, has another schema or misses a
        dataset; the message names the path and the problem.

    Examples
    --------
    >>> with open_events("events.h5") as ev:  # doctest: +SKIP
    ...     x = ev.read_images(0, 32)          # uint8 (32, H, W)
    ...     y = ev.labels[:32]
    ...     truth = ev.truth(0, 32)            # EventBatch, events numbered from 0
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise EventFileNotFoundError(f"event file {p!r} does not exist")
    if os.path.isdir(p):
        raise EventFileError(f"event file {p!r} is a directory")
    reason = unreadable_reason(p)
    if reason is not None:
        raise EventFileError(f"{p}: cannot read the event file: {reason}")
    try:
        is_hdf5 = h5py.is_hdf5(p)
    except OSError as exc:
        raise EventFileError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if not is_hdf5:
        size = os.path.getsize(p)
        what = "an empty file" if size == 0 else "not an HDF5 file"
        raise EventFileError(f"{p}: {what}, expected a spectrocnn event file")
    try:
        f = h5py.File(p, "r")
    except (OSError, RuntimeError) as exc:
        raise EventFileError(f"{p}: cannot open the HDF5 file: {hdf5_open_problem(exc)}") from None
    try:
        _validate(p, f)
        _check_virtual_sources(p, f)
        check_shards(p, f)
        return EventFile(p, f)
    except EventFileError:
        f.close()
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        f.close()
        msg = " ".join(str(exc).split())
        raise EventFileError(f"{p}: corrupt event file ({msg})") from None
