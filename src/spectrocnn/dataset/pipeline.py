"""What single-file and sharded generation share: chunks, their random streams and their work.

Events are made in chunks of :func:`chunk_events` events (:data:`CHUNK_EVENTS` = 256 for
every configuration light enough). Chunk ``i`` draws all its random numbers from its own
stream, ``numpy.random.SeedSequence(seed, spawn_key=(i,))`` (:func:`chunk_rng`), so the
file content (images, labels, truth) depends on the seed and the number of events only,
never on the number of worker processes or shards:

>>> from spectrocnn.dataset.pipeline import simulate_chunk  # doctest: +SKIP
>>> batch = simulate_chunk(config.simulation, seed, i, n)   # events of chunk i, as stored

:func:`process_chunk` simulates a chunk with its hits rounded as the event file stores them
(:func:`simulate_chunk`: each image is the rasterization of the stored measured positions),
rasterizes and compresses its images (straight to zlib streams,
:mod:`spectrocnn.dataset.deflate`), and :func:`append_chunk` writes the result with HDF5's
direct chunk write. :func:`~spectrocnn.dataset.generate_file` runs the chunks
in processes of this machine (:mod:`spectrocnn.dataset.workers`),
:func:`~spectrocnn.dataset.generate_sharded` in groups on a Dask cluster.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn._validate import check_int
from spectrocnn.dataset.deflate import encode_zlib
from spectrocnn.dataset.eventfile import check_compression
from spectrocnn.dataset.raster import ImageSpec, SparseImages, disk_offsets, rasterize_sparse
from spectrocnn.dataset.schema import as_stored, measured_rounding_mm
from spectrocnn.seeds import check_seed, new_seed, stream
from spectrocnn.simulate.events import EventBatch, Simulation, simulate_events

if TYPE_CHECKING:
    from spectrocnn.dataset.eventfile import EventFileWriter

__all__ = [
    "CHUNK_EVENTS",
    "ChunkJob",
    "ChunkResult",
    "Throughput",
    "append_chunk",
    "check_run",
    "chunk_events",
    "chunk_rng",
    "default_workers",
    "hidden_main_module",
    "process_chunk",
    "simulate_chunk",
    "stored_batch",
]

#: Events per chunk (the unit of work, of random streams and of writing) for every
#: configuration light enough; heavier ones get fewer (:func:`chunk_events`). It depends on
#: the configuration only, so that the content of a file does not depend on the number of
#: workers.
CHUNK_EVENTS = 256

#: Peak simulation memory per hit slot (one particle crossing one layer, or one noise hit)
#: [bytes]: 256 events of 1 000 particles and 10 noise hits per layer on 16 layers peak at
#: 965 MiB in ``simulate_events``, 245 bytes per slot.
_SIM_BYTES_PER_SLOT = 256

#: Memory for the simulation of one chunk [bytes]. With the image groups, the stamps and
#: the results held for writing below, and about 120 MiB for Python, NumPy, SciPy and h5py,
#: a process stays below 1 GiB (benchmarks/memory.py).
_SIM_BUDGET_BYTES = 256 << 20

#: Lit pixels (an upper bound: hits times disk pixels, at most the image) rasterized and
#: compressed at once: the sparse images take 9 bytes per lit pixel (72 MiB).
_RASTER_PIXELS = 1 << 23

#: Bytes of truth per hit slot in a chunk's result (hits: 11 columns, particles: 10).
_TRUTH_BYTES_PER_SLOT = 100


def default_workers() -> int:
    """Default number of processes making events: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def chunk_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of chunk ``index``: ``SeedSequence(seed, spawn_key=(index,))``."""
    return stream(seed, index)


def _slots_per_event(simulation: Simulation) -> float:
    """Hit slots per event: particles and mean noise hits, times the layers."""
    n_layers = max(1, len(simulation.detector.layers))
    return (simulation.particles_bound + simulation.noise_hits_per_layer) * n_layers


def chunk_events(simulation: Simulation) -> int:
    """Events per chunk for ``simulation``: :data:`CHUNK_EVENTS`, or fewer when the
    simulation of that many events would take more than its share of the memory budget.

    ``floor(256 MiB / (256 bytes * slots))``, clamped to ``[1, CHUNK_EVENTS]``, where
    ``slots = (n_particles + noise hits_per_layer) * layers`` per event (a varying
    multiplicity counts with ``Simulation.particles_bound``): 256 for up to 256
    particles on 16 layers (every preset), 64 for 1 000 particles with 10 noise hits per
    layer. The file content depends on it (it groups the random streams), so it depends on
    the physics configuration alone, never on the image, compression or workers.

    Parameters
    ----------
    simulation : Simulation

    Returns
    -------
    int
        In ``[1, CHUNK_EVENTS]``.
    """
    per_event = _SIM_BYTES_PER_SLOT * _slots_per_event(simulation)
    return int(min(CHUNK_EVENTS, max(1, _SIM_BUDGET_BYTES // max(1.0, per_event))))


def simulate_chunk(simulation: Simulation, seed: int, index: int, n_events: int) -> EventBatch:
    """Simulate chunk ``index`` of a file made with ``seed``, exactly as gen-events does and
    stores it (hit values rounded as in the event file: :func:`stored_batch`).

    Parameters
    ----------
    simulation : Simulation
    seed : int
        The file's seed.
    index : int
        Chunk index; the chunk holds file events ``index * chunk_events(simulation)``
        onwards.
    n_events : int
        Events in this chunk: ``chunk_events(simulation)``, or fewer for the file's last
        chunk.

    Returns
    -------
    EventBatch
        Events numbered from 0, the hit values as the event file stores them (float64
        columns holding the stored float32 values; :func:`stored_batch`).
    """
    return stored_batch(simulate_events(simulation, n_events, chunk_rng(seed, index)), simulation)


def stored_batch(batch: EventBatch, simulation: Simulation) -> EventBatch:
    """``batch`` with its hit values as gen-events stores them:
    :func:`~spectrocnn.dataset.schema.as_stored` with the rounding steps of the simulation's
    detector (:func:`~spectrocnn.dataset.schema.measured_rounding_mm`). gen-events makes its
    images from these measured positions."""
    return as_stored(batch, measured_rounding_mm(simulation.detector))


def check_run(
    n_events: Any, seed: Any, workers: Any, compression: str, *, min_events: int
) -> tuple[int, int, int]:
    """The arguments that every generation takes, checked: ``n_events`` (>= ``min_events``),
    ``seed`` (None: :func:`~spectrocnn.seeds.new_seed`), ``workers`` (None:
    :func:`default_workers`) and ``compression``.

    Returns
    -------
    n_events, seed, workers : int

    Raises
    ------
    ConfigError
        Naming the first bad argument.
    """
    n_events = check_int("number of events", n_events, minimum=min_events)
    seed = new_seed() if seed is None else check_seed(seed)
    workers = check_int("workers", default_workers() if workers is None else workers, minimum=1)
    check_compression(compression)
    return n_events, seed, workers


class Throughput:
    """``events_per_s`` of a result with ``n_events`` and ``elapsed_s`` (a mixin)."""

    n_events: int
    elapsed_s: float

    @property
    def events_per_s(self) -> float:
        """Events per second of wall time."""
        return self.n_events / self.elapsed_s if self.elapsed_s > 0 else float("inf")


# -- the work of one chunk (in a worker process, the caller, or a Dask task) ----------------


@dataclass(frozen=True)
class ChunkJob:
    """The chunks of one run: what every process making them needs (picklable).

    Attributes
    ----------
    simulation : Simulation
    spec : ImageSpec
    seed : int
    n_events : int
        Events of the whole run.
    compression : {"gzip", "lzf", "none"}
    """

    simulation: Simulation
    spec: ImageSpec
    seed: int
    n_events: int
    compression: str

    @property
    def chunk(self) -> int:
        """Events per chunk (:func:`chunk_events`)."""
        return chunk_events(self.simulation)

    @property
    def n_chunks(self) -> int:
        """Chunks in the run."""
        return -(-self.n_events // self.chunk)

    @property
    def measured_rounding_mm(self) -> np.ndarray:
        """Rounding step of the stored measured positions of each layer [mm]
        (:func:`~spectrocnn.dataset.schema.measured_rounding_mm` of the detector)."""
        return measured_rounding_mm(self.simulation.detector)

    def chunk_size(self, index: int) -> int:
        """Events in chunk ``index`` (the last one may be short)."""
        return min(self.chunk, self.n_events - index * self.chunk)

    def result_bytes(self) -> int:
        """An upper estimate of the memory of one chunk's result [bytes]: truth, and the
        compressed images (or the sparse ones without gzip)."""
        npix = self.spec.n_pixels
        lit = min(npix, _hits_bound(self.simulation) * _disk_pixels(self.spec))
        if self.compression == "gzip":
            image = min(npix + npix // 1000, 2 * lit + npix // 1000) + 64
        else:
            image = 9 * lit
        truth = _TRUTH_BYTES_PER_SLOT * _slots_per_event(self.simulation)
        return int(self.chunk * (truth + image))


def _hits_bound(simulation: Simulation) -> int:
    """A generous bound on the hits of one event (noise: mean plus 6 sigma)."""
    n_layers = max(1, len(simulation.detector.layers))
    mean = simulation.noise_hits_per_layer * n_layers
    return int(simulation.particles_bound * n_layers + mean + 6 * mean**0.5 + 1)


def _disk_pixels(spec: ImageSpec) -> int:
    return len(disk_offsets(spec.hit_radius_px)[0])


@dataclass(frozen=True)
class ChunkResult:
    """One chunk made: its events, with the hit values as stored
    (:func:`~spectrocnn.dataset.schema.as_stored`), and its images either compressed
    (``encoded``, one zlib stream per event) or sparse (``images``)."""

    index: int
    batch: EventBatch
    images: SparseImages | None
    encoded: list[bytes] | None


def process_chunk(job: ChunkJob, index: int) -> ChunkResult:
    """Simulate chunk ``index`` (hits as stored: :func:`simulate_chunk`), then rasterize (and
    compress) its images from the stored measured positions, in groups of events of at most
    :data:`_RASTER_PIXELS` lit pixels (bounded memory for any disk radius and image size; the
    images do not depend on the grouping)."""
    batch = simulate_chunk(job.simulation, job.seed, index, job.chunk_size(index))
    h = batch.hits
    n = batch.n_events
    spec = job.spec
    u, v = spec.project(h.x, h.y, h.z)  # the image's coordinates (dataset/raster.py)
    first = np.searchsorted(h.event, np.arange(n + 1, dtype=np.int64))
    lit = np.minimum(np.diff(first) * _disk_pixels(spec), spec.n_pixels)
    ends = np.cumsum(lit)
    groups: list[tuple[int, int]] = []
    e0 = 0
    while e0 < n:
        base = ends[e0 - 1] if e0 else 0
        e1 = int(np.searchsorted(ends, base + _RASTER_PIXELS, side="right"))
        e1 = min(max(e1, e0 + 1), n)
        groups.append((e0, e1))
        e0 = e1
    if len(groups) <= 1:
        sparse = rasterize_sparse(u, v, h.event, n, spec)
        if job.compression == "gzip":
            return ChunkResult(index, batch, None, encode_zlib(sparse))
        return ChunkResult(index, batch, sparse, None)
    encoded: list[bytes] = []
    parts: list[SparseImages] = []
    for e0, e1 in groups:
        a, b = int(first[e0]), int(first[e1])
        part = rasterize_sparse(u[a:b], v[a:b], h.event[a:b] - e0, e1 - e0, spec)
        if job.compression == "gzip":
            encoded += encode_zlib(part)
        else:
            parts.append(part)
    if job.compression == "gzip":
        return ChunkResult(index, batch, None, encoded)
    return ChunkResult(index, batch, _concatenate_sparse(parts, spec), None)


def _concatenate_sparse(parts: list[SparseImages], spec: ImageSpec) -> SparseImages:
    """The sparse images of consecutive groups of events, as one batch."""
    npix = spec.n_pixels
    sizes = [p.n_events for p in parts]
    starts = np.cumsum([0, *sizes])
    index = np.concatenate([p.index + int(s) * npix for p, s in zip(parts, starts, strict=False)])
    value = np.concatenate([p.value for p in parts])
    offsets = [np.asarray(parts[0].offsets[:1])]
    total = 0
    for p in parts:
        offsets.append(p.offsets[1:] + total)
        total += int(p.offsets[-1])
    return SparseImages(
        (int(starts[-1]), *spec.shape), index, value, np.concatenate(offsets).astype(np.int64)
    )


def append_chunk(writer: EventFileWriter, result: ChunkResult) -> None:
    """Write a chunk's events and images to ``writer`` (whose ``measured_rounding_mm`` is
    the job's: the hit values are stored as they are)."""
    if result.encoded is not None:
        writer.append(result.batch, encoded=result.encoded, stored=True)
    else:
        writer.append(result.batch, result.images, stored=True)


@contextmanager
def hidden_main_module() -> Iterator[None]:
    """Start worker processes without re-running the caller's ``__main__`` in them.

    ``spawn`` and ``forkserver`` children normally re-import the main script (which
    fails for code read from stdin and re-runs unguarded scripts). The workers need
    nothing from it: everything they run lives in this package.
    """
    main = sys.modules.get("__main__")
    if main is None:  # pragma: no cover
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)
