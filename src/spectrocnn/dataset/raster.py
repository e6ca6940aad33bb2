"""Rasterization of hits into detector images (docs/design.md 3.3 pixel convention).

Projection
----------
An image shows the hits projected on one coordinate plane, ``ImageSpec.projection``:
``"xy"`` (the default, the transverse plane of a barrel), ``"xz"`` or ``"yz"`` (the
bending plane of a dipole with its field along y or x, the side views of a forward
spectrometer). The projection names the picture's two axes ``(u, v)`` in order
(:data:`PROJECTIONS`): ``u`` is horizontal (columns, growing to the right), ``v`` vertical
(rows, growing upwards): ``(u, v) = (x, y)``, ``(x, z)`` or ``(y, z)``. The third
coordinate is dropped. ``window_mm`` is ``(u_min, u_max, v_min, v_max)``.

Pixel convention
----------------
An image of ``H x W`` pixels (``H = W = spec.size``) shows the u-v window
``[u_min, u_max] x [v_min, v_max]`` as a picture is viewed: row 0 is the top (largest v),
column 0 is the left (smallest u). A hit at ``(u, v)`` [mm] lands on::

    col = floor((u - u_min) / (u_max - u_min) * W)
    row = floor((v_max - v) / (v_max - v_min) * H)

and is drawn only when ``0 <= col < W`` and ``0 <= row < H``. So the window is half-open:
``u = u_min`` is column 0 but ``u = u_max`` is outside; ``v = v_max`` is row 0 but
``v = v_min`` is outside. Hits with a NaN or infinite coordinate are not drawn. In the
default ``xy`` projection ``u = x`` and ``v = y``; the functions below take the projected
coordinates (:func:`project`) and name them after that default, ``x_mm, y_mm``.

The formulas are evaluated exactly, as real numbers on the float values (not as rounded
floating-point arithmetic): a hit one ulp below ``u_max`` is in column ``W - 1``, one ulp
above ``v_min`` in row ``H - 1``, one ulp below ``u_min`` outside, and a hit a few ulp from
an inner pixel edge lands on the side of the edge where it really is (:func:`pixel_floor`).

Pixel values count the hits that light a pixel, capped at 255 (uint8).

With ``hit_radius_px = r > 0`` a hit lights its own pixel ``(row, col)`` and every pixel
``(row + dr, col + dc)`` with ``dr**2 + dc**2 <= r**2`` (a disk of pixel centres within
``r`` pixels of the hit's pixel centre; r = 1 is a plus of 5 pixels, r = 2 a disk of 13).
The parts of a disk that fall off the image are clipped; a hit whose own pixel is outside
the window is not drawn at all, even if its disk would reach into the image.

The radius may instead be given in millimetres, ``hit_radius_mm = R``, so that a hit keeps
its size on the detector whatever the image size: the radius in pixels is then
``r = floor(R / pitch)``, ``pitch = max(u_max - u_min, v_max - v_min) / size`` the larger
of the pixel's width and height [mm], so that every lit pixel's centre lies within R mm of
the centre of the hit's pixel. The ``lecture`` preset's R = 3.125 mm is its 2 pixels at
512 x 512 over 800 mm (the same images as ``hit_radius_px = 2``), 1 pixel at 256, one
pixel per hit (r = 0) at 128 and below, 4 pixels at 1024.

Everything here is vectorised over all the hits of many events at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from spectrocnn._validate import check_int, check_number
from spectrocnn.errors import ConfigError

__all__ = [
    "MAX_HIT_RADIUS_PX",
    "MAX_IMAGE_SIZE",
    "PROJECTIONS",
    "ImageSpec",
    "SparseImages",
    "check_projection",
    "disk_offsets",
    "pixel_floor",
    "pixel_indices",
    "project",
    "rasterize",
    "rasterize_sparse",
]


#: Largest image size [pixels]: one image is one HDF5 chunk (at most 4 GiB), and readers
#: decode whole images (16384 x 16384 is 256 MiB).
MAX_IMAGE_SIZE = 16384

#: Largest ``hit_radius_px`` (a disk of about 13 000 pixels per hit).
MAX_HIT_RADIUS_PX = 64

#: The projections an image may show: name -> the hit coordinates ``(u, v)`` along the
#: picture's horizontal axis (columns, to the right) and vertical axis (rows, upwards).
PROJECTIONS: dict[str, tuple[str, str]] = {"xy": ("x", "y"), "xz": ("x", "z"), "yz": ("y", "z")}


def check_projection(projection: object) -> str:
    """``projection`` if it is a name of :data:`PROJECTIONS`.

    Raises
    ------
    ConfigError
        Otherwise, naming the value and the known projections.
    """
    if not isinstance(projection, str) or projection not in PROJECTIONS:
        allowed = ", ".join(repr(p) for p in PROJECTIONS)
        raise ConfigError(f"projection must be one of {allowed}, got {projection!r}")
    return projection


def project(
    projection: str, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The coordinates ``(u, v)`` an image of ``projection`` shows (module docstring).

    Parameters
    ----------
    projection : {"xy", "xz", "yz"}
        :data:`PROJECTIONS`.
    x_mm, y_mm, z_mm : array_like float (n,)
        Positions [mm].

    Returns
    -------
    u, v : array_like float (n,)
        Two of the inputs, the very objects passed (no copy): ``(x, y)``, ``(x, z)`` or
        ``(y, z)``.

    Raises
    ------
    ConfigError
        An unknown projection (naming it and the known ones).
    """
    coords = {"x": x_mm, "y": y_mm, "z": z_mm}
    u, v = PROJECTIONS[check_projection(projection)]
    return coords[u], coords[v]


