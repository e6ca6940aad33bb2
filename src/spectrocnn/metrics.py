"""Binary-classification figures shared by the CNN and the classical baseline."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["best_cut_accuracy", "roc_auc", "roc_curve"]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic.

    Parameters
    ----------
    labels : ndarray (n,)
        True classes, 0 or 1.
    scores : ndarray (n,)
        Higher means more likely class 1.

    Returns
    -------
    fpr, tpr, thresholds : ndarray
        False and true positive rates for ``score >= threshold``, thresholds decreasing;
        the curve starts at (0, 0) with threshold +inf.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    p, n = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return (
        np.r_[0.0, fp / n],
        np.r_[0.0, tp / p],
        np.r_[np.inf, s[last]],
    )


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U statistic, ties counted half).

    Returns NaN when only one class is present.
    """
    y = np.asarray(labels).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


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
