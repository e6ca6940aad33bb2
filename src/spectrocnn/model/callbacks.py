"""The Keras callbacks of a training run, and the progress bars.

Per epoch, in this order: the epoch time (``epoch_time_s``), a progress bar (on a
terminal), early stopping on the monitored score (``config.monitor``: ``val_accuracy``
by default, ``val_auc``, or ``val_loss``, which is better when lower; ``patience``; its
counter survives ``--resume`` in state.json), history.csv
(:class:`keras.callbacks.CSVLogger`, epochs counted from 1) and the checkpoint: best
model, last model and state.json (:mod:`spectrocnn.model.rundir`). Imports Keras only
inside the functions.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spectrocnn._atomic import write_json
from spectrocnn.model.modelio import save_model
from spectrocnn.model.rundir import best_key
from spectrocnn.model.task import AUTO_MONITOR, monitor_mode
from spectrocnn.model.trainconfig import TrainConfig

__all__ = [
    "MIN_DELTA",
    "min_delta_of",
    "progress_bar",
    "stop_reason",
    "stopping_rule",
    "training_callbacks",
]


def progress_bar(progress: bool, total: int, desc: str) -> Any:
    """A tqdm bar of ``total`` events on stderr (disabled unless ``progress``)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="ev",
        file=sys.stderr,
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )


# -- early stopping -------------------------------------------------------------------------


#: Early stopping: the least improvement of the monitored score over the best so far that
#: counts (for val_accuracy, 4 of 4 000 validation events; :func:`_early_stopping`).
MIN_DELTA = 0.001


def _monitor(config: TrainConfig) -> str:
    """The monitored score (``val_accuracy`` for a config not resolved by ``train``)."""
    return "val_accuracy" if config.monitor == AUTO_MONITOR else config.monitor


def min_delta_of(state: dict[str, Any]) -> float:
    """The early stopping's ``min_delta`` for a run in ``state``: :data:`MIN_DELTA` for a new
    run, the one state.json records for a resumed run, 0 for a run begun before there was
    one (so that it stops where it would have)."""
    if "min_delta" in state:
        return float(state["min_delta"])
    return MIN_DELTA if int(state.get("completed_epochs", 0)) == 0 else 0.0


def stopping_rule(
    patience: int, min_delta: float = MIN_DELTA, monitor: str = "val_accuracy"
) -> str:
    """The early-stopping rule in words (the console's "Training:" line)."""
    better = "below" if monitor_mode(monitor) == "min" else "above"
    margin = f"at least {min_delta:g} {better} its best" if min_delta else f"{better} its best"
    perfect = "" if monitor_mode(monitor) == "min" else f", or at {monitor} 1.0"
    return (
        f"stopping after {patience} epoch{'s' if patience != 1 else ''} without a "
        f"{monitor} {margin}{perfect}"
    )


def _early_stopping(config: TrainConfig, state: dict[str, Any]) -> Any:
    """Keras' ``EarlyStopping`` on the monitored score, its counter and reference score
    restored from ``state`` when resuming; None when ``config.patience`` is 0.

    An epoch counts as an improvement when its score is at least ``min_delta``
    (:func:`min_delta_of`, :data:`MIN_DELTA` for new runs) better than the best of the
    earlier epochs (Keras' rule is "more than": a slack of 1e-6 absorbs the float32 rounding
    of accuracies, multiples of 1 / n_val; and Keras compares with the last epoch that
    counted, here the reference follows every better score, as the best model does).
    Training also stops at a val_accuracy or val_auc of 1.0: the best model (the first
    epoch with the best score) can no longer change.
    """
    if not config.patience:
        return None
    import keras

    monitor = _monitor(config)
    mode = monitor_mode(monitor)
    min_delta = min_delta_of(state)

    class RunEarlyStopping(keras.callbacks.EarlyStopping):
        """EarlyStopping whose state survives ``--resume`` (it is saved in state.json)."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            best = state.get(best_key(monitor))
            self.best = None if best is None else float(best)
            self.best_epoch = int(state.get("best_epoch", 0)) - 1
            self.wait = int(state.get("epochs_without_improvement", 0))
            self.reason = None

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            current = (logs or {}).get(monitor)
            if current is not None:
                better = self.best is None or (
                    current < self.best if mode == "min" else current > self.best
                )
                if better:
                    self.best = float(current)  # better, by less than min_delta: no reset
            if current is not None and mode == "max" and current >= 1.0:
                self.model.stop_training = True
                self.reason = f"{monitor} reached 1.0, which no later epoch can beat"
            elif self.model.stop_training:
                by = f" by {min_delta:g} or more" if min_delta else ""
                self.reason = f"{monitor} did not improve{by} for {self.patience} epochs"

        def state(self) -> dict[str, Any]:
            """What state.json keeps of the early stopping."""
            return {
                "patience": self.patience,
                "min_delta": min_delta,
                "epochs_without_improvement": int(self.wait),
                "stopped_early": bool(self.model.stop_training),
                **({"stop_rule": self.reason} if self.reason else {}),
            }

    slack = 1e-6 if min_delta else 0.0
    return RunEarlyStopping(
        monitor=monitor, mode=mode, patience=config.patience, min_delta=min_delta - slack
    )


def stop_reason(config: TrainConfig, state: dict[str, Any]) -> str:
    """Why training ended, for metrics.json and the summary line."""
    done = int(state.get("completed_epochs", 0))
    if state.get("stopped_early"):
        rule = state.get("stop_rule") or (
            f"{_monitor(config)} did not improve for {config.patience} epochs"
        )
        return f"stopped early after epoch {done}: {rule}"
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    if config.patience:
        return f"reached the maximum of {epochs} (patience {config.patience})"
    return f"trained the planned {epochs} (no early stopping)"


# -- the other callbacks --------------------------------------------------------------------


def _epoch_timer() -> Any:
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Adds ``epoch_time_s``: seconds since the previous epoch ended."""

        def on_train_begin(self, logs=None):
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            if logs is not None:
                logs["epoch_time_s"] = now - self.last
            self.last = now

    return EpochTimer()


