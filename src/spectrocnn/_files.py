"""Why an input file cannot be opened: one reason per cause, for the error messages.

Every reader of the package (event files, field maps, configuration files, saved models)
tells apart a missing file, a directory, a file without read permission, a file locked
or being written by another process, a file of another format, a truncated and a corrupt
one. The helpers here find the first three without any third-party library and word the
HDF5 ones (locking, a file left open for writing, truncation) from h5py's exceptions.
"""

from __future__ import annotations

import errno
import os
import re

__all__ = ["hdf5_open_problem", "unreadable_reason"]

#: What a user does about HDF5's file locking (a reader is refused while a writer holds it).
LOCK_HINT = (
    "it is locked, probably being written by another process: wait until that process "
    "has finished (if nothing writes it, HDF5_USE_FILE_LOCKING=FALSE skips the lock)"
)


def unreadable_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be opened for reading, or None when it can.

    Parameters
    ----------
    path : path-like
        An existing path.

    Returns
    -------
    str or None
        ``"it is a directory"``, ``"no read permission"`` or the system's reason.
    """
    if os.path.isdir(path):
        return "it is a directory"
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return "no read permission (check the file's mode and owner)"
    except IsADirectoryError:  # pragma: no cover - caught by isdir above
        return "it is a directory"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def hdf5_open_problem(exc: BaseException) -> str:
    """The cause of h5py's failure to open an HDF5 file, worded for a user.

    Parameters
    ----------
    exc : BaseException
        What ``h5py.File(path, "r")`` raised for a file that exists, is readable and has
        an HDF5 signature.

    Returns
    -------
    str
        The locked, left-open-for-writing, truncated or corrupt reason, one line.
    """
    msg = " ".join(str(exc).split())
    locked = isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    if locked or "unable to lock file" in msg:
        return LOCK_HINT
    if "already open for write" in msg:
        return (
            "it was left open for writing (another process is writing it, or its writer "
            "stopped without closing it: then `h5clear -s FILE` clears the flag)"
        )
    m = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", msg)
    if m:
        return (
            f"it is truncated ({int(m.group(1))} of {int(m.group(2))} bytes: an interrupted "
            "copy or write?)"
        )
    return f"it is corrupt, HDF5 cannot open it ({msg})"
