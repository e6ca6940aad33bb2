"""The network's output, loss and metrics for each kind of labels, and the score that
keeps the best model (issue 22).

=============  ===========================  ============================  =================
labels         output layer (float32)       loss                          metrics
=============  ===========================  ============================  =================
binary         Dense 1, sigmoid             binary cross-entropy          accuracy (+ auc)
multiclass     Dense n_classes, softmax     sparse categorical c.-e.      accuracy
regression     Dense 1, linear              mean squared error            mae
=============  ===========================  ============================  =================

Adam with Keras' defaults for all (the lecture's optimizer). ``auc`` is
``keras.metrics.AUC(name="auc")`` (ROC, 200 thresholds), added when the best model is kept
for ``val_auc``. The monitor (``train-cnn --monitor``): ``val_accuracy`` (the lecture's;
default for classes), ``val_auc`` (binary labels; what a rare class needs: it does not
reward predicting the frequent class), ``val_loss`` (default for regression, lower is
better). Keras is imported inside the functions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spectrocnn.errors import ConfigError
from spectrocnn.labels import LabelSpec, require_kind

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = [
    "AUTO_MONITOR",
    "MONITORS",
    "check_model_labels",
    "check_training_labels",
    "compile_model",
    "model_label_kind",
    "monitor_mode",
    "output_layer",
    "resolve_monitor",
    "run_labels",
]

#: The monitor ``train-cnn`` resolves for the training file's labels.
AUTO_MONITOR = "auto"

#: ``train-cnn --monitor`` values, the default first.
MONITORS = (AUTO_MONITOR, "val_accuracy", "val_auc", "val_loss")


def monitor_mode(monitor: str) -> str:
    """``"min"`` for ``val_loss``, ``"max"`` for the others."""
    return "min" if monitor.endswith("loss") else "max"


def resolve_monitor(monitor: str, spec: LabelSpec, path: str) -> str:
    """The monitor of a run on labels ``spec`` of file ``path``.

    ``auto``: ``val_accuracy`` for classes, ``val_loss`` for regression.

    Raises
    ------
    ConfigError
        An unknown monitor; ``val_auc`` without binary labels; ``val_accuracy`` on
        regression labels.
    """
    if monitor not in MONITORS:
        raise ConfigError(f"monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")
    if monitor == AUTO_MONITOR:
        return "val_accuracy" if spec.is_classification else "val_loss"
    if monitor == "val_auc":
        require_kind(spec, ("binary",), "--monitor val_auc (ROC AUC)", path)
    if monitor == "val_accuracy":
        require_kind(spec, ("binary", "multiclass"), "--monitor val_accuracy", path)
    return monitor


def run_labels(
    train_path: str | None, val_path: str | None, monitor: str, class_weight: str
) -> tuple[LabelSpec, str]:
    """The labels of a training run and its monitor, checked before anything is read.

    Parameters
    ----------
    train_path, val_path : str
        The training file and the validation file (None: a part of the training file).
    monitor : str
        :data:`MONITORS` (``"auto"`` is resolved, :func:`resolve_monitor`).
    class_weight : {"none", "balanced"}

    Returns
    -------
    (LabelSpec, str)
        The training file's labels and the monitor.

    Raises
    ------
    ConfigError
        A validation file with other labels (kind or number of classes), a monitor the
        labels do not have, ``balanced`` class weights on a regression target; a missing
        file (:class:`~spectrocnn.errors.EventFileNotFoundError`).
    EventFileError
        A file that is not a readable event file.
    """
    from spectrocnn.dataset import open_events as open_event_file
    from spectrocnn.labels import class_weights

    if train_path is None:  # events simulated afresh (--generate): gen-events' binary labels
        spec = LabelSpec()
    else:
        with open_event_file(train_path) as ev:
            spec = ev.label_spec
    if val_path is not None:
        with open_event_file(val_path) as vev:
            vspec = vev.label_spec
        if (vspec.kind, vspec.n_classes) != (spec.kind, spec.n_classes):
            raise ConfigError(
                f"--val {val_path} has {vspec.describe()} labels, the training file "
                f"{train_path} {spec.describe()} labels: validate on a file with the same labels"
            )
    if class_weight != "none":
        require_kind(spec, ("binary", "multiclass"), f"--class-weight {class_weight}", train_path)
    class_weights([], spec, class_weight)  # an unknown mode
    return spec, resolve_monitor(monitor, spec, train_path)


def check_training_labels(labels: Any, spec: LabelSpec, path: str) -> None:
    """Refuse a training file whose labels hold one class (one value) only.

    Raises
    ------
    ConfigError
        ``"training file t.h5 holds only class 1 (200 events); training needs events of
        both classes"`` (two or more classes for multiclass labels, two or more values
        for a regression target).
    """
    import numpy as np

    values = np.unique(np.asarray(labels))
    if values.size != 1:
        return
    n = len(labels)
    if spec.kind == "regression":
        raise ConfigError(
            f"training file {path} holds one target value only ({float(values[0]):g}, "
            f"{n} events); a regression needs events of different values"
        )
    need = "both classes" if spec.kind == "binary" else "two classes or more"
    raise ConfigError(
        f"training file {path} holds only class {spec.class_name(int(values[0]))} "
        f"({n} events); training needs events of {need}"
    )


def output_layer(spec: LabelSpec | None = None) -> Any:
    """The last layer for labels ``spec`` (binary when None), computing in float32 (a
    stable sigmoid or softmax and float32 scores under a mixed-precision policy)."""
    from keras import layers

    spec = spec or LabelSpec()
    if spec.kind == "multiclass":
        return layers.Dense(spec.n_classes, activation="softmax", dtype="float32")
    activation = "sigmoid" if spec.kind == "binary" else "linear"
    return layers.Dense(1, activation=activation, dtype="float32")


def compile_model(
    model: keras.Model, spec: LabelSpec | None = None, monitor: str = "val_accuracy"
) -> keras.Model:
    """Compile ``model`` for labels ``spec`` (binary when None): Adam, the loss and
    metrics of the module's table; ``monitor="val_auc"`` adds the ``auc`` metric."""
    import keras

    spec = spec or LabelSpec()
    if spec.kind == "regression":
        loss, metrics = "mean_squared_error", ["mae"]
    elif spec.kind == "multiclass":
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    else:
        loss, metrics = "binary_crossentropy", ["accuracy"]
        if monitor == "val_auc":
            metrics.append(keras.metrics.AUC(name="auc"))
    model.compile(optimizer="adam", loss=loss, metrics=metrics)
    return model


