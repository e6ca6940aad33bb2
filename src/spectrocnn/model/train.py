"""Training a CNN on an event file: the library behind ``train-cnn``.

:func:`train` reads like a Keras example: the data (the images of the event files, read
and downsampled into memory, :mod:`spectrocnn.model.data`, or streamed every epoch when they
exceed the memory budget, :mod:`spectrocnn.model.streaming`; or, with ``generate``, events
simulated afresh every epoch, :mod:`spectrocnn.model.fresh`), the model (built and compiled
by :mod:`spectrocnn.model.architectures` inside the distribution strategy's scope,
:mod:`spectrocnn.model.distribute`), ``model.fit`` with the run's callbacks
(:mod:`spectrocnn.model.callbacks`), then the best model scored on the validation and the
training events (:mod:`spectrocnn.model.modelio`), into a run directory that ``resume``
continues (:mod:`spectrocnn.model.rundir`); settings: :class:`~.trainconfig.TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from spectrocnn._atomic import write_json
from spectrocnn.errors import ConfigError, ModelFileError
from spectrocnn.labels import LabelSpec, class_weights, one_class_warning
from spectrocnn.metrics import label_metrics
from spectrocnn.model import distribute, rundir
from spectrocnn.model.architectures import AUTO, INPUT_SIZES, choose_architecture
from spectrocnn.model.callbacks import (
    min_delta_of,
    progress_bar,
    stop_reason,
    stopping_rule,
    training_callbacks,
)
from spectrocnn.model.data import (
    epoch_order,
    file_geometry,
    make_dataset,
    open_event_file,
    recorded_geometry,
)
from spectrocnn.model.device import precision_policy
from spectrocnn.model.distribute import STRATEGIES
from spectrocnn.model.filedata import FileData, read_file_data
from spectrocnn.model.fresh import FreshData, fresh_data, generation_view
from spectrocnn.model.modelio import PREDICT_BATCH, load_model, predict
from spectrocnn.model.rundir import (
    RUN_SCHEMA,
    best_key,
    completed_epochs,
    default_run_dir,
    load_run_config,
)
from spectrocnn.model.streamdata import fit_data, score_streamed
from spectrocnn.model.streaming import resolve_cache_mb
from spectrocnn.model.task import AUTO_MONITOR, run_labels
from spectrocnn.model.trainconfig import (
    DEFAULT_EPOCHS,
    DEFAULT_PATIENCE,
    MIXED_PRECISION,
    TrainConfig,
    TrainResult,
    new_seed,
)

# The public names of this module from before it was split (issue 16), from their homes.
__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_PATIENCE",
    "MIXED_PRECISION",
    "RUN_SCHEMA",
    "STRATEGIES",
    "ModelFileError",
    "TrainConfig",
    "TrainResult",
    "completed_epochs",
    "default_run_dir",
    "load_run_config",
    "new_seed",
    "predict",
    "train",
]

log = logging.getLogger(__name__)


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
    _worker_copy: bool = False,
) -> TrainResult:
    """Train ``config.arch`` on ``config.input`` (or fresh events: ``config.generate``) and
    write a run directory.

    Parameters
    ----------
    config : TrainConfig
    out_dir : path-like, optional
        The run directory; default :func:`default_run_dir`. It must not exist or be
        empty, unless ``resume``.
    resume : bool
        Continue the interrupted run in ``out_dir`` (``config`` must equal its settings,
        :func:`load_run_config`, except ``threads`` and ``epochs``) from its last completed
        epoch; a larger ``config.epochs`` extends the run, a finished one too.
    progress : bool
        Show progress bars on stderr.
    report : callable, optional
        Receives the per-epoch checkpoint lines ("Epoch 3: val_accuracy improved from
        ...") and the line saying that the events are being scored after the last epoch
        ("Scoring ..."); default: logged at INFO level.

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        Bad settings, a missing input file, a file with one class, images that cannot be
        pooled to ``input_size``, a non-empty ``out_dir`` (without ``resume``), a
        ``resume`` with other settings or with fewer epochs than the run has completed.
    EventFileError
        An input file that is not a readable event file.
    """
    t0 = time.perf_counter()
    if out_dir is None and resume:
        raise ConfigError("resuming needs the run directory to continue")
    out = Path(out_dir) if out_dir is not None else default_run_dir()
    if config.strategy == "multiworker" and not _worker_copy and not _is_chief(config):
        worker = distribute.run_as_worker(out, resume, lambda d: train(
            config, d, resume=resume, report=log.debug, _worker_copy=True
        ))  # fmt: skip
        return dataclasses.replace(worker, out_dir=out)
    run = _Run(out, config, resume, report or log.info, progress, t0)
    run.settle()
    if resume and rundir.finished(out, run.state, run.done, run.config.epochs):
        return _complete_run(run)

    # the data: checked and read before anything is written (and before TensorFlow)
    if run.config.generated:
        data: FileData | FreshData = fresh_data(run.config)
    else:
        data = read_file_data(run.config, run.out, resume=run.resume, report=run.report,
                              progress=run.progress, t0=run.t0)  # fmt: skip
    try:
        with rundir.run_directory(out, resume):
            session = _Session.start(run)  # TensorFlow, precision, distribution
            _write_run_config(run, data, session)
            with precision_policy(run.config.precision):
                model = _model(run, data, session)  # built and compiled, or the last one
                data.to_tensors(session.tf)
                _fit(run, model, data, session)
                best = load_model(out / "best_model.keras")
                scores = _score_best(run, best, data)
            return _finish(run, data, session, best, scores)
    finally:
        if isinstance(data, FileData):
            data.close()  # lit pixels written to --lit-cache


# -- settings -------------------------------------------------------------------------------


def _is_chief(config: TrainConfig) -> bool:
    """Whether this process writes the run directory of a ``multiworker`` run."""
    chief, n_tasks = distribute.multiworker_role()
    if n_tasks > 1 and config.seed is None:
        raise ConfigError(
            "multiworker training on several workers needs a seed, the same on every worker"
        )
    return chief


@dataclass
class _Run:
    """One session of a run: where it writes, its settings and how it reports."""

    out: Path
    config: TrainConfig
    resume: bool
    report: Callable[[str], None]
    progress: bool
    t0: float
    arch_choice: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # state.json as the session began
    labels: LabelSpec = field(default_factory=LabelSpec)  # the training file's

    @property
    def done(self) -> int:
        """Epochs completed before this session."""
        return int(self.state.get("completed_epochs", 0))

    def settle(self) -> None:
        """Draw the seed, choose the architecture, check the run directory and read its
        state (resuming: with no fewer epochs than it has completed)."""
        out, resume = self.out, self.resume
        if self.config.seed is None:
            if resume:
                raise ConfigError("a resumed run needs the seed of the run")
            self.config = dataclasses.replace(self.config, seed=new_seed())
        if not self.config.generated:  # fresh events are simulated into memory
            self.config = dataclasses.replace(self.config, cache_mb=resolve_cache_mb(
                self.config.cache_mb, self.config.strategy,
                (lambda: load_run_config(out).cache_mb) if resume else None,
            ))  # fmt: skip
        self.config, self.arch_choice = _resolve_arch(self.config, out, resume)
        if self.arch_choice:
            self.report(f"Architecture: {self.config.arch} ({self.arch_choice['reason']})")
        rundir.check_out_dir(out, resume, self.config)  # monitor "auto" matches the run's
        self.state = rundir.read_state(out if resume else None)
        if resume:
            rundir.check_extension(out, self.config, self.done)
            if self.config.monitor == AUTO_MONITOR:
                saved = load_run_config(out).monitor
                self.config = dataclasses.replace(self.config, monitor=saved)
        if not (resume and rundir.finished(out, self.state, self.done, self.config.epochs)):
            c = self.config  # the labels of the files, checked before anything is read
            self.labels, monitor = run_labels(c.input, c.val, c.monitor, c.class_weight)
            self.config = dataclasses.replace(c, monitor=monitor)


def _resolve_arch(config: TrainConfig, out: Path, resume: bool) -> tuple[TrainConfig, dict]:
    """Replace ``arch="auto"`` by the architecture for the input file (or, when resuming,
    by the run's; also ``precision="auto"`` by the run's); returns the config and
    ``{"requested", "chosen", "reason"}`` of the architecture (empty when it was given)."""
    if resume and config.precision == "auto" and (out / "config.json").is_file():
        config = dataclasses.replace(config, precision=load_run_config(out).precision)
    if config.arch != AUTO:
        return config, {}
    if resume:
        saved = load_run_config(out)
        chosen, reason = saved.arch, "auto: the architecture of the run being resumed"
    elif config.generated:
        chosen, reason = choose_architecture(*generation_view(config))
    else:
        with open_event_file(config.input) as ev:
            file_config, window, projection = ev.config, ev.window_mm, ev.projection
        chosen, reason = choose_architecture(file_config, window, projection)
    if not resume:
        reason = f"auto: {reason}"
    log.info("architecture %s (%s)", chosen, reason)
    input_size = config.input_size if config.input_size is not None else INPUT_SIZES[chosen]
    config = dataclasses.replace(config, arch=chosen, input_size=input_size)
    return config, {"requested": AUTO, "chosen": chosen, "reason": reason}


def _complete_run(run: _Run) -> TrainResult:
    """The result of a resume that found the run complete (nothing done)."""
    metrics = rundir.read_json(run.out / "metrics.json", "metrics")
    monitor = metrics.get("monitor", "val_accuracy")  # as the run recorded it
    return TrainResult(
        out_dir=run.out,
        config=run.config,
        epochs=run.done,
        initial_epoch=run.done,
        best_epoch=int(run.state.get("best_epoch", 0)),
        best_val_accuracy=_best_accuracy(monitor, run.state, metrics),
        metrics=metrics,
        history=rundir.read_history(run.out / "history.csv"),
        n_train=int(metrics.get("n_train", 0)),
        n_val=int(metrics.get("n_val", 0)),
        already_complete=True,
        stop_reason=metrics.get("stop_reason"),
        monitor=monitor,
        best_score=_float(run.state.get(best_key(monitor))),
        warnings=list(metrics.get("warnings", [])),
    )


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _best_accuracy(monitor: str, state: dict[str, Any], metrics: dict[str, Any]) -> float:
    """The best model's val_accuracy: Keras' (state.json) when it was the monitor, else
    the scoring's (metrics.json; NaN for a regression target)."""
    if monitor == "val_accuracy":
        return _float(state.get("best_val_accuracy"))
    return _float(metrics.get("accuracy"))


# -- TensorFlow, precision, distribution ----------------------------------------------------


@dataclass
class _Session:
    """TensorFlow set up for a run: threads, device and precision, strategy."""

    tf: Any
    threads: tuple[int, int]
    strategy: Any
    distribution: dict[str, Any]
    device: dict[str, Any]
    precision_choice: dict[str, Any]

    @classmethod
    def start(cls, run: _Run) -> _Session:
        """Import and configure TensorFlow; resolve ``run.config.precision`` for the device."""
        from spectrocnn.model._tf import configure_threads, tensorflow
        from spectrocnn.model.device import describe_devices, device_summary, resolve_precision

        tf = tensorflow()
        threads = configure_threads(run.config.threads)
        device = describe_devices(tf)
        device["summary"] = device_summary(device)
        precision, reason = resolve_precision(run.config.precision, device, run.config.arch)
        log.info("device %s; precision %s (%s)", device["summary"], precision, reason)
        choice = {"requested": run.config.precision, "chosen": precision, "reason": reason}
        run.config = config = dataclasses.replace(run.config, precision=precision)
        if run.done < config.epochs:
            run.report(f"Device: {device['summary']}; precision {precision} ({reason})")
        strategy = distribute.make_strategy(tf, config.strategy)
        distribution = distribute.distribution_record(config.strategy, strategy, config.batch_size)
        return cls(tf, threads, strategy, distribution, device, choice)


def _write_run_config(run: _Run, data: FileData, session: _Session) -> None:
    """config.json of a new run; a resumed run's records the planned epochs only."""
    config, path = run.config, run.out / "config.json"
    if run.resume and path.is_file():
        rundir.record_epochs(path, config.epochs)
        return
    tset = data.train
    intra, inter = session.threads
    write_json(path, {
        "schema": RUN_SCHEMA,
        **config.settings(),
        **_inputs_record(data),
        "n_train": len(data.train_idx),
        "n_val": len(data.val_idx),
        "labels": {
            **run.labels.to_dict(),
            "class_weights": _class_weights(run, data),
        },
        "preprocessing": {
            "downsample": config.downsample,
            "factor": list(tset.factor),
            "pixel": "min(count * scale, 1): occupancy (max, nearest) or lit fraction (mean)",
            "scale": tset.scale,
        },
        "streaming": data.stream.record() if data.stream is not None else None,
        "lit_pixels_mb": getattr(data, "lit_pixels_mb", None),
        "lit_pixels_on_disk": getattr(data, "lit_pixels_on_disk", False),
        "tensorflow_threads": {"intra_op": intra, "inter_op": inter},
        "distribution": session.distribution,
        "arch_choice": run.arch_choice or {"requested": config.arch, "chosen": config.arch},
        "model_geometry": recorded_geometry(config.arch, config.input_size, tset.info),
        "precision_choice": session.precision_choice,
        "device": session.device,
        "versions": rundir.versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    })  # fmt: skip


def _inputs_record(data: FileData | FreshData) -> dict[str, Any]:
    """config.json's ``input_file`` and ``val_file`` (and ``generation`` on fresh events)."""
    if isinstance(data, FreshData):
        return {"input_file": None, "val_file": None, "generation": data.generation}
    tset, vset = data.train, data.val
    return {"input_file": tset.info, "val_file": vset.info if vset is not tset else None}


# -- model, fit, score ----------------------------------------------------------------------


def _model(run: _Run, data: FileData, session: _Session) -> Any:
    """The compiled model, built (resuming: the last one loaded) in the strategy's scope."""
    import keras

    from spectrocnn.model.architectures import build_model

    config, strategy = run.config, session.strategy
    keras.utils.set_random_seed((config.seed + run.done) % 2**32)
    with strategy.scope() if strategy is not None else nullcontext():
        if run.done > 0:
            model = load_model(run.out / "last_model.keras")
        else:
            try:
                model = build_model(
                    config.arch, config.input_size, **file_geometry(data.train.info),
                    labels=run.labels, monitor=config.monitor,
                )  # fmt: skip
            except ConfigError as exc:  # e.g. polar on a window without the beam line
                raise ConfigError(f"--arch {config.arch} on {data.train.path}: {exc}") from None
    if config.strategy == "multiworker":
        distribute.multiworker_keras_fixes(model, strategy)
    return model


def _plan(run: _Run, data: FileData, session: _Session) -> str:
    """The line that says what this session of the run will do."""
    config, replicas = run.config, session.distribution["replicas"]
    h, w = data.train.info["image_shape"]
    s = config.input_size
    what = f"Resuming {run.out} at epoch {run.done + 1}" if run.done else "Training"
    if config.patience:
        epochs = f"at most {config.epochs} epochs, " + stopping_rule(
            config.patience, min_delta_of(run.state), config.monitor
        )
    else:
        epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    split = ""
    if session.strategy is not None:
        split = (
            f" ({config.batch_size} x {replicas} replica{'s' if replicas != 1 else ''}, "
            f"{config.strategy})"
        )
    events = f"{len(data.train_idx)} {'fresh events per epoch' if config.generated else 'events'}"
    return (
        f"{what}: {config.arch} on {events}, validating on "
        f"{len(data.val_idx)} ({h}x{w} -> {s}x{s} by {config.downsample} downsampling), "
        f"{config.precision}, {epochs}, batch {config.batch_size * replicas}{split}, "
        f"seed {config.seed}"
    )


def _fit(run: _Run, model: Any, data: FileData, session: _Session) -> None:
    """``model.fit`` from the epoch after the last completed one to the planned epochs."""
    config, done = run.config, run.done
    rundir.truncate_history(run.out / "history.csv", done)
    if done >= config.epochs or run.state.get("stopped_early"):
        return
    run.report(_plan(run, data, session))
    guard: Any = nullcontext()
    if data.stream is not None:  # each worker reads its replicas' slices
        streamed = fit_data(
            session.tf, session.strategy, (data.train, data.val), (data.train_idx, data.val_idx),
            data.stream, seed=config.seed, epochs=range(done, config.epochs),
            batch_size=config.batch_size, val_batch=PREDICT_BATCH,
        )  # fmt: skip
        train_ds, val_ds, steps = streamed.train, streamed.val, streamed.steps
        guard = streamed.reraise()
    else:
        tx, ty, vx, vy = data.tensors
        bs = config.batch_size * session.distribution["replicas"]
        if isinstance(data, FreshData):
            train_ds = data.train_dataset(done, config.epochs, bs)
        else:
            orders = np.stack(
                [epoch_order(data.train_idx, config.seed, e) for e in range(done, config.epochs)]
            )
            train_ds = make_dataset(tx, ty, orders, batch_size=bs, scale=data.train.scale)
        val_ds = make_dataset(vx, vy, data.val_idx, batch_size=PREDICT_BATCH, scale=data.val.scale)
        if session.strategy is not None:  # batches of event indices: shard them, not files
            train_ds, val_ds = distribute.shard_by_data(session.tf, train_ds, val_ds)
        steps = math.ceil(len(data.train_idx) / bs)
    callbacks = training_callbacks(
        run.out, config, run.state, steps, run.report, run.progress, run.t0
    )
    with guard:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=done,
            steps_per_epoch=steps,
            callbacks=callbacks,
            shuffle=False,
            verbose=0,
            class_weight=_class_weights(run, data),
        )


