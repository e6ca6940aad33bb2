"""Training on several devices: ``tf.distribute`` strategies, the roles of the workers of a
multi-worker run, and the fixes Keras needs there.

``strategy`` (:data:`STRATEGIES`): ``default`` trains on one device; ``mirrored``
replicates the model on every local GPU (or the CPU when there is none) with
``tf.distribute.MirroredStrategy``; ``multiworker`` with
``tf.distribute.MultiWorkerMirroredStrategy`` across the machines that ``TF_CONFIG`` lists
(every worker runs the same command; without ``TF_CONFIG`` a single local worker). The
model is built and compiled inside ``strategy.scope()``. ``batch_size`` is *per replica*:
a step takes a global batch of ``batch_size * num_replicas_in_sync`` events, split between
the replicas: the same work per replica, fewer steps per epoch (the learning rate is not
scaled). With ``multiworker`` the chief (``TF_CONFIG`` task ``chief``, or ``worker`` 0)
writes the run directory; the other workers write theirs to a temporary directory that is
removed (:func:`run_as_worker`). config.json and metrics.json record the strategy, the
replicas and the global batch.

Imports TensorFlow only inside the functions that take it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from spectrocnn.errors import ConfigError

__all__ = [
    "STRATEGIES",
    "distribution_record",
    "make_strategy",
    "multiworker_keras_fixes",
    "multiworker_role",
    "run_as_worker",
    "shard_by_data",
    "tf_config",
]

log = logging.getLogger(__name__)

#: Distribution strategies (:mod:`tf.distribute`), the default first: no strategy, one device.
STRATEGIES = ("default", "mirrored", "multiworker")

_R = TypeVar("_R")


def tf_config() -> dict[str, Any]:
    """The ``TF_CONFIG`` of a multi-worker run (``{}`` when not set)."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return data


def multiworker_role() -> tuple[bool, int]:
    """(is this the chief, number of tasks) of a ``multiworker`` run, from ``TF_CONFIG``."""
    tfc = tf_config()
    cluster = tfc.get("cluster") or {}
    task = tfc.get("task") or {}
    n_tasks = sum(len(v) for v in cluster.values() if isinstance(v, list)) or 1
    kind = task.get("type", "worker")
    try:
        index = int(task.get("index", 0))
    except (TypeError, ValueError):
        raise ConfigError(
            f"TF_CONFIG task index must be an integer, got {task['index']!r}"
        ) from None
    if "chief" in cluster:
        return kind == "chief", n_tasks
    return kind in ("worker", "chief") and index == 0, n_tasks


def make_strategy(tf: Any, name: str) -> Any:
    """The ``tf.distribute`` strategy ``name`` (None for ``default``)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def multiworker_keras_fixes(model: Any, strategy: Any) -> None:
    """Work around Keras 3's ``fit`` under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585): it reduces the first batch across workers only to learn its
    shapes, and takes the mean of scalar logs along an axis they do not have. The first
    batch's shapes are read from the local replica; scalar logs are averaged across the
    replicas. Only multi-worker collective strategies are affected."""
    try:
        import keras.src.backend.tensorflow.trainer as kt
        from keras.src import tree
    except ImportError:  # pragma: no cover - other Keras layout
        log.warning("cannot apply the multi-worker fixes to this Keras version")
        return
    if not getattr(kt.reduce_per_replica, "_spectrocnn_fixed", False):
        original = kt.reduce_per_replica

        def reduce_per_replica(values: Any, strat: Any, reduction: str) -> Any:
            if reduction in ("auto", "mean") and kt._collective_all_reduce_multi_worker(strat):
                return tree.map_structure(lambda v: strat.reduce("MEAN", v, axis=None), values)
            return original(values, strat, reduction)

        reduce_per_replica._spectrocnn_fixed = True  # type: ignore[attr-defined]
        kt.reduce_per_replica = reduce_per_replica

    import tensorflow as tf

    def local(v: Any) -> Any:
        if isinstance(v, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(v)[0]
        return v

    def maybe_symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build


def distribution_record(name: str, strategy: Any, batch_size: int) -> dict[str, Any]:
    """What config.json and metrics.json record of the distribution: ``strategy`` (its
    name), ``replicas`` and ``global_batch_size`` (``batch_size`` per replica)."""
    replicas = int(strategy.num_replicas_in_sync) if strategy is not None else 1
    return {"strategy": name, "replicas": replicas, "global_batch_size": batch_size * replicas}


def shard_by_data(tf: Any, *datasets: Any) -> list[Any]:
    """The ``tf.data`` datasets with auto-sharding by data: their elements are batches of
    event indices, to be split between the workers (there are no files to shard)."""
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return [ds.with_options(opts) for ds in datasets]


def run_as_worker(out: Path, resume: bool, run: Callable[[Path], _R]) -> _R:
    """Run a non-chief worker of a ``multiworker`` run: ``run(directory)`` does the same
    training (every worker takes part in every step and checkpoint) into a temporary run
    directory, a copy of the chief's ``out`` when resuming, removed at the end.

    Raises
    ------
    ConfigError
        When resuming and ``out`` is not a run directory.
    """
    tmp = Path(tempfile.mkdtemp(prefix="spectrocnn-worker-"))
    try:
        run_dir = tmp / "run"
        if resume:
            if not (out / "config.json").is_file():
                raise ConfigError(f"{out} is not a train-cnn run directory (no config.json)")
            shutil.copytree(out, run_dir)
        return run(run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
