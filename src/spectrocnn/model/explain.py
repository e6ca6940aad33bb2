# size: one file for one mechanism: the gradient saliency, the check against the true track
# and the pictures that draw both.
"""Which pixels the network looks at: gradient saliency maps, pictures, and a check on truth.

Method: gradient saliency (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional
Networks: Visualising Image Classification Models and Saliency Maps", arXiv:1312.6034,
section 3). The attribution of input pixel ``(i, j)`` is ``|d z / d x_ij|``, the
magnitude of the derivative of the network's *logit* ``z`` (the score before the final
sigmoid, as Simonyan et al. use the unnormalised class score) with respect to the model
input ``x`` at that pixel: how much the answer changes when that pixel changes. The
logit, not the probability, is differentiated so that confident events (score near 0 or
1, where the sigmoid is flat) keep a gradient.

Resolutions. The attribution is computed at the model's input resolution ``s x s``
(the image after downsampling, :mod:`spectrocnn.model.data`). It is mapped back to the
stored ``H x W`` image by giving every stored pixel the attribution of the input pixel it
falls into, ``(r * s // H, c * s // W)``: for ``max`` and ``mean`` downsampling exactly
the ``f x f`` block that made the input pixel, for ``nearest`` the block around the
sampled pixel.

Does the network look at the right track? :func:`track_focus` takes, for each event, the
1 % of its hit pixels (pixels of the model input that hold a hit) with the largest
attribution, "the 1 % most important hits", and the share of them that lie within 3
pixels (at the input resolution) of a hit of the high-momentum track (the measured hits
of the particle with ``is_high == 1``, placed with the pixel convention of DESIGN 3.3 at
the input resolution). Ranking all pixels instead (hit or empty) is possible too, but the
top 1 % of a 256 x 256 input (656 pixels) is twice the area within 3 pixels of a 16-hit
track, so that share cannot pass 1/2. The benchmark ``benchmarks/explain.py`` reports both
for the lecture and the polar networks.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectrocnn.dataset.raster import project
from spectrocnn.errors import ConfigError
from spectrocnn.labels import require_kind

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from spectrocnn.simulate.events import EventBatch

__all__ = [
    "FILES",
    "KINDS",
    "METHOD",
    "Explanation",
    "explain_events",
    "explain_inputs",
    "explanation_figure",
    "pick_events",
    "saliency",
    "to_stored",
    "track_focus",
    "track_pixels",
    "write_explanations",
]

log = logging.getLogger(__name__)

#: What the attribution is, for files and pictures.
METHOD = {
    "name": "gradient saliency |d logit / d input|",
    "reference": "Simonyan, Vedaldi & Zisserman 2014, arXiv:1312.6034, sec. 3",
}

#: The kinds of events :func:`write_explanations` draws, in order: file-name prefix ->
#: description.
KINDS = {
    "confident1": "most confident label-1 events (correct)",
    "confident0": "most confident label-0 events (correct)",
    "misclassified": "misclassified events, the most wrong first",
}

#: The files :func:`write_explanations` owns in its directory (glob patterns): it removes
#: those of an earlier call that it does not write again.
FILES = ("explain.json", *(f"{kind}_*_event*.png" for kind in KINDS))

_BATCH = 32


def _logit_model(model: keras.Model):
    """A callable ``x -> logit`` (float32, shape (batch,)) of a model ending in a sigmoid.

    For a last ``Dense(1, activation="sigmoid")`` layer (both architectures of
    :mod:`spectrocnn.model.architectures`) the logit is that layer's affine part applied
    to its input; for any other model the logit ``log(p / (1 - p))`` of the output ``p``
    is used (it loses resolution where ``p`` rounds to 0 or 1 in float32).
    """
    import keras
    import tensorflow as tf

    last = model.layers[-1]
    act = getattr(last, "activation", None)
    if type(last).__name__ == "Dense" and getattr(act, "__name__", "") == "sigmoid":
        features = keras.Model(model.inputs, last.input)

        def logit(x):
            h = tf.cast(features(x, training=False), tf.float32)
            w = tf.cast(last.kernel, tf.float32)
            b = tf.cast(last.bias, tf.float32) if last.use_bias else 0.0
            return tf.reshape(tf.matmul(h, w) + b, (-1,))

        return logit

    def logit_of_output(x):
        p = tf.clip_by_value(tf.cast(model(x, training=False), tf.float32), 1e-7, 1 - 1e-7)
        return tf.reshape(tf.math.log(p) - tf.math.log1p(-p), (-1,))

    return logit_of_output


def saliency(model: keras.Model, inputs: np.ndarray, *, batch_size: int = _BATCH) -> np.ndarray:
    """Gradient saliency maps (Simonyan et al. 2014) of model inputs.

    Parameters
    ----------
    model : keras.Model
        A model with input ``(s, s, 1)`` and a sigmoid output ``(batch, 1)``.
    inputs : ndarray float32, shape (n, s, s) or (n, s, s, 1)
        Model inputs (pixel occupancy in [0, 1], :func:`spectrocnn.model.data.input_scale`).
    batch_size : int
        Events per gradient evaluation.

    Returns
    -------
    ndarray float32, shape (n, s, s)
        ``|d logit / d x|`` at each input pixel [1 / unit of input].

    Raises
    ------
    ConfigError
        Inputs whose shape does not match the model's input.
    """
    import tensorflow as tf

    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    want = tuple(model.input_shape[1:])
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise ConfigError(f"saliency: inputs of shape {x.shape[1:]} for a model taking {want}")
    logit = _logit_model(model)
    out = np.empty(x.shape[:3], np.float32)
    for a in range(0, len(x), batch_size):
        xb = tf.constant(x[a : a + batch_size])
        with tf.GradientTape() as tape:
            tape.watch(xb)
            z = tf.reduce_sum(logit(xb))  # events are independent: d sum / dx_e = dz_e / dx_e
        g = tape.gradient(z, xb)
        out[a : a + batch_size] = np.abs(g.numpy()[..., 0])
    return out


def to_stored(attribution: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Map attributions from the input resolution ``s x s`` to the stored ``H x W`` image.

    Stored pixel ``(r, c)`` takes the value of input pixel ``(r * s // H, c * s // W)``
    (see the module docstring).

    Parameters
    ----------
    attribution : ndarray, shape (n, s, s) or (s, s)
    image_shape : (int, int)
        ``(H, W)`` of the stored images, each at least ``s``.

    Returns
    -------
    ndarray, shape (n, H, W) or (H, W), the dtype of ``attribution``
    """
    a = np.asarray(attribution)
    h, w = (int(v) for v in image_shape)
    s_r, s_c = a.shape[-2:]
    rows = np.arange(h) * s_r // h
    cols = np.arange(w) * s_c // w
    return a[..., rows[:, None], cols[None, :]]


