"""Sharded generation on a Dask cluster: K shard files presented as one event file.

:func:`generate_sharded` (``gen-events --shards K --out DIR``) makes the same events as
:func:`~spectrocnn.dataset.generate_file`, split into ``K`` shard files that the workers of
a `Dask distributed <https://distributed.dask.org>`_ cluster write side by side, and one
HDF5 *virtual-dataset* file that presents them as a single event file (schema
``spectrocnn.events/2``, docs/design.md 3.3)::

    DIR/events.h5                    the event file of all N events: every reader and command
                                     takes it like any other event file
    DIR/shard-00000-of-00004.h5      events [e_0, e_1)
    DIR/shard-00001-of-00004.h5      events [e_1, e_2)
    ...

Same seed, same events
    Events are made in chunks of :func:`~spectrocnn.dataset.pipeline.chunk_events` events
    (256 unless the configuration is heavy), chunk ``i`` from its own stream
    ``SeedSequence(seed, spawn_key=(i,))`` (docs/design.md 5). A shard is
    a contiguous range of whole chunks (shard ``k`` of ``K`` holds chunks
    ``[k C // K, (k + 1) C // K)`` of the ``C`` chunks), so every chunk keeps its index and
    its stream: the content of ``events.h5`` (images, labels, truth, configuration) is
    identical to the unsharded file of the same seed, whatever ``K`` and the cluster.

Shard files
    Each holds the datasets of the schema for its events, with the ``event`` columns and
    ``hits/particle`` numbered as in the whole set (global indices), and ``offsets``
    counted in rows of the shard. Its ``schema`` attribute is ``spectrocnn.events-shard/2``
    (so that it is not mistaken for a whole event file); ``first_event``,
    ``first_particle``, ``shard``, ``n_shards``, ``n_events`` and ``n_events_total`` say
    where it belongs, and ``run_id`` (drawn once per run, the same in every shard and the
    virtual file), ``seed`` and ``config`` which run made it.

The virtual file
    HDF5 virtual datasets over the shards' datasets, by file names *relative* to it: move or
    copy ``DIR`` as a whole (:mod:`spectrocnn.dataset.virtual`). Reading it needs only h5py /
    HDF5 >= 1.10; :func:`~spectrocnn.dataset.open_events` refuses it if a shard file is
    missing (HDF5 would read zeros) or does not match it (a shard of another run, out of
    place or of other shapes: :mod:`spectrocnn.dataset.identity`).

Retries and atomic output
    Each shard is one Dask task, submitted with ``retries`` (a task that raises is run
    again, on any worker; a worker that dies is replaced by the scheduler). A shard is
    written under a temporary name and renamed when complete, so a retry never sees a
    partial file and gives the identical shard. Everything is written in a hidden
    directory beside ``DIR`` (``.DIR.<pid>.<random>.tmp``) that is renamed to ``DIR`` once
    the virtual file is complete; when a shard keeps failing the run stops with
    :class:`ShardError` naming it, and the hidden directory is removed: no ``DIR``, no
    ``events.h5``. With ``overwrite``, an existing ``DIR`` holding only files of this
    layout is replaced once the new one is complete.

Where it runs
    ``scheduler=ADDRESS`` submits to an existing cluster (e.g. one started by
    ``dask-jobqueue`` on Slurm or HTCondor, see the README); the workers then need
    ``spectrocnn`` installed and ``DIR``'s parent directory on a file system they share.
    Without it a ``LocalCluster`` of ``workers`` single-threaded processes runs on this
    machine (without Dask's ``MALLOC_TRIM_THRESHOLD_``, which halves the simulation's speed;
    set ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null`` on a cluster
    of your own; :mod:`spectrocnn.dataset.cluster`). Dask is an optional dependency
    (``pip install 'spectrocnn[dask]'``), imported only when sharding.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from spectrocnn._atomic import atomic_output, remove
from spectrocnn._validate import check_int
from spectrocnn.dataset.cluster import dask_client, require_dask
from spectrocnn.dataset.eventfile import EventFileWriter
from spectrocnn.dataset.identity import SHARD_SCHEMA, new_run_id
from spectrocnn.dataset.pipeline import (
    CHUNK_EVENTS,
    ChunkJob,
    Throughput,
    append_chunk,
    check_run,
    chunk_events,
    chunk_rng,
    process_chunk,
)
from spectrocnn.dataset.virtual import write_virtual_file
from spectrocnn.errors import ConfigError, EventFileError, ShardError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

    from spectrocnn.config import Config

__all__ = [
    "SHARD_SCHEMA",
    "VIRTUAL_NAME",
    "ShardError",
    "ShardInfo",
    "ShardTask",
    "ShardedResult",
    "generate_sharded",
    "make_shard",
    "shard_name",
    "shard_ranges",
    "write_virtual_file",
]

log = logging.getLogger(__name__)

#: Name of the virtual event file in the output directory.
VIRTUAL_NAME = "events.h5"

_SHARD_RE = re.compile(r"shard-\d{5,}-of-\d{5,}\.h5")


def shard_name(index: int, shards: int) -> str:
    """File name of shard ``index`` of ``shards``: ``shard-00001-of-00004.h5``."""
    return f"shard-{index:05d}-of-{shards:05d}.h5"


def shard_ranges(n_events: int, shards: int, chunk: int = CHUNK_EVENTS) -> list[tuple[int, int]]:
    """Event ranges ``[start, stop)`` of the shards: whole chunks, as even as possible.

    Parameters
    ----------
    n_events : int
        >= 1.
    shards : int
        In ``[1, C]``, ``C = ceil(n_events / chunk)`` the number of chunks.
    chunk : int
        Events per chunk (:func:`~spectrocnn.dataset.pipeline.chunk_events` of the
        configuration).

    Returns
    -------
    list of (int, int)
        Shard ``k`` holds chunks ``[k C // K, (k + 1) C // K)``.

    Raises
    ------
    ConfigError
        When ``shards`` is not in ``[1, C]``.
    """
    n_chunks = -(-int(n_events) // chunk)
    check_int("shards", shards, minimum=1)
    if shards > n_chunks:
        raise ConfigError(
            f"{shards} shards for {n_events} events: a shard holds whole chunks of "
            f"{chunk} events, so at most {n_chunks} shard{'s' if n_chunks != 1 else ''}"
        )
    bounds = [k * n_chunks // shards for k in range(shards + 1)]
    return [(a * chunk, min(n_events, b * chunk)) for a, b in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class ShardedResult(Throughput):
    """What :func:`generate_sharded` did.

    Attributes
    ----------
    path : str
        The virtual event file, ``directory/events.h5``.
    directory : str
    shard_paths : tuple of str
    n_events, n_high, seed : int
    workers : int
        Dask workers of the cluster when the shards were submitted.
    scheduler : str
        Address of the Dask scheduler.
    elapsed_s : float
        Wall time [s], cluster start included.
    file_bytes : int
        Size of the shards and the virtual file together [bytes].
    """

    path: str
    directory: str
    shard_paths: tuple[str, ...]
    n_events: int
    n_high: int
    seed: int
    workers: int
    scheduler: str
    elapsed_s: float
    file_bytes: int

    @property
    def shards(self) -> int:
        """Number of shards."""
        return len(self.shard_paths)


# -- one shard (runs on a Dask worker) ------------------------------------------------------


@dataclass(frozen=True)
class ShardTask:
    """One shard to make: events ``[start, stop)`` of ``job`` into ``directory/name``.

    Attributes
    ----------
    job : ChunkJob
        The whole run.
    config : dict
        The resolved configuration, recorded in the file.
    index, shards : int
        Shard ``index`` of ``shards``.
    start, stop : int
        Its events, whole chunks of the run (:func:`shard_ranges`).
    directory : str
        Where to write it (the run's hidden work directory).
    run_id : str
        Of the run, the same in every shard.
    """

    job: ChunkJob
    config: dict[str, Any]
    index: int
    shards: int
    start: int
    stop: int
    directory: str
    run_id: str

    @property
    def name(self) -> str:
        """The shard's file name (:func:`shard_name`)."""
        return shard_name(self.index, self.shards)


@dataclass(frozen=True)
class ShardInfo:
    """What :func:`make_shard` did: shard ``index``, its events, those labelled 1, the wall
    time [s]."""

    index: int
    n_events: int
    n_high: int
    elapsed_s: float


def _particles_before(job: ChunkJob, chunk: int) -> int:
    """Particles in the chunks before chunk ``chunk`` of the run: ``events * n`` for a fixed
    multiplicity; otherwise each chunk's multiplicities, the first draws of its random
    stream (:func:`~spectrocnn.simulate.simulate_events`), drawn again (cheap)."""
    sim = job.simulation
    fixed = sim.fixed_particles
    if fixed is not None:
        return min(chunk * job.chunk, job.n_events) * fixed
    mult = sim.multiplicity
    return sum(
        int(mult.draw(job.chunk_size(i), chunk_rng(job.seed, i)).sum()) for i in range(chunk)
    )


def make_shard(task: ShardTask) -> ShardInfo:
    """Simulate the chunks of one shard and write its file (temporary name, then rename).

    :func:`generate_sharded` submits this function (looked up when it submits: tests put
    a failing one in its place) as one Dask task per shard. Running it again gives the
    identical file.

    Parameters
    ----------
    task : ShardTask

    Returns
    -------
    ShardInfo
    """
    t0 = time.perf_counter()
    job = task.job
    first, last = task.start // job.chunk, -(-task.stop // job.chunk)
    first_particle = _particles_before(job, first)
    expected_particles = _particles_before(job, last) - first_particle
    n_high = n_particles = 0
    with atomic_output(os.path.join(task.directory, task.name)) as tmp:
        with EventFileWriter(
            tmp,
            task.stop - task.start,
            job.spec,
            seed=job.seed,
            config=task.config,
            compression=job.compression,
            first_event=task.start,
            first_particle=first_particle,
            run_id=task.run_id,
            threshold=job.simulation.threshold,
            measured_rounding_mm=job.measured_rounding_mm,
        ) as writer:
            for i in range(first, last):
                res = process_chunk(job, i)
                append_chunk(writer, res)
                n_high += int(res.batch.labels.sum())
                n_particles += len(res.batch.particles)
        if n_particles != expected_particles:  # pragma: no cover - invariant
            raise RuntimeError(
                f"shard {task.index}: {n_particles} particles, expected {expected_particles}"
            )
        with h5py.File(tmp, "r+") as f:
            f.attrs["schema"] = SHARD_SCHEMA
            f.attrs["first_event"] = np.int64(task.start)
            f.attrs["first_particle"] = np.int64(first_particle)
            f.attrs["shard"] = np.int64(task.index)
            f.attrs["n_shards"] = np.int64(task.shards)
            f.attrs["n_events_total"] = np.int64(job.n_events)
    return ShardInfo(task.index, task.stop - task.start, n_high, time.perf_counter() - t0)


# -- output directory -----------------------------------------------------------------------


def _check_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> str:
    shown = os.fspath(out_dir)
    out = os.path.abspath(shown)
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise ConfigError(f"output directory {os.path.dirname(shown) or '.'!r} does not exist")
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            raise ConfigError(f"output {shown!r} exists and is not a directory")
        entries = os.listdir(out)
        if entries and not overwrite:
            raise ConfigError(f"output directory {shown!r} exists (overwrite it with --overwrite)")
        foreign = sorted(e for e in entries if e != VIRTUAL_NAME and not _SHARD_RE.fullmatch(e))
        if foreign:
            raise ConfigError(
                f"output directory {shown!r} holds files that gen-events did not write "
                f"(e.g. {foreign[0]!r}); not replacing it"
            )
    return out


@contextmanager
def _work_dir(out: str, shown: str, overwrite: bool) -> Iterator[str]:
    """A hidden directory beside ``out`` for the run, renamed to ``out`` when complete (an
    existing ``out`` replaced only with ``overwrite``); removed on any error."""
    parent = os.path.dirname(out)
    with atomic_output(
        out,
        overwrite=overwrite,
        directory=True,
        exists=lambda: ConfigError(
            f"output directory {shown!r} exists (overwrite it with --overwrite)"
        ),
        create_error=lambda exc: EventFileError(
            f"cannot create a directory in {parent!r}: {exc.strerror or exc}"
        ),
    ) as work:
        yield work
        for entry in os.listdir(work):  # temporaries of failed attempts
            if entry.startswith("."):
                remove(os.path.join(work, entry))


# -- the pipeline ---------------------------------------------------------------------------


def generate_sharded(
    config: Config,
    n_events: int,
    out_dir: str | os.PathLike,
    *,
    shards: int,
    seed: int | None = None,
    scheduler: str | None = None,
    client: Client | None = None,
    workers: int | None = None,
    retries: int = 2,
    compression: str = "gzip",
    overwrite: bool = False,
    progress: Callable[[int], Any] | None = None,
) -> ShardedResult:
    """Simulate ``n_events`` events as ``shards`` shard files on a Dask cluster.

    Writes ``out_dir/shard-KKKKK-of-NNNNN.h5`` and ``out_dir/events.h5``, a virtual event
    file over them (module docstring) equal to :func:`~spectrocnn.dataset.generate_file`'s.

    Parameters
    ----------
    config : Config
        As for :func:`~spectrocnn.dataset.generate_file`.
    n_events : int
        >= 1.
    out_dir : path-like
        The directory to create; its parent must exist. It must not exist, or be empty,
        unless ``overwrite``.
    shards : int
        Number of shards, in ``[1, ceil(n_events / chunk_events(config.simulation))]``.
    seed : int, optional
        In ``[0, 2**64)``; None draws a fresh one. Recorded in every file.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); default: a local cluster.
    client : distributed.Client, optional
        A client to use instead (not closed here); ``scheduler`` and ``workers`` are then
        ignored.
    workers : int, optional
        Processes of the local cluster (one thread each); default: the available cores.
    retries : int
        Times a failed shard is run again (>= 0).
    compression : {"gzip", "lzf", "none"}
    overwrite : bool
        Replace an existing ``out_dir`` that holds only files of this layout.
    progress : callable, optional
        Called with the number of events of each shard as it completes.

    Returns
    -------
    ShardedResult

    Raises
    ------
    ConfigError
        Invalid arguments, Dask not installed, an existing output directory.
    ShardError
        A shard failed ``retries + 1`` times, or the scheduler cannot be reached. Nothing is
        left behind.
    """
    n_events, seed, workers = check_run(n_events, seed, workers, compression, min_events=1)
    ranges = shard_ranges(n_events, shards, chunk_events(config.simulation))
    retries = check_int("retries", retries, minimum=0)
    shown = os.fspath(out_dir)
    out = _check_out_dir(out_dir, overwrite)
    if client is None:
        require_dask()  # a clear error before anything is made
    t0 = time.perf_counter()
    job = ChunkJob(config.simulation, config.image, seed, n_events, compression)
    with _work_dir(out, shown, overwrite) as work:
        run_id = new_run_id()
        tasks = [
            ShardTask(job, config.to_dict(), k, len(ranges), a, b, work, run_id)
            for k, (a, b) in enumerate(ranges)
        ]
        with dask_client(scheduler, workers, client) as c:
            infos, n_workers, address = _run_shards(c, tasks, retries, progress)
        _write_virtual(work, tasks, shown)
    return _result(shown, tasks, infos, n_workers, address, time.perf_counter() - t0)


def _result(
    shown: str,
    tasks: list[ShardTask],
    infos: list[ShardInfo],
    n_workers: int,
    address: str,
    elapsed: float,
) -> ShardedResult:
    """What :func:`generate_sharded` did, with the output ``shown`` complete."""
    job = tasks[0].job
    names = [t.name for t in tasks]
    log.info("wrote %d events in %d shards in %.2f s", job.n_events, len(tasks), elapsed)
    return ShardedResult(
        path=os.path.join(shown, VIRTUAL_NAME),
        directory=shown,
        shard_paths=tuple(os.path.join(shown, n) for n in names),
        n_events=job.n_events,
        n_high=sum(i.n_high for i in infos),
        seed=job.seed,
        workers=n_workers,
        scheduler=address,
        elapsed_s=elapsed,
        file_bytes=sum(os.path.getsize(os.path.join(shown, n)) for n in [VIRTUAL_NAME, *names]),
    )


def _write_virtual(work: str, tasks: list[ShardTask], shown: str) -> None:
    """The virtual file over the shards of ``tasks`` in ``work``; an I/O error names ``shown``."""
    paths = [os.path.join(work, t.name) for t in tasks]
    try:
        write_virtual_file(os.path.join(work, VIRTUAL_NAME), paths)
    except OSError as exc:
        raise EventFileError(f"cannot write {shown!r}: {exc}") from None


def _run_shards(
    client: Client,
    tasks: list[ShardTask],
    retries: int,
    progress: Callable[[int], Any] | None,
) -> tuple[list[ShardInfo], int, str]:
    """Submit one task per shard; their results in shard order, workers, scheduler address."""
    import distributed

    info = client.scheduler_info()
    n_workers = len(info.get("workers", {}))
    address = str(info.get("address", ""))
    token = secrets.token_hex(4)
    futures = {
        client.submit(
            make_shard,
            t,
            key=f"spectrocnn-shard-{t.index}-of-{t.shards}-{token}",
            retries=retries,
            pure=False,
        ): t
        for t in tasks
    }
    results: dict[int, ShardInfo] = {}
    try:
        for fut in distributed.as_completed(list(futures), loop=client.loop):
            t = futures[fut]
            try:
                res = fut.result()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                msg = " ".join(str(exc).split()) or "no message"
                raise ShardError(
                    f"shard {t.index} of {t.shards} ({t.name}, events {t.start}:{t.stop}) "
                    f"failed {retries + 1} time{'s' if retries else ''}; last error: "
                    f"{type(exc).__name__}: {msg}"
                ) from None
            results[t.index] = res
            log.debug("shard %d done in %.2f s", t.index, res.elapsed_s)
            if progress is not None:
                progress(res.n_events)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
    return [results[t.index] for t in tasks], n_workers, address
