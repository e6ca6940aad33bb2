"""Event pictures: the stored image, optionally with the true trajectories and the layers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["draw_event", "event_figure"]


def _draw_layers(ax, layers: Sequence[dict]) -> None:
    from matplotlib.patches import Circle

    for layer in layers:
        if layer.get("kind", "cylinder") == "cylinder":
            ax.add_patch(
                Circle((0.0, 0.0), layer["radius_mm"], fill=False, lw=0.4, color="0.75", zorder=1)
            )
        else:
            c = np.asarray(layer["center_mm"], dtype=float)
            n = np.asarray(layer["normal"], dtype=float)
            n = n / np.linalg.norm(n)
            u = np.cross([0.0, 0.0, 1.0], n)
            if np.linalg.norm(u) < 1e-12:  # normal along z: the plane fills the view
                continue
            u /= np.linalg.norm(u)
            w = layer["half_width_mm"]
            ends = np.array([c - w * u, c + w * u])
            ax.plot(ends[:, 0], ends[:, 1], lw=0.6, color="0.75", zorder=1)


def draw_event(
    ax,
    image: np.ndarray,
    window_mm: Sequence[float],
    *,
    truth=None,
    layers: Sequence[dict] | None = None,
    title: str | None = None,
    colorbar: bool = False,
    max_pixels: int = 256,
    norm=None,
):
    """Draw one event on a matplotlib Axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    image : ndarray uint8 (H, W)
        The stored image; hits are drawn dark on white, as on the lecture's slide 13.
    window_mm : (x_min, x_max, y_min, y_max)
        The image window [mm].
    truth : EventBatch, optional
        The event's truth (one event); each particle's true trajectory (vertex, then its
        true hits) is drawn coloured by momentum, the high-momentum track highlighted.
    layers : sequence of dict, optional
        Layer tables of the resolved configuration; drawn in light grey.
    title : str, optional
    colorbar : bool
        Add a momentum colour bar (with ``truth``).
    norm : matplotlib.colors.Normalize, optional
        Momentum colour scale (default: logarithmic over this event's particles).
    max_pixels : int
        The image is max-pooled to at most this many pixels across before it is drawn, so
        that every single-pixel hit stays visible in a small picture.

    Returns
    -------
    matplotlib.collections.LineCollection or None
        The trajectories, for a colour bar.
    """
    from matplotlib.collections import LineCollection

    x0, x1, y0, y1 = window_mm
    image = np.asarray(image)
    pooled, f = _max_pool(image, max_pixels)
    shown = np.ma.masked_equal(pooled, 0)
    # A pooled pixel covers f x f stored pixels; when f does not divide the image, the last
    # pooled row and column reach past the window (zero padding), and the extent says so,
    # so that every hit is drawn over its own stored pixel. The axes limits clip the rest.
    h, w = image.shape
    ph, pw = pooled.shape
    ax.imshow(
        shown,
        extent=(x0, x0 + (x1 - x0) * (pw * f) / w, y1 - (y1 - y0) * (ph * f) / h, y1),
        origin="upper",
        cmap="gray_r",
        vmin=0,
        vmax=max(1, int(np.max(image)) if np.size(image) else 1),
        interpolation="nearest",
        zorder=5,  # the measured hits above the true trajectories
    )
    if layers:
        _draw_layers(ax, layers)
    lines = None
    if truth is not None and len(truth.particles):
        p = truth.particles
        pmag = np.sqrt(p.px**2 + p.py**2 + p.pz**2)
        h = truth.hits
        rows = h.particle >= 0
        order = np.argsort(h.particle[rows], kind="stable")
        part = h.particle[rows][order]
        xy = np.column_stack([h.true_x[rows][order], h.true_y[rows][order]])
        pieces = np.split(xy, np.searchsorted(part, np.arange(1, len(p))))
        segs = [
            np.vstack([[vx, vy], piece]) for vx, vy, piece in zip(p.vx, p.vy, pieces, strict=True)
        ]
        if norm is None:
            norm = _momentum_norm(pmag)
        high = p.is_high == 1
        if np.any(high):
            ax.add_collection(
                LineCollection(
                    [s for s, hi in zip(segs, high, strict=True) if hi],
                    colors="red",
                    linewidths=3.0,
                    alpha=0.35,
                    zorder=3,
                )
            )
        lines = LineCollection(segs, cmap="viridis", norm=norm, linewidths=0.9, zorder=4)
        lines.set_array(pmag)
        ax.add_collection(lines)
        if colorbar:
            ax.figure.colorbar(lines, ax=ax, label="p [GeV/c]", shrink=0.8)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("x [mm]")
    ax.set_ylabel("y [mm]")
    if title:
        ax.set_title(title, fontsize=9)
    return lines


def _momentum_norm(pmag: np.ndarray):
    """A logarithmic colour scale over the finite momenta [GeV/c] (a damaged file's NaN or
    inf values are left out; such tracks are drawn in the colour map's 'bad' colour)."""
    import matplotlib.colors as mcolors

    p = pmag[np.isfinite(pmag)]
    lo, hi = (float(p.min()), float(p.max())) if p.size else (1.0, 1.0)
    return mcolors.LogNorm(vmin=max(lo, 1e-3) * 0.9, vmax=max(hi, 1e-3) * 1.1)


def _max_pool(image: np.ndarray, max_pixels: int) -> tuple[np.ndarray, int]:
    """Max-pool a 2-D image by the smallest integer factor ``f`` that fits ``max_pixels``.

    Returns the pooled image, ``(ceil(H / f), ceil(W / f))`` (the image is padded with zeros
    at the bottom and right to whole blocks: stored pixel ``(r, c)`` shows in pooled pixel
    ``(r // f, c // f)``), and ``f``.
    """
    h, w = image.shape
    f = max(1, math.ceil(max(h, w) / max_pixels))
    if f == 1:
        return image, 1
    ph, pw = -h % f, -w % f
    padded = np.pad(image, ((0, ph), (0, pw)))
    return padded.reshape((h + ph) // f, f, (w + pw) // f, f).max(axis=(1, 3)), f


def event_figure(events, indices: Sequence[int], *, truth: bool = False):
    """A figure of one or more events of an open event file, side by side.

    Parameters
    ----------
    events : EventFile
        From :func:`spectrocnn.dataset.open_events`.
    indices : sequence of int
        Events to draw; more than one gives a grid of up to 4 columns (slide 13).
    truth : bool
        Overlay true trajectories and layers.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.ticker as mticker
    from matplotlib.figure import Figure

    n = len(indices)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    size = 5.0 if n == 1 else 3.2
    fig = Figure(
        figsize=(size * ncols + (1.2 if truth else 0), size * nrows), dpi=120, layout="constrained"
    )
    layers = events.config.get("detector", {}).get("layers") if truth else None
    truths = [events.truth(i, i + 1) for i in indices] if truth else [None] * n
    norm = None
    if truth:
        p = np.concatenate(
            [np.sqrt(t.particles.px**2 + t.particles.py**2 + t.particles.pz**2) for t in truths]
        )
        if p.size:
            norm = _momentum_norm(p)
    lines = None
    for k, (i, batch) in enumerate(zip(indices, truths, strict=True)):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        image = events.read_images(i, i + 1)[0]
        label = int(events.read_labels(i, i + 1)[0])
        drawn = draw_event(
            ax,
            image,
            events.window_mm,
            truth=batch,
            layers=layers,
            title=f"event {i}  label {label}",
            max_pixels=256 if n == 1 else 160,
            norm=norm,
        )
        lines = drawn if drawn is not None else lines
        if n > 1:
            ax.tick_params(labelsize=6)
            ax.xaxis.label.set_size(7)
            ax.yaxis.label.set_size(7)
    if lines is not None:
        cbar = fig.colorbar(lines, ax=fig.axes, label="p [GeV/c]", shrink=0.8 if n == 1 else 0.6)
        # 0.1, 0.2, 0.5, 1, 2, 5 ... as plain numbers, the minor ticks unlabelled
        cbar.ax.yaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        cbar.ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        cbar.ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    return fig
