# One file for sharded generation: the Dask jobs, the shard files and the virtual file that joins
# them.
"""Sharded generation on a Dask cluster: K shard files presented as one event file.

:func:`generate_sharded` (``gen-events --shards K --out DIR``) makes the same events as
:func:`~spectrocnn.dataset.generate_file`, split into ``K`` shard files that the workers of
a `Dask distributed <https://distributed.dask.org>`_ cluster write side by side, and one
HDF5 *virtual-dataset* file that presents them as a single event file (schema
``spectrocnn.events/1``, docs/design.md 3.3)::

    DIR/events.h5                    the event file of all N events: every reader and command
                                     takes it like any other event file
    DIR/shard-00000-of-00004.h5      events [e_0, e_1)
    DIR/shard-00001-of-00004.h5      events [e_1, e_2)
    ...

Same seed, same events
    Events are made in chunks of :func:`~spectrocnn.dataset.generate.chunk_events` events
    (256 unless the configuration is heavy), chunk ``i`` from its own stream
    ``SeedSequence(seed, spawn_key=(i,))`` (docs/design.md 5). A shard is
    a contiguous range of whole chunks (shard ``k`` of ``K`` holds chunks
    ``[k C // K, (k + 1) C // K)`` of the ``C`` chunks), so every chunk keeps its index and
    its stream: the content of ``events.h5`` (images, labels, truth, configuration) is
    identical to the unsharded file of the same seed, whatever ``K`` and the cluster.

Shard files
    Each holds the datasets of the schema for its events, with the ``event`` columns and
    ``hits/particle`` numbered as in the whole set (global indices), and ``offsets``
    counted in rows of the shard. Its ``schema`` attribute is ``spectrocnn.events-shard/1``
    (so that it is not mistaken for a whole event file); ``first_event``,
    ``first_particle``, ``shard``, ``n_shards``, ``n_events`` and ``n_events_total`` say
    where it belongs, and ``run_id`` (drawn once per run, the same in every shard and the
    virtual file), ``seed`` and ``config`` which run made it.

The virtual file
    ``/images``, ``/labels`` and every truth column are HDF5 virtual datasets that map the
    shards' datasets in order, by file names *relative* to the virtual file (HDF5 looks them
    up beside it): move or copy ``DIR`` as a whole. The ``offsets`` datasets are real (N + 1
    integers each), computed from the shards'. The root attributes are those of an ordinary
    event file (``n_events`` of the whole set, ``created`` when it was assembled,
    ``run_id``), plus ``shards``, the list of shard file names, and ``shard_layout``, the
    place and dataset shapes of each shard. Reading it needs only h5py / HDF5 >= 1.10;
    :func:`~spectrocnn.dataset.open_events` refuses it if a shard file is missing (HDF5
    would read zeros) or does not match it (a shard of another run, out of place or of
    other shapes, which HDF5 would read without complaint:
    :mod:`spectrocnn.dataset.identity`).

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
    of your own). Dask is an optional dependency (``pip install 'spectrocnn[dask]'``), imported
    only here.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from spectrocnn.dataset.eventfile import (
    SCHEMA,
    EventFileWriter,
    _check_compression,
    _check_seed,
)
from spectrocnn.dataset.generate import (
    CHUNK_EVENTS,
    _chunk_size,
    _Job,
    _main_module_hidden,
    _process_chunk,
    chunk_events,
    chunk_rng,
    default_workers,
    new_seed,
)
from spectrocnn.dataset.identity import (
    LAYOUT_ATTR,
    RUN_ID_ATTR,
    SHARD_SCHEMA,
    check_shard,
    new_run_id,
    shard_expectations,
    shard_layout,
)
from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.simulate.events import HIT_COLUMNS, PARTICLE_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

    from spectrocnn.config import Config

__all__ = [
    "FAULT_ENV",
    "SHARD_SCHEMA",
    "VIRTUAL_NAME",
    "ShardError",
    "ShardedResult",
    "generate_sharded",
    "shard_name",
    "shard_ranges",
    "write_virtual_file",
]

log = logging.getLogger(__name__)

#: Name of the virtual event file in the output directory.
VIRTUAL_NAME = "events.h5"

#: Test hook: ``"K"`` makes shard K fail on every attempt, ``"K:once"`` on its first
#: attempt only (after writing part of it); several specs separated by commas. Read by
#: :func:`generate_sharded` in the submitting process.
FAULT_ENV = "SPECTROCNN_SHARD_FAULT"

_SHARD_RE = re.compile(r"shard-\d{5,}-of-\d{5,}\.h5")

#: How long to try to reach a scheduler given by address.
_CONNECT_TIMEOUT = "30s"

#: Root attributes of a shard that the virtual file does not take over.
_SHARD_ATTRS = ("schema", "first_event", "first_particle", "shard", "n_shards", "n_events_total")


class ShardError(EventFileError):
    """A shard that failed on every attempt, or a cluster that cannot be used (exit code 1)."""


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
        Events per chunk (:func:`~spectrocnn.dataset.generate.chunk_events` of the
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
    if isinstance(shards, bool) or not isinstance(shards, int | np.integer) or shards < 1:
        raise ConfigError(f"shards must be a positive integer, got {shards!r}")
    if shards > n_chunks:
        raise ConfigError(
            f"{shards} shards for {n_events} events: a shard holds whole chunks of "
            f"{chunk} events, so at most {n_chunks} shard{'s' if n_chunks != 1 else ''}"
        )
    bounds = [k * n_chunks // shards for k in range(shards + 1)]
    return [(a * chunk, min(n_events, b * chunk)) for a, b in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class ShardedResult:
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

    @property
    def events_per_s(self) -> float:
        """Events per second of wall time."""
        return self.n_events / self.elapsed_s if self.elapsed_s > 0 else float("inf")


# -- one shard (runs on a Dask worker) ------------------------------------------------------


@dataclass(frozen=True)
class _ShardTask:
    job: _Job
    config: dict[str, Any]
    index: int
    shards: int
    start: int
    stop: int
    directory: str
    run_id: str
    fault: str | None = None  # "always" | "once" (test hook)

    @property
    def name(self) -> str:
        return shard_name(self.index, self.shards)


@dataclass(frozen=True)
class _ShardInfo:
    index: int
    n_events: int
    n_high: int
    elapsed_s: float


def _inject_fault(task: _ShardTask) -> None:
    if task.fault is None:
        return
    if task.fault == "once":
        marker = os.path.join(task.directory, f".fault-{task.index}")
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            return  # failed once already
    raise RuntimeError(f"injected fault in shard {task.index} ({FAULT_ENV})")


def _particles_before(job: _Job, chunk: int) -> int:
    """Particles in the chunks before chunk ``chunk`` of the run: ``events * n`` for a fixed
    multiplicity; otherwise each chunk's multiplicities, the first draws of its random
    stream (:func:`~spectrocnn.simulate.simulate_events`), drawn again (cheap)."""
    sim = job.simulation
    fixed = sim.fixed_particles
    if fixed is not None:
        return min(chunk * job.chunk, job.n_events) * fixed
    mult = sim.multiplicity
    return sum(
        int(mult.draw(_chunk_size(job, i), chunk_rng(job.seed, i)).sum()) for i in range(chunk)
    )


def _make_shard(task: _ShardTask) -> _ShardInfo:
    """Simulate the chunks of one shard and write its file (temporary name, then rename)."""
    t0 = time.perf_counter()
    job = task.job
    first, last = task.start // job.chunk, -(-task.stop // job.chunk)
    first_particle = _particles_before(job, first)
    expected_particles = _particles_before(job, last) - first_particle
    final = os.path.join(task.directory, task.name)
    tmp = os.path.join(task.directory, f".{task.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    n_high = n_particles = 0
    try:
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
        ) as writer:
            for i in range(first, last):
                res = _process_chunk(job, i)
                if res.encoded is not None:
                    writer.append(res.batch, encoded=res.encoded)
                else:
                    writer.append(res.batch, res.images)
                n_high += int(res.batch.labels.sum())
                n_particles += len(res.batch.particles)
                if i == first:
                    _inject_fault(task)
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
        os.replace(tmp, final)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
    return _ShardInfo(task.index, task.stop - task.start, n_high, time.perf_counter() - t0)


# -- the virtual file -----------------------------------------------------------------------


def write_virtual_file(path: str | os.PathLike, shard_paths: Sequence[str | os.PathLike]) -> int:
    """Write the virtual event file that presents shard files as one event file.

    Parameters
    ----------
    path : path-like
        The file to write (replaced if it exists; not atomic by itself).
    shard_paths : sequence of path-like
        The shards in event order, in the directory of ``path`` (their names are recorded
        relative to it).

    Returns
    -------
    int
        Number of events.

    Raises
    ------
    EventFileError
        When a shard is not a complete shard file, belongs to another run than the first
        (``run_id``, ``seed``, ``config``) or does not follow the one before.
    """
    out = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(out)
    names: list[str] = []
    for p in shard_paths:
        full = os.path.abspath(os.fspath(p))
        if os.path.dirname(full) != directory:
            raise ValueError(f"shard {full} is not in the directory of {out}")
        names.append(os.path.basename(full))
    if not names:
        raise ValueError("no shard files")
    info: list[dict[str, Any]] = []
    with ExitStack() as stack:
        opened: dict[str, h5py.File] = {}
        for name in names:
            full = os.path.join(directory, name)
            try:
                opened[name] = stack.enter_context(h5py.File(full, "r"))
            except OSError as exc:
                raise EventFileError(f"{full}: cannot read the shard ({exc})") from None
        first = opened[names[0]]
        # every shard must belong to the run of the first and follow the one before
        expected = {k: first.attrs[k] for k in (RUN_ID_ATTR, "seed", "config") if k in first.attrs}
        layout = shard_layout(opened)
        expected[LAYOUT_ATTR] = layout
        expectations = shard_expectations(out, expected)
        for name, f in opened.items():
            check_shard(out, name, f, expectations)
            info.append(
                {
                    "n": int(f["images"].shape[0]),
                    "rows": {g: int(f[f"{g}/event"].shape[0]) for g in ("particles", "hits")},
                    "offsets": {g: f[f"{g}/offsets"][()] for g in ("particles", "hits")},
                }
            )
    n_events = sum(i["n"] for i in info)

    with h5py.File(os.path.join(directory, names[0]), "r") as first, h5py.File(out, "w") as f:

        def virtual(name: str, counts: list[int]) -> None:
            src = first[name]
            tail = tuple(src.shape[1:])
            total = sum(counts)
            if total == 0:
                ds = f.create_dataset(
                    name, shape=(0, *tail), maxshape=(None, *tail), dtype=src.dtype
                )
            else:
                layout = h5py.VirtualLayout(shape=(total, *tail), dtype=src.dtype)
                pos = 0
                for fname, c in zip(names, counts, strict=True):
                    if c:
                        layout[pos : pos + c] = h5py.VirtualSource(
                            fname, name, shape=(c, *tail), dtype=src.dtype
                        )
                    pos += c
                ds = f.create_virtual_dataset(name, layout, fillvalue=0)
            for k, v in src.attrs.items():
                ds.attrs[k] = v

        virtual("images", [i["n"] for i in info])
        virtual("labels", [i["n"] for i in info])
        if "events" in first:
            f.create_group("events")
            for col in first["events"]:
                virtual(f"events/{col}", [i["n"] for i in info])
        for group, spec in (("particles", PARTICLE_COLUMNS), ("hits", HIT_COLUMNS)):
            f.create_group(group)
            counts = [i["rows"][group] for i in info]
            for col in spec:
                virtual(f"{group}/{col}", counts)
            parts = [np.zeros(1, np.int64)]
            base = 0
            for i in info:
                parts.append(np.asarray(i["offsets"][group][1:], np.int64) + base)
                base += i["rows"][group]
            off = f.create_dataset(f"{group}/offsets", data=np.concatenate(parts))
            for k, v in first[f"{group}/offsets"].attrs.items():
                off.attrs[k] = v
        for k, v in first.attrs.items():
            if k not in _SHARD_ATTRS:
                f.attrs[k] = v
        f.attrs["n_events"] = np.int64(n_events)
        f.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        f.attrs["shards"] = np.array(names, dtype=h5py.string_dtype())
        f.attrs[LAYOUT_ATTR] = layout
        f.flush()
        f.attrs["schema"] = SCHEMA  # last: the file is complete
    return n_events


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


def _make_work_dir(out: str) -> str:
    parent, name = os.path.split(out)
    for _ in range(100):
        work = os.path.join(parent, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.mkdir(work)
        except FileExistsError:
            continue
        except OSError as exc:
            raise EventFileError(
                f"cannot create a directory in {parent!r}: {exc.strerror or exc}"
            ) from None
        return work
    raise EventFileError(f"cannot create a temporary directory in {parent!r}")  # pragma: no cover


def _publish(work: str, out: str, shown: str, overwrite: bool) -> None:
    """Rename the finished work directory to ``out`` (replacing an old one with overwrite)."""
    for entry in os.listdir(work):  # temporaries of failed attempts, fault markers
        if entry.startswith("."):
            p = os.path.join(work, entry)
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
    old = None
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise ConfigError(f"output directory {shown!r} exists (overwrite it with --overwrite)")
        old = f"{work}.old"
        os.rename(out, old)
    elif os.path.isdir(out):
        os.rmdir(out)  # empty
    try:
        os.rename(work, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- the cluster ----------------------------------------------------------------------------


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "sharded generation needs Dask: pip install 'spectrocnn[dask]' (or dask[distributed])"
        ) from None
    return distributed


@contextmanager
def _dask_quiet() -> Iterator[int]:
    """Keep Dask's INFO lines and its workers' reports of retried shards ("Compute Failed")
    off stderr (they reach it by propagation to the root logger), unless debug logging is
    on; yields the level for the cluster's ``silence_logs``."""
    if log.isEnabledFor(logging.DEBUG):
        yield logging.WARNING
        return
    names = ["distributed", "tornado", "bokeh"]
    names += [n for n in list(logging.root.manager.loggerDict) if n.startswith("distributed.")]
    saved = {}
    for n in names:
        logger = logging.getLogger(n)
        if n in names[:3] or logger.level != logging.NOTSET:
            saved[n] = logger.level
            logger.setLevel(logging.CRITICAL)
    try:
        yield logging.CRITICAL
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


