"""Atomic output: a reader never sees a half-written file or directory.

The one home of the mechanism for every command that writes: gen-events (the event file,
each shard file and the sharded output directory), export-events (the output directory),
train-cnn, eval-cnn and show-event (models, JSON, pictures). The output is made under a
hidden temporary name beside the target, ``.NAME.<pid>.<8 hex digits>.tmp`` (same directory,
so the final rename is atomic), and renamed over the target only when complete; on any
error or interrupt the temporary entry is removed. An existing target is replaced only when
the caller allows it, and then only once the new one is complete (a directory is moved
aside first and deleted after). New entries get the permissions that the umask gives.

A command that writes several files into a directory it shares with other files (eval-cnn's
``--out``) writes them as one set (:func:`atomic_outputs`): all in a temporary directory
first, then each moved over its target, and the files of an earlier run of that command
that this run did not write are removed, so that the directory holds this run's outputs
and nothing else of the command's.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_output",
    "atomic_outputs",
    "atomic_path",
    "clean_json",
    "remove",
    "temp_path",
    "write_json",
    "write_reason",
    "write_with",
]

log = logging.getLogger(__name__)


def temp_path(target: str | os.PathLike, suffix: str = ".tmp") -> str:
    """A hidden name beside ``target``: ``DIR/.NAME.<pid>.<8 hex digits><suffix>``."""
    directory, name = os.path.split(os.path.abspath(os.fspath(target)))
    return os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def _new_temp(target: str | os.PathLike, directory: bool, suffix: str) -> str:
    """Create an empty file (mode 0o666) or directory (0o777), less the umask, under a fresh
    :func:`temp_path` name; raises the ``OSError`` of the creation (e.g. a read-only
    directory)."""
    for _ in range(100):
        tmp = temp_path(target, suffix)
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(  # pragma: no cover - 100 collisions of 32 random bits
        errno.EEXIST, "no free temporary name", os.path.dirname(os.path.abspath(target))
    )


def remove(path: str | os.PathLike) -> None:
    """Remove a file, link or directory tree if it exists; log a warning if it stays."""
    p = os.fspath(path)
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
    else:
        with suppress(OSError):  # gone already, or cannot: see below
            os.unlink(p)
    if os.path.lexists(p):  # pragma: no cover - e.g. the directory made read-only meanwhile
        log.warning("could not remove the temporary %s", p)


def _exists_error(target: str) -> Callable[[], Exception]:
    return lambda: FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)


def _publish_file(tmp: str, target: str, overwrite: bool, exists: Callable[[], Exception]) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic, and fails if the target appeared meanwhile
    except FileExistsError:
        raise exists() from None
    except OSError:  # no hard links on this file system
        if os.path.lexists(target):
            raise exists() from None
        os.replace(tmp, target)


def _publish_dir(tmp: str, target: str, overwrite: bool, exists: Callable[[], Exception]) -> None:
    if os.path.isdir(target) and not os.path.islink(target) and not os.listdir(target):
        os.rmdir(target)  # an empty directory: nothing to lose
    elif os.path.lexists(target):
        if not overwrite:
            raise exists()
        aside = temp_path(target, ".old")
        os.rename(target, aside)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(aside, target)  # put the old one back
            raise
        remove(aside)
        return
    os.rename(tmp, target)


@contextmanager
def atomic_output(
    target: str | os.PathLike,
    *,
    overwrite: bool = True,
    directory: bool = False,
    suffix: str = ".tmp",
    exists: Callable[[], Exception] | None = None,
    create_error: Callable[[OSError], Exception] | None = None,
) -> Iterator[str]:
    """Yield a new temporary file or directory beside ``target``; move it to ``target``
    when the block succeeds, remove it in any case otherwise.

    Parameters
    ----------
    target : path-like
        The output; its directory must exist.
    overwrite : bool
        Replace an existing ``target`` (only once the block has succeeded). Without it an
        existing target raises ``exists()``; a file is moved in by a hard link, which also
        fails if the target appeared meanwhile. An empty directory is always replaced.
    directory : bool
        Make a directory rather than an (empty) file.
    suffix : str
        End of the temporary name (Keras and matplotlib pick the format by it).
    exists : callable, optional
        Makes the exception for an existing target; default ``FileExistsError``.
    create_error : callable, optional
        Turns the ``OSError`` of creating the temporary entry (a read-only or missing
        directory) into the exception raised; default: raised as it is.

    Yields
    ------
    str
        The temporary path (absolute).

    Raises
    ------
    OSError
        From creating, or renaming (then the temporary entry is removed).
    """
    out = os.path.abspath(os.fspath(target))
    try:
        tmp = _new_temp(out, directory, suffix)
    except OSError as exc:
        if create_error is None:
            raise
        raise create_error(exc) from None
    publish = _publish_dir if directory else _publish_file
    try:
        yield tmp
        publish(tmp, out, overwrite, exists or _exists_error(out))
    finally:
        remove(tmp)


@contextmanager
def atomic_outputs(
    directory: str | os.PathLike, owned: Sequence[str], *, last: Sequence[str] = ()
) -> Iterator[Path]:
    """Write the set of a command's output files in ``directory`` as one: the block writes
    them into a new temporary directory (yielded); when it succeeds, every file in it moves
    to the same relative path in ``directory``, and every file there that matches a pattern
    of ``owned`` but was not written this time is removed (then its folder, if left empty).

    So ``directory`` ends up with exactly this run's outputs of the command, whatever an
    earlier run of it wrote there (the ``roc.png`` of binary labels after an evaluation of
    a regression target), and other files in it are never touched. On any error or
    interrupt in the block nothing in ``directory`` changes (a directory that did not exist
    is removed again). Each file is replaced atomically (a rename in one file system); the
    names in ``last`` move after the others and after the removals, so a reader that sees
    the new one of them (``metrics.json``) sees the whole set.

    Parameters
    ----------
    directory : path-like
        The output directory; created (with its parents) if missing.
    owned : sequence of str
        Glob patterns (:meth:`pathlib.Path.glob`, relative to ``directory``, no ``**``) of
        the files the command owns there: the names it writes, e.g. ``"roc.png"``,
        ``"explain/confident1_*_event*.png"``.
    last : sequence of str
        Relative paths to move last.

    Yields
    ------
    Path
        The temporary directory (hidden, inside ``directory``).

    Raises
    ------
    OSError
        From creating the directories, or moving or removing a file (a read-only
        directory, a folder where a file goes).
    """
    out = Path(directory)
    created = not out.is_dir()
    out.mkdir(parents=True, exist_ok=True)
    try:
        try:
            tmp = Path(_new_temp(out / "outputs", True, ".tmp"))
        except OSError as exc:  # name the directory, not the temporary name
            raise OSError(exc.errno, exc.strerror, os.fspath(out)) from None
        try:
            yield tmp
            written = sorted(
                p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if not p.is_dir()
            )
            _move(tmp, out, [rel for rel in written if rel not in last])
            _remove_stale(out, owned, set(written))
            _move(tmp, out, [rel for rel in written if rel in last])
        except OSError as exc:
            raise _in_place_of(exc, tmp, out) from None
        finally:
            remove(tmp)
    except BaseException:
        if created:
            remove(out)
        raise


def _in_place_of(exc: OSError, tmp: Path, out: Path) -> OSError:
    """``exc`` with the temporary directory ``tmp`` in its text and file name read as
    ``out``, where the file would have been (or ``exc`` itself if it does not name it)."""
    old, new = os.fspath(tmp), os.fspath(out)
    text, name = exc.strerror or "", os.fspath(exc.filename or "")
    if old not in text and old not in name:
        return exc
    return OSError(exc.errno, text.replace(old, new), name.replace(old, new) or None)


def _move(tmp: Path, out: Path, names: Sequence[str]) -> None:
    """Move the files ``names`` (relative paths) from ``tmp`` to ``out``, each atomically."""
    for rel in names:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, out / rel)


def _remove_stale(out: Path, owned: Sequence[str], keep: set[str]) -> None:
    """Remove the files under ``out`` matching ``owned`` that are not in ``keep``, and the
    folders of the patterns that this leaves empty."""
    for pattern in owned:
        for p in out.glob(pattern):
            rel = p.relative_to(out).as_posix()
            if rel not in keep and (p.is_file() or p.is_symlink()):
                p.unlink()
        folder = out / pattern
        while folder.parent != out:
            folder = folder.parent
            with suppress(OSError):  # not empty, or gone: keep it
                folder.rmdir()


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
        with atomic_output(target, suffix=target.suffix if suffix is None else suffix) as tmp:
            yield Path(tmp)
    except OSError as exc:  # name the target, not the temporary file
        raise _write_error(target, exc) from None


def _write_error(target: Path, exc: OSError) -> OSError:
    """``exc`` as "cannot write 'target': reason" (a full disk, a read-only directory...)."""
    return OSError(exc.errno, f"cannot write {str(target)!r}: {write_reason(exc)}")


def write_reason(exc: BaseException) -> str:
    """Why a write failed, in words: the text of its error number ("No space left on
    device"), also where HDF5 gives it only in the message ("... errno = 28, ..."); else the
    message on one line."""
    errno_ = getattr(exc, "errno", None)
    if not errno_:
        m = re.search(r"errno = (\d+)", str(exc))
        errno_ = int(m.group(1)) if m else None
    if errno_:
        return os.strerror(errno_)
    return getattr(exc, "strerror", None) or " ".join(str(exc).split())


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
