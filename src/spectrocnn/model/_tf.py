"""Importing and configuring TensorFlow, lazily and once.

TensorFlow is imported only through :func:`tensorflow`, so ``--help``, ``--version`` and
every check of the inputs run without it.

CPU threading (:func:`configure_threads`): TensorFlow runs each op on the *intra-op* pool
and independent ops side by side on the *inter-op* pool; by default both are sized to all
logical CPUs of the machine, which oversubscribes a container or a job limited to fewer
cores. We size the intra-op pool to the cores this process may use (the CPU affinity
mask, further limited by a cgroup CPU quota) and the inter-op pool to 1: the lecture
CNN is a chain of layers with little to run in parallel, and one op at a time using every
core avoids the two pools competing. ``tf.data`` keeps its own small pool for the input
pipeline. ``--threads N`` (or ``threads=N``) overrides the core count.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from types import ModuleType

__all__ = ["available_cores", "configure_threads", "quiet_environment", "tensorflow"]

log = logging.getLogger(__name__)

_THREADS: tuple[int, int] | None = None


#: Python loggers of TensorFlow and its libraries, quiet below ERROR unless debugging.
_CHATTY_LOGGERS = ("tensorflow", "absl", "keras")


def _verbose() -> bool:
    """Whether TensorFlow's own messages are wanted: this package's debug logging is on."""
    return log.isEnabledFor(logging.DEBUG)


def quiet_environment() -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` before TensorFlow is imported (unless already set).

    TensorFlow's C++ core reads it once, at import: 3 hides its info, warning and error
    start-up lines (oneDNN notices, CUDA plugin registration, device creation), 0 (with
    debug logging on) shows them all.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _verbose() else "3")


def tensorflow() -> ModuleType:
    """Import TensorFlow quietly.

    Unless this package's debug logging is on (``--debug``): no C++ start-up lines
    (:func:`quiet_environment`) and TensorFlow's, absl's and Keras' Python loggers at
    ERROR; with debug logging everything is shown. (The commands also route Python
    warnings, Keras' deprecation and format notices, to a logger that shows them only
    with ``--debug``: :func:`spectrocnn.cli._common.run`.)
    """
    quiet_environment()
    import tensorflow as tf

    if not _verbose():
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        tf.get_logger().setLevel(logging.ERROR)
        try:
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        except ImportError:  # pragma: no cover - absl comes with TensorFlow
            pass
    return tf


def _cgroup_cpu_limit() -> float | None:
    """The cgroup v2 CPU quota in cores, or None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def available_cores() -> int:
    """CPU cores this process may use: the affinity mask, limited by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def configure_threads(threads: int | None = None) -> tuple[int, int]:
    """Set TensorFlow's intra-op and inter-op thread pools (see the module docstring).

    Must run before TensorFlow executes its first op; later calls in the same process
    cannot change the pools and return the sizes in force (logged at debug level).

    Parameters
    ----------
    threads : int, optional
        Intra-op threads; default :func:`available_cores`.

    Returns
    -------
    (int, int)
        The intra-op and inter-op pool sizes.
    """
    global _THREADS
    tf = tensorflow()
    intra = int(threads) if threads else available_cores()
    inter = 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:
        current = (
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        )
        if current != (intra, inter):
            log.debug("TensorFlow already initialised; keeping threads %s", _THREADS or current)
        return _THREADS or current
    _THREADS = (intra, inter)
    log.debug("TensorFlow threads: intra-op %d, inter-op %d", intra, inter)
    return _THREADS