@dataclass(frozen=True)
class ImageSpec:
    """How events become images.

    Parameters
    ----------
    size : int
        Image height and width [pixels], in ``[1, MAX_IMAGE_SIZE]``.
    window_mm : (float, float, float, float)
        ``u_min, u_max, v_min, v_max`` of the window shown [mm], min < max, in the
        coordinates ``(u, v)`` of ``projection`` (``x_min, x_max, y_min, y_max`` for the
        default ``"xy"``).
    hit_radius_px : int
        0: a hit lights one pixel; r > 0: every pixel whose centre is within r pixels of the
        hit's pixel centre (a disk, see :func:`disk_offsets`); at most ``MAX_HIT_RADIUS_PX``.
        Derived from ``hit_radius_mm`` when that is given (the value passed is replaced).
    hit_radius_mm : float, optional
        The radius in millimetres on the detector, >= 0: ``hit_radius_px`` becomes
        ``floor(hit_radius_mm / pitch)``, ``pitch`` the larger of the pixel's width and
        height [mm] (module docstring), so that ``dataclasses.replace(spec, size=...)``
        keeps the hits' size in mm. None (default): ``hit_radius_px`` as given.
    projection : {"xy", "xz", "yz"}
        The coordinate plane shown (:data:`PROJECTIONS`): ``(u, v)`` = ``(x, y)``,
        ``(x, z)`` or ``(y, z)``, u horizontal (columns), v vertical (rows, upwards).

    Raises
    ------
    ConfigError
        For a size, window, radius or projection out of range (naming it and the value);
        for a ``hit_radius_mm`` of more than ``MAX_HIT_RADIUS_PX`` pixels at this size.
    """

    size: int = 512
    window_mm: tuple[float, float, float, float] = (-400.0, 400.0, -400.0, 400.0)
    hit_radius_px: int = 2
    hit_radius_mm: float | None = None
    projection: str = "xy"

    def __post_init__(self) -> None:
        check_projection(self.projection)
        s = check_int("size", self.size, minimum=1)
        object.__setattr__(self, "size", s)
        if s > MAX_IMAGE_SIZE:
            raise ConfigError(f"size must be at most {MAX_IMAGE_SIZE} pixels, got {s}")
        try:
            w = tuple(float(x) for x in self.window_mm)
        except (TypeError, ValueError):
            raise ConfigError(f"window_mm must be 4 numbers, got {self.window_mm!r}") from None
        if len(w) != 4 or not all(math.isfinite(x) for x in w):
            raise ConfigError(f"window_mm must be 4 finite numbers, got {self.window_mm!r}")
        if not (w[0] < w[1] and w[2] < w[3]):
            u, v = self.axes
            raise ConfigError(
                f"window_mm must be [{u}_min, {u}_max, {v}_min, {v}_max] with min < max, "
                f"got {list(w)}"
            )
        object.__setattr__(self, "window_mm", w)
        if self.hit_radius_mm is not None:
            object.__setattr__(self, "hit_radius_px", self._radius_from_mm())
        r = check_int("hit_radius_px", self.hit_radius_px, minimum=0, maximum=MAX_HIT_RADIUS_PX)
        object.__setattr__(self, "hit_radius_px", r)

    @property
    def axes(self) -> tuple[str, str]:
        """``(u, v)``: the hit coordinates along the columns and the rows, e.g. ``("x", "z")``."""
        return PROJECTIONS[self.projection]

    def project(
        self, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The coordinates ``(u, v)`` the images show, :func:`project` of this projection."""
        return project(self.projection, x_mm, y_mm, z_mm)

    @property
    def pitch_mm(self) -> float:
        """The larger of a pixel's width and height [mm]."""
        x0, x1, y0, y1 = self.window_mm
        return max(x1 - x0, y1 - y0) / self.size

    def _radius_from_mm(self) -> int:
        """``floor(hit_radius_mm / pitch_mm)``, checked (a ratio within 1e-9 of an integer
        counts as that integer, so that 0.3 mm on 0.1 mm pixels is 3 pixels)."""
        mm = check_number("hit_radius_mm", self.hit_radius_mm, minimum=0.0)
        object.__setattr__(self, "hit_radius_mm", mm)
        ratio = mm / self.pitch_mm
        r = math.floor(ratio * (1.0 + 1e-9))
        if r > MAX_HIT_RADIUS_PX:
            raise ConfigError(
                f"hit_radius_mm {mm:g} is {r} pixels of {self.pitch_mm:.4g} mm at size "
                f"{self.size}, more than {MAX_HIT_RADIUS_PX}; use a smaller hit_radius_mm "
                "or image size"
            )
        return r

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(H, W)`` [pixels]."""
        return (self.size, self.size)

    @property
    def n_pixels(self) -> int:
        """Pixels per image, ``H * W``."""
        return self.size * self.size


@dataclass(frozen=True)
class SparseImages:
    """A batch of images stored as their lit pixels only.

    Attributes
    ----------
    shape : (int, int, int)
        ``(n_events, H, W)`` of the dense batch.
    index : ndarray int64 (m,)
        Flat pixel index ``(event * H + row) * W + col`` of each lit pixel, strictly
        increasing.
    value : ndarray uint8 (m,)
        Pixel value (number of hits, capped at 255), >= 1.
    offsets : ndarray int64 (n_events + 1,)
        Lit pixels of event ``i`` are ``index[offsets[i]:offsets[i + 1]]``.
    """

    shape: tuple[int, int, int]
    index: np.ndarray
    value: np.ndarray
    offsets: np.ndarray

    @property
    def n_events(self) -> int:
        """Number of images."""
        return self.shape[0]

    def todense(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The dense images of events ``start:stop``.

        Returns
        -------
        ndarray uint8 (stop - start, H, W)
        """
        n, h, w = self.shape
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise ValueError(f"event range {start}:{stop} outside 0:{n}")
        out = np.zeros((stop - start, h, w), dtype=np.uint8)
        a, b = self.offsets[start], self.offsets[stop]
        out.reshape(-1)[self.index[a:b] - start * h * w] = self.value[a:b]
        return out


@lru_cache(maxsize=16)
def _disk(radius: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(-radius, radius + 1)
    dr, dc = np.meshgrid(r, r, indexing="ij")
    inside = dr**2 + dc**2 <= radius**2
    out = (dr[inside].astype(np.int64), dc[inside].astype(np.int64))
    for a in out:
        a.setflags(write=False)
    return out


def disk_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets of a hit drawn with radius ``radius``.

    Parameters
    ----------
    radius : int
        >= 0 [pixels].

    Returns
    -------
    drow, dcol : ndarray int64 (k,)
        Every ``(dr, dc)`` with ``dr**2 + dc**2 <= radius**2``, row-major order
        (k = 1, 5, 13, 29, ... for radius 0, 1, 2, 3, ...). Read-only.
    """
    return _disk(check_int("radius", radius, minimum=0, error=ValueError))


#: Largest distance [pixels] between the floating-point value of a pixel coordinate and the
#: real-number value of the formula: 4 roundings of relative size ``2**-53`` each on values
#: below ``MAX_IMAGE_SIZE + 2`` make less than ``1e-11`` pixel; this margin is 100 times that.
_EDGE_TOL_PX = 1e-9


def pixel_floor(
    a: np.ndarray | float, b: np.ndarray | float, lo: float, hi: float, n: int
) -> np.ndarray:
    """The exact ``floor((a - b) / (hi - lo) * n)`` of float inputs, as a float array.

    The formula is evaluated in floating point first; wherever the result lies within
    ``_EDGE_TOL_PX`` of an integer (a value a few ulp from a pixel edge, where rounding may
    have crossed the edge) or overflowed, it is evaluated again in exact rational arithmetic
    (:class:`fractions.Fraction` of the float values). The result is therefore the floor of
    the real-number formula for every finite input, edges included.

    Parameters
    ----------
    a, b : array_like float64 (broadcastable to one shape)
        Coordinates [mm], e.g. ``a = x``, ``b = x_min`` for columns or ``a = y_max``,
        ``b = y`` for rows.
    lo, hi : float
        The window's extent along the axis [mm], ``lo < hi``, finite.
    n : int
        Pixels along the axis.

    Returns
    -------
    ndarray float64
        The pixel coordinate (an integer value); NaN or +-inf where ``a`` or ``b`` is not
        finite.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        raw = (a - b) / (hi - lo) * n
        t = np.floor(raw)
        near = ~(np.abs(raw - np.rint(raw)) > _EDGE_TOL_PX)  # True for NaN / inf too
    if near.any():
        a_b, b_b, t_b, near_b = np.broadcast_arrays(a, b, t, near)
        idx = np.flatnonzero(near_b & np.isfinite(a_b) & np.isfinite(b_b))
        if idx.size:
            t = np.array(t_b, dtype=np.float64)  # writable, full shape
            flat, fa, fb = t.reshape(-1), a_b.reshape(-1), b_b.reshape(-1)
            width = Fraction(hi) - Fraction(lo)
            for i in idx.tolist():
                flat[i] = math.floor((Fraction(float(fa[i])) - Fraction(float(fb[i]))) * n / width)
    return t


def pixel_indices(
    x_mm: np.ndarray, y_mm: np.ndarray, spec: ImageSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel of each hit, by the module's pixel convention, exactly.

    Parameters
    ----------
    x_mm, y_mm : array_like float (n,)
        Hit coordinates ``(u, v)`` in the image's projection [mm] (:meth:`ImageSpec.project`;
        ``x, y`` for the default ``"xy"``).
    spec : ImageSpec

    Returns
    -------
    row, col : ndarray int64 (n,)
        Pixel row and column (meaningful where ``inside``; 0 elsewhere): the exact floor of
        the real-number formulas, also for hits a few ulp from a pixel or window edge
        (:func:`pixel_floor`).
    inside : ndarray bool (n,)
        True when the hit's pixel lies in the image, i.e. exactly when
        ``u_min <= u < u_max`` and ``v_min < v <= v_max``.
    """
    x = np.asarray(x_mm, dtype=np.float64)
    y = np.asarray(y_mm, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x_mm and y_mm must be 1-D of one length, got {x.shape} and {y.shape}")
    h = w = spec.size
    x0, x1, y0, y1 = spec.window_mm
    colf = pixel_floor(x, x0, x0, x1, w)
    rowf = pixel_floor(y1, y, y0, y1, h)
    with np.errstate(invalid="ignore"):
        inside = (colf >= 0) & (colf < w) & (rowf >= 0) & (rowf < h)  # False for NaN
    col = np.where(inside, colf, 0).astype(np.int64)
    row = np.where(inside, rowf, 0).astype(np.int64)
    return row, col, inside


def rasterize_sparse(
    x_mm: np.ndarray,
    y_mm: np.ndarray,
    event_index: np.ndarray,
    n_events: int,
    spec: ImageSpec,
) -> SparseImages:
    """Rasterize the hits of ``n_events`` events, keeping only the lit pixels.

    Parameters
    ----------
    x_mm, y_mm : array_like float (n,)
        Hit coordinates ``(u, v)`` in the image's projection [mm] (measured hits,
        :meth:`ImageSpec.project`; ``x, y`` for the default ``"xy"``; see the module
        docstring for the convention).
    event_index : array_like int (n,)
        Event of each hit, in ``[0, n_events)``; need not be sorted.
    n_events : int
        Number of images, >= 0.
    spec : ImageSpec

    Returns
    -------
    SparseImages
    """
    n_events = int(n_events)
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    ev = np.asarray(event_index, dtype=np.int64)
    row, col, inside = pixel_indices(x_mm, y_mm, spec)
    if ev.shape != row.shape:
        raise ValueError(f"event_index has shape {ev.shape}, expected {row.shape}")
    if ev.size and (ev.min() < 0 or ev.max() >= n_events):
        raise ValueError(f"event_index must lie in [0, {n_events}), got {ev.min()}..{ev.max()}")
    h = w = spec.size
    npix = h * w
    if not inside.all():
        row, col, ev = row[inside], col[inside], ev[inside]
    if ev.size > 1 and np.any(ev[1:] < ev[:-1]):
        order = np.argsort(ev, kind="stable")
        row, col, ev = row[order], col[order], ev[order]
    k = len(disk_offsets(spec.hit_radius_px)[0])
    # Light events in groups of at most STAMP_BUDGET stamped pixels, rasterized by sorting
    # their keys; an event with more stamped pixels than a quarter of its image, or than the
    # budget, is counted pixel by pixel instead (_dense_event: faster there, and bounded).
    first_hit = np.searchsorted(ev, np.arange(n_events + 1, dtype=np.int64))
    stamped = np.diff(first_hit) * k
    heavy = np.flatnonzero((stamped * 4 >= npix) | (stamped > STAMP_BUDGET))
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    e0 = 0
    while e0 < n_events:
        a = int(first_hit[e0])
        j = int(np.searchsorted(heavy, e0))
        nxt = int(heavy[j]) if j < heavy.size else n_events
        if nxt == e0:
            b = int(first_hit[e0 + 1])
            idx, val = _dense_event(row[a:b], col[a:b], spec)
            indices.append(idx + e0 * npix)
            values.append(val)
            e0 += 1
            continue
        e1 = int(np.searchsorted(first_hit, a + STAMP_BUDGET // k, side="right")) - 1
        e1 = min(max(e1, e0 + 1), nxt)
        b = int(first_hit[e1])
        idx, val = _sorted_counts(row[a:b], col[a:b], ev[a:b], spec)
        indices.append(idx)
        values.append(val)
        e0 = e1
    index = np.concatenate(indices) if indices else np.empty(0, np.int64)
    value = np.concatenate(values) if values else np.empty(0, np.uint8)
    offsets = np.searchsorted(index, np.arange(n_events + 1, dtype=np.int64) * npix)
    return SparseImages((n_events, h, w), index, value, offsets.astype(np.int64))


#: Largest number of (hit, disk pixel) pairs rasterized at once: the temporaries take about
#: 40 bytes each (80 MiB), whatever the number of hits, events and the disk radius.
STAMP_BUDGET = 1 << 21

#: Largest number of pixels accumulated at once in the dense path (int64 counts: 32 MiB).
_BAND_PIXELS = 1 << 22


def _stamp(row: np.ndarray, col: np.ndarray, spec: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """Disk pixels of each hit, clipped to the image: (row, col), int64."""
    h = w = spec.size
    if spec.hit_radius_px == 0:
        return row, col
    dr, dc = disk_offsets(spec.hit_radius_px)
    rr = (row[:, None] + dr[None, :]).ravel()
    cc = (col[:, None] + dc[None, :]).ravel()
    ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    return rr[ok], cc[ok]


def _sorted_counts(
    row: np.ndarray, col: np.ndarray, ev: np.ndarray, spec: ImageSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Lit pixels of a few events (hits times disk size <= STAMP_BUDGET): flat index
    (event * H + row) * W + col, strictly increasing, and capped count."""
    h = w = spec.size
    r = spec.hit_radius_px
    base = (ev * h + row) * w + col
    if r == 0:
        key = base.copy()
        key.sort()
    else:
        # A disk is a fixed pattern of flat offsets, except where it meets the border. The
        # keys of the inner hits go offset by offset: sorted runs, one per disk offset,
        # which the stable sort (a merge of runs) orders several times faster than a sort
        # of unordered keys.
        dr, dc = disk_offsets(r)
        inner = (row >= r) & (row < h - r) & (col >= r) & (col < w - r)
        key = (np.sort(dr * w + dc)[:, None] + np.sort(base[inner])[None, :]).ravel()
        if not inner.all():
            edge = ~inner
            rr = (row[edge][:, None] + dr[None, :]).ravel()
            cc = (col[edge][:, None] + dc[None, :]).ravel()
            ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            eb = np.repeat(ev[edge], len(dr))
            key = np.concatenate([key, ((eb * h + rr) * w + cc)[ok]])
        key.sort(kind="stable")
    if not key.size:
        return key, np.empty(0, dtype=np.uint8)
    first = np.empty(key.size, dtype=bool)
    first[0] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, key.size))
    return key[starts], np.minimum(counts, 255).astype(np.uint8)


