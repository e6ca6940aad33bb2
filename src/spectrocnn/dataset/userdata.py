"""Your own labels and columns in the event file (docs/design.md 3.3, issue 22).

Three optional parts, all additive (a file without them reads as before):

``/labels`` attributes
    ``label_kind`` ("binary" | "multiclass" | "regression"; absent: "binary"),
    ``n_classes`` (binary, multiclass), ``class_names`` (optional, one str per class),
    ``label_name`` (optional: what the label is, in words). The dataset's dtype follows
    the kind (:attr:`spectrocnn.labels.LabelSpec.stored_dtype`): uint8 (binary,
    multiclass up to 256 classes), int32, float64 (regression).
``/events/user/<name>``
    One value per event, shape (N,), any numeric dtype the writer was given.
``/particles/user/<name>``
    One value per particle row, in the rows of ``/particles`` (grouped by event, as
    ``/particles/offsets`` says).

A user column's name is a word of letters, digits and ``_`` that starts with a letter
(carry units in it: ``E_cal_GeV``). This module writes and checks them with h5py;
:class:`spectrocnn.dataset.EventFileWriter` and :class:`spectrocnn.dataset.EventFile`
use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from spectrocnn.errors import ConfigError, EventFileError
from spectrocnn.labels import LabelSpec

__all__ = [
    "USER_GROUP",
    "UserColumnsWriter",
    "check_labels_dataset",
    "check_user_columns",
    "column_dtypes",
    "read_label_spec",
    "user_column_names",
    "write_label_attrs",
]

#: The subgroup of ``/events`` and ``/particles`` that holds the user's columns.
USER_GROUP = "user"

#: The tables that take user columns: group -> what a row is.
USER_TABLES = {"events": "event", "particles": "particle"}

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_CHUNK_ROWS = 16384


def _text(value: Any) -> str:
    """An attribute's text (h5py gives bytes for fixed-length strings)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# -- labels ---------------------------------------------------------------------------------


def write_label_attrs(ds: h5py.Dataset, spec: LabelSpec) -> None:
    """Record ``spec`` as the attributes of the ``/labels`` dataset ``ds``."""
    ds.attrs["label_kind"] = spec.kind
    if spec.n_classes is not None:
        ds.attrs["n_classes"] = np.int64(spec.n_classes)
    if spec.class_names is not None:
        ds.attrs["class_names"] = np.array(spec.class_names, dtype=h5py.string_dtype())
    if spec.name is not None:
        ds.attrs["label_name"] = spec.name
    ds.attrs["description"] = {
        "binary": "1 = the event belongs to class 1 (a user's binary label)",
        "multiclass": "the event's class, 0 .. n_classes - 1 (names: class_names)",
        "regression": "the event's target value (a user's float label)",
    }[spec.kind] + (f": {spec.name}" if spec.name else "")


def read_label_spec(path: str, ds: h5py.Dataset) -> LabelSpec:
    """The :class:`LabelSpec` the attributes of ``/labels`` record (binary without them).

    Raises
    ------
    EventFileError
        Attributes that make no kind of labels (an unknown ``label_kind``, ...).
    """
    a = ds.attrs
    if "label_kind" not in a:
        return LabelSpec()
    names = a.get("class_names")
    try:
        return LabelSpec(
            _text(a["label_kind"]),
            n_classes=int(a["n_classes"]) if "n_classes" in a else None,
            class_names=None if names is None else tuple(_text(s) for s in np.ravel(names)),
            name=_text(a["label_name"]) if "label_name" in a else None,
        )
    except (ConfigError, TypeError, ValueError) as exc:
        raise EventFileError(f"{path}: /labels attributes: {exc}") from None


def check_labels_dataset(path: str, ds: Any, n_events: int) -> LabelSpec:
    """Check ``/labels`` against its kind: an integer (N,) dataset for classes, a numeric
    one for a regression target; returns the kind.

    Raises
    ------
    EventFileError
        Naming the path and what is wrong.
    """
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
        raise EventFileError(f"{path}: /labels must be an (N,) dataset")
    spec = read_label_spec(path, ds)
    kinds = "iub" if spec.is_classification else "iubf"
    if ds.dtype.kind not in kinds:
        what = "an integer" if spec.is_classification else "a numeric"
        raise EventFileError(f"{path}: /labels must be {what} (N,) dataset ({spec.kind} labels)")
    if ds.shape[0] != n_events:
        raise EventFileError(f"{path}: /labels has {ds.shape[0]} rows, /images {n_events}")
    return spec


# -- user columns ---------------------------------------------------------------------------


def _check_name(name: Any, table: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{table} column name {name!r} must start with a letter and hold only letters, "
            "digits and _"
        )
    return name


def column_dtypes(columns: Mapping[str, Any] | None, table: str) -> dict[str, np.dtype]:
    """Name -> dtype of user columns given as arrays or dtypes (bool is stored as uint8).

    Parameters
    ----------
    columns : mapping, optional
        Name -> an array (its dtype is taken) or a dtype.
    table : {"events", "particles"}

    Raises
    ------
    ConfigError
        A bad name, or a dtype that is not a number or bool.
    """
    out: dict[str, np.dtype] = {}
    for name, value in (columns or {}).items():
        _check_name(name, USER_TABLES[table])
        try:
            is_type = isinstance(value, np.dtype | type | str)
            dt = np.dtype(value) if is_type else np.asarray(value).dtype
        except TypeError:
            raise ConfigError(
                f"{USER_TABLES[table]} column {name!r}: {value!r} is not a dtype"
            ) from None
        if dt.kind not in "biuf":
            raise ConfigError(
                f"{USER_TABLES[table]} column {name!r} must hold numbers or bools, got {dt}"
            )
        out[name] = np.dtype(np.uint8) if dt.kind == "b" else dt
    return out


