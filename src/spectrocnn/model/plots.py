"""The lecture's result plots (slides 16-17): training curves, score histograms, ROC.

Figures are drawn with matplotlib's object interface and the Agg canvas (no pyplot, no
display needed) and written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from spectrocnn._atomic import write_with
from spectrocnn.metrics import roc_auc, roc_curve

__all__ = [
    "SCORE_PLOTS",
    "plot_curves",
    "plot_predicted",
    "plot_results",
    "plot_roc",
    "plot_scores",
]

#: Every file of the scores that :func:`plot_results` may write (the curves aside), for
#: any kind of labels: those of an earlier evaluation that one of other labels leaves out
#: are removed (:func:`spectrocnn.model.evaluate.evaluate`).
SCORE_PLOTS = ("roc.png", "scores.png", "predicted.png")

_HI, _LO = "#2ca02c", "#5fa8e8"  # the slides' green (Hi) and light blue (Lo)


def _figure(width: float = 6.4, height: float = 4.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> None:
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_curves(
    history: Mapping[str, Sequence[float]], metric: str, path: str | os.PathLike
) -> None:
    """Training and validation ``metric`` per epoch (slide 16; loss on a log scale).

    Parameters
    ----------
    history : mapping
        ``metric`` and ``val_<metric>`` lists, one value per epoch, and optionally
        ``epoch``, the epoch numbers (history.csv; default 1, 2, ...). Epochs are counted
        from 1, as on the console and in metrics.json.
    metric : {"accuracy", "loss", "mae"}
    path : path-like
        PNG file to write.
    """
    fig = _figure()
    ax = fig.add_subplot()
    name = metric.upper() if metric == "mae" else metric.capitalize()
    n = 0
    for key, label in ((metric, f"Train {name}"), (f"val_{metric}", f"Val {name}")):
        values = np.asarray(history.get(key, []), dtype=float)
        if values.size:
            n = max(n, values.size)
            epochs = np.asarray(history.get("epoch", []), dtype=float)
            if epochs.size != values.size or not np.all(np.isfinite(epochs)):
                epochs = np.arange(1, values.size + 1)
            ax.plot(epochs, values, label=label, marker="." if values.size < 3 else None)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if 0 < n < 3:  # a point or two: whole epochs around them, not a range of +-0.05
        lo, hi = ax.get_xlim()
        ax.set_xlim(math.floor(lo + 0.5) - 0.5, math.ceil(hi - 0.5) + 0.5)
    ax.set_xlabel("Epoch")
    ax.set_ylabel(name)
    if metric == "loss":
        ax.set_yscale("log")
    ax.legend()
    _save(fig, path)


def plot_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | os.PathLike) -> None:
    """ROC curves with their AUC in the legend (slide 17, right).

    Parameters
    ----------
    curves : sequence of (label, y_true, score)
        One curve per sample, e.g. ``("Validation", y, p)`` and ``("Train", y, p)``.
    path : path-like
    """
    fig = _figure(6.0, 6.0)
    ax = fig.add_subplot()
    for label, y, p in curves:
        fpr, tpr, _ = roc_curve(y, p)
        auc = roc_auc(y, p)
        if np.isnan(auc):
            continue
        ax.plot(fpr, tpr, label=f"{label} ROC (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="0.8", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("False Positive Rate")
    ax.set_ylabel("True Positive Rate")
    ax.set_title("ROC Curve")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    _save(fig, path)


def plot_scores(
    path: str | os.PathLike,
    points: tuple[str, np.ndarray, np.ndarray],
    steps: tuple[str, np.ndarray, np.ndarray] | None = None,
    bins: int = 20,
) -> None:
    """Histograms of the network output by true class (slide 17, left).

    Parameters
    ----------
    path : path-like
    points : (label, y_true, score)
        Drawn as points with Poisson error bars, e.g. the validation sample.
    steps : (label, y_true, score), optional
        Drawn as step histograms, e.g. the training sample; the ``points`` sample is then
        scaled to its number of events per class so that the shapes compare.
    bins : int
        Bins in [0, 1].
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig = _figure()
    ax = fig.add_subplot()
    plabel, py, pp = points
    py, pp = np.asarray(py).ravel(), np.asarray(pp, dtype=float).ravel()
    scaled = False
    for cls, name, colour in ((1, "Hi", _HI), (0, "Lo", _LO)):
        factor = 1.0
        if steps is not None:
            slabel, sy, sp = steps
            sy, sp = np.asarray(sy).ravel(), np.asarray(sp, dtype=float).ravel()
            counts, _ = np.histogram(sp[sy == cls], edges)
            ax.stairs(counts, edges, color=colour, lw=2, label=f"{slabel} {name}")
            n_points = np.sum(py == cls)
            if n_points:
                factor = np.sum(sy == cls) / n_points
                scaled = scaled or factor != 1.0
        counts, _ = np.histogram(pp[py == cls], edges)
        shown = counts > 0
        ax.errorbar(
            centres[shown],
            counts[shown] * factor,
            yerr=np.sqrt(counts[shown]) * factor,
            fmt="o",
            ms=4,
            color=colour if steps is None else ("#1b7a1b" if cls else "#2f5f8a"),
            label=f"{plabel} {name}",
        )
    ax.set_xlim(0, 1)
    ax.set_xlabel("Score")
    ax.set_ylabel(f"Events ({plabel.lower()} scaled to {steps[0].lower()})" if scaled else "Events")
    ax.set_title("NN Output")
    ax.legend()
    _save(fig, path)


