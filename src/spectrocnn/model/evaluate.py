# size of evaluate: its checks run in the one order that keeps a failure cheap: arguments
# and files before TensorFlow, the model's input before the images are read, the
# warnings after all have passed; the outputs are written last, as one set.
"""Evaluating a saved model on an event file: the library behind ``eval-cnn``.

The preprocessing must be the one the model was trained with: the input size and the
downsampling method are read from the ``config.json`` of the run directory that holds the
model, if there is one; otherwise the input size is the model's input shape and the
downsampling is max-pooling (the default of ``train-cnn``), with a warning saying so.
``downsample`` (``eval-cnn --downsample``) states the method; one that contradicts the
run's config.json is used with a warning. ``input_size`` (``--input-size``) must match
the model's input (it is needed only for a model that accepts any size).

A file whose downsampled images exceed the memory budget (``cache_mb``, ``eval-cnn
--cache-mb``; default half of the available memory, as ``train-cnn``'s) is scored block by
block as it is read, in file order (:func:`~spectrocnn.model.streamdata.predict_streamed`),
so that files larger than the memory can be evaluated.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectrocnn._atomic import atomic_outputs, write_json
from spectrocnn._modelfile import check_model_file
from spectrocnn.errors import ConfigError, ModelFileError
from spectrocnn.labels import require_kind
from spectrocnn.metrics import label_metrics
from spectrocnn.model.architectures import barrel_radius_mm, check_model_projection
from spectrocnn.model.callbacks import progress_bar
from spectrocnn.model.data import (
    check_downsample,
    check_preprocessing,
    load_images,
    open_event_file,
)
from spectrocnn.model.modelio import load_model, predict
from spectrocnn.model.rundir import run_preprocessing
from spectrocnn.model.streamdata import predict_streamed, read_downsampled
from spectrocnn.model.streaming import (
    check_cache_mb,
    default_cache_mb,
    plan_streaming,
    streamed_set,
)
from spectrocnn.model.task import check_model_labels

# run_preprocessing: its home is model/rundir.py (shared with model/explain.py), named here
# as before.
__all__ = ["EvalResult", "default_eval_dir", "evaluate", "run_preprocessing"]

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """What :func:`evaluate` did.

    Attributes
    ----------
    out_dir : Path
        Where metrics.json and the plots (roc.png and scores.png for binary labels,
        predicted.png for a regression target) were written.
    metrics : dict
        The content of metrics.json.
    labels : ndarray (n,), optional
        The file's labels (:attr:`~spectrocnn.dataset.EventFile.labels`).
    scores : ndarray float64 (n,) or (n, k), optional
        The network's output for every event of the file, in file order (for ROC curves
        of several methods on one plot, :func:`spectrocnn.model.plots.plot_roc`); one
        probability per class for multiclass labels.
    """

    out_dir: Path
    metrics: dict[str, Any]
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None


def default_eval_dir(model_path: str | os.PathLike, event_path: str | os.PathLike) -> Path:
    """``<model directory>/eval_<event file stem>``."""
    return Path(model_path).resolve().parent / f"eval_{Path(event_path).stem}"


def evaluate(
    model_path: str | os.PathLike,
    event_path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    progress: bool = False,
    input_size: int | None = None,
    downsample: str | None = None,
    explain: int = 0,
    cache_mb: float | None = None,
) -> EvalResult:
    """Score every event of a file with a saved model; write metrics.json and the plots.

    The metrics and plots follow the file's labels (:attr:`EventFile.label_spec
    <spectrocnn.dataset.EventFile.label_spec>`): binary as the lecture (accuracy, loss,
    ROC AUC, confusion matrix; roc.png, scores.png); multiclass (accuracy, loss,
    confusion matrix; no plot); regression (MAE, RMSE, ...; predicted.png), from
    :func:`spectrocnn.metrics.label_metrics`.

    The preprocessing: ``downsample`` if given, else the run's (config.json beside the
    model), else max-pooling, with a warning that says so. A ``downsample`` other than
    the run's is used, with a warning (the model was trained on other images). The input
    size is the model's; ``input_size``, if given, must match it (it is needed only for a
    model that accepts any size).

    Parameters
    ----------
    model_path : path-like
        A model saved by Keras (``.keras``, or legacy ``.h5``).
    event_path : path-like
        An event file.
    out_dir : path-like, optional
        Output directory (created if needed), default :func:`default_eval_dir`. Its
        files of an earlier evaluation (metrics.json, the plots of
        :data:`~spectrocnn.model.plots.SCORE_PLOTS`, ``explain/``) are replaced by this
        one's as one set: those it does not write again are removed, other files kept
        (:func:`spectrocnn._atomic.atomic_outputs`).
    threads : int, optional
        TensorFlow intra-op threads (default: the available cores).
    progress : bool
        Progress bar on stderr while reading.
    input_size : int, optional
        The model's input size [pixels] (``--input-size``).
    downsample : {"max", "mean", "nearest"}, optional
        How the images are downsampled to the input size (``--downsample``).
    explain : int
        Also draw the network's attribution (gradient saliency, Simonyan et al. 2014) on
        up to ``explain`` events of each kind (most confident label 1, most confident
        label 0, misclassified) into ``out_dir/explain/`` with ``explain.json``
        (:func:`spectrocnn.model.explain.write_explanations`); 0: none.
    cache_mb : float, optional
        Memory budget of the downsampled images [MB]; a file that exceeds it is scored as
        it is read (module docstring). Default: half of the available memory.

    Returns
    -------
    EvalResult

    Raises
    ------
    ConfigError
        Missing model or event file; images that cannot be pooled to the model's input;
        an ``input_size`` the model does not take; a model of other labels than the
        file's; ``explain`` without binary labels.
    EventFileError
        An unreadable event file.
    ModelFileError
        A file that is not a Keras model, or that Keras cannot load.
    """
    t0 = time.perf_counter()
    if isinstance(explain, bool) or not isinstance(explain, int | np.integer) or explain < 0:
        raise ConfigError(f"explain must be a non-negative integer, got {explain!r}")
    input_size, downsample = check_preprocessing(
        input_size, downsample, size_flag="--input-size", method_flag="--downsample"
    )
    cache_mb = default_cache_mb() if cache_mb is None else check_cache_mb(cache_mb)
    model_path = Path(model_path)
    if not model_path.exists():
        raise ConfigError(f"model file {str(model_path)!r} does not exist")
    out = Path(out_dir) if out_dir is not None else default_eval_dir(model_path, event_path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    run_size, run_method = run_preprocessing(model_path)
    config_path = model_path.resolve().parent / "config.json"
    method = downsample or run_method
    with open_event_file(event_path) as ev:
        if ev.n_events == 0:
            raise ConfigError(f"event file {ev.path} holds no events")
        spec = ev.label_spec
        if explain:  # high- and low-score events of two classes
            require_kind(spec, ("binary",), "--explain", ev.path)
        size0 = input_size or run_size
        if size0 is not None and method is not None:  # before loading TensorFlow
            check_downsample(
                ev.image_shape, size0, method, source=ev.path,
                size_flag="--input-size" if input_size else None,
                method_flag="--downsample" if downsample else None,
            )  # fmt: skip

        check_model_file(model_path)  # before TensorFlow: a wrong file fails fast
        # warnings wait until the images are read: a failing command prints one line
        notes: list[tuple[Any, ...]] = []
        if downsample is not None and run_method is not None and downsample != run_method:
            notes.append((
                "--downsample %s differs from the run's %s (%s): the model was trained on "
                "%s-downsampled images",
                downsample, run_method, config_path, run_method,
            ))  # fmt: skip
        from spectrocnn.model._tf import configure_threads, tensorflow

        tf = tensorflow()
        configure_threads(threads)
        from spectrocnn.model.device import describe_devices, device_summary

        device = describe_devices(tf)
        device["summary"] = device_summary(device)
        log.info("evaluating on %s", device["summary"])
        model = load_model(model_path)  # each layer keeps the dtype policy it was saved with
        check_model_labels(model, spec, model_path, ev.path)
        shape = tuple(model.input_shape)
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
            raise ModelFileError(
                f"{model_path}: expected a model of (size, size, 1) image input, got {shape}"
            )
        model_size = shape[1]
        if model_size is None:  # the model takes any size
            size = input_size or run_size
            if size is None:
                raise ConfigError(
                    f"{model_path} accepts images of any size: give the input size with "
                    "--input-size"
                )
        else:
            size = int(model_size)
            if input_size is not None and input_size != size:
                raise ConfigError(
                    f"--input-size {input_size} does not match {model_path}, which takes "
                    f"{size}x{size} images"
                )
            if run_size is not None and run_size != size:
                notes.append(("%s says input size %d, the model takes %d", config_path,
                              run_size, size))  # fmt: skip
        notes += _geometry_notes(model, model_path, ev)
        if method is None:
            method = "max"
            notes.append((
                "no run configuration (config.json) beside %s: assuming max downsampling "
                "of the %dx%d images to the model's %dx%d input; state it with --downsample",
                model_path, *ev.image_shape, size, size,
            ))  # fmt: skip
        try:
            check_downsample(
                ev.image_shape, size, method, source=ev.path,
                size_flag="--input-size" if input_size else None,
                method_flag="--downsample" if downsample else None,
            )  # fmt: skip
        except ConfigError as exc:
            if input_size is not None:
                raise
            raise ConfigError(f"{model_path} takes {size}x{size} images: {exc}") from None
        stream = plan_streaming(cache_mb, size, ev.n_events)
        if stream is None:
            with progress_bar(progress, ev.n_events, f"reading {Path(ev.path).name}") as bar:
                data = load_images(ev, size, method, progress=bar.update)
        else:
            log.info("%s: %s", ev.path, stream.describe())
            data = streamed_set(ev, size, method)
    for note in notes:
        log.warning(*note)
    t_pred = time.perf_counter()
    scores = _scores(model, data, stream, progress)
    t_pred = time.perf_counter() - t_pred

    from spectrocnn.model.explain import FILES as EXPLAIN_FILES
    from spectrocnn.model.plots import SCORE_PLOTS, plot_results

    owned = ("metrics.json", *SCORE_PLOTS, *(f"explain/{name}" for name in EXPLAIN_FILES))
    with atomic_outputs(out, owned, last=("metrics.json",)) as tmp:  # no stale plots kept
        metrics = {
            **label_metrics(spec.kind, data.labels, scores),
            "sample": "file",
            "model": str(model_path.resolve()),
            "event_file": data.info,
            "input_size": size,
            "downsample": method,
            "predict_time_s": t_pred,
            "cache_mb": cache_mb,
            "streamed": stream is not None,
            "images_per_second": data.n / t_pred if t_pred > 0 else None,
            "wall_time_s": time.perf_counter() - t0,
            "device": device,
        }
        plot_results(tmp, spec.kind, [(Path(data.path).stem, data.labels, scores)])
        if explain:
            _explain(model, data, scores, explain, tmp / "explain")
        write_json(tmp / "metrics.json", metrics)
    return EvalResult(out, metrics, data.labels, scores)


def _geometry_notes(model: Any, model_path: Path, ev: Any) -> list[tuple[Any, ...]]:
    """Warnings (log arguments) when the event file's geometry is not the one the
    geometry-aware layers (:class:`~spectrocnn.model.layers.PolarPool`) were built for:
    another image window, or hits beyond the radius the polar image reaches. A polar
    network on images of another plane than x-y is refused (ConfigError)."""
    check_model_projection(model, ev.projection, model_path, ev.path)
    r_hits = barrel_radius_mm(ev.config)
    notes: list[tuple[Any, ...]] = []
    for layer in model.layers:
        window = getattr(layer, "window_mm", None)
        if window is not None and not np.allclose(window, ev.window_mm):
            notes.append((
                "%s was trained on images of window %s mm, %s has window %s mm",
                model_path.name, list(window), Path(ev.path).name, list(ev.window_mm),
            ))  # fmt: skip
        r_max = getattr(layer, "r_max_mm", None)
        if r_max is not None and r_hits is not None and r_hits > r_max:
            notes.append((
                "%s sees out to r = %g mm, %s has hits out to r = %.0f mm: the model does "
                "not see those beyond (train on such events to cover them)",
                model_path.name, r_max, Path(ev.path).name, r_hits,
            ))  # fmt: skip
    return notes


def _scores(model: Any, data: Any, stream: Any, progress: bool) -> np.ndarray:
    """The scores of every event of ``data``: from memory, or streamed from its file."""
    order = np.arange(data.n)
    if stream is None:
        return predict(model, data.images, data.labels, order, data.scale)
    with progress_bar(progress, data.n, f"scoring {Path(data.path).name}") as bar:
        return predict_streamed(
            model, data, order, stream, progress=bar.update if progress else None
        )


def _explain(model: Any, data: Any, scores: np.ndarray, k: int, out: Path) -> None:
    """The pictures of ``evaluate(explain=k)`` from the images already in memory."""
    from spectrocnn.model.explain import explain_inputs, pick_events, write_explanations

    kinds = pick_events(data.labels, scores, k)
    idx = np.unique(np.concatenate(list(kinds.values())))
    values = data.images[idx] if len(data.images) else read_downsampled(data, idx)
    x = np.minimum(values.astype(np.float32) * np.float32(data.scale), 1.0)
    info = data.info
    expl = explain_inputs(
        model, x, idx, data.labels[idx], scores[idx], info["image_shape"], info["window_mm"]
    )
    write_explanations(expl, kinds, out, event_path=data.path)
