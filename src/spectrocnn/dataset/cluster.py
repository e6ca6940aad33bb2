"""The Dask cluster of sharded generation: a client of a running scheduler, or a local one.

``scheduler=ADDRESS`` connects to an existing cluster (e.g. one started by ``dask-jobqueue``
on Slurm or HTCondor); without it a ``LocalCluster`` of ``workers`` single-threaded
processes runs on this machine, without Dask's ``MALLOC_TRIM_THRESHOLD_`` (which halves the
simulation's speed). Dask is an optional dependency (``pip install 'spectrocnn[dask]'``),
imported only here and by :mod:`spectrocnn.dataset.shards`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from spectrocnn.dataset.pipeline import hidden_main_module
from spectrocnn.errors import ConfigError, ShardError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

__all__ = ["dask_client", "require_dask"]

log = logging.getLogger(__name__)

#: How long to try to reach a scheduler given by address.
_CONNECT_TIMEOUT = "30s"


def require_dask() -> Any:
    """The ``distributed`` module; ConfigError saying how to install it if it is missing."""
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
def dask_client(
    scheduler: str | None, workers: int, client: Client | None = None
) -> Iterator[Client]:
    """``client`` if given (left open); else a client of the scheduler at ``scheduler``, or
    of a local cluster of ``workers`` single-threaded processes (closed, with the cluster,
    after the block), Dask's log lines kept off stderr unless debug logging is on.

    Raises
    ------
    ConfigError
        Dask is not installed.
    ShardError
        The scheduler cannot be reached.
    """
    if client is not None:
        yield client
        return
    distributed = require_dask()
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
    with hidden_main_module(), dask.config.set(no_trim):
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