def plot_predicted(path: str | os.PathLike, *samples: tuple[str, np.ndarray, np.ndarray]) -> None:
    """Predicted against true value of a regression target, one colour per sample, with
    the diagonal ``predicted = true``.

    Parameters
    ----------
    path : path-like
    samples : (label, y_true, predicted)
        E.g. ``("Validation", y, f)``; the first is drawn on top.
    """
    fig = _figure(6.0, 6.0)
    ax = fig.add_subplot()
    lo, hi = math.inf, -math.inf
    for k, (label, y, f) in reversed(list(enumerate(samples))):
        y, f = np.asarray(y, dtype=float).ravel(), np.asarray(f, dtype=float).ravel()
        if y.size:
            lo, hi = min(lo, y.min(), f.min()), max(hi, y.max(), f.max())
        ax.scatter(y, f, s=6, alpha=0.5, label=label, zorder=3 - k, color=(_HI, _LO)[k % 2])
    if lo < hi:
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls="--", label="predicted = true")
    ax.set_xlabel("True value")
    ax.set_ylabel("Predicted value")
    ax.set_title("Regression")
    handles, names = ax.get_legend_handles_labels()  # the samples in the order given
    order = [*range(len(samples) - 1, -1, -1), *range(len(samples), len(names))]
    ax.legend([handles[i] for i in order], [names[i] for i in order], loc="upper left")
    _save(fig, path)


def plot_results(
    out: str | os.PathLike,
    kind: str,
    samples: Sequence[tuple[str, np.ndarray, np.ndarray]],
    history: Mapping[str, Sequence[float]] | None = None,
) -> list[str]:
    """The plots that make sense for ``kind`` labels, into the directory ``out``.

    binary: ``roc.png`` and ``scores.png`` (slide 17); multiclass: none of the scores
    (``metrics.json`` has the confusion matrix); regression: ``predicted.png``
    (:func:`plot_predicted`). With ``history`` also the curves: ``loss.png`` and
    ``accuracy.png`` (classes) or ``mae.png`` (regression).

    Parameters
    ----------
    out : path-like
        An existing directory.
    kind : {"binary", "multiclass", "regression"}
    samples : sequence of (label, y_true, scores)
        The first is drawn as points (validation), a second as steps (training).
    history : mapping, optional
        history.csv's columns.

    Returns
    -------
    list of str
        The names of the files written.
    """
    from pathlib import Path

    out = Path(out)
    written = []
    if history is not None:
        for metric in ("mae" if kind == "regression" else "accuracy", "loss"):
            plot_curves(history, metric, out / f"{metric}.png")
            written.append(f"{metric}.png")
    if kind == "binary":
        plot_roc(list(samples), out / "roc.png")
        plot_scores(out / "scores.png", *samples[:2])
        written += ["roc.png", "scores.png"]
    elif kind == "regression":
        plot_predicted(out / "predicted.png", *samples)
        written.append("predicted.png")
    return written
