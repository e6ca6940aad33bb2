# Over 600 lines: the run directory, distribution, model I/O and the training loop still share
# this file. Issue 16 item 1 splits them into their own modules; it waited until the parallel work
# of issues 14-20 had landed.
"""Training a CNN on an event file: the library behind ``train-cnn``.

:func:`train` reads and downsamples the images (:mod:`spectrocnn.model.data`), builds the
architecture (:mod:`spectrocnn.model.architectures`), trains it with Keras and writes a
*run directory*:

``config.json``
    Every setting, the input files (path, run_id, seed, size, content fingerprint:
    :meth:`~spectrocnn.dataset.EventFile.identity`) and the preprocessing.
``best_model.keras`` (and ``best_model.h5`` with ``legacy_h5``)
    The model of the epoch with the highest ``val_accuracy`` (strictly higher than every
    earlier epoch, as Keras' ``ModelCheckpoint(save_best_only=True, mode="max")``).
``last_model.keras``, ``state.json``
    The model with its optimizer state after the last completed epoch, the number of
    completed epochs and the best score so far: what ``resume`` continues from.
``history.csv``
    One row per epoch: epoch (counted from 1, as on the console, in state.json and
    metrics.json; runs made before this was so counted from 0, and resuming one renumbers
    its history), loss, accuracy, val_loss, val_accuracy, epoch_time_s (seconds since the
    previous epoch ended, checkpointing included).
``metrics.json``
    The best model on the validation and the training events: accuracy, loss, ROC AUC,
    confusion matrix at 0.5; epochs, wall time, training images per second, the seconds
    spent scoring both samples after the last epoch (``score_time_s``).
``accuracy.png``, ``loss.png``, ``roc.png``, ``scores.png``
    The lecture's plots (slides 16-17).

Several devices (``strategy``, :data:`STRATEGIES`): ``default`` trains on one device;
``mirrored`` replicates the model on every local GPU (or the CPU when there is none) with
``tf.distribute.MirroredStrategy``; ``multiworker`` with
``tf.distribute.MultiWorkerMirroredStrategy`` across the machines that ``TF_CONFIG`` lists
(every worker runs the same command; without ``TF_CONFIG`` a single local worker). The model
is built and compiled inside ``strategy.scope()``. ``batch_size`` is *per replica*: a step
takes a global batch of ``batch_size * num_replicas_in_sync`` events, split between the
replicas: the same work per replica, fewer steps per epoch (the learning rate is not
scaled).
With ``multiworker`` the chief (``TF_CONFIG`` task ``chief``, or ``worker`` 0) writes the
run directory; the other workers write theirs to a temporary directory that is removed.
config.json and metrics.json record the strategy, the replicas and the global batch.

Every file is written atomically (temporary name, then rename). A run that fails before
its first epoch completes removes what it wrote; a later failure or an interruption keeps
the run directory, and ``resume=True`` continues it from its last completed epoch to the
planned number of epochs (same split, same per-epoch shuffling, optimizer state restored;
not bit-identical to an uninterrupted run). ``resume`` with more ``epochs`` than the run
planned extends it, a finished run too: the history continues, the best model is kept
unless a later epoch beats it, config.json records the new number of epochs; fewer
epochs than it has completed are refused. It refuses input files that are not the ones
the run recorded (regenerated at the same path: another run_id, seed, size or content
fingerprint).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn._atomic import atomic_path, write_json
from spectrocnn.errors import ConfigError, ModelFileError
from spectrocnn.metrics import binary_metrics
from spectrocnn.model.architectures import (
    AUTO,
    INPUT_SIZES,
    canonical_name,
    choose_architecture,
)
from spectrocnn.model.data import (
    DOWNSAMPLE_METHODS,
    ImageSet,
    check_downsample,
    epoch_order,
    load_images,
    make_dataset,
    open_event_file,
    split_indices,
)
from spectrocnn.model.device import POLICIES, PRECISIONS

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from spectrocnn.dataset import EventFile

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_PATIENCE",
    "MIN_DELTA",
    "MIXED_PRECISION",
    "RUN_SCHEMA",
    "STRATEGIES",
    "ModelFileError",
    "TrainConfig",
    "TrainResult",
    "default_run_dir",
    "load_run_config",
    "new_seed",
    "predict",
    "stopping_rule",
    "train",
]

log = logging.getLogger(__name__)

#: ``schema`` of config.json.
RUN_SCHEMA = "spectrocnn.run/1"

#: Mixed-precision options: name -> Keras dtype policy (see :data:`PRECISIONS`).
MIXED_PRECISION = {"bf16": "mixed_bfloat16"}

#: Early stopping when not reproducing the lecture: epochs without a higher val_accuracy
#: before training stops (``patience``), and the maximum number of epochs.
DEFAULT_PATIENCE = 2

#: Early stopping: the least rise of val_accuracy over the best so far that counts as an
#: improvement (4 of 4 000 validation events; :func:`_early_stopping`).
MIN_DELTA = 0.001

#: Maximum epochs by default: with early stopping, and without (the lecture's 10).
DEFAULT_EPOCHS = {"early_stopping": 20, "fixed": 10}

#: Distribution strategies (:mod:`tf.distribute`), the default first: no strategy, one device.
STRATEGIES = ("default", "mirrored", "multiworker")

#: Settings that may differ between a run and its resumption (no effect on the result).
_RESUME_FREE = ("threads",)

#: Batch of the validation pass and of scoring. On 2 CPU cores 64 scored 1.2-2.1 x as many
#: images per second as 256 (both networks, fp32 and bf16), whose float32 batches of
#: 256 x 256 images (64 MiB) no longer fit the caches.
_PREDICT_BATCH = 64


def new_seed() -> int:
    """A fresh random seed in ``[0, 2**32)`` (recorded, so that the run can be repeated)."""
    return int(np.random.SeedSequence().entropy % 2**32)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, validated when built.

    Parameters
    ----------
    input : str
        Training event file.
    val : str, optional
        Validation event file; without it ``val_fraction`` of ``input`` is held out.
    val_fraction : float
        Fraction of ``input`` used for validation, in (0, 1); ignored with ``val``.
    arch : str
        Architecture name (:data:`~spectrocnn.model.architectures.ARCHITECTURES`; ``seed``
        is read as ``lecture``), or ``"auto"`` (the default): :func:`train` picks the one
        for the event file (:func:`~spectrocnn.model.architectures.choose_architecture`).
    epochs : int, optional
        The maximum number of epochs; default 20 with early stopping, 10 without.
    patience : int, optional
        Stop when val_accuracy has not improved for ``patience`` epochs (the best model is
        kept); 0 turns early stopping off. Default 2, except for the ``lecture`` network,
        which trains its 10 epochs as in the lecture.
    batch_size : int
    input_size : int, optional
        Model input height and width [pixels]; default: the architecture's
        (:data:`~spectrocnn.model.architectures.INPUT_SIZES`: 128 for ``lecture``, 256
        for ``polar``).
    downsample : {"max", "mean", "nearest"}
        See :mod:`spectrocnn.model.data`.
    seed : int, optional
        Seed of the split, the shuffling and the weight initialisation; None draws one
        (:func:`train` records it).
    legacy_h5 : bool
        Also write ``best_model.h5``.
    precision : {"auto", "fp32", "bf16"}
        ``bf16``: Keras' ``mixed_bfloat16`` policy (faster on CPUs with AVX512_BF16 or
        AMX and on GPUs of compute capability 8.0 and later, much slower elsewhere);
        ``fp32``: float32, as the lecture; ``auto``: ``bf16`` where the hardware has it
        natively (:func:`~spectrocnn.model.device.resolve_precision`).
    threads : int, optional
        TensorFlow intra-op threads; default: the cores available to the process.
    strategy : {"default", "mirrored", "multiworker"}
        ``tf.distribute`` strategy (see the module docstring); ``batch_size`` is per
        replica.
    """

    input: str
    val: str | None = None
    val_fraction: float = 0.2
    arch: str = AUTO
    epochs: int | None = None
    batch_size: int = 32
    input_size: int | None = None
    downsample: str = "max"
    seed: int | None = None
    legacy_h5: bool = False
    precision: str = "auto"
    threads: int | None = None
    strategy: str = "default"
    patience: int | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("input", os.path.abspath(os.fspath(self.input)))
        if self.val is not None:
            set_("val", os.path.abspath(os.fspath(self.val)))
        f = self.val_fraction
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0.0 < f < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {f!r}")
        set_("val_fraction", float(f))
        if self.arch != AUTO:
            try:
                set_("arch", canonical_name(self.arch))
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("(known: ", f"(known: {AUTO}, ")) from None
        if self.input_size is None and self.arch != AUTO:
            set_("input_size", INPUT_SIZES[self.arch])
        if self.patience is None:
            set_("patience", 0 if self.arch == "lecture" else DEFAULT_PATIENCE)
        p = self.patience
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 0:
            raise ConfigError(f"patience must be a non-negative integer, got {p!r}")
        set_("patience", int(p))
        if self.epochs is None:
            set_("epochs", DEFAULT_EPOCHS["early_stopping" if self.patience else "fixed"])
        for name in ("epochs", "batch_size", "input_size"):
            if name != "input_size" or self.input_size is not None:
                set_(name, _positive_int(name, getattr(self, name)))
        if self.downsample not in DOWNSAMPLE_METHODS:
            raise ConfigError(
                f"downsample must be one of {', '.join(DOWNSAMPLE_METHODS)}, "
                f"got {self.downsample!r}"
            )
        if self.seed is not None:
            s = self.seed
            if isinstance(s, bool) or not isinstance(s, int | np.integer) or not 0 <= s < 2**63:
                raise ConfigError(f"seed must be an integer in [0, 2**63), got {s!r}")
            set_("seed", int(s))
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.threads is not None:
            set_("threads", _positive_int("threads", self.threads))
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"
            )
        set_("legacy_h5", bool(self.legacy_h5))

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-able dict."""
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes
    ----------
    out_dir : Path
    config : TrainConfig
        With the seed drawn, if it was not given.
    epochs : int
        Epochs completed in total (the planned number when the run finished).
    initial_epoch : int
        Epochs completed before this call (0 unless resumed).
    best_epoch : int
        1-based epoch of the best model.
    best_val_accuracy : float
    metrics : dict
        The content of metrics.json.
    history : dict
        Column -> list of per-epoch values (history.csv).
    n_train, n_val : int
    already_complete : bool
        ``resume`` found the run already finished and did nothing.
    stop_reason : str, optional
        Why training ended (early stopping, or the maximum number of epochs).
    """

    out_dir: Path
    config: TrainConfig
    epochs: int
    initial_epoch: int
    best_epoch: int
    best_val_accuracy: float
    metrics: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0
    already_complete: bool = False
    stop_reason: str | None = None

    @property
    def train_time_s(self) -> float:
        """Seconds spent in training epochs, over all sessions of the run."""
        return float(self.metrics.get("train_time_s", math.nan))

    @property
    def score_time_s(self) -> float:
        """Seconds spent scoring the validation and training events after the last epoch."""
        return float(self.metrics.get("score_time_s", math.nan))

    @property
    def images_per_second(self) -> float:
        """Training images per second of training time."""
        return float(self.metrics.get("images_per_second", math.nan))