class UserColumnsWriter:
    """Creates ``/events/user`` and ``/particles/user`` in a file being written, checks
    and buffers each appended block's columns, writes them with the rest of the truth.

    Parameters
    ----------
    f : h5py.File
        Open for writing.
    n_events : int
    dtypes : dict
        ``{"events": {name: dtype}, "particles": {name: dtype}}`` (:func:`column_dtypes`).
    filters : callable
        ``filters(integer) -> dict`` of ``create_dataset`` keywords (the writer's).
    """

    def __init__(self, f: h5py.File, n_events: int, dtypes: dict[str, dict[str, np.dtype]],
                 filters: Any) -> None:  # fmt: skip
        self.dtypes = {t: dict(dtypes.get(t) or {}) for t in USER_TABLES}
        self.datasets: dict[str, h5py.Dataset] = {}
        self.buffer: dict[str, list[np.ndarray]] = {}
        for table, cols in self.dtypes.items():
            if not cols:
                continue
            g = f.require_group(table).create_group(USER_GROUP)
            for name, dt in cols.items():
                kw = filters(dt.kind in "iu")
                if table == "events":
                    ds = g.create_dataset(name, shape=(n_events,), dtype=dt, **kw)
                else:
                    ds = g.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dt,
                                          chunks=(_CHUNK_ROWS,), **kw)  # fmt: skip
                self.datasets[f"{table}/{name}"] = ds
                self.buffer[f"{table}/{name}"] = []

    def check(self, given: dict[str, Mapping[str, Any] | None], rows: dict[str, int]) -> dict:
        """The columns of one appended block, checked: every declared column, none other,
        ``rows[table]`` values each, castable to the declared dtype.

        Raises
        ------
        ConfigError
            Naming the column and the problem.
        """
        out = {}
        for table, cols in self.dtypes.items():
            values = dict(given.get(table) or {})
            what = USER_TABLES[table]
            extra = sorted(set(values) - set(cols))
            if extra:
                declared = ", ".join(cols) or "none"
                raise ConfigError(
                    f"{what} column {extra[0]!r} was not declared when the file was created "
                    f"(declared: {declared})"
                )
            for name, dt in cols.items():
                if name not in values:
                    raise ConfigError(f"{what} column {name!r} missing from the appended events")
                a = np.asarray(values[name])
                if a.shape != (rows[table],):
                    raise ConfigError(
                        f"{what} column {name!r} has shape {a.shape}, expected "
                        f"({rows[table]},): one value per {what}"
                    )
                if a.dtype.kind not in "biuf":
                    raise ConfigError(f"{what} column {name!r} must hold numbers, got {a.dtype}")
                if a.dtype.kind == "f" and dt.kind in "iub" and not np.all(a == np.round(a)):
                    raise ConfigError(
                        f"{what} column {name!r} was declared {dt}, got fractional values"
                    )
                out[f"{table}/{name}"] = a.astype(dt)
        return out

    def append(self, checked: dict[str, np.ndarray]) -> None:
        """Buffer the columns of one block (from :meth:`check`)."""
        for key, a in checked.items():
            self.buffer[key].append(a)

    def flush(self, e0: int, e1: int, n_particles: int) -> None:
        """Write the buffered columns: events ``e0:e1``, particle rows up to ``n_particles``."""
        for key, parts in self.buffer.items():
            if not parts:
                continue
            a = np.concatenate(parts)
            ds = self.datasets[key]
            if key.startswith("events/"):
                ds[e0:e1] = a
            elif len(a):
                ds.resize((n_particles,))
                ds[n_particles - len(a) : n_particles] = a
            parts.clear()


def user_column_names(f: h5py.File, table: str) -> tuple[str, ...]:
    """The user columns of ``/table/user`` (sorted), ``()`` without any."""
    g = f.get(table)
    if not isinstance(g, h5py.Group):
        return ()
    u = g.get(USER_GROUP)
    return tuple(sorted(u)) if isinstance(u, h5py.Group) else ()


def check_user_columns(path: str, f: h5py.File, n_events: int, n_particles: int) -> None:
    """Check ``/events/user/*`` ((N,) numbers) and ``/particles/user/*`` (one per particle row).

    Raises
    ------
    EventFileError
        Naming the column and what is wrong.
    """
    rows = {"events": n_events, "particles": n_particles}
    for table in USER_TABLES:
        for name in user_column_names(f, table):
            ds = f[f"{table}/{USER_GROUP}/{name}"]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "biuf":
                raise EventFileError(f"{path}: /{table}/{USER_GROUP}/{name} must be a 1-D "
                                     "numeric dataset")  # fmt: skip
            if ds.shape[0] != rows[table]:
                raise EventFileError(
                    f"{path}: /{table}/{USER_GROUP}/{name} has {ds.shape[0]} rows, expected "
                    f"{rows[table]} (one per {USER_TABLES[table]})"
                )
