# One file for the gen-events pipeline: chunks, workers, memory budget and atomic output; issue 16
# item 2 gives the shared parts public names.
"""The gen-events pipeline: simulate, rasterize, compress and write events in chunks.

Events are made in chunks of :data:`CHUNK_EVENTS` events. Chunk ``i`` draws all its random
numbers from its own stream, ``numpy.random.SeedSequence(seed, spawn_key=(i,))``, so the
file content (images, labels, truth) depends on the seed and the number of events only,
never on the number of worker processes:

>>> from spectrocnn.dataset.generate import simulate_chunk  # doctest: +SKIP
>>> batch = simulate_chunk(config.simulation, seed, i, n)   # events of chunk i, as stored

Each chunk is simulated, rasterized and compressed (the images straight to zlib streams by
:mod:`spectrocnn.dataset.deflate`), then written with HDF5's direct chunk write. With
``workers = W > 1``, ``W - 1`` helper processes (``forkserver`` start method; they import
only NumPy, SciPy, h5py and this package, never TensorFlow) make chunks, and the calling
process, which writes the file in chunk order, makes one itself whenever the next chunk is
not ready yet: W processes keep W cores busy. At most ``2 * (W - 1)`` chunks are in flight,
and fewer when their results would take more than 256 MiB, so memory does not grow with
the number of events.

The output is written to a temporary file beside the target (same directory, name
starting with a dot) and renamed over the target only when complete; on any error or
interrupt the temporary file is removed, and an existing target is never touched unless
``overwrite`` is true (and then only replaced on success).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn.dataset.deflate import encode_zlib
from spectrocnn.dataset.eventfile import EventFileWriter, _check_compression, _check_seed
from spectrocnn.dataset.raster import ImageSpec, SparseImages, disk_offsets, rasterize_sparse
from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.simulate.events import EventBatch, Simulation, simulate_events

if TYPE_CHECKING:
    from spectrocnn.config import Config

__all__ = [
    "CHUNK_EVENTS",
    "GenerateResult",
    "chunk_events",
    "chunk_rng",
    "default_workers",
    "generate_file",
    "new_seed",
    "simulate_chunk",
]

log = logging.getLogger(__name__)

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

#: Budget for the chunk results held by the writing process [bytes].
_RESULTS_BUDGET_BYTES = 256 << 20

#: Chunks in flight per worker process (bounds the memory of the pipeline).
_IN_FLIGHT_PER_WORKER = 2

#: Seconds that workers get to finish their chunk after an error or interrupt.
_STOP_TIMEOUT_S = 30.0


def new_seed() -> int:
    """A fresh seed from the operating system's entropy, in ``[0, 2**63)``."""
    return secrets.randbits(63)


