"""The processes of this machine that make the chunks of :func:`~spectrocnn.dataset.generate_file`.

With ``workers = W > 1``, ``W - 1`` helper processes (``forkserver`` start method; they
import only NumPy, SciPy, h5py and this package, never TensorFlow) make chunks
(:func:`~spectrocnn.dataset.pipeline.process_chunk`), and the calling process, which
writes the file in chunk order, makes one itself whenever the next chunk is not ready yet:
W processes keep W cores busy. At most ``2 * (W - 1)`` chunks are in flight, and fewer when
their results would take more than 256 MiB, so memory does not grow with the number of
events. On an error or interrupt the workers finish the chunk in hand and stop; a worker
whose parent dies (SIGKILL) exits by itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from spectrocnn.dataset.pipeline import ChunkJob, ChunkResult, hidden_main_module, process_chunk

__all__ = ["chunk_results"]

log = logging.getLogger(__name__)

#: Budget for the chunk results held by the writing process [bytes].
_RESULTS_BUDGET_BYTES = 256 << 20

#: Chunks in flight per worker process (bounds the memory of the pipeline).
_IN_FLIGHT_PER_WORKER = 2

#: Seconds that workers get to finish their chunk after an error or interrupt.
_STOP_TIMEOUT_S = 30.0


def chunk_results(job: ChunkJob, workers: int) -> Iterator[ChunkResult]:
    """The results of the chunks of ``job``, in order, made by ``workers`` processes (the
    caller included); close the generator to stop the workers early.

    Parameters
    ----------
    job : ChunkJob
    workers : int
        >= 1; 1 makes every chunk in the calling process.

    Yields
    ------
    ChunkResult
        Chunk 0, 1, ... ``job.n_chunks - 1``.

    Raises
    ------
    RuntimeError
        When a worker process dies (killed, out of memory).
    """
    if workers > 1:
        yield from _results_pool(job, job.n_chunks, workers - 1)
    else:
        for i in range(job.n_chunks):
            yield process_chunk(job, i)


_WORKER_JOB: ChunkJob | None = None


def _init_worker(job: ChunkJob, parent_pid: int) -> None:
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


def _worker(index: int) -> ChunkResult:
    if _WORKER_JOB is None:  # pragma: no cover - initializer not run
        raise RuntimeError("worker not initialised")
    return process_chunk(_WORKER_JOB, index)


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


def _result(fut: Future[ChunkResult]) -> ChunkResult:
    try:
        return fut.result()
    except BrokenProcessPool as exc:
        raise RuntimeError(
            f"a worker process died unexpectedly (killed, or out of memory?): {exc}"
        ) from None


def _results_pool(job: ChunkJob, n_chunks: int, helpers: int) -> Iterator[ChunkResult]:
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
    futures: dict[int, Future[ChunkResult]] = {}
    local: dict[int, ChunkResult] = {}
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
        with hidden_main_module(), _signals_deferred():
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
                    local[nxt] = process_chunk(job, nxt)
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
