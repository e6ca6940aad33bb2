"""The identity of event files: which generation run made a file, and does it still match.

One home for every comparison of a file's identity (the readers of sharded event files,
train-cnn's ``--resume``); attributes and dataset metadata only, never data.

Run identity
    Every file gen-events writes carries the root attribute ``run_id`` (:func:`new_run_id`,
    drawn once per run: a shard, its siblings and their virtual file share it), beside the
    ``seed`` and the resolved ``config`` (docs/design.md 3.3).

Shards
    A shard's place is its root attributes ``shard``, ``n_shards``, ``first_event`` and
    ``n_events``; its dataset shapes are those of its datasets. The virtual file records,
    in its root attribute ``shard_layout`` (JSON, :func:`shard_layout`), the place and the
    dataset shapes of each shard it maps. :func:`check_shards` (called by
    :func:`~spectrocnn.dataset.open_events`) and :func:`check_shard` (for a reader that
    opens a shard itself, as :mod:`~spectrocnn.dataset.blocks` does) refuse a shard of
    another run (``run_id``, ``seed``, ``config``), out of its place, or of other shapes:
    HDF5 itself would read it without complaint (a corner of each image, hits that point
    to particles of other events). A virtual file written before run identifiers (no ``run_id``) is
    checked for what it records: the seed, the configuration and each shard's index.

Files of a training run
    :func:`file_identity` is what a train-cnn run records about its input files (path,
    ``run_id``, seed, number of events and :func:`fingerprint`, a hash of the root
    attributes and the dataset shapes); :func:`identity_change` says how a file differs
    from such a record (``None`` when it is the same file).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from spectrocnn.dataset.schema import SCHEMA, SCHEMA_V1
from spectrocnn.errors import EventFileError

__all__ = [
    "LAYOUT_ATTR",
    "RUN_ID_ATTR",
    "SHARD_SCHEMA",
    "SHARD_SCHEMAS",
    "check_shard",
    "check_shards",
    "file_identity",
    "fingerprint",
    "identity_change",
    "new_run_id",
    "shard_expectations",
    "shard_layout",
]

#: Root attribute holding the identifier of the generation run.
RUN_ID_ATTR = "run_id"

#: ``schema`` attribute of a shard file (of an event file of schema ``spectrocnn.events/2``).
SHARD_SCHEMA = "spectrocnn.events-shard/2"

#: The shard schema of each event file schema: the shards of a virtual file are of its version.
SHARD_SCHEMAS = {SCHEMA: SHARD_SCHEMA, SCHEMA_V1: "spectrocnn.events-shard/1"}

#: Root attribute of a virtual file: JSON list, one entry per shard (:func:`shard_layout`).
LAYOUT_ATTR = "shard_layout"

#: The place of a shard: its root attributes.
_PLACE = ("shard", "n_shards", "first_event", "n_events")


def new_run_id() -> str:
    """A fresh run identifier: 32 hexadecimal digits (a random UUID)."""
    return uuid.uuid4().hex


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _config(attrs: Mapping[str, Any]) -> Any:
    text = _text(attrs.get("config"))
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _shapes(f: h5py.File) -> dict[str, list[int]]:
    """Dataset name -> shape, every dataset of the file (metadata only)."""
    out: dict[str, list[int]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = [int(v) for v in obj.shape]

    f.visititems(visit)
    return out


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _record(f: h5py.File) -> dict[str, Any]:
    """What a shard file says about itself: schema, run identity, place, dataset shapes."""
    a = f.attrs
    rec: dict[str, Any] = {
        "schema": _text(a.get("schema")),
        "run_id": _text(a.get(RUN_ID_ATTR)),
        "seed": _int(a.get("seed")),
        "config": _config(a),
    }
    rec.update({k: _int(a.get(k)) for k in _PLACE})
    rec["shapes"] = _shapes(f)
    return rec


def shard_layout(shards: Mapping[str, h5py.File]) -> str:
    """The ``shard_layout`` attribute of a virtual file over ``shards``, in event order.

    Parameters
    ----------
    shards : mapping
        Shard file name -> the shard, open; in the order the virtual file maps them.

    Returns
    -------
    str
        JSON list of ``{"name", "shard", "n_shards", "first_event", "n_events",
        "shapes"}``: shard ``k`` of ``len(shards)`` starts where shard ``k - 1`` ends, holds
        as many events as its ``n_events`` attribute says, and its datasets have the shapes
        they have now (dataset name -> shape).
    """
    entries = []
    first = 0
    for k, (name, f) in enumerate(shards.items()):
        rec = _record(f)
        n = rec["n_events"] if rec["n_events"] is not None else int(f["images"].shape[0])
        entries.append(
            {"name": name, "shard": k, "n_shards": len(shards), "first_event": first,
             "n_events": n, "shapes": rec["shapes"]}
        )  # fmt: skip
        first += n
    return json.dumps(entries, sort_keys=True)


def shard_expectations(path: str, attrs: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """What a virtual event file expects of each of its shards.

    Parameters
    ----------
    path : str
        The virtual file (for messages).
    attrs : mapping
        Its root attributes.

    Returns
    -------
    dict or None
        Shard file name -> its expected ``run_id``, ``seed``, ``config``, schema
        (:data:`SHARD_SCHEMAS` of the virtual file's ``schema``; :data:`SHARD_SCHEMA` when
        ``attrs`` has none), place and dataset shapes (for a file written before run
        identifiers: ``seed``, ``config``, schema and the shard's index and count only);
        None for a file that lists no shards.

    Raises
    ------
    EventFileError
        When the ``shard_layout`` attribute is not JSON.
    """
    schema = _text(attrs.get("schema"))
    common = {
        "run_id": _text(attrs.get(RUN_ID_ATTR)),
        "seed": _int(attrs.get("seed")),
        "config": _config(attrs),
        "shard_schema": SHARD_SCHEMA if schema is None else SHARD_SCHEMAS.get(schema),
    }
    layout = _text(attrs.get(LAYOUT_ATTR))
    if layout is not None:
        try:
            entries = json.loads(layout)
            return {e["name"]: {**common, **e} for e in entries}
        except (ValueError, TypeError, KeyError):
            raise EventFileError(f"{path}: the {LAYOUT_ATTR} attribute is corrupt") from None
    names = attrs.get("shards")  # written before run identifiers: the names in order
    if names is None:
        return None
    names = [_text(n) for n in np.atleast_1d(names)]
    return {n: {**common, "shard": k, "n_shards": len(names)} for k, n in enumerate(names)}


def _first_difference(actual: Any, expected: Any, key: str = "") -> str | None:
    """``"key value, expected value"`` of the first leaf where two JSON values differ."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        for k in sorted(set(actual) | set(expected)):
            sub = f"{key}.{k}" if key else str(k)
            if k not in actual:
                return f"{sub} missing, expected {expected[k]!r}"
            if k not in expected:
                return f"{sub} {actual[k]!r}, expected none"
            diff = _first_difference(actual[k], expected[k], sub)
            if diff:
                return diff
        return None
    if actual != expected:
        return f"{key or 'value'} {actual!r}, expected {expected!r}"
    return None


def _shard_difference(rec: Mapping[str, Any], exp: Mapping[str, Any]) -> str | None:
    """How a shard (:func:`_record`) differs from what its virtual file expects, or None."""
    if rec["schema"] != exp.get("shard_schema", SHARD_SCHEMA):
        return f"is not a complete shard file (schema {rec['schema']!r})"
    if rec["seed"] != exp["seed"]:
        return f"belongs to another run (seed {rec['seed']}, expected {exp['seed']})"
    if exp.get("config") is not None and rec["config"] != exp["config"]:
        diff = _first_difference(rec["config"], exp["config"])
        return f"belongs to another run (configuration: {diff})"
    if exp.get("run_id") is not None and rec["run_id"] != exp["run_id"]:
        got = "no run_id" if rec["run_id"] is None else f"run_id {rec['run_id']}"
        return f"belongs to another run ({got}, expected {exp['run_id']})"
    if (rec["shard"], rec["n_shards"]) != (exp["shard"], exp["n_shards"]):
        return (
            f"is shard {rec['shard']} of {rec['n_shards']}, "
            f"expected {exp['shard']} of {exp['n_shards']}"
        )
    if "first_event" in exp:
        got = (rec["first_event"], rec["n_events"])
        want = (exp["first_event"], exp["n_events"])
        if got != want:
            return (
                f"holds events {got[0]}:{got[0] + got[1]}, expected {want[0]}:{want[0] + want[1]}"
            )
    for name, shape in sorted(exp.get("shapes", {}).items()):
        have = rec["shapes"].get(name)
        if have is None:
            return f"has no /{name}"
        if have != shape:
            return f"has /{name} of shape {tuple(have)}, expected {tuple(shape)}"
    return None


def check_shard(
    path: str, name: str, shard: h5py.File, expected: Mapping[str, Mapping[str, Any]] | None
) -> None:
    """Refuse a shard that does not belong to the virtual event file ``path``.

    Parameters
    ----------
    path : str
        The virtual event file (for the message).
    name : str
        The shard's file name, as the virtual file maps it.
    shard : h5py.File
        The shard, open (only its attributes and dataset shapes are read).
    expected : mapping or None
        :func:`shard_expectations` of the virtual file (None: nothing to check).

    Raises
    ------
    EventFileError
        ``"PATH: shard NAME belongs to another run (seed 2, expected 1)"`` and the like:
        another run (``run_id``, ``seed``, ``config``), another place (index, count,
        events) or other dataset shapes; or a shard the virtual file does not list.
    """
    if expected is None:
        return
    if name not in expected:
        raise EventFileError(f"{path}: shard {name} is not one of the shards it lists")
    diff = _shard_difference(_record(shard), expected[name])
    if diff is not None:
        raise EventFileError(f"{path}: shard {name} {diff}")


def check_shards(path: str, f: h5py.File) -> None:
    """Refuse a virtual event file (sharded gen-events) whose shards do not match it.

    Opens each shard the virtual file lists once, beside it, and compares its run
    identity, place and dataset shapes with what the virtual file records
    (:func:`check_shard`); a file that is not virtual passes. Missing shards are the
    caller's to report.

    Parameters
    ----------
    path : str
        The virtual file, as given (for messages).
    f : h5py.File
        The virtual file, open.

    Raises
    ------
    EventFileError
        Naming ``path``, the shard and what differs.
    """
    expected = shard_expectations(path, f.attrs)
    if not expected:
        return
    base = os.path.dirname(os.path.abspath(path))
    for name in expected:
        full = os.path.join(base, name)
        try:
            shard = h5py.File(full, "r")
        except FileNotFoundError:
            continue  # reported by the caller, for every virtual source
        except OSError as exc:
            msg = " ".join(str(exc).split())
            raise EventFileError(f"{path}: cannot open its shard {name} ({msg})") from None
        with shard:
            check_shard(path, name, shard, expected)


# -- files of a training run ----------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.shape else _jsonable(value[()])
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def fingerprint(f: h5py.File) -> str:
    """A cheap content fingerprint of an open HDF5 file: SHA-256 (hex) of its root
    attributes and the names, shapes and dtypes of its datasets (no data is read)."""
    attrs = {k: _jsonable(f.attrs[k]) for k in f.attrs}
    datasets: dict[str, list[Any]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            datasets[name] = [list(obj.shape), str(obj.dtype)]

    f.visititems(visit)
    text = json.dumps({"attrs": attrs, "datasets": datasets}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_identity(path: str, f: h5py.File) -> dict[str, Any]:
    """What a training run records about an event file (attributes and shapes only).

    Parameters
    ----------
    path : str
    f : h5py.File
        The file, open.

    Returns
    -------
    dict
        ``path`` (absolute), ``run_id`` (None for a file written before run identifiers),
        ``seed``, ``n_events`` and ``fingerprint`` (:func:`fingerprint`).
    """
    return {
        "path": os.path.abspath(path),
        "run_id": _text(f.attrs.get(RUN_ID_ATTR)),
        "seed": _int(f.attrs.get("seed")),
        "n_events": int(f["images"].shape[0]),
        "fingerprint": fingerprint(f),
    }


def identity_change(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """How a file (:func:`file_identity`) differs from the identity a run recorded.

    Compares what the record holds (a record written before fingerprints has only the
    path, seed and number of events): the seed, the number of events, the run identifier,
    then the fingerprint (the fallback for files without a run identifier).

    Returns
    -------
    str or None
        ``"seed 2, was 1"`` and the like; None when nothing recorded differs.
    """
    for key in ("seed", "n_events", "run_id"):
        if key in recorded and recorded[key] != current.get(key):
            now, was = current.get(key), recorded[key]
            return f"{key} {'none' if now is None else now}, was {'none' if was is None else was}"
    if "fingerprint" in recorded and recorded["fingerprint"] != current.get("fingerprint"):
        return "its attributes or dataset shapes changed (another content fingerprint)"
    return None