def default_workers() -> int:
    """Default number of processes making events: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def chunk_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of chunk ``index``: ``SeedSequence(seed, spawn_key=(index,))``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


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
    """Simulate chunk ``index`` of a file made with ``seed``, exactly as gen-events does.

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
        Events numbered from 0.
    """
    return simulate_events(simulation, n_events, chunk_rng(seed, index))


@dataclass(frozen=True)
class GenerateResult:
    """What :func:`generate_file` did.

    Attributes
    ----------
    path : str
        The file written.
    n_events : int
    n_high : int
        Events labelled 1.
    seed : int
    workers : int
        Processes that made events (the calling process included).
    elapsed_s : float
        Wall time [s].
    file_bytes : int
        Size of the file [bytes].
    track_stops : dict of str to int
        Tracks per reason their propagation ended (``left_detector``, the normal end;
        ``looped``, ``path_limit``, ``step_limit``, ... :class:`~spectrocnn.simulate.StopReason`).
    """

    path: str
    n_events: int
    n_high: int
    seed: int
    workers: int
    elapsed_s: float
    file_bytes: int
    track_stops: dict[str, int]

    @property
    def events_per_s(self) -> float:
        """Events per second of wall time."""
        return self.n_events / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    @property
    def tracks_stopped_early(self) -> int:
        """Tracks that ended other than by leaving the detector (looped, limits)."""
        return sum(n for k, n in self.track_stops.items() if k != "left_detector")


# -- the work of one chunk (in a worker process or in the caller) ---------------------------


@dataclass(frozen=True)
class _Job:
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
        """Chunks in the file."""
        return -(-self.n_events // self.chunk)

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
class _ChunkResult:
    index: int
    batch: EventBatch
    images: SparseImages | None
    encoded: list[bytes] | None


def _chunk_size(job: _Job, index: int) -> int:
    return min(job.chunk, job.n_events - index * job.chunk)


def _process_chunk(job: _Job, index: int) -> _ChunkResult:
    """Simulate chunk ``index``, then rasterize (and compress) its images in groups of
    events of at most :data:`_RASTER_PIXELS` lit pixels (bounded memory for any disk radius
    and image size; the images do not depend on the grouping)."""
    batch = simulate_chunk(job.simulation, job.seed, index, _chunk_size(job, index))
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
            return _ChunkResult(index, batch, None, encode_zlib(sparse))
        return _ChunkResult(index, batch, sparse, None)
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
        return _ChunkResult(index, batch, None, encoded)
    return _ChunkResult(index, batch, _concatenate_sparse(parts, spec), None)


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


_WORKER_JOB: _Job | None = None


def _init_worker(job: _Job, parent_pid: int) -> None:
    global _WORKER_JOB
    # The parent handles interrupts and stops the workers between chunks: a worker killed
    # while sending a result would hang the pool.
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    _WORKER_JOB = job
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, another user
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:  # no /proc: trust kill()
        return True


def _watch_parent(pid: int) -> None:
    """Exit when the process that started the pool is gone (e.g. killed with SIGKILL):
    pool workers would otherwise wait for work forever."""
    while _parent_alive(pid):
        time.sleep(0.5)
    os._exit(1)


def _worker(index: int) -> _ChunkResult:
    if _WORKER_JOB is None:  # pragma: no cover - initializer not run
        raise RuntimeError("worker not initialised")
    return _process_chunk(_WORKER_JOB, index)


def _mp_context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # Import the pipeline once in the fork server; workers fork from it ready to run.
        ctx.set_forkserver_preload([__name__])
        _ensure_fork_server()
        return ctx
    return multiprocessing.get_context("spawn")  # pragma: no cover - Windows


def _ensure_fork_server() -> None:
    """Start the fork server (if not running) with SIGINT ignored, which survives its exec:
    it ignores Ctrl-C itself only once it has imported the pipeline, and a Ctrl-C meanwhile
    would make it print a traceback."""
    import multiprocessing.forkserver

    if threading.current_thread() is not threading.main_thread():
        multiprocessing.forkserver.ensure_running()
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, old)


def _results_serial(job: _Job, n_chunks: int) -> Iterator[_ChunkResult]:
    for i in range(n_chunks):
        yield _process_chunk(job, i)


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start worker processes without re-running the caller's ``__main__`` in them.

    ``spawn`` and ``forkserver`` children normally re-import the main script (which
    fails for code read from stdin and re-runs unguarded scripts). The workers need
    nothing from it: everything they run lives in this module.
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


def _result(fut: Future[_ChunkResult]) -> _ChunkResult:
    try:
        return fut.result()
    except BrokenProcessPool as exc:
        raise RuntimeError(
            f"a worker process died unexpectedly (killed, or out of memory?): {exc}"
        ) from None


def _results_pool(job: _Job, n_chunks: int, helpers: int) -> Iterator[_ChunkResult]:
    """Chunk results in order, made by ``helpers`` processes and by the caller.

    The caller (which also writes the file) computes a chunk itself whenever the next
    chunk to write is not ready yet, so ``helpers + 1`` processes keep as many cores busy.
    """
    ex = ProcessPoolExecutor(
        max_workers=helpers,
        mp_context=_mp_context(),
        initializer=_init_worker,
        initargs=(job, os.getpid()),
    )
    futures: dict[int, Future[_ChunkResult]] = {}
    local: dict[int, _ChunkResult] = {}
    procs: list[multiprocessing.process.BaseProcess] = []
    # Results wait in this process until written: at most _RESULTS_BUDGET_BYTES of them.
    held = max(1, _RESULTS_BUDGET_BYTES // max(1, job.result_bytes()))
    local_max = min(_IN_FLIGHT_PER_WORKER, held)
    limit = max(1, min(_IN_FLIGHT_PER_WORKER * helpers, held - local_max))
    nxt = 0  # next chunk not yet given to anyone
    ok = False
    try:
        # The first submissions start the processes; an interrupt in the middle of that
        # would leave half-started children printing tracebacks, so it waits until after.
        with _main_module_hidden(), _signals_deferred():
            while nxt < n_chunks and len(futures) < limit:
                futures[nxt] = ex.submit(_worker, nxt)
                nxt += 1
            procs = list((getattr(ex, "_processes", None) or {}).values())
        for i in range(n_chunks):
            while i not in local:
                fut = futures[i]
                if fut.done() or nxt >= n_chunks or len(local) >= local_max:
                    local[i] = _result(futures.pop(i))
                else:
                    local[nxt] = _process_chunk(job, nxt)
                    nxt += 1
            while nxt < n_chunks and len(futures) < limit:
                futures[nxt] = ex.submit(_worker, nxt)
                nxt += 1
            yield local.pop(i)
        ok = True
    finally:
        if ok:
            ex.shutdown(wait=True)
        else:
            _stop(ex, procs)


def _stop(ex: ProcessPoolExecutor, procs: list[multiprocessing.process.BaseProcess]) -> None:
    """Stop the pool after an error or interrupt: drop the queued chunks, let the workers
    finish the chunk in hand (killing one mid-message would hang the pool's reader thread)
    and terminate only those that do not stop in time."""
    with _signals_deferred():
        ex.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for proc in procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [p for p in procs if p.is_alive()]
        for proc in stuck:
            log.warning("terminating worker process %s", proc.pid)
            proc.terminate()
            proc.join(timeout=1)
        if not stuck:
            ex.shutdown(wait=True)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back during the block, then deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: object) -> None:
        received.append(signum)

    sigs = [signal.SIGINT, signal.SIGTERM]
    old = {s: signal.signal(s, hold) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if received:
            signal.raise_signal(received[0])


# -- atomic output --------------------------------------------------------------------------


def _check_output(out_path: str | os.PathLike, overwrite: bool) -> str:
    out = os.path.abspath(os.fspath(out_path))
    shown = os.fspath(out_path)
    if os.path.isdir(out):
        raise ConfigError(f"output {shown!r} is a directory, expected a file name")
    directory = os.path.dirname(out)
    if not os.path.isdir(directory):
        raise ConfigError(f"output directory {os.path.dirname(shown) or '.'!r} does not exist")
    if os.path.lexists(out) and not overwrite:
        raise ConfigError(f"output file {shown!r} exists (overwrite it with --overwrite)")
    return out


@contextmanager
def _atomic_output(out: str, overwrite: bool) -> Iterator[str]:
    """Yield a temporary path beside ``out``; move it to ``out`` if the block succeeds."""
    directory, name = os.path.split(out)
    tmp = ""
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise EventFileError(
                f"cannot create a file in {directory!r}: {exc.strerror or exc}"
            ) from None
        os.close(fd)
        break
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # atomic, and fails if the target appeared meanwhile
            except FileExistsError:
                raise ConfigError(
                    f"output file {out!r} exists (overwrite it with --overwrite)"
                ) from None
            except OSError:  # no hard links on this file system
                if os.path.lexists(out):
                    raise ConfigError(
                        f"output file {out!r} exists (overwrite it with --overwrite)"
                    ) from None
                os.replace(tmp, out)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError as exc:  # pragma: no cover - e.g. directory made read-only meanwhile
            log.warning("could not remove the temporary file %s: %s", tmp, exc)


def _write_error(out_path: str | os.PathLike, exc: OSError | RuntimeError) -> EventFileError:
    errno = getattr(exc, "errno", None)
    if not errno:  # HDF5 reports a failed write (e.g. a full disk) as "... errno = 28, ..."
        m = re.search(r"errno = (\d+)", str(exc))
        errno = int(m.group(1)) if m else None
    reason = os.strerror(errno) if errno else " ".join(str(exc).split())
    return EventFileError(f"cannot write {os.fspath(out_path)!r}: {reason}")


def _open_writer(out_path: str | os.PathLike, tmp: str, *args: Any, **kw: Any) -> EventFileWriter:
    """An :class:`EventFileWriter` on ``tmp``; a failure (a full disk) names ``out_path``."""
    try:
        return EventFileWriter(tmp, *args, **kw)
    except (OSError, RuntimeError) as exc:
        raise _write_error(out_path, exc) from None


# -- the pipeline ---------------------------------------------------------------------------


def generate_file(
    config: Config,
    n_events: int,
    out_path: str | os.PathLike,
    *,
    seed: int | None = None,
    workers: int | None = None,
    compression: str = "gzip",
    overwrite: bool = False,
    progress: Callable[[int], Any] | None = None,
) -> GenerateResult:
    """Simulate ``n_events`` events and write them as one event file, atomically.

    Parameters
    ----------
    config : Config
        Anything with ``.simulation`` (:class:`~spectrocnn.simulate.Simulation`),
        ``.image`` (:class:`~spectrocnn.dataset.ImageSpec`) and ``.to_dict()`` (the
        resolved configuration recorded in the file), e.g. from
        :func:`spectrocnn.config.load_config`.
    n_events : int
        >= 0.
    out_path : path-like
        The event file; its directory must exist.
    seed : int, optional
        In ``[0, 2**64)``; None draws a fresh one (:func:`new_seed`). Always recorded.
    workers : int, optional
        Processes that make events, >= 1; None: :func:`default_workers`. 1 works in the
        calling process alone; W > 1 adds W - 1 helper processes. The file content does not
        depend on it.
    compression : {"gzip", "lzf", "none"}
        Image compression (gzip: level 1, readable everywhere).
    overwrite : bool
        Replace an existing file (only once the new one is complete).
    progress : callable, optional
        Called with the number of events just written, after every chunk.

    Returns
    -------
    GenerateResult

    Raises
    ------
    ConfigError
        Invalid arguments, missing output directory, existing output without
        ``overwrite``.
    EventFileError, OSError
        When the file cannot be written. No output is left behind.
    """
    if isinstance(n_events, bool) or not isinstance(n_events, int | np.integer) or n_events < 0:
        raise ConfigError(f"number of events must be an integer >= 0, got {n_events!r}")
    n_events = int(n_events)
    seed = new_seed() if seed is None else _check_seed(seed)
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    _check_compression(compression)
    out = _check_output(out_path, overwrite)
    simulation: Simulation = config.simulation
    spec: ImageSpec = config.image
    resolved = config.to_dict()

    job = _Job(simulation, spec, seed, n_events, compression)
    n_chunks = job.n_chunks
    workers = int(min(workers, max(n_chunks, 1)))
    log.info(
        "generating %d events (seed %d, %d worker(s), %s) into %s",
        n_events,
        seed,
        workers,
        compression,
        out,
    )
    t0 = time.perf_counter()
    n_high = 0
    track_stops: dict[str, int] = {}
    with (
        _atomic_output(out, overwrite) as tmp,
        _open_writer(
            out_path,
            tmp,
            n_events,
            spec,
            seed=seed,
            config=resolved,
            compression=compression,
            threshold=job.simulation.threshold,
        ) as writer,
    ):
        if workers > 1:
            results = _results_pool(job, n_chunks, workers - 1)
        else:
            results = _results_serial(job, n_chunks)
        try:
            for res in results:
                try:
                    if res.encoded is not None:
                        writer.append(res.batch, encoded=res.encoded)
                    else:
                        writer.append(res.batch, res.images)
                except (OSError, RuntimeError) as exc:  # h5py: RuntimeError for some
                    raise _write_error(out_path, exc) from None
                n_high += int(res.batch.labels.sum())
                for reason, count in (res.batch.stop_counts() or {}).items():
                    track_stops[reason] = track_stops.get(reason, 0) + count
                if progress is not None:
                    progress(res.batch.n_events)
        finally:
            results.close()  # stops the workers at once if the loop was left early
        try:
            writer.close()
        except (OSError, RuntimeError) as exc:  # a full disk fails HDF5's flush
            raise _write_error(out_path, exc) from None
    elapsed = time.perf_counter() - t0
    size = os.path.getsize(out)
    log.info("wrote %d events in %.2f s, %d bytes", n_events, elapsed, size)
    return GenerateResult(
        path=os.fspath(out_path),
        n_events=n_events,
        n_high=n_high,
        seed=seed,
        workers=workers,
        elapsed_s=elapsed,
        file_bytes=size,
        track_stops=track_stops,
    )