def _dense_event(
    row: np.ndarray, col: np.ndarray, spec: ImageSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Lit pixels of one heavy event (pixel index row * W + col, capped count), counted in
    bands of at most _BAND_PIXELS pixels from at most STAMP_BUDGET stamped pixels at once."""
    h = w = spec.size
    rad = spec.hit_radius_px
    k = len(disk_offsets(rad)[0])
    band_rows = max(1, _BAND_PIXELS // w)
    per_batch = max(1, STAMP_BUDGET // k)
    order = np.argsort(row, kind="stable")
    row, col = row[order], col[order]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for r0 in range(0, h, band_rows):
        r1 = min(h, r0 + band_rows)
        a = int(np.searchsorted(row, r0 - rad, side="left"))
        b = int(np.searchsorted(row, r1 + rad, side="left"))
        counts = np.zeros((r1 - r0) * w, dtype=np.int64)
        for c0 in range(a, b, per_batch):
            c1 = min(b, c0 + per_batch)
            rr, cc = _stamp(row[c0:c1], col[c0:c1], spec)
            sel = (rr >= r0) & (rr < r1)
            counts += np.bincount((rr[sel] - r0) * w + cc[sel], minlength=counts.size)
        nz = np.flatnonzero(counts)
        indices.append(nz + r0 * w)
        values.append(np.minimum(counts[nz], 255).astype(np.uint8))
    return np.concatenate(indices), np.concatenate(values)


def rasterize(
    x_mm: np.ndarray,
    y_mm: np.ndarray,
    event_index: np.ndarray,
    n_events: int,
    spec: ImageSpec,
) -> np.ndarray:
    """Rasterize the hits of ``n_events`` events into images.

    Parameters
    ----------
    x_mm, y_mm : array_like float (n,)
        Hit coordinates ``(u, v)`` in the image's projection [mm] (:meth:`ImageSpec.project`).
    event_index : array_like int (n,)
        Event of each hit, in ``[0, n_events)``.
    n_events : int
        Number of images, >= 0.
    spec : ImageSpec

    Returns
    -------
    ndarray uint8 (n_events, H, W)
        Number of hits lighting each pixel, capped at 255 (module docstring).

    Examples
    --------
    >>> spec = ImageSpec(size=4, window_mm=(0.0, 4.0, 0.0, 4.0))
    >>> rasterize([0.5, 0.5, 3.5], [3.5, 3.5, 0.5], [0, 0, 0], 1, spec)[0]
    array([[2, 0, 0, 0],
           [0, 0, 0, 0],
           [0, 0, 0, 0],
           [0, 0, 0, 1]], dtype=uint8)
    """
    return rasterize_sparse(x_mm, y_mm, event_index, n_events, spec).todense()
