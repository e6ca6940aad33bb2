"""Custom Keras layers: :class:`PolarPool`, the detector image in polar coordinates.

Importing this module imports Keras and registers the layers for
``keras.saving.load_model`` (the model loaders of :mod:`spectrocnn.model` import it
before loading).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

__all__ = ["PolarPool", "polar_bins"]


def polar_bins(
    input_size: int,
    window_mm: Sequence[float],
    n_r: int,
    n_phi: int,
    r_max_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The pixel-to-bin map of :class:`PolarPool`.

    Parameters
    ----------
    input_size : int
        Height and width of the (square) input image [pixels].
    window_mm : sequence of 4 floats
        ``(x_min, x_max, y_min, y_max)`` of the image [mm]; row 0 is the top (``y_max``).
    n_r, n_phi : int
        Number of radial bins over ``[0, r_max_mm)`` and of azimuthal bins over
        ``[-pi, pi)``.
    r_max_mm : float
        Outer radius of the polar image [mm].

    Returns
    -------
    segment : ndarray int32, shape (input_size * input_size,)
        Polar bin (``i_r * n_phi + i_phi``) of each pixel (row-major), or
        ``n_r * n_phi`` for pixels at ``r >= r_max_mm``.
    nearest : ndarray int32, shape (n_r * n_phi,)
        Row-major index of the pixel holding each bin's centre (clipped to the image),
        so that bins smaller than a pixel (near the beam line) are never empty.
    """
    x0, x1, y0, y1 = (float(v) for v in window_mm)
    s = int(input_size)
    centres = (np.arange(s) + 0.5) / s
    x = x0 + centres * (x1 - x0)
    y = y1 - centres * (y1 - y0)
    xx, yy = np.meshgrid(x, y)  # (row, col)
    r = np.hypot(xx, yy)
    phi = np.arctan2(yy, xx)
    i_r = np.floor(r / r_max_mm * n_r).astype(np.int64)
    i_phi = np.floor((phi + math.pi) / (2 * math.pi) * n_phi).astype(np.int64) % n_phi
    segment = np.where(i_r < n_r, i_r * n_phi + i_phi, n_r * n_phi).ravel()

    rc = (np.arange(n_r) + 0.5) / n_r * r_max_mm
    pc = (np.arange(n_phi) + 0.5) / n_phi * 2 * math.pi - math.pi
    rr, pp = np.meshgrid(rc, pc, indexing="ij")
    col = np.floor((rr * np.cos(pp) - x0) / (x1 - x0) * s).astype(np.int64)
    row = np.floor((y1 - rr * np.sin(pp)) / (y1 - y0) * s).astype(np.int64)
    nearest = (np.clip(row, 0, s - 1) * s + np.clip(col, 0, s - 1)).ravel()
    return segment.astype(np.int32), nearest.astype(np.int32)


@keras.saving.register_keras_serializable(package="spectrocnn")
class PolarPool(keras.layers.Layer):
    """Resample a detector image to polar coordinates ``(r, phi)`` around the beam line.

    Each polar bin takes the maximum of the pixels whose centres fall into it, and at
    least the pixel under its own centre, so that no hit is lost where bins are larger
    than pixels and no bin is empty where they are smaller. A track from the beam line
    becomes a curve ``phi(r) = phi0 -/+ asin(r / 2R)``: a straight (high-momentum)
    track is a vertical line, a curved one a slanted line. Rotations about the beam
    line become shifts along ``phi``; the output repeats ``wrap`` columns from each
    end at the other so that convolutions see tracks across ``phi = +-pi`` whole.

    Input: ``(batch, input_size, input_size, 1)`` float images, row 0 at the top
    (``y_max``). Output: ``(batch, n_r, n_phi + 2 * wrap, 1)``, row 0 at ``r = 0``,
    column ``wrap`` at ``phi = -pi``. The layer has no weights.

    Parameters
    ----------
    input_size : int
        Height and width of the input image [pixels].
    window_mm : sequence of 4 floats
        The image window ``(x_min, x_max, y_min, y_max)`` [mm]; the beam line is
        ``x = y = 0``.
    n_r, n_phi : int
        Radial and azimuthal bins.
    r_max_mm : float
        Outer radius [mm].
    wrap : int
        Columns repeated at each end, ``0 <= wrap <= n_phi``.

    Raises
    ------
    ValueError
        A non-positive size, bin count or radius, or ``wrap`` outside ``[0, n_phi]``.
    """

    def __init__(
        self,
        input_size: int,
        window_mm: Sequence[float],
        n_r: int,
        n_phi: int,
        r_max_mm: float,
        wrap: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_size = int(input_size)
        self.window_mm = [float(v) for v in window_mm]
        self.n_r, self.n_phi, self.wrap = int(n_r), int(n_phi), int(wrap)
        self.r_max_mm = float(r_max_mm)
        for name in ("input_size", "n_r", "n_phi"):
            if getattr(self, name) < 1:
                raise ValueError(f"PolarPool: {name} must be positive, got {getattr(self, name)}")
        if not self.r_max_mm > 0 or not math.isfinite(self.r_max_mm):
            raise ValueError(f"PolarPool: r_max_mm must be positive, got {self.r_max_mm}")
        if not 0 <= self.wrap <= self.n_phi:
            raise ValueError(f"PolarPool: wrap must be in [0, n_phi={self.n_phi}], got {self.wrap}")
        segment, nearest = polar_bins(
            self.input_size, self.window_mm, self.n_r, self.n_phi, self.r_max_mm
        )
        # Only the pixels inside r_max_mm take part in the maximum: when the polar image
        # covers a disk smaller than the window, most pixels are skipped (same result).
        self._inside = np.flatnonzero(segment < self.n_r * self.n_phi).astype(np.int32)
        self._segment = segment[self._inside]
        self._nearest = nearest

    def call(self, inputs):
        import tensorflow as tf

        n_bins = self.n_r * self.n_phi
        flat = tf.reshape(inputs, (-1, self.input_size * self.input_size))
        inside = tf.gather(flat, self._inside, axis=1)
        pooled = tf.math.unsorted_segment_max(tf.transpose(inside), self._segment, n_bins)
        pooled = tf.maximum(tf.transpose(pooled), tf.gather(flat, self._nearest, axis=1))
        polar = tf.reshape(pooled, (-1, self.n_r, self.n_phi, 1))
        if self.wrap:
            w = self.wrap
            polar = tf.concat([polar[:, :, -w:], polar, polar[:, :, :w]], axis=2)
        return polar

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_r, self.n_phi + 2 * self.wrap, 1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_size": self.input_size,
            "window_mm": self.window_mm,
            "n_r": self.n_r,
            "n_phi": self.n_phi,
            "r_max_mm": self.r_max_mm,
            "wrap": self.wrap,
        }
