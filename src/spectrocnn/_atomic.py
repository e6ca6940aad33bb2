"""Atomic file writes: a reader never sees a half-written output file.

Shared by the commands that write files (train-cnn, eval-cnn, show-event); the event
file writer has its own variant that also refuses a target appearing meanwhile.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "clean_json", "write_json", "write_with"]


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it when the block succeeds.

    The temporary name starts with a dot and ends with ``suffix`` (default: the suffix
    of ``path``, which Keras and matplotlib use to pick the format). An ``OSError`` on
    the way (a full disk, a read-only directory) is raised as one naming ``path`` (its
    ``strerror`` is "cannot write 'path': reason"); the temporary file is removed.
    """
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.stem}.",
            suffix=target.suffix if suffix is None else suffix,
            dir=target.parent,
        )
    except OSError as exc:
        raise _write_error(target, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp made it private
        os.replace(tmp_path, target)
    except OSError as exc:  # name the target, not the temporary file
        raise _write_error(target, exc) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _write_error(target: Path, exc: OSError) -> OSError:
    """``exc`` as "cannot write 'target': reason" (a full disk, a read-only directory...)."""
    reason = exc.strerror or " ".join(str(exc).split())
    return OSError(exc.errno, f"cannot write {str(target)!r}: {reason}")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def clean_json(value: Any) -> Any:
    """``value`` with NumPy scalars turned into Python numbers and NaN/inf into None."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(clean_json(data), indent=2, sort_keys=False) + "\n")


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp)`` to write a temporary file, then rename it to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