def model_label_kind(model: keras.Model) -> tuple[str | None, int]:
    """The kind of labels a model predicts, from its last layer: ``("binary", 1)``
    (sigmoid), ``("multiclass", k)`` (softmax over k), ``("regression", 1)`` (linear
    output of one), ``(None, k)`` for anything else."""
    last = model.layers[-1] if model.layers else None
    units = int(model.output_shape[-1] or 0)
    name = getattr(getattr(last, "activation", None), "__name__", None)
    if name == "sigmoid" and units == 1:
        return "binary", 1
    if name == "softmax" and units > 1:
        return "multiclass", units
    if name == "linear" and units == 1:
        return "regression", 1
    return None, units


def check_model_labels(model: keras.Model, spec: LabelSpec, model_path: Any, path: str) -> None:
    """Refuse to evaluate a model on labels of another kind (or number of classes).

    Raises
    ------
    ConfigError
        ``"best_model.keras predicts binary labels (1 sigmoid output); t.h5 has
        regression labels"``.
    """
    kind, units = model_label_kind(model)
    if kind is None:
        return  # a model of another make: its scores are taken as they come
    if kind == spec.kind and (kind != "multiclass" or units == spec.n_classes):
        return
    out = {"binary": "1 sigmoid output", "regression": "1 linear output"}.get(
        kind, f"softmax over {units} classes"
    )
    raise ConfigError(
        f"{model_path} predicts {kind} labels ({out}); {path} has {spec.describe()} labels: "
        "evaluate it on a file with the labels it was trained on"
    )
