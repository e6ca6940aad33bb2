"""The package's exceptions.

Library code raises these; only the command-line front ends turn them into one-line
messages and exit codes (:class:`ConfigError` and :class:`EventFileNotFoundError` -> 2,
:class:`EventFileError`, :class:`ShardError` and :class:`ModelFileError` -> 1).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EventFileError",
    "EventFileNotFoundError",
    "ModelFileError",
    "ShardError",
    "SpectrocnnError",
]


class SpectrocnnError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SpectrocnnError, ValueError):
    """An invalid configuration, geometry, field or argument; the message names the value."""


class EventFileError(SpectrocnnError, RuntimeError):
    """An event file that is missing, unreadable, of another schema, truncated or corrupt."""


class EventFileNotFoundError(ConfigError, EventFileError):
    """The event file does not exist (a usage error: exit code 2)."""


class ModelFileError(SpectrocnnError, RuntimeError):
    """A saved model or run state that cannot be read (exit code 1)."""


class ShardError(EventFileError):
    """A shard that failed on every attempt, or a cluster that cannot be used (exit code 1)."""