def track_pixels(
    x_mm: np.ndarray, y_mm: np.ndarray, window_mm: Sequence[float], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(row, col)`` of points at ``size x size`` resolution (DESIGN 3.3 convention).

    ``col = floor((x - x_min) / (x_max - x_min) * size)``,
    ``row = floor((y_max - y) / (y_max - y_min) * size)``; points outside the window or
    not finite are left out. ``x, y`` are the image's coordinates ``(u, v)``: another
    projection than ``"xy"`` passes its own (:func:`spectrocnn.dataset.raster.project`).

    Parameters
    ----------
    x_mm, y_mm : ndarray float64 (m,)
        Positions [mm] in the image's projection.
    window_mm : (x_min, x_max, y_min, y_max)
    size : int

    Returns
    -------
    rows, cols : ndarray int64
    """
    x0, x1, y0, y1 = (float(v) for v in window_mm)
    x, y = np.asarray(x_mm, float), np.asarray(y_mm, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x >= x0) & (x < x1) & (y > y0) & (y <= y1)
    col = np.floor((x[ok] - x0) / (x1 - x0) * size).astype(np.int64)
    row = np.floor((y1 - y[ok]) / (y1 - y0) * size).astype(np.int64)
    return np.clip(row, 0, size - 1), np.clip(col, 0, size - 1)


def track_focus(
    attribution: np.ndarray,
    truth: EventBatch,
    window_mm: Sequence[float],
    *,
    inputs: np.ndarray | None = None,
    top_fraction: float = 0.01,
    radius_px: float = 3.0,
    projection: str = "xy",
) -> np.ndarray:
    """Share of each event's top attribution pixels near the high-momentum track's hits.

    Parameters
    ----------
    attribution : ndarray, shape (n, s, s)
        At the model's input resolution (:func:`saliency`).
    truth : EventBatch
        The same ``n`` events in the same order, numbered from 0 (``EventFile.truth`` of a
        range, or :func:`~spectrocnn.simulate.events.concatenate_batches` of single events).
    window_mm : (x_min, x_max, y_min, y_max)
        The image window [mm].
    inputs : ndarray, shape (n, s, s), optional
        The model inputs. When given, the candidates are the pixels that hold a hit
        (input > 0) and the top pixels are the ``ceil(top_fraction * m)`` of the ``m`` hit
        pixels with the largest attribution: "the 1 % most important hits". Without it,
        every pixel is a candidate (``ceil(top_fraction * s * s)`` top pixels; at
        ``s = 256`` that is 656 pixels, about twice the ~310 pixels within 3 pixels of a
        16-hit track, so that the share cannot exceed about 1/2).
    top_fraction : float
        Share of the candidate pixels taken as the top ones (pixels of zero attribution
        never count).
    radius_px : float
        "Near" is a Euclidean distance of at most ``radius_px`` input pixels from a pixel
        holding a measured hit of the high-momentum track.
    projection : {"xy", "xz", "yz"}
        The plane the images show (the event file's ``projection``): the hits are
        projected as the images were (:func:`spectrocnn.dataset.raster.project`).

    Returns
    -------
    ndarray float64, shape (n,)
        The share in [0, 1]; NaN for events without a high-momentum track with hits in the
        window, or without non-zero attribution.
    """
    from scipy.ndimage import distance_transform_edt

    a = np.asarray(attribution)
    n, s = a.shape[0], a.shape[-1]
    if len(truth.labels) != n:
        raise ConfigError(f"track_focus: {n} attribution maps for {len(truth.labels)} events")
    if inputs is not None and np.shape(inputs)[:3] != a.shape:
        raise ConfigError(f"track_focus: inputs {np.shape(inputs)} for attributions {a.shape}")
    p, h = truth.particles, truth.hits
    out = np.full(n, np.nan)
    for row_p in np.flatnonzero(p.is_high == 1):
        e = int(p.event[row_p])
        sel = h.particle == row_p
        r, c = track_pixels(*project(projection, h.x[sel], h.y[sel], h.z[sel]), window_mm, s)
        if len(r) == 0:
            continue
        mask = np.ones((s, s), bool)
        mask[r, c] = False
        near = (distance_transform_edt(mask) <= radius_px).ravel()
        flat = a[e].ravel()
        cand = np.flatnonzero(np.asarray(inputs[e]).ravel() > 0) if inputs is not None else None
        if cand is None:
            cand = np.arange(flat.size)
        cand = cand[flat[cand] > 0]
        if len(cand) == 0:
            continue
        k = min(len(cand), max(1, math.ceil(top_fraction * (len(cand) if inputs is not None
                                                            else flat.size))))  # fmt: skip
        top = cand[np.argpartition(flat[cand], -k)[-k:]]
        out[e] = float(np.mean(near[top]))
    return out


@dataclass
class Explanation:
    """Attributions of some events of an event file (:func:`explain_events`).

    Attributes
    ----------
    indices : ndarray int64 (n,)
        Events of the file.
    labels : ndarray uint8 (n,)
    scores : ndarray float64 (n,)
        The network's output.
    inputs : ndarray float32 (n, s, s)
        The model inputs.
    attribution : ndarray float32 (n, s, s)
        :func:`saliency` at the model's input resolution.
    image_shape : (int, int)
        ``(H, W)`` of the stored images.
    window_mm : (float, float, float, float)
    method : dict
        :data:`METHOD`.
    """

    indices: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    inputs: np.ndarray
    attribution: np.ndarray
    image_shape: tuple[int, int]
    window_mm: tuple[float, float, float, float]
    method: dict[str, str] = field(default_factory=lambda: dict(METHOD))

    @property
    def stored(self) -> np.ndarray:
        """ndarray float32 (n, H, W): the attribution mapped back to the stored image
        (:func:`to_stored`; computed on each access, 1 MiB per 512 x 512 event)."""
        return to_stored(self.attribution, self.image_shape)


def _model_inputs(images: np.ndarray, scale: float) -> np.ndarray:
    """``min(v * scale, 1)`` float32, as the input pipeline (:func:`make_dataset`)."""
    return np.minimum(np.asarray(images, np.float32) * np.float32(scale), 1.0)


def explain_events(
    model: keras.Model | str | os.PathLike,
    event_path: str | os.PathLike,
    indices: Sequence[int],
    *,
    downsample: str | None = None,
    threads: int | None = None,
) -> Explanation:
    """Attribution maps of events of a file, at the model's input and the stored resolution.

    Parameters
    ----------
    model : keras.Model or path-like
        A model, or a saved one (its run's ``config.json`` gives the downsampling, as in
        :func:`spectrocnn.model.evaluate.evaluate`).
    event_path : path-like
        An event file.
    indices : sequence of int
        Events to explain.
    downsample : {"max", "mean", "nearest"}, optional
        How the images were downsampled for the model (default: the run's, else ``max``).
    threads : int, optional
        TensorFlow intra-op threads.

    Returns
    -------
    Explanation
        ``attribution`` has shape ``(n, s, s)`` (the model's input), ``stored`` shape
        ``(n, H, W)`` (the stored image).

    Raises
    ------
    ConfigError
        A missing file, an index out of range, images that cannot be pooled to the input,
        a polar network on images of another plane than x-y.
    EventFileError, ModelFileError
        An unreadable event or model file.
    """
    from spectrocnn.model._tf import configure_threads
    from spectrocnn.model.architectures import check_model_projection
    from spectrocnn.model.data import check_downsample, input_scale, open_event_file
    from spectrocnn.model.data import downsample as pool

    method, name = downsample, "the model"
    if not hasattr(model, "input_shape"):
        from spectrocnn.model.modelio import load_model
        from spectrocnn.model.rundir import run_preprocessing

        path = name = Path(model)
        if not path.exists():
            raise ConfigError(f"model file {str(path)!r} does not exist")
        method = method or run_preprocessing(path)[1]
        configure_threads(threads)
        model = load_model(path)
    method = method or "max"
    size = int(model.input_shape[1])
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    with open_event_file(event_path) as ev:
        require_kind(ev.label_spec, ("binary",), "the attribution of a class-1 score", ev.path)
        check_model_projection(model, ev.projection, name, ev.path)
        if idx.size and (idx.min() < 0 or idx.max() >= ev.n_events):
            raise ConfigError(
                f"event index {int(idx.max() if idx.max() >= ev.n_events else idx.min())} "
                f"out of range: {ev.path} holds {ev.n_events} events"
            )
        factor = check_downsample(ev.image_shape, size, method)
        full = np.stack([ev.read_images(i, i + 1)[0] for i in idx]) if idx.size else None
        labels = np.asarray(ev.labels, np.uint8)[idx]
        shape, window = tuple(ev.image_shape), tuple(float(v) for v in ev.window_mm)
    if full is None:
        empty = np.zeros((0, size, size), np.float32)
        return Explanation(idx, labels, np.zeros(0), empty, empty, shape, window)
    x = _model_inputs(pool(full, size, method), input_scale(method, factor))
    scores = np.asarray(model.predict(x[..., None], verbose=0), np.float64).reshape(-1)
    return explain_inputs(model, x, idx, labels, scores, shape, window)


def explain_inputs(
    model: keras.Model,
    inputs: np.ndarray,
    indices: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    image_shape: Sequence[int],
    window_mm: Sequence[float],
) -> Explanation:
    """An :class:`Explanation` of model inputs already in memory (as ``eval-cnn`` has them).

    Parameters
    ----------
    model : keras.Model
    inputs : ndarray float32 (n, s, s)
        Model inputs of the events ``indices``.
    indices : ndarray int (n,)
    labels : ndarray uint8 (n,)
    scores : ndarray float64 (n,)
    image_shape : (int, int)
        ``(H, W)`` of the stored images.
    window_mm : (x_min, x_max, y_min, y_max)

    Returns
    -------
    Explanation
    """
    attr = saliency(model, inputs)
    return Explanation(
        np.asarray(indices, np.int64),
        np.asarray(labels, np.uint8),
        np.asarray(scores, np.float64),
        np.asarray(inputs, np.float32),
        attr,
        (int(image_shape[0]), int(image_shape[1])),
        tuple(float(v) for v in window_mm),
    )


def pick_events(labels: np.ndarray, scores: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """The events of each kind of :data:`KINDS`, at most ``k`` of each.

    ``confident1``: label 1 with score >= 0.5, highest scores first; ``confident0``:
    label 0 with score < 0.5, lowest first; ``misclassified``: the others, largest
    ``|score - label|`` first. Ties keep the file order.

    Returns
    -------
    dict
        kind -> ndarray int64 of event indices.
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, float)
    pred = (scores >= 0.5).astype(int)
    idx = np.arange(len(labels))
    ok1 = idx[(labels == 1) & (pred == 1)]
    ok0 = idx[(labels == 0) & (pred == 0)]
    bad = idx[labels != pred]
    return {
        "confident1": ok1[np.argsort(-scores[ok1], kind="stable")][:k],
        "confident0": ok0[np.argsort(scores[ok0], kind="stable")][:k],
        "misclassified": bad[np.argsort(-np.abs(scores[bad] - labels[bad]), kind="stable")][:k],
    }


def _attribution_cmap():
    """Transparent at zero attribution, opaque orange-red at the largest."""
    import matplotlib as mpl
    from matplotlib.colors import ListedColormap

    colors = mpl.colormaps["autumn_r"](np.linspace(0.15, 1.0, 256))
    colors[:, 3] = np.linspace(0.0, 0.9, 256) ** 0.6
    return ListedColormap(colors, name="attribution")


def explanation_figure(
    image: np.ndarray,
    attribution: np.ndarray,
    window_mm: Sequence[float],
    *,
    truth: EventBatch | None = None,
    layers: Sequence[dict] | None = None,
    title: str | None = None,
    top_fraction: float = 0.01,
    inputs: np.ndarray | None = None,
    projection: str = "xy",
):
    """One event with the network's attribution on top, the true tracks and the high one.

    Drawing order: hits (grey), the attribution (orange-red, transparent where zero,
    scaled to the event's largest value; the top ``top_fraction`` pixels outlined), the
    halo of the high-momentum track, the true trajectories coloured by momentum
    (:func:`spectrocnn.display.draw_event`).

    Parameters
    ----------
    image : ndarray uint8 (H, W)
        The stored image.
    attribution : ndarray (s, s)
        At the model's input resolution (drawn over the same window).
    window_mm : (x_min, x_max, y_min, y_max)
    truth : EventBatch, optional
        The event's truth (one event).
    layers : sequence of dict, optional
        The layers of the resolved configuration.
    title : str, optional
    top_fraction : float
        Share of the hit pixels marked as the most important ones (:func:`track_focus`).
    inputs : ndarray (s, s), optional
        The model input; with it, the top ``top_fraction`` of its hit pixels by attribution
        are marked by black rings.
    projection : {"xy", "xz", "yz"}
        The plane the image shows (:func:`spectrocnn.display.draw_event`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.colors as mcolors
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from spectrocnn.display import Z_HALO, Z_HITS, Z_TRACKS, draw_event, momentum_ticks

    fig = Figure(figsize=(6.6, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lines = draw_event(
        ax, image, window_mm, truth=truth, layers=layers, title=title, projection=projection
    )
    a = np.asarray(attribution, float)
    top = float(a.max()) if a.size else 0.0
    x0, x1, y0, y1 = window_mm
    shown = ax.imshow(
        np.ma.masked_less_equal(a, 0.0),
        extent=(x0, x1, y0, y1),
        origin="upper",
        cmap=_attribution_cmap(),
        norm=mcolors.PowerNorm(0.5, vmin=0.0, vmax=top if top > 0 else 1.0),
        interpolation="nearest",
        zorder=(Z_HITS + Z_HALO) / 2,
    )
    if inputs is not None and top > 0:  # the most important hits
        lit = np.flatnonzero((np.asarray(inputs).ravel() > 0) & (a.ravel() > 0))
        if len(lit):
            k = min(len(lit), max(1, math.ceil(top_fraction * len(lit))))
            best = lit[np.argpartition(a.ravel()[lit], -k)[-k:]]
            s_r, s_c = a.shape
            rows, cols = np.divmod(best, s_c)
            ax.scatter(
                x0 + (cols + 0.5) / s_c * (x1 - x0),
                y1 - (rows + 0.5) / s_r * (y1 - y0),
                s=40, facecolors="none", edgecolors="black", linewidths=0.8,
                zorder=Z_TRACKS + 1, label=f"top {top_fraction:.0%} of the hit pixels",
            )  # fmt: skip
            ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    cbar = fig.colorbar(shown, ax=ax, shrink=0.8, pad=0.01)
    cbar.set_label("|d logit / d pixel| (saliency)")
    if lines is not None:
        cb = fig.colorbar(lines, ax=ax, shrink=0.8, pad=0.01, label="p [GeV/c]")
        momentum_ticks(cb)
    return fig


def write_explanations(
    explanation: Explanation,
    kinds: dict[str, np.ndarray],
    out_dir: str | os.PathLike,
    *,
    event_path: str | os.PathLike,
) -> list[dict[str, Any]]:
    """Write one picture per explained event and ``explain.json`` into ``out_dir``.

    Files: ``<kind>_<rank>_event<I>.png`` (kind from :data:`KINDS`, rank from 1) and
    ``explain.json`` (the method, its reference, and per picture: file, kind, event,
    label, score, ``on_track_share`` of :func:`track_focus` for label-1 events).

    Parameters
    ----------
    explanation : Explanation
        Covers every event of ``kinds``.
    kinds : dict
        kind -> event indices (:func:`pick_events`).
    out_dir : path-like
        Created if needed. The pictures and explain.json are written as one set
        (:func:`spectrocnn._atomic.atomic_outputs`): those of an earlier call that this one
        does not write again (:data:`FILES`) are removed, other files are kept.
    event_path : path-like
        The event file (truth and layers for the pictures).

    Returns
    -------
    list of dict
        The entries of ``explain.json``.
    """
    from spectrocnn._atomic import atomic_outputs

    with atomic_outputs(out_dir, FILES, last=("explain.json",)) as tmp:
        entries = _write_pictures(explanation, kinds, tmp, event_path)
    log.info("wrote %d explanation pictures to %s", len(entries), out_dir)
    return entries


def _write_pictures(
    explanation: Explanation, kinds: dict[str, np.ndarray], out: Path, event_path: Any
) -> list[dict[str, Any]]:
    """The files of :func:`write_explanations` in the directory ``out``; their entries."""
    from spectrocnn._atomic import write_json, write_with
    from spectrocnn.model.data import open_event_file

    where = {int(e): j for j, e in enumerate(explanation.indices)}
    entries: list[dict[str, Any]] = []
    with open_event_file(event_path) as ev:
        layers = ev.config.get("detector", {}).get("layers")
        for kind, events in kinds.items():
            for rank, i in enumerate(np.asarray(events, dtype=np.int64), start=1):
                j = where[int(i)]
                truth = ev.truth(int(i), int(i) + 1)
                label, score = int(explanation.labels[j]), float(explanation.scores[j])
                share = float("nan")
                if label == 1 and len(truth.particles):
                    share = float(
                        track_focus(
                            explanation.attribution[j : j + 1],
                            truth,
                            ev.window_mm,
                            inputs=explanation.inputs[j : j + 1],
                            projection=ev.projection,
                        )[0]
                    )
                name = f"{kind}_{rank}_event{int(i)}.png"
                fig = explanation_figure(
                    ev.read_images(int(i), int(i) + 1)[0],
                    explanation.attribution[j],
                    ev.window_mm,
                    truth=truth if len(truth.particles) else None,
                    layers=layers,
                    title=f"event {int(i)}  label {label}  score {score:.3f}  ({kind})",
                    inputs=explanation.inputs[j],
                    projection=ev.projection,
                )
                write_with(out / name, lambda tmp, fig=fig: fig.savefig(tmp, format="png"))
                entries.append(
                    {
                        "file": name,
                        "kind": kind,
                        "event": int(i),
                        "label": label,
                        "score": score,
                        "on_track_share": None if math.isnan(share) else share,
                    }
                )
    write_json(
        out / "explain.json",
        {
            "method": explanation.method,
            "input_size": int(explanation.attribution.shape[-1]),
            "on_track_share_means": "share of the 1 % most salient hit pixels within 3 input "
            "pixels of a hit of the high-momentum track (label-1 events)",
            "kinds": KINDS,
            "pictures": entries,
        },
    )
    return entries