def _epoch_bar(steps: int, epochs: int, metric: str) -> Any:
    import keras

    class Progress(keras.callbacks.Callback):
        """A tqdm bar per epoch on stderr."""

        def on_epoch_begin(self, epoch, logs=None):
            from tqdm import tqdm

            self.bar = tqdm(
                total=steps,
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="batch",
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and batch % 20 == 0:
                shown = dict.fromkeys(("loss", metric))  # the monitored metric, if not loss
                self.bar.set_postfix(
                    {k: f"{logs.get(k, math.nan):.4f}" for k in shown}, refresh=False
                )

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close()

    return Progress()


def _history_log(path: Path) -> Any:
    import keras

    class History(keras.callbacks.CSVLogger):
        """history.csv with epochs counted from 1, as on the console and in metrics.json."""

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch + 1, logs)

    return History(str(path), append=True)


def _checkpoint(
    out: Path,
    config: TrainConfig,
    state: dict[str, Any],
    stopper: Any,
    report: Callable[[str], None],
    t0: float,
) -> Any:
    import keras

    earlier_wall = float(state.get("wall_time_s", 0.0))
    monitor = _monitor(config)
    key = best_key(monitor)
    better = np.less if monitor_mode(monitor) == "min" else np.greater

    class RunCheckpoint(keras.callbacks.Callback):
        """Best model on the monitored score (Keras' messages), last model and run state."""

        def __init__(self) -> None:
            super().__init__()
            best = state.get(key)
            worst = math.inf if better is np.less else -math.inf
            self.best = worst if best is None else float(best)
            self.best_epoch = int(state.get("best_epoch", 0))
            self.train_time = float(state.get("train_time_s", 0.0))

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.train_time += float(logs.get("epoch_time_s", 0.0))
            current = logs.get(monitor)
            best_path = out / "best_model.keras"
            if current is not None and better(current, self.best):
                report(
                    f"Epoch {epoch + 1}: {monitor} improved from {self.best:.5f} to "
                    f"{current:.5f}, saving model to {best_path}"
                )
                save_model(self.model, best_path)
                if config.legacy_h5:
                    save_model(self.model, out / "best_model.h5")
                self.best, self.best_epoch = float(current), epoch + 1
            else:
                report(f"Epoch {epoch + 1}: {monitor} did not improve from {self.best:.5f}")
            save_model(self.model, out / "last_model.keras")
            write_json(
                out / "state.json",
                {
                    "completed_epochs": epoch + 1,
                    "epochs": config.epochs,
                    key: self.best,
                    "best_epoch": self.best_epoch,
                    "train_time_s": self.train_time,
                    "wall_time_s": earlier_wall + time.perf_counter() - t0,
                    "status": "training",
                    **(stopper.state() if stopper is not None else {}),
                },
            )
            if stopper is not None and self.model.stop_training:
                report(
                    f"Epoch {epoch + 1}: early stopping: {stopper.reason} "
                    f"(best {self.best:.5f} at epoch {self.best_epoch})"
                )

    return RunCheckpoint()


def training_callbacks(
    out: Path,
    config: TrainConfig,
    state: dict[str, Any],
    steps: int,
    report: Callable[[str], None],
    progress: bool,
    t0: float,
) -> list[Any]:
    """The callbacks of ``model.fit`` for a run in ``out`` (see the module docstring).

    Parameters
    ----------
    out : Path
        The run directory.
    config : TrainConfig
    state : dict
        state.json of the run (that of a fresh run when it starts).
    steps : int
        Training batches per epoch (for the progress bar).
    report : callable
        Receives the per-epoch checkpoint and early-stopping lines.
    progress : bool
        Show a progress bar per epoch on stderr.
    t0 : float
        ``time.perf_counter()`` when this session of the run began (wall time in state.json).
    """
    stopper = _early_stopping(config, state)
    cbs: list[Any] = [_epoch_timer()]
    if progress:
        cbs.append(_epoch_bar(steps, config.epochs, _monitor(config).removeprefix("val_")))
    if stopper is not None:  # before the checkpoint, which saves its state
        cbs.append(stopper)
    cbs += [_history_log(out / "history.csv"), _checkpoint(out, config, state, stopper, report, t0)]
    return cbs
