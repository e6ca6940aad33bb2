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

import contextlib
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
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


#: C++ start-up lines that TensorFlow >= 2.21 writes during its import whatever
#: ``TF_CPP_MIN_LOG_LEVEL`` says (absl logs before ``absl::InitializeLog``; an info line
#: "I0000 ... port.cc:153] oneDNN custom operations are on"): github.com/tensorflow/tensorflow
#: issues 100442 and pull request 102212.
_STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} [\d:. ]+\d+ \S+:\d+\] )"
)


@contextlib.contextmanager
def _startup_lines_dropped() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file while TensorFlow is imported; then write
    back every line of it except TensorFlow's known start-up noise (:data:`_STARTUP_NOISE`),
    so a real error from the import is still seen."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines(True)
                if not _STARTUP_NOISE.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def tensorflow() -> ModuleType:
    """Import TensorFlow quietly.

    Unless this package's debug logging is on (``--debug``): no C++ start-up lines
    (:func:`quiet_environment`) and TensorFlow's, absl's and Keras' Python loggers at
    ERROR; with debug logging everything is shown. (The commands also route Python
    warnings, Keras' deprecation and format notices, to a logger that shows them only
    with ``--debug``: :func:`spectrocnn.cli._common.run`.)
    """
    quiet_environment()
    if _verbose() or "tensorflow" in sys.modules:
        import tensorflow as tf
    else:
        with _startup_lines_dropped():
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
