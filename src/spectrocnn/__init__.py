"""spectrocnn: a charged-particle spectrometer simulation, labelled detector images and a CNN.

The package has three parts, data flowing one way::

    config (TOML) -> simulate -> EventBatch -> dataset -> events.h5 -> model

Import the parts you need: :mod:`spectrocnn.simulate` (physics, pure NumPy),
:mod:`spectrocnn.dataset` (images and the HDF5 event file) and :mod:`spectrocnn.model`
(Keras; imports TensorFlow lazily).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from spectrocnn.errors import (
    ConfigError,
    EventFileError,
    EventFileNotFoundError,
    ModelFileError,
    SpectrocnnError,
)

try:
    __version__ = version("spectrocnn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ConfigError",
    "EventFileError",
    "EventFileNotFoundError",
    "ModelFileError",
    "SpectrocnnError",
    "__version__",
    "simulate_particles",
]


def __getattr__(name: str):
    """``spectrocnn.simulate_particles``, imported on first use (``import spectrocnn`` stays
    light: the command-line front ends import it before they need NumPy)."""
    if name == "simulate_particles":
        from spectrocnn.simulate import simulate_particles

        return simulate_particles
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