def _class_weights(run: _Run, data: FileData) -> dict[int, float] | None:
    """``model.fit``'s class weights from the training events (``--generate``: validation)."""
    if run.config.class_weight == "none":
        return None
    fresh = isinstance(data, FreshData)  # an epoch's events are not simulated yet
    labels = data.val.labels[data.val_idx] if fresh else data.train.labels[data.train_idx]
    return class_weights(labels, run.labels, run.config.class_weight)


def _score_best(run: _Run, model: Any, data: FileData) -> tuple[np.ndarray, np.ndarray, float]:
    """Scores of the validation and the training events by the best model after the last
    epoch, and the seconds it took; says so through ``report`` (and a bar on stderr)."""
    t = time.perf_counter()
    best_epoch = int(rundir.read_state(run.out).get("best_epoch", 0))
    if isinstance(data, FreshData):  # the training events of the best model's epoch
        data.load_epoch(max(best_epoch - 1, 0))
    tx, ty, vx, vy = data.tensors or (None,) * 4
    n_val, n_train = len(data.val_idx), len(data.train_idx)
    run.report(
        f"Scoring {n_val} validation and {n_train} training events with the best model "
        f"(epoch {best_epoch})"
    )
    parts = [(vx, vy, data.val_idx, data.val.scale), (tx, ty, data.train_idx, data.train.scale)]
    with progress_bar(run.progress, n_val + n_train, "scoring") as bar:
        tick = bar.update if run.progress else None
        if data.stream is not None:
            sets, indices = (data.val, data.train), (data.val_idx, data.train_idx)
            p_val, p_train = score_streamed(model, sets, indices, data.stream, progress=tick)
        else:
            p_val, p_train = [predict(model, *p, progress=tick) for p in parts]
    return p_val, p_train, time.perf_counter() - t


