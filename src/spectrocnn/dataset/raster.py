"""Rasterization of hits into detector images (DESIGN 3.3 pixel convention)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from spectrocnn.errors import ConfigError

__all__ = ["ImageSpec"]


@dataclass(frozen=True)
class ImageSpec:
    """How events become images.

    Parameters
    ----------
    size : int
        Image height and width [pixels], >= 1.
    window_mm : (float, float, float, float)
        ``x_min, x_max, y_min, y_max`` of the x-y window shown [mm]; min < max.
    hit_radius_px : int
        0: a hit lights one pixel; r > 0: every pixel whose centre is within r pixels of the
        hit's pixel centre (a disk).
    """

    size: int = 512
    window_mm: tuple[float, float, float, float] = (-210.0, 210.0, -210.0, 210.0)
    hit_radius_px: int = 0

    def __post_init__(self) -> None:
        s = self.size
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ConfigError(f"size must be a positive integer, got {s!r}")
        try:
            w = tuple(float(x) for x in self.window_mm)
        except (TypeError, ValueError):
            raise ConfigError(f"window_mm must be 4 numbers, got {self.window_mm!r}") from None
        if len(w) != 4 or not all(math.isfinite(x) for x in w):
            raise ConfigError(f"window_mm must be 4 finite numbers, got {self.window_mm!r}")
        if not (w[0] < w[1] and w[2] < w[3]):
            raise ConfigError(
                f"window_mm must be [x_min, x_max, y_min, y_max] with min < max, got {list(w)}"
            )
        object.__setattr__(self, "window_mm", w)
        r = self.hit_radius_px
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ConfigError(f"hit_radius_px must be an integer >= 0, got {r!r}")