@contextmanager
def _client(scheduler: str | None, workers: int) -> Iterator[Client]:
    distributed = _distributed()
    with _dask_quiet() as level, _client_in(distributed, scheduler, workers, level) as client:
        yield client


@contextmanager
def _client_in(
    distributed: Any, scheduler: str | None, workers: int, level: int
) -> Iterator[Client]:
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=_CONNECT_TIMEOUT, set_as_default=False)
        except Exception as exc:
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise ShardError(
                f"cannot connect to the Dask scheduler at {scheduler!r}: {msg}"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    # Dask sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's adaptive mmap
    # threshold: every large array is then mapped and unmapped anew, and the simulation
    # runs about half as fast.
    no_trim = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
    with _main_module_hidden(), dask.config.set(no_trim):
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",  # its HTTP server: any free port, this host
            silence_logs=level,
        )
    try:
        client = distributed.Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _faults() -> dict[int, str]:
    spec = os.environ.get(FAULT_ENV, "").strip()
    out: dict[int, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        index, _, mode = item.partition(":")
        if not index.isdigit():
            log.warning("ignoring %s item %r (expected K or K:once)", FAULT_ENV, item)
            continue
        out[int(index)] = "once" if mode == "once" else "always"
    return out


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

    Writes ``out_dir/events.h5`` (a virtual event file over the shards) and
    ``out_dir/shard-KKKKK-of-NNNNN.h5``; see the module docstring. The content equals
    :func:`~spectrocnn.dataset.generate_file`'s for the same seed.

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
    if isinstance(n_events, bool) or not isinstance(n_events, int | np.integer) or n_events < 1:
        raise ConfigError(f"number of events must be a positive integer, got {n_events!r}")
    n_events = int(n_events)
    ranges = shard_ranges(n_events, shards, chunk_events(config.simulation))
    shards = len(ranges)
    seed = new_seed() if seed is None else _check_seed(seed)
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, int | np.integer) or retries < 0:
        raise ConfigError(f"retries must be an integer >= 0, got {retries!r}")
    _check_compression(compression)
    shown = os.fspath(out_dir)
    out = _check_out_dir(out_dir, overwrite)
    if client is None:
        _distributed()  # a clear error before anything is made
    faults = _faults()

    t0 = time.perf_counter()
    job = _Job(config.simulation, config.image, seed, n_events, compression)
    resolved = config.to_dict()
    run_id = new_run_id()
    work = _make_work_dir(out)
    ok = False
    try:
        tasks = [
            _ShardTask(job, resolved, k, shards, a, b, work, run_id, faults.get(k))
            for k, (a, b) in enumerate(ranges)
        ]
        if client is not None:
            infos, n_workers, address = _run_shards(client, tasks, retries, progress)
        else:
            with _client(scheduler, int(workers)) as c:
                infos, n_workers, address = _run_shards(c, tasks, retries, progress)
        paths = [os.path.join(work, t.name) for t in tasks]
        try:
            write_virtual_file(os.path.join(work, VIRTUAL_NAME), paths)
        except OSError as exc:
            raise EventFileError(f"cannot write {shown!r}: {exc}") from None
        _publish(work, out, shown, overwrite)
        ok = True
    finally:
        if not ok:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    names = [t.name for t in tasks]
    size = sum(os.path.getsize(os.path.join(out, n)) for n in [VIRTUAL_NAME, *names])
    log.info("wrote %d events in %d shards in %.2f s", n_events, shards, elapsed)
    return ShardedResult(
        path=os.path.join(shown, VIRTUAL_NAME),
        directory=shown,
        shard_paths=tuple(os.path.join(shown, n) for n in names),
        n_events=n_events,
        n_high=sum(i.n_high for i in infos),
        seed=seed,
        workers=n_workers,
        scheduler=address,
        elapsed_s=elapsed,
        file_bytes=size,
    )


def _run_shards(
    client: Client,
    tasks: list[_ShardTask],
    retries: int,
    progress: Callable[[int], Any] | None,
) -> tuple[list[_ShardInfo], int, str]:
    """Submit one task per shard; their results in shard order, workers, scheduler address."""
    import distributed

    info = client.scheduler_info()
    n_workers = len(info.get("workers", {}))
    address = str(info.get("address", ""))
    token = secrets.token_hex(4)
    futures = {
        client.submit(
            _make_shard,
            t,
            key=f"spectrocnn-shard-{t.index}-of-{t.shards}-{token}",
            retries=retries,
            pure=False,
        ): t
        for t in tasks
    }
    results: dict[int, _ShardInfo] = {}
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