def default_run_dir(base: str | os.PathLike = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>`` (with a ``-2``, ``-3`` ... suffix if it exists)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(base) / stamp
    k = 2
    while path.exists():
        path = Path(base) / f"{stamp}-{k}"
        k += 1
    return path


# -- run directory and state ----------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    except ValueError as exc:  # UnicodeDecodeError
        raise ModelFileError(f"{path}: the {what} is not a text file ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(f"{path}: the {what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: the {what} is not a JSON object")
    return data


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The settings of the run in ``run_dir`` (its config.json).

    Raises
    ------
    ConfigError
        When ``run_dir`` holds no config.json (not a run directory).
    ModelFileError
        When config.json cannot be read.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a train-cnn run directory (no config.json)")
    data = _upgrade_run_config(_read_json(path, "run configuration"))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        return TrainConfig(**{k: v for k, v in data.items() if k in names})
    except (TypeError, ConfigError) as exc:
        raise ModelFileError(f"{path}: invalid run configuration ({exc})") from None


def _upgrade_run_config(data: dict[str, Any]) -> dict[str, Any]:
    """The settings of a config.json written before early stopping and ``precision``: such
    runs trained their fixed number of epochs (no patience) in float32 unless
    ``mixed_precision`` said ``bf16``; ``arch`` ``seed`` is read as ``lecture``."""
    data = dict(data)
    if "patience" not in data:
        data["patience"] = 0
    if "precision" not in data:
        data["precision"] = "bf16" if data.get("mixed_precision") == "bf16" else "fp32"
    return data


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _read_state(run_dir: Path | None) -> dict[str, Any]:
    path = None if run_dir is None else run_dir / "state.json"
    if path is None or not path.is_file():
        return {"completed_epochs": 0, "best_val_accuracy": None, "best_epoch": 0}
    return _read_json(path, "run state")


def completed_epochs(run_dir: str | os.PathLike) -> int:
    """Epochs the run in ``run_dir`` has completed (its state.json; 0 when none or unreadable)."""
    try:
        return int(_read_state(Path(run_dir)).get("completed_epochs", 0))
    except (ModelFileError, TypeError, ValueError):
        return 0


def _check_out_dir(out: Path, resume: bool, config: TrainConfig) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    if not resume:
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(
                f"run directory {out} exists and is not empty; choose another output directory "
                "or continue that run with --resume"
            )
        return
    saved = load_run_config(out)
    a, b = saved.settings(), config.settings()
    diff = [k for k in a if k not in (*_RESUME_FREE, "epochs") and a[k] != b[k]]
    if diff:
        details = ", ".join(f"{k} {b[k]!r} (run: {a[k]!r})" for k in diff)
        raise ConfigError(f"cannot resume {out} with different settings: {details}")


def _check_extension(out: Path, config: TrainConfig, done: int) -> None:
    """Refuse to resume the run in ``out`` with fewer epochs than it has completed.

    More epochs than the run planned extend it (a finished run too): the history goes on,
    the best model is kept unless a later epoch beats it, and config.json records the new
    number (:func:`_record_epochs`).

    Raises
    ------
    ConfigError
        When ``config.epochs`` is below ``done``, the epochs completed.
    """
    if config.epochs < done:
        raise ConfigError(
            f"--epochs {config.epochs} is fewer than the {done} epochs run {out} has "
            f"completed; resume with --epochs {done} or more (or without --epochs)"
        )


def _finished(out: Path, state: dict[str, Any], done: int, epochs: int) -> bool:
    """Whether the run in ``out`` is complete for a resume that plans ``epochs`` epochs.

    A run that trained all its epochs is complete unless ``epochs`` extends it; a run that
    stopped early (``--patience``) stays complete unless ``epochs`` is more than the run
    planned (config.json), which asks for more training explicitly.
    """
    if state.get("status") != "complete" or not (out / "metrics.json").is_file():
        return False
    if done >= epochs:
        return True
    planned = _read_json(out / "config.json", "run configuration").get("epochs", done)
    return bool(state.get("stopped_early")) and epochs <= int(planned)


def _record_epochs(path: Path, epochs: int) -> None:
    """Write the planned ``epochs`` of a resumed run into its config.json (``path``)."""
    saved = _read_json(path, "run configuration")
    if saved.get("epochs") != epochs:
        log.info("run %s extended from %s to %d epochs", path.parent, saved.get("epochs"), epochs)
        write_json(path, {**saved, "epochs": epochs})


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def _check_resume_inputs(out: Path, files: dict[str, EventFile | None]) -> None:
    """Refuse to resume on input files other than those the run recorded in config.json.

    Parameters
    ----------
    out : Path
        The run directory.
    files : dict
        ``"input_file"`` and ``"val_file"`` (config.json's keys) -> the open file, or None.

    Raises
    ------
    ConfigError
        Naming the file and what changed (:func:`spectrocnn.dataset.identity.identity_change`).
    """
    from spectrocnn.dataset.identity import identity_change

    saved = _read_json(out / "config.json", "run configuration")
    for key, ev in files.items():
        recorded = saved.get(key)
        if ev is None or not isinstance(recorded, dict):
            continue
        change = identity_change(recorded, ev.identity())
        if change is not None:
            what = "trained" if key == "input_file" else "validated"
            raise ConfigError(
                f"--resume: {_shown(ev.path)} is not the file this run was {what} on "
                f"({change}); start a new run with another --out"
            )


def _history(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            try:
                out.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                out.setdefault(k, []).append(math.nan)
    return out


def _truncate_history(path: Path, epochs: int) -> None:
    """Keep the header and the rows of the first ``epochs`` epochs.

    A history.csv of a run made before epochs were counted from 1 (its first ``epoch``
    is 0) is renumbered from 1, so that the rows a resumed run appends continue it.
    """
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)[: 1 + epochs] if epochs else []
    if len(lines) > 1 and lines[0].startswith("epoch,") and lines[1].startswith("0,"):
        lines[1:] = [f"{int(r.split(',', 1)[0]) + 1},{r.split(',', 1)[1]}" for r in lines[1:]]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))


def _remove_outputs(out: Path, created: bool, before: set[str]) -> None:
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in out.iterdir():
        if p.name not in before:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


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
    else:
        with open_event_file(config.input) as ev:
            file_config, window = ev.config, ev.window_mm
        chosen, reason = choose_architecture(file_config, window)
        reason = f"auto: {reason}"
    log.info("architecture %s (%s)", chosen, reason)
    input_size = config.input_size if config.input_size is not None else INPUT_SIZES[chosen]
    config = dataclasses.replace(config, arch=chosen, input_size=input_size)
    return config, {"requested": AUTO, "chosen": chosen, "reason": reason}


def _geometry_args(tset: ImageSet) -> dict[str, Any]:
    """The event file's geometry that the architecture builders take (window, barrel)."""
    info = tset.info
    return {"window_mm": info["window_mm"], "barrel_radius_mm": info.get("barrel_radius_mm")}


def _model_geometry(config: TrainConfig, tset: ImageSet) -> dict[str, Any]:
    """config.json's ``model_geometry``: what the architecture takes from the file
    (:func:`~spectrocnn.model.architectures.model_geometry`); {} when it cannot be built
    on this window (the build then fails with the reason)."""
    from spectrocnn.model.architectures import model_geometry

    try:
        return model_geometry(config.arch, config.input_size, **_geometry_args(tset))
    except ConfigError:
        return {}


def _resolve_precision(config: TrainConfig, tf: Any) -> tuple[TrainConfig, dict[str, Any]]:
    """``precision="auto"`` replaced by the one for this machine, and the record of the
    choice with the device (:func:`~spectrocnn.model.device.describe_devices`)."""
    from spectrocnn.model.device import describe_devices, device_summary, resolve_precision

    device = describe_devices(tf)
    device["summary"] = device_summary(device)
    precision, reason = resolve_precision(config.precision, device)
    log.info("device %s; precision %s (%s)", device["summary"], precision, reason)
    choice = {"requested": config.precision, "chosen": precision, "reason": reason}
    return dataclasses.replace(config, precision=precision), {"device": device, **choice}


def _min_delta(state: dict[str, Any]) -> float:
    """The early stopping's ``min_delta`` for a run in ``state``: :data:`MIN_DELTA` for a new
    run, the one state.json records for a resumed run, 0 for a run begun before there was
    one (so that it stops where it would have)."""
    if "min_delta" in state:
        return float(state["min_delta"])
    return MIN_DELTA if int(state.get("completed_epochs", 0)) == 0 else 0.0


def stopping_rule(patience: int, min_delta: float = MIN_DELTA) -> str:
    """The early-stopping rule in words (the console's "Training:" line)."""
    higher = f"at least {min_delta:g} above its best" if min_delta else "above its best"
    return (
        f"stopping after {patience} epoch{'s' if patience != 1 else ''} without a "
        f"val_accuracy {higher}, or at val_accuracy 1.0"
    )


def _early_stopping(config: TrainConfig, state: dict[str, Any]) -> Any:
    """Keras' ``EarlyStopping`` on val_accuracy, its counter and reference score restored
    from ``state`` when resuming; None when ``config.patience`` is 0.

    An epoch counts as an improvement when its val_accuracy is at least ``min_delta``
    (:func:`_min_delta`, :data:`MIN_DELTA` for new runs) above the highest of the earlier
    epochs (Keras' rule is "more than": a slack of 1e-6 absorbs the float32 rounding of
    accuracies, multiples of 1 / n_val; and Keras compares with the last epoch that
    counted, here the reference rises with every higher val_accuracy, as the best model
    does). Training also stops at a val_accuracy of 1.0: the best model (the first epoch
    with the highest val_accuracy, :func:`_callbacks`) can no longer change.
    """
    if not config.patience:
        return None
    import keras

    min_delta = _min_delta(state)

    class RunEarlyStopping(keras.callbacks.EarlyStopping):
        """EarlyStopping whose state survives ``--resume`` (it is saved in state.json)."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            best = state.get("best_val_accuracy")
            self.best = None if best is None else float(best)
            self.best_epoch = int(state.get("best_epoch", 0)) - 1
            self.wait = int(state.get("epochs_without_improvement", 0))
            self.reason = None

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            current = (logs or {}).get("val_accuracy")
            if current is not None and (self.best is None or current > self.best):
                self.best = float(current)  # higher, by less than min_delta: no reset
            if current is not None and current >= 1.0:
                self.model.stop_training = True
                self.reason = "val_accuracy reached 1.0, which no later epoch can beat"
            elif self.model.stop_training:
                higher = f" by {min_delta:g} or more" if min_delta else ""
                self.reason = f"val_accuracy did not improve{higher} for {self.patience} epochs"

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
        monitor="val_accuracy", mode="max", patience=config.patience, min_delta=min_delta - slack
    )


def _stop_reason(config: TrainConfig, state: dict[str, Any]) -> str:
    """Why training ended, for metrics.json and the summary line."""
    done = int(state.get("completed_epochs", 0))
    if state.get("stopped_early"):
        rule = state.get("stop_rule") or (
            f"val_accuracy did not improve for {config.patience} epochs"
        )
        return f"stopped early after epoch {done}: {rule}"
    if config.patience:
        return f"reached the maximum of {config.epochs} epochs (patience {config.patience})"
    return f"trained the planned {config.epochs} epochs (no early stopping)"


# -- TensorFlow parts -----------------------------------------------------------------------


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """Silence Keras' absl warnings (legacy-format notices) for the duration."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _save_model(model: keras.Model, path: Path) -> None:
    """Save atomically; ``.h5`` in Keras' legacy format, anything else as ``.keras``."""
    with atomic_path(path) as tmp:
        if path.suffix != ".h5":
            model.save(tmp)
            return
        # Keras' legacy HDF5 writer pops "optimizer" from the model's compile config, so
        # that every later .keras save would lose the optimizer: restore it afterwards.
        compile_config = getattr(getattr(model, "_compile_config", None), "config", None)
        saved = dict(compile_config) if isinstance(compile_config, dict) else None
        try:
            with _quiet_absl():
                model.save(tmp)
        finally:
            if saved is not None:
                compile_config.clear()
                compile_config.update(saved)


def _load_model(path: Path) -> keras.Model:
    from spectrocnn._modelfile import check_model_file

    check_model_file(path)  # the real cause, where Keras would say "File not found"
    import keras

    import spectrocnn.model.layers  # noqa: F401  (registers the custom layers)

    try:
        with _quiet_absl():
            return keras.models.load_model(path)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors ...
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelFileError(f"{path}: cannot load the model ({msg})") from None


def predict(
    model: keras.Model,
    images: Any,
    labels: Any,
    order: np.ndarray,
    scale: float,
    *,
    progress: Callable[[int], Any] | None = None,
) -> np.ndarray:
    """Scores (probability of class 1) of the events ``order``, float64 (len(order),).

    ``progress``, when given, receives the number of events scored after each batch.
    """
    if len(order) == 0:
        return np.zeros(0)
    ds = make_dataset(images, labels, order, batch_size=_PREDICT_BATCH, scale=scale)
    callbacks = []
    if progress is not None:
        import keras

        left = [len(order)]

        class Tick(keras.callbacks.Callback):
            def on_predict_batch_end(self, batch, logs=None):
                n = min(_PREDICT_BATCH, left[0])
                left[0] -= n
                progress(n)

        callbacks.append(Tick())
    p = model.predict(ds, verbose=0, callbacks=callbacks)
    return np.asarray(p, dtype=np.float64).reshape(-1)


def _score_best(
    model: keras.Model,
    parts: list[tuple[Any, Any, np.ndarray, float]],
    best_epoch: int,
    progress: bool,
    report: Callable[[str], None],
) -> tuple[list[np.ndarray], float]:
    """Score the validation and training events with the best model, after the last epoch.

    Says what it does through ``report`` (the line before the bar) and shows a bar on
    stderr with ``progress``.

    Parameters
    ----------
    model : keras.Model
        The best model.
    parts : list of (images, labels, order, scale)
        The validation part first, then the training part (:func:`predict`'s arguments).
    best_epoch : int
        1-based epoch of ``model``, for the line.

    Returns
    -------
    scores : list of ndarray float64
        One per part, in order.
    seconds : float
        Wall time of the scoring.
    """
    t = time.perf_counter()
    n_val, n_train = len(parts[0][2]), len(parts[1][2])
    report(
        f"Scoring {n_val} validation and {n_train} training events with the best model "
        f"(epoch {best_epoch})"
    )
    with _bar(progress, n_val + n_train, "scoring") as bar:
        scores = [predict(model, *p, progress=bar.update if progress else None) for p in parts]
    return scores, time.perf_counter() - t


def _callbacks(
    out: Path,
    config: TrainConfig,
    state: dict[str, Any],
    steps: int,
    report: Callable[[str], None],
    progress: bool,
    t0: float,
) -> list[Any]:
    import keras

    earlier_wall = float(state.get("wall_time_s", 0.0))
    stopper = _early_stopping(config, state)

    class EpochTimer(keras.callbacks.Callback):
        """Adds ``epoch_time_s``: seconds since the previous epoch ended."""

        def on_train_begin(self, logs=None):
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            if logs is not None:
                logs["epoch_time_s"] = now - self.last
            self.last = now

    class Progress(keras.callbacks.Callback):
        """A tqdm bar per epoch on stderr."""

        def on_epoch_begin(self, epoch, logs=None):
            from tqdm import tqdm

            self.bar = tqdm(
                total=steps,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                unit="batch",
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and batch % 20 == 0:
                self.bar.set_postfix(
                    loss=f"{logs.get('loss', math.nan):.4f}",
                    acc=f"{logs.get('accuracy', math.nan):.4f}",
                    refresh=False,
                )

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close()

    class RunCheckpoint(keras.callbacks.Callback):
        """Best model on ``val_accuracy`` (Keras' messages), last model and run state."""

        def __init__(self) -> None:
            super().__init__()
            best = state.get("best_val_accuracy")
            self.best = -math.inf if best is None else float(best)
            self.best_epoch = int(state.get("best_epoch", 0))
            self.train_time = float(state.get("train_time_s", 0.0))

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.train_time += float(logs.get("epoch_time_s", 0.0))
            current = logs.get("val_accuracy")
            best_path = out / "best_model.keras"
            if current is not None and np.greater(current, self.best):
                report(
                    f"Epoch {epoch + 1}: val_accuracy improved from {self.best:.5f} to "
                    f"{current:.5f}, saving model to {best_path}"
                )
                _save_model(self.model, best_path)
                if config.legacy_h5:
                    _save_model(self.model, out / "best_model.h5")
                self.best, self.best_epoch = float(current), epoch + 1
            else:
                report(f"Epoch {epoch + 1}: val_accuracy did not improve from {self.best:.5f}")
            _save_model(self.model, out / "last_model.keras")
            write_json(
                out / "state.json",
                {
                    "completed_epochs": epoch + 1,
                    "epochs": config.epochs,
                    "best_val_accuracy": self.best,
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

    cbs: list[Any] = [EpochTimer()]
    if progress:
        cbs.append(Progress())
    if stopper is not None:  # before RunCheckpoint, which saves its state
        cbs.append(stopper)

    class History(keras.callbacks.CSVLogger):
        """history.csv with epochs counted from 1, as on the console and in metrics.json."""

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch + 1, logs)

    cbs += [History(str(out / "history.csv"), append=True), RunCheckpoint()]
    return cbs


# -- the run --------------------------------------------------------------------------------


def _check_file(ev: Any, config: TrainConfig, role: str) -> None:
    if ev.n_events == 0:
        raise ConfigError(f"{role} file {ev.path} holds no events")
    check_downsample(ev.image_shape, config.input_size, config.downsample, source=ev.path)
    if role == "training":
        classes = np.unique(ev.labels)
        if classes.size < 2:
            raise ConfigError(
                f"training file {ev.path} holds only class {int(classes[0])} "
                f"({ev.n_events} events); training needs events of both classes"
            )


def _tf_config() -> dict[str, Any]:
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


def _multiworker_role() -> tuple[bool, int]:
    """(is this the chief, number of tasks) of a ``multiworker`` run, from ``TF_CONFIG``."""
    tfc = _tf_config()
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


def _make_strategy(tf: Any, name: str) -> Any:
    """The ``tf.distribute`` strategy ``name`` (None for ``default``)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def _multiworker_keras_fixes(model: Any, strategy: Any) -> None:
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


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("spectrocnn", "tensorflow", "tensorflow-cpu", "keras", "numpy", "h5py"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _bar(progress: bool, total: int, desc: str):
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


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
    _worker_copy: bool = False,
) -> TrainResult:
    """Train ``config.arch`` on ``config.input`` and write a run directory.

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
    report = report or log.info
    if out_dir is None:
        if resume:
            raise ConfigError("resuming needs the run directory to continue")
        out_dir = default_run_dir()
    out = Path(out_dir)
    if config.strategy == "multiworker" and not _worker_copy:
        chief, n_tasks = _multiworker_role()
        if n_tasks > 1 and config.seed is None:
            raise ConfigError(
                "multiworker training on several workers needs a seed, the same on every worker"
            )
        if not chief:
            return _train_as_worker(config, out, resume)
    if config.seed is None:
        if resume:
            raise ConfigError("a resumed run needs the seed of the run")
        config = dataclasses.replace(config, seed=new_seed())
    config, arch_choice = _resolve_arch(config, out, resume)
    if arch_choice:
        report(f"Architecture: {config.arch} ({arch_choice['reason']})")
    _check_out_dir(out, resume, config)
    state = _read_state(out if resume else None)
    done = int(state.get("completed_epochs", 0))
    if resume:
        _check_extension(out, config, done)
    if resume and _finished(out, state, done, config.epochs):
        metrics = _read_json(out / "metrics.json", "metrics")
        return TrainResult(
            out_dir=out,
            config=config,
            epochs=done,
            initial_epoch=done,
            best_epoch=int(state.get("best_epoch", 0)),
            best_val_accuracy=_float(state.get("best_val_accuracy")),
            metrics=metrics,
            history=_history(out / "history.csv"),
            n_train=int(metrics.get("n_train", 0)),
            n_val=int(metrics.get("n_val", 0)),
            already_complete=True,
            stop_reason=metrics.get("stop_reason"),
        )

    # Inputs: checked and loaded before anything is written (and before TensorFlow).
    with ExitStack() as stack:
        ev = stack.enter_context(open_event_file(config.input))
        vev = stack.enter_context(open_event_file(config.val)) if config.val else None
        if resume:
            _check_resume_inputs(out, {"input_file": ev, "val_file": vev})
        _check_file(ev, config, "training")
        if vev is not None:
            _check_file(vev, config, "validation")
            if vev.image_shape != ev.image_shape or vev.window_mm != ev.window_mm:
                log.warning(
                    "the validation images (%dx%d px, window %s mm) differ from the training "
                    "images (%dx%d px, window %s mm)",
                    *vev.image_shape,
                    list(vev.window_mm),
                    *ev.image_shape,
                    list(ev.window_mm),
                )
            train_idx, val_idx = np.arange(ev.n_events), np.arange(vev.n_events)
        else:
            train_idx, val_idx = split_indices(ev.n_events, config.val_fraction, config.seed)
            if np.unique(ev.labels[train_idx]).size < 2:
                raise ConfigError(
                    f"the training part of {ev.path} holds one class only; use more events, "
                    "another --val-fraction or --seed, or a --val file"
                )
        sets: list[ImageSet] = []
        for f in (ev, vev):
            if f is not None:
                with _bar(progress, f.n_events, f"reading {Path(f.path).name}") as bar:
                    sets.append(
                        load_images(f, config.input_size, config.downsample, progress=bar.update)
                    )
    tset = sets[0]
    vset = sets[1] if vev is not None else tset
    if np.unique(vset.labels[val_idx]).size < 2:
        log.warning("the validation events hold one class only: ROC AUC is undefined")
    load_s = time.perf_counter() - t0

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in out.iterdir()}
    try:
        return _run(
            config, out, resume, state, tset, vset, train_idx, val_idx, progress, report, t0,
            load_s, arch_choice=arch_choice,
        )  # fmt: skip
    except BaseException as exc:
        completed = int(_read_state(out).get("completed_epochs", 0)) if out.is_dir() else 0
        if not resume and completed == 0:
            _remove_outputs(out, created, before)
        elif out.is_dir():  # train-cnn prints the command line that resumes it
            log.info(
                "run %s stopped after epoch %d (%s); resume=True continues it",
                out,
                completed,
                type(exc).__name__,
            )
        raise


def _train_as_worker(config: TrainConfig, out: Path, resume: bool) -> TrainResult:
    """A non-chief worker of a ``multiworker`` run: the same training (every worker takes
    part in every step and checkpoint), written to a temporary run directory, a copy of
    the chief's when resuming, removed at the end."""
    tmp = Path(tempfile.mkdtemp(prefix="spectrocnn-worker-"))
    try:
        run = tmp / "run"
        if resume:
            if not (out / "config.json").is_file():
                raise ConfigError(f"{out} is not a train-cnn run directory (no config.json)")
            shutil.copytree(out, run)
        result = train(config, run, resume=resume, report=log.debug, _worker_copy=True)
        return dataclasses.replace(result, out_dir=out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(
    config: TrainConfig,
    out: Path,
    resume: bool,
    state: dict[str, Any],
    tset: ImageSet,
    vset: ImageSet,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    progress: bool,
    report: Callable[[str], None],
    t0: float,
    load_s: float,
    *,
    arch_choice: dict[str, Any] | None = None,
) -> TrainResult:
    from spectrocnn.model._tf import configure_threads, tensorflow

    tf = tensorflow()
    intra, inter = configure_threads(config.threads)
    import keras

    config, precision_choice = _resolve_precision(config, tf)
    device = precision_choice.pop("device")
    if int(state.get("completed_epochs", 0)) < config.epochs:
        report(
            f"Device: {device['summary']}; precision {config.precision} "
            f"({precision_choice['reason']})"
        )

    strategy = _make_strategy(tf, config.strategy)
    replicas = int(strategy.num_replicas_in_sync) if strategy is not None else 1
    distribution = {
        "strategy": config.strategy,
        "replicas": replicas,
        "global_batch_size": config.batch_size * replicas,
    }

    done = int(state.get("completed_epochs", 0))
    earlier_wall = float(state.get("wall_time_s", 0.0))
    if not resume or not (out / "config.json").is_file():
        write_json(out / "config.json", {
            "schema": RUN_SCHEMA,
            **config.settings(),
            "input_file": tset.info,
            "val_file": vset.info if vset is not tset else None,
            "n_train": len(train_idx),
            "n_val": len(val_idx),
            "preprocessing": {
                "downsample": config.downsample,
                "factor": list(tset.factor),
                "pixel": "min(count * scale, 1): occupancy (max, nearest) or lit fraction (mean)",
                "scale": tset.scale,
            },
            "tensorflow_threads": {"intra_op": intra, "inter_op": inter},
            "distribution": distribution,
            "arch_choice": arch_choice or {"requested": config.arch, "chosen": config.arch},
            "model_geometry": _model_geometry(config, tset),
            "precision_choice": precision_choice,
            "device": device,
            "versions": _versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        })  # fmt: skip
    else:
        _record_epochs(out / "config.json", config.epochs)

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[config.precision])
    try:
        keras.utils.set_random_seed((config.seed + done) % 2**32)
        with strategy.scope() if strategy is not None else nullcontext():
            if done > 0:
                model = _load_model(out / "last_model.keras")
            else:
                from spectrocnn.model.architectures import build_model

                try:
                    model = build_model(config.arch, config.input_size, **_geometry_args(tset))
                except ConfigError as exc:  # e.g. polar on a window without the beam line
                    raise ConfigError(f"--arch {config.arch} on {tset.path}: {exc}") from None
        if config.strategy == "multiworker":
            _multiworker_keras_fixes(model, strategy)
        _truncate_history(out / "history.csv", done)

        images = {id(s.images): tf.constant(s.images) for s in (tset, vset)}
        labels = {id(s.labels): tf.constant(s.labels) for s in (tset, vset)}
        tx, ty = images[id(tset.images)], labels[id(tset.labels)]
        vx, vy = images[id(vset.images)], labels[id(vset.labels)]
        for s in (tset, vset):  # the tensors are copies: free the NumPy images
            s.images = np.empty((0, config.input_size, config.input_size), np.uint8)
        del images
        n_train, bs = len(train_idx), config.batch_size * replicas
        steps = math.ceil(n_train / bs)
        if done < config.epochs and not state.get("stopped_early"):
            what = f"Resuming {out} at epoch {done + 1}" if done else "Training"
            report(
                f"{what}: {config.arch} on {n_train} events, validating on {len(val_idx)} "
                f"({tset.info['image_shape'][0]}x{tset.info['image_shape'][1]} -> "
                f"{config.input_size}x{config.input_size} by {config.downsample} downsampling), "
                f"{config.precision}, "
                + (
                    f"at most {config.epochs} epochs, "
                    + stopping_rule(config.patience, _min_delta(state))
                    if config.patience
                    else f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
                )
                + f", batch {bs}"
                + (
                    f" ({config.batch_size} x {replicas} replica{'s' if replicas != 1 else ''}, "
                    f"{config.strategy})"
                    if strategy is not None
                    else ""
                )
                + f", seed {config.seed}"
            )
            orders = np.stack(
                [epoch_order(train_idx, config.seed, e) for e in range(done, config.epochs)]
            )
            train_ds = make_dataset(tx, ty, orders, batch_size=bs, scale=tset.scale)
            val_ds = make_dataset(vx, vy, val_idx, batch_size=_PREDICT_BATCH, scale=vset.scale)
            if strategy is not None:  # batches of event indices: shard them, not files
                opts = tf.data.Options()
                opts.experimental_distribute.auto_shard_policy = (
                    tf.data.experimental.AutoShardPolicy.DATA
                )
                train_ds, val_ds = train_ds.with_options(opts), val_ds.with_options(opts)
            callbacks = _callbacks(out, config, state, steps, report, progress, t0)
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=config.epochs,
                initial_epoch=done,
                steps_per_epoch=steps,
                callbacks=callbacks,
                shuffle=False,
                verbose=0,
            )
        state = _read_state(out)
        best_path = out / "best_model.keras"
        best = _load_model(best_path)
        (p_val, p_train), score_s = _score_best(
            best,
            [(vx, vy, val_idx, vset.scale), (tx, ty, train_idx, tset.scale)],
            int(state.get("best_epoch", 0)),
            progress,
            report,
        )
    finally:
        keras.mixed_precision.set_global_policy(policy)

    y_val = vset.labels[val_idx]
    y_train = tset.labels[train_idx]
    history = _history(out / "history.csv")
    from spectrocnn.model.plots import plot_curves, plot_roc, plot_scores

    plot_curves(history, "accuracy", out / "accuracy.png")
    plot_curves(history, "loss", out / "loss.png")
    plot_roc([("Validation", y_val, p_val), ("Train", y_train, p_train)], out / "roc.png")
    plot_scores(out / "scores.png", ("Validation", y_val, p_val), ("Train", y_train, p_train))

    train_time = float(state.get("train_time_s", 0.0))
    epochs_done = int(state.get("completed_epochs", 0))
    val_metrics = binary_metrics(y_val, p_val)
    metrics = {
        **val_metrics,
        "sample": "validation",
        "model": best_path.name,
        "best_epoch": int(state.get("best_epoch", 0)),
        "epochs": epochs_done,
        "train": binary_metrics(y_train, p_train),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "parameters": int(best.count_params()),
        **distribution,
        "stopped_early": bool(state.get("stopped_early", False)),
        "stop_reason": _stop_reason(config, state),
        "precision": config.precision,
        "device": device,
        "load_time_s": load_s,
        "train_time_s": train_time,
        "score_time_s": score_s,
        "wall_time_s": earlier_wall + time.perf_counter() - t0,
        "images_per_second": len(train_idx) * epochs_done / train_time if train_time else None,
    }
    write_json(out / "metrics.json", metrics)
    write_json(out / "state.json", {**state, "status": "complete"})
    return TrainResult(
        out_dir=out,
        config=config,
        epochs=epochs_done,
        initial_epoch=done,
        best_epoch=metrics["best_epoch"],
        best_val_accuracy=_float(state.get("best_val_accuracy")),
        metrics=metrics,
        history=history,
        n_train=len(train_idx),
        n_val=len(val_idx),
        stop_reason=metrics["stop_reason"],
    )
