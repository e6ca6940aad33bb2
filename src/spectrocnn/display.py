"""Event pictures: the stored image, optionally with the true trajectories and the layers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "draw_event",
    "event_figure",
    "hit_count_norm",
    "layer_outlines",
    "momentum_ticks",
    "trajectories",
]


def _draw_layers(ax, layers: Sequence[dict], projection: str) -> None:
    """Each layer in light grey as the image's projection shows it (:func:`layer_outlines`);
    each artist's gid is ``"layer I"``, I the layer's index."""
    from matplotlib.patches import Circle

    for i, layer in enumerate(layers):
        style = {"color": "0.75", "zorder": Z_LAYERS, "gid": f"layer {i}"}
        if layer.get("kind", "cylinder") == "cylinder" and projection == "xy":
            ax.add_patch(Circle((0.0, 0.0), layer["radius_mm"], fill=False, lw=0.4, **style))
            continue
        for line in layer_outlines(layer, projection):
            ax.plot(line[:, 0], line[:, 1], lw=0.6, **style)


def layer_outlines(layer: dict, projection: str) -> list[np.ndarray]:
    """A layer of the resolved configuration as lines in an image's projection.

    Every layer is finite (a cylinder has its half length, a plane its half width and
    height), so it is drawn in every projection:

    - a cylinder about z of radius r and half length L: in ``"xy"`` the circle of radius r
      (drawn as a circle patch; here 361 points on it); in ``"xz"`` and ``"yz"`` the
      pair of lines ``u = -r`` and ``u = +r`` for ``-L <= z <= L``;
    - a plane: the outline of its rectangle (its four corners ``c +- w u +- h v``,
      :class:`~spectrocnn.simulate.geometry.PlaneLayer`) projected, a parallelogram; a
      rectangle seen edge on (its normal in the picture's plane) projects to a segment,
      drawn as that segment. So a plane normal to z is the line ``z = z0`` of its
      extent in ``"xz"`` and ``"yz"`` and its rectangle in ``"xy"``; a plane normal to x
      the line ``x = x0`` in ``"xy"`` and ``"xz"`` and its rectangle in ``"yz"``.

    Parameters
    ----------
    layer : dict
        A ``[[detector.layers]]`` table (``kind`` "cylinder" with ``radius_mm`` and
        ``half_length_mm``, or "plane" with ``center_mm``, ``normal``, ``half_width_mm``,
        ``half_height_mm``).
    projection : {"xy", "xz", "yz"}

    Returns
    -------
    list of ndarray float64 (k, 2)
        Polylines of ``(u, v)`` points [mm] in the projection's coordinates
        (:func:`spectrocnn.dataset.raster.project`).
    """
    from spectrocnn.dataset.raster import check_projection, project
    from spectrocnn.simulate.geometry import PlaneLayer

    check_projection(projection)
    if layer.get("kind", "cylinder") == "cylinder":
        r, half = float(layer["radius_mm"]), float(layer["half_length_mm"])
        if projection == "xy":
            t = np.linspace(0.0, 2.0 * math.pi, 361)
            return [np.column_stack([r * np.cos(t), r * np.sin(t)])]
        return [np.array([[s * r, -half], [s * r, half]]) for s in (-1.0, 1.0)]
    keys = ("center_mm", "normal", "half_width_mm", "half_height_mm")
    plane = PlaneLayer(**{k: layer[k] for k in keys if k in layer})
    c, u, v = (np.asarray(a, dtype=float) for a in (plane.center_mm, plane.u, plane.v))
    w, h = plane.half_width_mm, plane.half_height_mm
    corners = np.array([c - w * u - h * v, c + w * u - h * v, c + w * u + h * v, c - w * u + h * v])
    pu, pv = project(projection, corners[:, 0], corners[:, 1], corners[:, 2])
    pts = np.column_stack([pu, pv])
    a, b = pts[1] - pts[0], pts[3] - pts[0]  # the projected sides, 2w u and 2h v
    if abs(a[0] * b[1] - a[1] * b[0]) <= 1e-9 * (4.0 * w * h):  # seen edge on: a segment
        d = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=2)
        i, j = np.unravel_index(np.argmax(d), d.shape)
        return [pts[[i, j]]]
    return [np.vstack([pts, pts[:1]])]


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
    hit_norm=None,
    projection: str = "xy",
):
    """Draw one event on a matplotlib Axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    image : ndarray uint8 (H, W)
        The stored image; hits are drawn dark on white, as on the lecture's slide 13.
    window_mm : (u_min, u_max, v_min, v_max)
        The image window [mm] in the coordinates of ``projection``.
    truth : EventBatch, optional
        The event's truth (one event); each particle's true trajectory (vertex, then its
        true hits, projected as the image) is drawn coloured by momentum, the
        high-momentum track highlighted.
    layers : sequence of dict, optional
        Layer tables of the resolved configuration; drawn in light grey as the projection
        shows them (:func:`layer_outlines`).
    title : str, optional
    colorbar : bool
        Add a momentum colour bar (with ``truth``).
    norm : matplotlib.colors.Normalize, optional
        Momentum colour scale (default: logarithmic over this event's particles).
    max_pixels : int
        The image is max-pooled to at most this many pixels across before it is drawn, so
        that every single-pixel hit stays visible in a small picture.
    hit_norm : matplotlib.colors.Normalize, optional
        Grey scale of the hit counts per pixel (default :func:`hit_count_norm` of this
        image); pass one norm to every panel of a figure so that their grey levels compare.
    projection : {"xy", "xz", "yz"}
        The plane the image shows (:data:`~spectrocnn.dataset.raster.PROJECTIONS`): its
        first axis is horizontal, its second vertical (the event file's ``projection``).

    Returns
    -------
    matplotlib.collections.LineCollection or None
        The trajectories, for a colour bar.

    Notes
    -----
    Drawing order (z-order), bottom to top: the layers (1), the hits (2, lighter when
    the truth is drawn), the halo of the high-momentum track (3, wide and translucent),
    the true trajectories coloured by momentum (4; the high-momentum one a little wider).
    The trajectories lie above the hits so that their colours show along the whole track.
    """
    from spectrocnn.dataset.raster import PROJECTIONS, check_projection

    check_projection(projection)
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
        cmap=hit_cmap(),
        norm=hit_norm if hit_norm is not None else hit_count_norm([image]),
        interpolation="nearest",
        alpha=0.55 if truth is not None else None,  # the trajectories show through
        zorder=Z_HITS,  # beneath the true trajectories
    )
    if layers:
        _draw_layers(ax, layers, projection)
    lines = None
    if truth is not None and len(truth.particles):
        lines = _draw_trajectories(ax, truth, projection, norm, colorbar)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{PROJECTIONS[projection][0]} [mm]")
    ax.set_ylabel(f"{PROJECTIONS[projection][1]} [mm]")
    if title:
        ax.set_title(title, fontsize=9)
    return lines


def _draw_trajectories(ax, truth, projection: str, norm, colorbar: bool):
    """The true trajectories of ``truth`` on ``ax`` (see :func:`draw_event`): coloured by
    momentum on ``norm`` (None: :func:`_momentum_norm` of the event's particles), the
    high-momentum track over a halo; with ``colorbar``, a momentum colour bar. Returns the
    trajectories' LineCollection."""
    from matplotlib.collections import LineCollection

    p = truth.particles
    pmag = np.sqrt(p.px**2 + p.py**2 + p.pz**2)
    segs = trajectories(truth, projection)
    if norm is None:
        norm = _momentum_norm(pmag)
    high = p.is_high == 1
    if np.any(high):  # a wide translucent halo beneath the track's own colour
        ax.add_collection(
            LineCollection(
                [s for s, hi in zip(segs, high, strict=True) if hi],
                colors=HIGH_HALO_COLOR,
                linewidths=HIGH_HALO_WIDTH,
                alpha=0.45,
                capstyle="round",
                zorder=Z_HALO,
                label="high-momentum track",
            )
        )
    lines = LineCollection(
        segs,
        cmap="viridis",
        norm=norm,
        linewidths=np.where(high, 1.6, 0.9),
        zorder=Z_TRACKS,
        label="true trajectories",
    )
    lines.set_array(pmag)
    ax.add_collection(lines)
    if colorbar:
        cbar = ax.figure.colorbar(lines, ax=ax, label="p [GeV/c]", shrink=0.8)
        momentum_ticks(cbar)
    return lines


def trajectories(truth, projection: str = "xy") -> list[np.ndarray]:
    """Each particle's true trajectory in an image's projection: its vertex, then its true
    hits in stored order.

    Parameters
    ----------
    truth : EventBatch
        One event's truth.
    projection : {"xy", "xz", "yz"}
        :func:`spectrocnn.dataset.raster.project`.

    Returns
    -------
    list of ndarray float64 (1 + hits of the particle, 2)
        ``(u, v)`` points [mm], one array per particle row.
    """
    from spectrocnn.dataset.raster import project

    p, h = truth.particles, truth.hits
    rows = h.particle >= 0
    order = np.argsort(h.particle[rows], kind="stable")
    part = h.particle[rows][order]
    tu, tv = project(projection, h.true_x[rows], h.true_y[rows], h.true_z[rows])
    uv = np.column_stack([tu[order], tv[order]])
    pieces = np.split(uv, np.searchsorted(part, np.arange(1, len(p))))
    vu, vv = project(projection, p.vx, p.vy, p.vz)
    return [np.vstack([[a, b], piece]) for a, b, piece in zip(vu, vv, pieces, strict=True)]


#: z-orders of an event picture (see :func:`draw_event`)
Z_LAYERS, Z_HITS, Z_HALO, Z_TRACKS = 1, 2, 3, 4
#: The halo under the high-momentum track: colour and line width [points].
HIGH_HALO_COLOR, HIGH_HALO_WIDTH = "red", 5.0


def hit_cmap():
    """Grey levels of the hit counts: 1 hit is a clearly visible mid grey, the most black.

    Returns
    -------
    matplotlib.colors.ListedColormap
        ``gray_r`` from 45 % to 100 % (empty pixels are masked and stay white).
    """
    import matplotlib as mpl
    from matplotlib.colors import ListedColormap

    return ListedColormap(mpl.colormaps["gray_r"](np.linspace(0.45, 1.0, 256)), name="hits")


def hit_count_norm(images: Sequence[np.ndarray]):
    """One grey scale for the hit counts of several images (DESIGN 3.3: hits per pixel).

    Parameters
    ----------
    images : sequence of ndarray uint8 (H, W)
        Stored images.

    Returns
    -------
    matplotlib.colors.Normalize
        From 1 hit to the largest count of all the images (at least 2): one grey level per
        count (a :class:`~matplotlib.colors.BoundaryNorm` with bins ``n - 1/2 .. n + 1/2``)
        up to 16 hits per pixel, a linear scale beyond.
    """
    import matplotlib.colors as mcolors

    top = max(2, max((int(np.max(im)) for im in images if np.size(im)), default=1))
    if top <= 16:
        return mcolors.BoundaryNorm(np.arange(0.5, top + 1.0), ncolors=256)
    return mcolors.Normalize(vmin=1, vmax=top)


def momentum_ticks(cbar, min_labels: int = 3) -> None:
    """Label a logarithmic momentum colour bar with at least ``min_labels`` plain numbers.

    The ticks are 1, 2, 5 times powers of ten (0.1, 0.2, 0.5, 1, 2, 5 ...); when fewer
    than ``min_labels`` of them fall in the bar's range (a narrow range, as the
    0.1-0.15 GeV/c of a label-0 lecture event) the ticks are evenly spaced round numbers
    instead (``matplotlib.ticker.MaxNLocator``). Minor ticks carry no labels.

    Parameters
    ----------
    cbar : matplotlib.colorbar.Colorbar
        A colour bar of a :class:`~matplotlib.colors.LogNorm`.
    min_labels : int
        Fewest labelled ticks.
    """
    import matplotlib.ticker as mticker

    lo, hi = float(cbar.norm.vmin), float(cbar.norm.vmax)
    ticks = mticker.LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lo, hi)
    ticks = ticks[(ticks >= lo) & (ticks <= hi)]
    if len(ticks) < min_labels:
        ticks = np.array([])
        for nbins in range(min_labels, 4 * min_labels):
            t = mticker.MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
            t = t[(t >= lo) & (t <= hi)]
            if len(t) >= min_labels:
                ticks = t
                break
    axis = cbar.ax.yaxis if cbar.orientation == "vertical" else cbar.ax.xaxis
    axis.set_major_locator(mticker.FixedLocator(ticks))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:.6g}"))
    axis.set_minor_formatter(mticker.NullFormatter())


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

    Every panel uses one grey scale of hit counts per pixel (:func:`hit_count_norm` over
    all the panels), and a grid of several events has its colour bar ("hits per pixel"),
    so that the panels compare. With ``truth`` every panel uses one momentum scale too,
    with its colour bar (at least three labelled ticks, :func:`momentum_ticks`).

    Parameters
    ----------
    events : EventFile
        From :func:`spectrocnn.dataset.open_events`.
    indices : sequence of int
        Events to draw; more than one gives a grid of up to 4 columns (slide 13).
    truth : bool
        Overlay true trajectories and layers (both in the file's projection).

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
    extra = (1.2 if truth else 0) + (1.0 if n > 1 else 0)
    fig = Figure(figsize=(size * ncols + extra, size * nrows), dpi=120, layout="constrained")
    layers = events.config.get("detector", {}).get("layers") if truth else None
    truths = [events.truth(i, i + 1) for i in indices] if truth else [None] * n
    images = [events.read_images(i, i + 1)[0] for i in indices]
    hit_norm = hit_count_norm(images)
    norm = None
    if truth:
        p = np.concatenate(
            [np.sqrt(t.particles.px**2 + t.particles.py**2 + t.particles.pz**2) for t in truths]
        )
        if p.size:
            norm = _momentum_norm(p)
    lines = None
    for k, (i, batch, image) in enumerate(zip(indices, truths, images, strict=True)):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        label = events.label_spec.label_text(events.read_labels(i, i + 1)[0])
        drawn = draw_event(
            ax,
            image,
            events.window_mm,
            truth=batch,
            layers=layers,
            title=f"event {i}  label {label}",
            max_pixels=256 if n == 1 else 160,
            norm=norm,
            hit_norm=hit_norm,
            projection=events.projection,
        )
        lines = drawn if drawn is not None else lines
        if n > 1:
            ax.tick_params(labelsize=6)
            ax.xaxis.label.set_size(7)
            ax.yaxis.label.set_size(7)
    panels = list(fig.axes)
    if lines is not None:
        cbar = fig.colorbar(lines, ax=panels, label="p [GeV/c]", shrink=0.8 if n == 1 else 0.6)
        momentum_ticks(cbar)
    if n > 1:  # one grey scale for every panel, and its legend
        cbar = fig.colorbar(
            panels[0].images[0], ax=panels, label="hits per pixel", shrink=0.6, extend="neither"
        )
        cbar.ax.yaxis.set_major_locator(mticker.MaxNLocator(integer=True, min_n_ticks=2))
    return fig
