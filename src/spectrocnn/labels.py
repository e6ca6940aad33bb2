"""What an event file's labels are: binary, multi-class or a float target (issue 22).

The one home of the label kinds (:data:`LABEL_KINDS`, :class:`LabelSpec`), of the checks
of label values, of the class weights of training (:func:`class_weights`) and of the
"the model predicts one class only" check (:func:`one_class_warning`). NumPy only: the
event file (:mod:`spectrocnn.dataset`) stores a :class:`LabelSpec` as attributes of
``/labels``, training (:mod:`spectrocnn.model`) chooses the network's output and loss
from it, the commands that need binary labels ask :func:`require_kind`.

Kinds
    ``binary``: 0 or 1 (the simulation's label, "the event holds a high-momentum
    particle", or a user's), stored uint8; a file without the ``label_kind`` attribute
    is binary. ``multiclass``: an integer class ``0 .. n_classes - 1``, stored uint8 (up
    to 256 classes) or int32. ``regression``: any finite number, stored float64.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectrocnn._validate import is_int
from spectrocnn.errors import ConfigError

__all__ = [
    "CLASS_WEIGHTS",
    "LABEL_KINDS",
    "LabelSpec",
    "class_weights",
    "fraction_text",
    "one_class_warning",
    "predicted_classes",
    "require_kind",
]

#: The label kinds, the default first.
LABEL_KINDS = ("binary", "multiclass", "regression")

#: ``train-cnn --class-weight``: none (every event weighs 1) or balanced (:func:`class_weights`).
CLASS_WEIGHTS = ("none", "balanced")


def _near_miss(value: Any, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class LabelSpec:
    """The kind of an event file's labels.

    Parameters
    ----------
    kind : {"binary", "multiclass", "regression"}
    n_classes : int, optional
        Number of classes: 2 for ``binary`` (the default there), at least 2 for
        ``multiclass`` (default: the number of ``class_names``), None for ``regression``.
    class_names : sequence of str, optional
        One name per class (class ``i`` is ``class_names[i]``); not for ``regression``.
    name : str, optional
        What the label is, in words (``"n_hits >= 140"``); shown by the commands.

    Raises
    ------
    ConfigError
        An unknown kind, a ``multiclass`` without ``n_classes`` or ``class_names``, a
        number of classes that is not an integer >= 2 (2 for binary), class names that
        do not match it, or classes given for ``regression``.

    Examples
    --------
    >>> LabelSpec("multiclass", class_names=("e", "mu", "pi")).n_classes
    3
    >>> LabelSpec().describe()
    'binary'
    """

    kind: str = "binary"
    n_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        kind = self.kind
        if kind not in LABEL_KINDS:
            raise ConfigError(
                f"label kind must be one of {', '.join(LABEL_KINDS)}, got {kind!r}"
                + _near_miss(kind, LABEL_KINDS)
            )
        names = self.class_names
        if names is not None:
            if isinstance(names, str) or not all(isinstance(s, str) for s in names):
                raise ConfigError(f"class_names must be a sequence of str, got {names!r}")
            set_("class_names", tuple(names))
        if kind == "regression":
            if self.n_classes is not None or names is not None:
                raise ConfigError("regression labels have no classes (n_classes, class_names)")
        else:
            n = self.n_classes
            if n is None:
                n = 2 if kind == "binary" or names is None else len(names)
                if kind == "multiclass" and names is None:
                    raise ConfigError("multiclass labels need n_classes or class_names")
            if not is_int(n) or n < 2 or (kind == "binary" and n != 2):
                want = "2" if kind == "binary" else "an integer >= 2"
                raise ConfigError(f"n_classes of {kind} labels must be {want}, got {n!r}")
            set_("n_classes", int(n))
            if names is not None and len(names) != n:
                raise ConfigError(f"{len(names)} class_names for {n} classes")
        if self.name is not None:
            set_("name", str(self.name))

    @property
    def is_classification(self) -> bool:
        """Whether the labels are classes (``binary`` or ``multiclass``)."""
        return self.kind != "regression"

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the labels in memory: uint8 (binary), int64 (multiclass), float64."""
        return np.dtype({"binary": np.uint8, "multiclass": np.int64}.get(self.kind, np.float64))

    @property
    def stored_dtype(self) -> np.dtype:
        """The dtype of ``/labels``: uint8 (binary; multiclass up to 256 classes), int32
        (more classes), float64 (regression)."""
        if self.kind == "regression":
            return np.dtype(np.float64)
        return np.dtype(np.uint8 if self.n_classes <= 256 else np.int32)  # type: ignore[operator]

    def describe(self) -> str:
        """``"binary"``, ``"multiclass (3 classes: e, mu, pi)"``, ``"regression"``."""
        if self.kind != "multiclass":
            return self.kind
        names = f": {', '.join(self.class_names)}" if self.class_names else ""
        return f"multiclass ({self.n_classes} classes{names})"

    def class_name(self, c: int) -> str:
        """The name of class ``c`` (its number without ``class_names``)."""
        return self.class_names[c] if self.class_names else str(c)

    def label_text(self, value: Any) -> str:
        """A label as the pictures show it: ``"1"``, ``"mu"``, ``"3.25"``."""
        if self.kind == "regression":
            return f"{float(value):.4g}"
        return self.class_name(int(value))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``kind`` and, where set, ``n_classes``, ``class_names``, ``name``."""
        d: dict[str, Any] = {"kind": self.kind}
        if self.n_classes is not None:
            d["n_classes"] = self.n_classes
        if self.class_names is not None:
            d["class_names"] = list(self.class_names)
        if self.name is not None:
            d["name"] = self.name
        return d

    def check_values(self, values: Any, what: str = "labels") -> np.ndarray:
        """``values`` as :attr:`stored_dtype`, checked for this kind.

        Parameters
        ----------
        values : array-like, shape (n,)
        what : str
            Names the values in the messages.

        Returns
        -------
        ndarray (n,) of :attr:`stored_dtype`

        Raises
        ------
        ConfigError
            Not 1-D; not numbers; classes that are not integers in ``[0, n_classes)``
            (0 or 1 for binary); a NaN or infinite regression target. The message names
            the first bad value and its index.
        """
        a = np.asarray(values)
        if a.ndim != 1:
            raise ConfigError(f"{what} must be one value per event (1-D), got shape {a.shape}")
        if a.dtype.kind not in "biuf":
            raise ConfigError(f"{what} must be numbers, got dtype {a.dtype}")
        if self.kind == "regression":
            bad = np.flatnonzero(~np.isfinite(a.astype(np.float64)))
            if bad.size:
                i = int(bad[0])
                raise ConfigError(f"{what}[{i}] is {a[i]!r}: regression targets must be finite")
            return a.astype(np.float64)
        n = self.n_classes
        ok = np.isfinite(a) & (a == np.round(a)) if a.dtype.kind == "f" else np.ones(a.shape, bool)
        ok &= (a >= 0) & (a < n)
        bad = np.flatnonzero(~ok)
        if bad.size:
            i = int(bad[0])
            allowed = "0 or 1" if self.kind == "binary" else f"an integer in [0, {n})"
            raise ConfigError(
                f"{what}[{i}] is {a[i].item()!r}: {self.kind} labels must be {allowed}"
            )
        return a.astype(self.stored_dtype)


def require_kind(spec: LabelSpec, kinds: Sequence[str], what: str, path: str) -> None:
    """Refuse labels of another kind than ``kinds`` for ``what``, in one line.

    Parameters
    ----------
    spec : LabelSpec
        The file's labels.
    kinds : sequence of str
        The kinds ``what`` works with.
    what : str
        The command or option (``"fit-tracks"``, ``"--monitor val_auc"``).
    path : str
        The event file.

    Raises
    ------
    ConfigError
        ``"fit-tracks needs binary labels; t.h5 has regression labels (n_hits)"``.
    """
    if spec.kind in kinds:
        return
    named = f" ({spec.name})" if spec.name else ""
    raise ConfigError(
        f"{what} needs {' or '.join(kinds)} labels; {path} has {spec.describe()} labels{named}"
    )


def class_weights(labels: np.ndarray, spec: LabelSpec, mode: str) -> dict[int, float] | None:
    """Per-class weights of the training loss.

    ``balanced`` gives class ``c`` the weight ``n / (k * n_c)``: ``n`` events, ``k``
    classes present, ``n_c`` events of class ``c`` (scikit-learn's
    ``compute_class_weight("balanced")``, after King and Zeng 2001, "Logistic Regression
    in Rare Events Data"): every class then carries the same total weight, ``n / k``.
    A class absent from ``labels`` gets no weight (Keras then weighs it 1).

    Parameters
    ----------
    labels : ndarray (n,)
        The training events' classes.
    spec : LabelSpec
    mode : {"none", "balanced"}

    Returns
    -------
    dict or None
        Class -> weight for ``model.fit(class_weight=...)``; None for ``"none"``.

    Raises
    ------
    ConfigError
        An unknown mode, or ``balanced`` with regression labels.
    """
    if mode not in CLASS_WEIGHTS:
        raise ConfigError(
            f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}, got {mode!r}"
            + _near_miss(mode, CLASS_WEIGHTS)
        )
    if mode == "none":
        return None
    if not spec.is_classification:
        raise ConfigError(
            "--class-weight balanced weighs classes, and regression labels have none; "
            "train without --class-weight"
        )
    y = np.asarray(labels).astype(np.int64)
    counts = np.bincount(y, minlength=spec.n_classes or 0)
    present = np.flatnonzero(counts)
    k = len(present)
    return {int(c): float(len(y) / (k * counts[c])) for c in present}


def predicted_classes(scores: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """The class each score predicts: ``score > 0.5`` (binary, Keras' accuracy rule) or
    the most probable class (multiclass, ``argmax`` over the last axis).

    Raises
    ------
    ValueError
        For regression labels.
    """
    s = np.asarray(scores)
    if spec.kind == "binary":
        return (s.reshape(-1) > 0.5).astype(np.int64)
    if spec.kind == "multiclass":
        return np.argmax(s.reshape(len(s), -1), axis=1).astype(np.int64)
    raise ValueError("regression labels have no classes")


def one_class_warning(
    labels: np.ndarray, scores: np.ndarray, spec: LabelSpec, sample: str = "validation"
) -> str | None:
    """A warning when a classifier predicts one class for every event of a sample whose
    labels hold several: it has learnt the class frequencies, not the events (a 15 %
    class 1 gives accuracy 0.85 and ROC AUC about 0.5).

    Parameters
    ----------
    labels : ndarray (n,)
        The sample's true classes.
    scores : ndarray (n,) or (n, k)
        The model's probabilities.
    spec : LabelSpec
    sample : str
        Names the sample in the message.

    Returns
    -------
    str or None
        The warning, or None (several classes predicted, one class in the labels, no
        events, or regression labels).
    """
    y = np.asarray(labels)
    if not spec.is_classification or y.size == 0 or np.unique(y).size < 2:
        return None
    pred = np.unique(predicted_classes(scores, spec))
    if pred.size != 1:
        return None
    c = int(pred[0])
    share = float(np.mean(y.astype(np.int64) == c))
    return (
        f"the best model predicts class {spec.class_name(c)} for all {y.size} {sample} "
        f"events, {100 * share:.0f} % of which are of that class: it has learnt the class "
        "frequencies, not the events; try --class-weight balanced and --monitor val_auc "
        "(binary labels)"
    )


def fraction_text(labels: np.ndarray, spec: LabelSpec) -> str:
    """``"15.0 % class 1"``, ``"classes 0/1/2: 50/30/20 %"`` or ``"mean 3.2, sd 1.1"``."""
    y = np.asarray(labels)
    if y.size == 0:
        return "no events"
    if spec.kind == "regression":
        return f"mean {float(np.mean(y)):.4g}, sd {float(np.std(y)):.4g}"
    counts = np.bincount(y.astype(np.int64), minlength=spec.n_classes or 2)
    if spec.kind == "binary":
        return f"{100 * counts[1] / y.size:.1f} % class {spec.class_name(1)}"
    shares = "/".join(f"{100 * c / y.size:.0f}" for c in counts)
    names = "/".join(spec.class_name(i) for i in range(len(counts)))
    return f"classes {names}: {shares} %"
