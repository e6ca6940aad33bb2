"""Magnetic fields: uniform, a map on a regular grid (.npz), or any vectorised callable.

A field is a callable ``B(points) -> B_T`` taking positions of shape (n, 3) in mm and
returning the field of shape (n, 3) in tesla.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from spectrocnn.errors import ConfigError

if TYPE_CHECKING:
    from scipy.interpolate import RegularGridInterpolator

__all__ = ["CallableField", "Field", "FieldMap", "UniformField", "load_field_map"]

log = logging.getLogger(__name__)


@runtime_checkable
class Field(Protocol):
    """Anything that maps positions (n, 3) [mm] to fields (n, 3) [T]."""

    def __call__(self, points: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class UniformField:
    """A uniform field.

    Parameters
    ----------
    B_T : tuple of 3 floats
        Field vector [T].
    """

    B_T: tuple[float, float, float] = (0.0, 0.0, 2.0)

    def __post_init__(self) -> None:
        try:
            b = tuple(float(x) for x in self.B_T)
        except (TypeError, ValueError):
            raise ConfigError(f"B_T must be a list of 3 numbers, got {self.B_T!r}") from None
        if len(b) != 3 or not all(np.isfinite(b)):
            raise ConfigError(f"B_T must be a list of 3 finite numbers, got {self.B_T!r}")
        object.__setattr__(self, "B_T", b)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points)
        return np.broadcast_to(np.asarray(self.B_T), (points.shape[0], 3)).copy()


@dataclass(frozen=True, eq=False)
class FieldMap:
    """A field sampled on a regular grid, trilinearly interpolated, zero outside the grid.

    Parameters
    ----------
    x_mm, y_mm, z_mm : ndarray, shape (nx,), (ny,), (nz,)
        Strictly increasing grid coordinates [mm], at least 2 points each.
    B_T : ndarray, shape (nx, ny, nz, 3)
        Field at the grid points [T]; finite.
    source : str
        Where the map came from (a path), for messages and the resolved configuration.

    Notes
    -----
    Interpolation is :class:`scipy.interpolate.RegularGridInterpolator` with
    ``method="linear"`` (trilinear) and ``fill_value=0``.
    """

    x_mm: np.ndarray
    y_mm: np.ndarray
    z_mm: np.ndarray
    B_T: np.ndarray
    source: str = "<array>"
    _interp: RegularGridInterpolator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        grids = []
        for name in ("x_mm", "y_mm", "z_mm"):
            g = np.asarray(getattr(self, name), dtype=np.float64)
            if g.ndim != 1 or g.size < 2:
                raise ConfigError(
                    f"field map {self.source}: {name} must be a 1-D grid of at least 2 points, "
                    f"got shape {g.shape}"
                )
            if not np.all(np.isfinite(g)):
                raise ConfigError(f"field map {self.source}: {name} contains NaN or inf")
            if not np.all(np.diff(g) > 0):
                raise ConfigError(f"field map {self.source}: {name} must be strictly increasing")
            grids.append(g)
            object.__setattr__(self, name, g)
        b = np.asarray(self.B_T, dtype=np.float64)
        expected = (grids[0].size, grids[1].size, grids[2].size, 3)
        if b.shape != expected:
            raise ConfigError(
                f"field map {self.source}: B_T must have shape {expected}, got {b.shape}"
            )
        if not np.all(np.isfinite(b)):
            raise ConfigError(f"field map {self.source}: B_T contains NaN or inf")
        object.__setattr__(self, "B_T", b)
        from scipy.interpolate import RegularGridInterpolator  # lazily: 0.4 s to import

        interp = RegularGridInterpolator(
            tuple(grids), b, method="linear", bounds_error=False, fill_value=0.0
        )
        object.__setattr__(self, "_interp", interp)

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> FieldMap:
        """Load a map from a .npz file with arrays ``x_mm``, ``y_mm``, ``z_mm``, ``B_T``.

        Raises
        ------
        ConfigError
            When the file does not exist, cannot be read, is not an .npz archive, is
            corrupt, lacks an array, or holds invalid values.
        """
        return load_field_map(path)

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write the map as a .npz file in the documented layout."""
        np.savez_compressed(path, x_mm=self.x_mm, y_mm=self.y_mm, z_mm=self.z_mm, B_T=self.B_T)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return self._interp(np.asarray(points, dtype=np.float64))


def load_field_map(path: str | os.PathLike) -> FieldMap:
    """Load a field map from a .npz file (see :class:`FieldMap`).

    Raises
    ------
    ConfigError
        Naming the path and the problem.
    """
    import zipfile

    from spectrocnn._files import unreadable_reason

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConfigError(f"field map {path!r} does not exist")
    reason = unreadable_reason(path)
    if reason is not None:
        raise ConfigError(f"field map {path!r} cannot be read: {reason}")
    if os.path.getsize(path) == 0:
        raise ConfigError(f"field map {path!r} is an empty file, expected an .npz archive")
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            f"field map {path!r} is not an .npz file (not a zip archive, or a truncated one)"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x_mm", "y_mm", "z_mm", "B_T") if k not in data.files]
            if missing:
                raise ConfigError(f"field map {path!r} lacks the array(s) {', '.join(missing)}")
            arrays = {k: np.array(data[k]) for k in ("x_mm", "y_mm", "z_mm", "B_T")}
    except ConfigError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError ...
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"field map {path!r} is a corrupt .npz file ({msg})") from None
    log.debug("loaded field map %s with grid %s", path, arrays["B_T"].shape[:3])
    return FieldMap(**arrays, source=path)


@dataclass(frozen=True, eq=False)
class CallableField:
    """Wrap a vectorised Python function as a field.

    Parameters
    ----------
    function : callable
        ``function(points)`` with points of shape (n, 3) [mm] returning (n, 3) [T].
    name : str
        A label for the resolved configuration.
    """

    function: Callable[[np.ndarray], np.ndarray]
    name: str = "callable"

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise ConfigError(f"field function must be callable, got {self.function!r}")

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        b = np.asarray(self.function(points), dtype=np.float64)
        if b.shape != points.shape:
            raise ConfigError(
                f"field function {self.name} returned shape {b.shape} for points of shape "
                f"{points.shape}; it must return (n, 3)"
            )
        return b