def _finish(
    run: _Run, data: FileData, session: _Session, best: Any, scores: tuple[Any, Any, float]
) -> TrainResult:
    """Plots, metrics.json and the final state.json of the run; its result."""
    from spectrocnn.model.plots import plot_results

    out, config, state = run.out, run.config, rundir.read_state(run.out)
    p_val, p_train, score_s = scores
    y_val, y_train = data.val.labels[data.val_idx], data.train.labels[data.train_idx]
    history = rundir.read_history(out / "history.csv")
    kind = run.labels.kind
    plot_results(out, kind, [("Validation", y_val, p_val), ("Train", y_train, p_train)], history)
    train_time = float(state.get("train_time_s", 0.0))
    epochs = int(state.get("completed_epochs", 0))
    n_train, n_val = len(data.train_idx), len(data.val_idx)
    warning = one_class_warning(y_val, p_val, run.labels)
    if warning is not None:  # also in TrainResult.warnings (train-cnn's summary line)
        log.warning("%s", warning, extra={"in_result": True})
    metrics = {
        **label_metrics(kind, y_val, p_val),
        "sample": "validation",
        "model": "best_model.keras",
        "monitor": config.monitor,
        "class_weight": config.class_weight,
        "best_epoch": int(state.get("best_epoch", 0)),
        "epochs": epochs,
        "train": label_metrics(kind, y_train, p_train),
        "n_train": n_train,
        "n_val": n_val,
        "parameters": int(best.count_params()),
        **session.distribution,
        "stopped_early": bool(state.get("stopped_early", False)),
        "stop_reason": stop_reason(config, state),
        "precision": config.precision,
        "device": session.device,
        "load_time_s": data.load_s,
        "train_time_s": train_time,
        "score_time_s": score_s,
        "wall_time_s": float(run.state.get("wall_time_s", 0.0)) + time.perf_counter() - run.t0,
        "images_per_second": n_train * epochs / train_time if train_time else None,
        "warnings": [] if warning is None else [warning],
    }
    write_json(out / "metrics.json", metrics)
    write_json(out / "state.json", {**state, "status": "complete"})
    return TrainResult(
        out_dir=out, config=config, epochs=epochs, initial_epoch=run.done,
        best_epoch=metrics["best_epoch"],
        best_val_accuracy=_best_accuracy(config.monitor, state, metrics),
        metrics=metrics, history=history, n_train=n_train, n_val=n_val,
        stop_reason=metrics["stop_reason"], monitor=config.monitor,
        best_score=_float(state.get(best_key(config.monitor))), warnings=metrics["warnings"],
    )  # fmt: skip
