"""gen-events into one file: :func:`generate_file`.

The chunks of events (:mod:`spectrocnn.dataset.pipeline`: chunk ``i`` from its own random
stream, so the content depends on the seed and the number of events only) are made by
``workers`` processes of this machine (:mod:`spectrocnn.dataset.workers`) and written in
chunk order by the calling process.

The output is written to a temporary file beside the target (same directory, name
starting with a dot) and renamed over the target only when complete
(:func:`spectrocnn._atomic.atomic_output`); on any error or interrupt the temporary file is
removed, and an existing target is never touched unless ``overwrite`` is true (and then
only replaced on success).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spectrocnn._atomic import atomic_output, write_reason
from spectrocnn.dataset.eventfile import EventFileWriter
from spectrocnn.dataset.pipeline import (
    CHUNK_EVENTS,
    ChunkJob,
    ChunkResult,
    Throughput,
    append_chunk,
    check_run,
    chunk_events,
    chunk_rng,
    default_workers,
    simulate_chunk,
)
from spectrocnn.dataset.workers import chunk_results
from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.seeds import new_seed

if TYPE_CHECKING:
    from spectrocnn.config import Config

# CHUNK_EVENTS, chunk_events, chunk_rng, default_workers and simulate_chunk live in
# pipeline.py, new_seed in spectrocnn/seeds.py; they are importable from here as before.
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


@dataclass(frozen=True)
class GenerateResult(Throughput):
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
    def tracks_stopped_early(self) -> int:
        """Tracks that ended other than by leaving the detector (looped, limits)."""
        return sum(n for k, n in self.track_stops.items() if k != "left_detector")


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


def _output_file(
    out_path: str | os.PathLike, out: str, overwrite: bool
) -> AbstractContextManager[str]:
    """A temporary file beside ``out``, moved to it when complete (without ``overwrite``, by
    a hard link that fails if ``out`` appeared meanwhile)."""
    directory = os.path.dirname(out)
    shown = os.fspath(out_path)
    return atomic_output(
        out,
        overwrite=overwrite,
        exists=lambda: ConfigError(f"output file {shown!r} exists (overwrite it with --overwrite)"),
        create_error=lambda exc: EventFileError(
            f"cannot create a file in {directory!r}: {exc.strerror or exc}"
        ),
    )


def _write_error(out_path: str | os.PathLike, exc: OSError | RuntimeError) -> EventFileError:
    return EventFileError(f"cannot write {os.fspath(out_path)!r}: {write_reason(exc)}")


def _open_writer(
    out_path: str | os.PathLike, tmp: str, job: ChunkJob, config: dict[str, Any]
) -> EventFileWriter:
    """An :class:`EventFileWriter` of ``job``'s events on ``tmp``; a failure (a full disk)
    names ``out_path``."""
    try:
        return EventFileWriter(
            tmp,
            job.n_events,
            job.spec,
            seed=job.seed,
            config=config,
            compression=job.compression,
            threshold=job.simulation.threshold,
            measured_rounding_mm=job.measured_rounding_mm,
        )
    except (OSError, RuntimeError) as exc:
        raise _write_error(out_path, exc) from None


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
    n_events, seed, workers = check_run(n_events, seed, workers, compression, min_events=0)
    out = _check_output(out_path, overwrite)
    job = ChunkJob(config.simulation, config.image, seed, n_events, compression)
    workers = int(min(workers, max(job.n_chunks, 1)))
    what = f"{n_events} events (seed {seed}, {workers} worker(s), {compression})"
    log.info("generating %s into %s", what, out)
    t0 = time.perf_counter()
    with (
        _output_file(out_path, out, overwrite) as tmp,
        _open_writer(out_path, tmp, job, config.to_dict()) as writer,
    ):
        n_high, track_stops = _write_chunks(writer, chunk_results(job, workers), out_path, progress)
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


def _write_chunks(
    writer: EventFileWriter,
    results: Iterator[ChunkResult],
    out_path: str | os.PathLike,
    progress: Callable[[int], Any] | None,
) -> tuple[int, dict[str, int]]:
    """Append every chunk result to ``writer`` and close it; the events labelled 1 and the
    tracks per reason they stopped. Closes ``results`` (which stops the workers) in any case."""
    n_high = 0
    track_stops: dict[str, int] = {}
    try:
        for res in results:
            try:
                append_chunk(writer, res)
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
    return n_high, track_stops
