"""Checking a saved model file before Keras (and TensorFlow) is imported to load it.

Keras 3 loads two formats: the ``.keras`` zip archive (with ``config.json`` in it) and the
legacy HDF5 ``.h5`` file (with a ``model_config`` attribute). Its own messages for other
files are misleading (a text file named ``.keras`` gives "File not found"), so
:func:`check_model_file` names the real cause first: a missing file, a directory, no read
permission, a lock held by another process, an empty file, a file of another format (an
event file passed as the model, say), a truncated archive. It lives outside ``model/``
because it reads HDF5 attributes with h5py, which ``model/`` leaves to the file layers.
"""

from __future__ import annotations

import os
import zipfile

import h5py

from spectrocnn._files import hdf5_open_problem, unreadable_reason
from spectrocnn.errors import ConfigError, ModelFileError

__all__ = ["MODEL_SUFFIXES", "check_model_file"]

#: File name endings Keras 3 loads.
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _kind(path: str) -> str:
    """``"zip"``, ``"hdf5"``, ``"empty"`` or ``"other"``, from the file's content."""
    if os.path.getsize(path) == 0:
        return "empty"
    if zipfile.is_zipfile(path):
        return "zip"
    if h5py.is_hdf5(path):
        return "hdf5"
    return "other"


def check_model_file(path: str | os.PathLike) -> None:
    """Raise unless ``path`` looks like a model Keras can load.

    Parameters
    ----------
    path : path-like
        A ``.keras`` or ``.h5`` model file.

    Raises
    ------
    ConfigError
        The file does not exist, or its name ends neither in ``.keras`` nor ``.h5``
        (Keras picks the format by the name).
    ModelFileError
        A directory, no read permission, a lock held by another process, an empty file,
        a file that is not a Keras model (its content says what it is instead), a
        truncated or corrupt one.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ConfigError(f"model file {p!r} does not exist")
    if os.path.isdir(p):
        raise ModelFileError(
            f"model file {p!r} is a directory (a TensorFlow SavedModel?); Keras 3 loads "
            "only .keras and .h5 files"
        )
    reason = unreadable_reason(p)
    if reason is not None:
        raise ModelFileError(f"{p}: cannot read the model file: {reason}")
    suffix = os.path.splitext(p)[1].lower()
    kind = _kind(p)
    if suffix not in MODEL_SUFFIXES:
        hint = {"zip": " (rename it to .keras?)", "hdf5": " (rename it to .h5?)"}.get(kind, "")
        raise ConfigError(
            f"model file {p!r} ends in {suffix or 'no suffix'!r}; Keras loads .keras and .h5 "
            f"model files{hint}"
        )
    if kind == "empty":
        raise ModelFileError(f"{p}: an empty file, not a Keras model file")
    if suffix == ".keras":
        if kind == "hdf5":
            raise ModelFileError(
                f"{p}: an HDF5 file, not a .keras model file (a legacy model? rename it to .h5)"
            )
        if kind != "zip":
            raise ModelFileError(
                f"{p}: not a Keras model file (a .keras model is a zip archive; this file "
                "is not one, or is truncated)"
            )
        try:
            with zipfile.ZipFile(p) as z:
                names = set(z.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelFileError(f"{p}: a corrupt .keras archive ({exc})") from None
        if "config.json" not in names:
            raise ModelFileError(f"{p}: a zip archive without config.json, not a Keras model file")
        return
    if kind == "zip":
        raise ModelFileError(f"{p}: a zip archive, not an .h5 model (rename it to .keras?)")
    if kind != "hdf5":
        raise ModelFileError(f"{p}: not a Keras model file (not an HDF5 file)")
    try:
        with h5py.File(p, "r") as f:
            attrs = f.attrs
            if "model_config" in attrs:
                return
            schema = attrs.get("schema")
    except (OSError, RuntimeError) as exc:
        raise ModelFileError(f"{p}: cannot open the model file: {hdf5_open_problem(exc)}") from None
    if isinstance(schema, bytes):
        schema = schema.decode(errors="replace")
    if isinstance(schema, str) and schema.startswith("spectrocnn.events"):
        raise ModelFileError(f"{p}: an event file, not a Keras model file (arguments swapped?)")
    raise ModelFileError(f"{p}: an HDF5 file without a Keras model (no model_config attribute)")
