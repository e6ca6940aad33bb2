"""The settings of a training run (:class:`TrainConfig`), their defaults, and what the run
returns (:class:`TrainResult`).

What ``train-cnn``'s options set and config.json records (:mod:`spectrocnn.model.rundir`);
:func:`spectrocnn.model.train.train` runs them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn.errors import ConfigError
from spectrocnn.labels import CLASS_WEIGHTS
from spectrocnn.model.architectures import AUTO, INPUT_SIZES, canonical_name
from spectrocnn.model.data import check_preprocessing
from spectrocnn.model.device import PRECISIONS
from spectrocnn.model.distribute import STRATEGIES
from spectrocnn.model.streaming import check_cache_mb
from spectrocnn.model.task import AUTO_MONITOR, MONITORS

if TYPE_CHECKING:  # pragma: no cover
    from spectrocnn.config import Config

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_FRESH_EVENTS",
    "DEFAULT_PATIENCE",
    "MIXED_PRECISION",
    "TrainConfig",
    "TrainResult",
    "new_seed",
]

#: Mixed-precision options: name -> Keras dtype policy (see :data:`PRECISIONS`).
MIXED_PRECISION = {"bf16": "mixed_bfloat16"}

#: Early stopping when not reproducing the lecture: epochs without a higher val_accuracy
#: before training stops (``patience``), and the maximum number of epochs.
DEFAULT_PATIENCE = 2

#: Maximum epochs by default: with early stopping, and without (the lecture's 10).
DEFAULT_EPOCHS = {"early_stopping": 20, "fixed": 10}

#: Events simulated per epoch and fixed validation events of ``generate`` by default: the
#: lecture's 16 000 / 4 000 split of 20 000 events.
DEFAULT_FRESH_EVENTS = {"events_per_epoch": 16_000, "val_events": 4_000}


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
    input : str, optional
        Training event file; None with ``generate`` (exactly one of the two).
    val : str, optional
        Validation event file; without it ``val_fraction`` of ``input`` is held out.
    val_fraction : float
        Fraction of ``input`` used for validation, in (0, 1); ignored with ``val`` and
        ``generate``.
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
        See :mod:`spectrocnn.model.data`; with ``input_size`` checked by
        :func:`~spectrocnn.model.data.check_preprocessing`.
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
        ``tf.distribute`` strategy (:mod:`spectrocnn.model.distribute`); ``batch_size``
        is per replica.
    class_weight : {"none", "balanced"}
        ``balanced`` weighs each class of the training events by ``n / (k * n_c)``
        (:func:`spectrocnn.labels.class_weights`); binary and multiclass labels only.
    monitor : {"auto", "val_accuracy", "val_auc", "val_loss"}
        The validation score the best model is kept for, and early stopping watches
        (:mod:`spectrocnn.model.task`); ``auto``: ``val_accuracy`` for classes,
        ``val_loss`` for a regression target (:func:`train` records the choice).
    generate : Config or dict, optional
        Train on events simulated afresh every epoch from this configuration
        (:class:`spectrocnn.config.Config`, e.g. :func:`~spectrocnn.config.preset_config`)
        instead of an event file; see :mod:`spectrocnn.model.fresh`. config.json records
        its resolved form (:meth:`~spectrocnn.config.Config.to_dict`), which
        :func:`~spectrocnn.model.rundir.load_run_config` gives back as a dict: turn it into
        a ``Config`` again (:func:`spectrocnn.config.config_from_dict`, what ``train-cnn
        --resume`` does) before training.
    events_per_epoch : int, optional
        With ``generate``: events simulated per epoch (default 16 000).
    val_events : int, optional
        With ``generate``: fixed validation events, simulated once (default 4 000).
    cache_mb : float, optional
        Memory budget of the downsampled images [MB, 2**20 bytes]: input files whose
        images exceed it are held as their lit pixels when those fit it
        (:mod:`spectrocnn.model.litpixels`), else kept on disk (``lit_cache``) or streamed
        from the file every epoch, shuffled in windows (:mod:`spectrocnn.model.streaming`).
        None: :func:`train` takes half of the available memory
        (:func:`~spectrocnn.model.streaming.default_cache_mb`) and records it, or,
        resuming, the run's; a ``multiworker`` run on several workers reads into memory
        unless it is given (the same on every worker).
    lit_cache : str, optional
        A directory for the lit pixels of images that exceed ``cache_mb`` even as lit
        pixels (:mod:`spectrocnn.model.litpixels`): they are written to a fresh
        subdirectory there, read memory-mapped every epoch (a full shuffle, no decoding)
        and removed at the end of the run. None: such files are streamed.
    """

    input: str | None = None
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
    class_weight: str = "none"
    monitor: str = AUTO_MONITOR
    generate: Config | dict[str, Any] | None = None
    events_per_epoch: int | None = None
    val_events: int | None = None
    cache_mb: float | None = None
    lit_cache: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        self._check_source()
        if self.input is not None:
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
        for name in ("epochs", "batch_size"):
            set_(name, _positive_int(name, getattr(self, name)))
        set_("input_size", check_preprocessing(self.input_size, self.downsample)[0])
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
        for name, allowed in (("class_weight", CLASS_WEIGHTS), ("monitor", MONITORS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.cache_mb is not None:
            if self.generate is not None:
                raise ConfigError(
                    "cache_mb with generate: fresh events are simulated into memory each "
                    "epoch (set events_per_epoch instead)"
                )
            mb = check_cache_mb(self.cache_mb)
            set_("cache_mb", int(mb) if mb.is_integer() else mb)
        if self.lit_cache is not None:
            if self.generate is not None:
                raise ConfigError(
                    "lit_cache with generate: fresh events are simulated into memory each epoch"
                )
            set_("lit_cache", os.path.abspath(os.fspath(self.lit_cache)))

    def _check_source(self) -> None:
        """An event file or ``generate`` (with its counts), not both; the configuration
        of ``generate`` in the form it is stored."""
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        counts = ("events_per_epoch", "val_events")
        if self.generate is None:
            if self.input is None:
                raise ConfigError(
                    "training needs an event file (input) or a configuration to simulate "
                    "events from (generate)"
                )
            given = [k for k in counts if getattr(self, k) is not None]
            if given:
                raise ConfigError(f"{given[0]} needs generate (fresh events every epoch)")
            return
        if self.input is not None:
            raise ConfigError(
                f"generate trains on simulated events: give no event file (input {self.input!r})"
            )
        if self.val is not None:
            raise ConfigError(
                f"generate validates on simulated events (val_events of them): give no "
                f"validation file (val {self.val!r})"
            )
        if not (isinstance(self.generate, dict) or hasattr(self.generate, "to_dict")):
            raise ConfigError(
                f"generate must be a configuration (spectrocnn.config.Config), got "
                f"{self.generate!r}"
            )
        for k in counts:
            value = getattr(self, k)
            set_(k, DEFAULT_FRESH_EVENTS[k] if value is None else _positive_int(k, value))

    @property
    def generated(self) -> bool:
        """Whether the run trains on freshly simulated events (``generate``)."""
        return self.generate is not None

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (``generate``: the resolved configuration)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.generate is not None and not isinstance(self.generate, dict):
            out["generate"] = self.generate.to_dict()
        return copy.deepcopy(out)


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
        The best model's validation accuracy (NaN for a regression target).
    metrics : dict
        The content of metrics.json.
    history : dict
        Column -> list of per-epoch values (history.csv).
    n_train, n_val : int
    already_complete : bool
        ``resume`` found the run already finished and did nothing.
    stop_reason : str, optional
        Why training ended (early stopping, or the maximum number of epochs).
    monitor : str
        The score the best model was kept for (``config.monitor``).
    best_score : float
        Its best value (``best_val_accuracy`` when the monitor is ``val_accuracy``).
    warnings : list of str
        What the run found wrong with its best model (one class predicted for every
        validation event: :func:`spectrocnn.labels.one_class_warning`).
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
    monitor: str = "val_accuracy"
    best_score: float = math.nan
    warnings: list[str] = field(default_factory=list)

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
