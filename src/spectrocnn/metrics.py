"""Metrics in plain NumPy: ROC curve, ROC AUC, accuracy, loss, confusion matrix of binary
labels; accuracy, loss and confusion matrix of classes (:func:`multiclass_metrics`); the
errors of a regression (:func:`regression_metrics`); :func:`label_metrics` picks by kind.

No scikit-learn and no TensorFlow: shared by the CNN (:mod:`spectrocnn.model`) and the
classical baseline (:mod:`spectrocnn.reco`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

__all__ = [
    "best_cut_accuracy",
    "binary_metrics",
    "label_metrics",
    "multiclass_metrics",
    "regression_metrics",
    "roc_auc",
    "roc_curve",
]

log = logging.getLogger(__name__)

#: Probabilities are clipped to [EPS, 1 - EPS] in the loss, as Keras does.
EPS = 1e-7


def _check(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} != {s.size}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y.astype(np.int64), s


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The receiver operating characteristic of a score.

    Parameters
    ----------
    y_true : ndarray, shape (n,)
        True labels, 0 or 1.
    score : ndarray, shape (n,)
        Classifier output; larger means "more like class 1".

    Returns
    -------
    fpr, tpr : ndarray of float64, shape (k + 1,)
        False- and true-positive rates for "score >= threshold", starting at (0, 0) and
        ending at (1, 1). Tied scores form one point. NaN when a class is absent.
    thresholds : ndarray of float64, shape (k + 1,)
        The distinct scores in decreasing order, preceded by +inf.
    """
    y, s = _check(y_true, score)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], int)
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tps] / n_pos if n_pos else np.full(last.size + 1, np.nan)
        fpr = np.r_[0.0, fps] / n_neg if n_neg else np.full(last.size + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, s[last]]


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN when a class is absent.

    Equal to the probability that a random class-1 event scores above a random class-0
    event (the Mann-Whitney statistic).
    """
    fpr, tpr, _ = roc_curve(y_true, score)
    if fpr.size < 2 or np.isnan(fpr).any() or np.isnan(tpr).any():
        return math.nan
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def binary_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, binary cross-entropy, ROC AUC and confusion matrix of probabilities.

    Parameters
    ----------
    y_true : ndarray, shape (n,)
        True labels, 0 or 1.
    score : ndarray, shape (n,)
        Predicted probability of class 1, in [0, 1].
    threshold : float
        An event is predicted as class 1 when ``score > threshold`` (Keras' rule).

    Returns
    -------
    dict
        ``n_events``, ``n_class1``, ``accuracy``, ``loss`` (mean binary cross-entropy,
        probabilities clipped to [1e-7, 1 - 1e-7]), ``roc_auc`` (None when a class is
        absent), ``threshold`` and ``confusion_matrix`` ``[[tn, fp], [fn, tp]]`` (rows: true
        class 0, 1; columns: predicted class 0, 1).
    """
    y, s = _check(y_true, score)
    if y.size == 0:
        raise ValueError("no events to evaluate")
    pred = (s > threshold).astype(np.int64)
    p = np.clip(s, EPS, 1.0 - EPS)
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
    auc = roc_auc(y, s)
    if math.isnan(auc):
        log.warning("ROC AUC is undefined: the sample holds one class only")
    tn = int(np.sum((y == 0) & (pred == 0)))
    fp = int(np.sum((y == 0) & (pred == 1)))
    fn = int(np.sum((y == 1) & (pred == 0)))
    tp = int(np.sum((y == 1) & (pred == 1)))
    return {
        "n_events": int(y.size),
        "n_class1": int(y.sum()),
        "accuracy": float(np.mean(pred == y)),
        "loss": loss,
        "roc_auc": None if math.isnan(auc) else auc,
        "threshold": float(threshold),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def best_cut_accuracy(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The highest accuracy of the rule ``score >= cut``, and that cut.

    Returns
    -------
    accuracy, cut : float
    """
    y = np.asarray(labels).astype(bool)
    fpr, tpr, thr = roc_curve(y, scores)
    p, n = int(y.sum()), int((~y).sum())
    correct = tpr * p + (1.0 - fpr) * n
    i = int(np.argmax(correct))
    return float(correct[i] / max(len(y), 1)), float(thr[i])


def multiclass_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, cross-entropy and confusion matrix of class probabilities.

    Parameters
    ----------
    y_true : ndarray int, shape (n,)
        True classes ``0 .. k - 1``.
    probs : ndarray, shape (n, k)
        Predicted probability of each class (rows sum to 1, a softmax output).

    Returns
    -------
    dict
        ``n_events``, ``n_per_class`` (k), ``accuracy`` (the most probable class, ties to
        the lowest), ``loss`` (mean ``-ln p[true class]``, probabilities clipped to
        [1e-7, 1 - 1e-7] as Keras' sparse categorical cross-entropy) and
        ``confusion_matrix`` k x k (rows: true class, columns: predicted class).

    Raises
    ------
    ValueError
        Shapes that do not match, no events, or a class outside ``0 .. k - 1``.
    """
    y = np.asarray(y_true).ravel()
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"probabilities of shape {p.shape} for {y.size} labels")
    if y.size == 0:
        raise ValueError("no events to evaluate")
    k = p.shape[1]
    if not np.isin(y, np.arange(k)).all():
        raise ValueError(f"classes must be integers in [0, {k})")
    y = y.astype(np.int64)
    pred = np.argmax(p, axis=1)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (y, pred), 1)
    p_true = np.clip(p[np.arange(y.size), y], EPS, 1.0 - EPS)
    return {
        "n_events": int(y.size),
        "n_per_class": np.bincount(y, minlength=k).tolist(),
        "accuracy": float(np.mean(pred == y)),
        "loss": float(-np.mean(np.log(p_true))),
        "confusion_matrix": conf.tolist(),
    }


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The errors of a predicted number.

    Parameters
    ----------
    y_true, predicted : ndarray, shape (n,)

    Returns
    -------
    dict
        ``n_events``; ``loss``, the mean squared error (Keras' ``mean_squared_error``);
        ``mae`` = mean |predicted - true|; ``rmse`` = sqrt(mean squared error);
        ``mean_error`` = mean(predicted - true) (the bias); ``r2`` = 1 - sum of squared
        errors / sum of squared deviations of the truth from its mean (the coefficient of
        determination; None when every true value is the same).

    Raises
    ------
    ValueError
        Lengths that differ, or no events.
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    f = np.asarray(predicted, dtype=np.float64).ravel()
    if y.shape != f.shape:
        raise ValueError(f"labels and predictions differ in length: {y.size} != {f.size}")
    if y.size == 0:
        raise ValueError("no events to evaluate")
    err = f - y
    mse = float(np.mean(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "n_events": int(y.size),
        "loss": mse,
        "mae": float(np.mean(np.abs(err))),
        "rmse": math.sqrt(mse),
        "mean_error": float(np.mean(err)),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else None,
    }


def label_metrics(kind: str, y_true: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """The metrics of ``kind`` labels: :func:`binary_metrics` (``"binary"``),
    :func:`multiclass_metrics` (``"multiclass"``, scores (n, k)) or
    :func:`regression_metrics` (``"regression"``), with ``label_kind``.

    Raises
    ------
    ValueError
        An unknown kind, or what the chosen function raises.
    """
    funcs = {
        "binary": binary_metrics,
        "multiclass": multiclass_metrics,
        "regression": regression_metrics,
    }
    if kind not in funcs:
        raise ValueError(f"unknown label kind {kind!r}")
    return {"label_kind": kind, **funcs[kind](y_true, scores)}
