"""The package's exceptions.

Library code raises these; only the command-line front ends turn them into one-line
messages and exit codes (:class:`ConfigError` -> 2, :class:`EventFileError` -> 1).
"""

from __future__ import annotations

__all__ = ["ConfigError", "EventFileError", "SpectrocnnError"]


class SpectrocnnError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SpectrocnnError, ValueError):
    """An invalid configuration, geometry, field or argument; the message names the value."""


class EventFileError(SpectrocnnError, RuntimeError):
    """An event file that is missing, unreadable, of another schema, truncated or corrupt."""
