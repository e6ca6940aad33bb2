"""The virtual event file that presents the shard files of a sharded run as one event file.

``/images``, ``/labels`` and every truth column are HDF5 virtual datasets that map the
shards' datasets in order, by file names *relative* to the virtual file (HDF5 looks them up
beside it). The ``offsets`` datasets are real (N + 1 integers each), computed from the
shards'. The root attributes are those of an ordinary event file (``n_events`` of the whole
set, ``created`` when it was assembled, ``run_id``), plus ``shards``, the list of shard
file names, and ``shard_layout``, the place and dataset shapes of each shard
(:mod:`spectrocnn.dataset.identity`, docs/design.md 3.3).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import h5py
import numpy as np

from spectrocnn.dataset.identity import (
    LAYOUT_ATTR,
    RUN_ID_ATTR,
    check_shard,
    shard_expectations,
    shard_layout,
)
from spectrocnn.dataset.schema import SCHEMA, STORED_HIT_COLUMNS, STORED_PARTICLE_COLUMNS
from spectrocnn.errors import EventFileError

__all__ = ["write_virtual_file"]

#: Root attributes of a shard that the virtual file does not take over.
_SHARD_ATTRS = ("schema", "first_event", "first_particle", "shard", "n_shards", "n_events_total")

_GROUPS = ("particles", "hits")


def write_virtual_file(path: str | os.PathLike, shard_paths: Sequence[str | os.PathLike]) -> int:
    """Write the virtual event file that presents shard files as one event file.

    Parameters
    ----------
    path : path-like
        The file to write (replaced if it exists; not atomic by itself).
    shard_paths : sequence of path-like
        The shards in event order, in the directory of ``path`` (their names are recorded
        relative to it).

    Returns
    -------
    int
        Number of events.

    Raises
    ------
    EventFileError
        When a shard is not a complete shard file, belongs to another run than the first
        (``run_id``, ``seed``, ``config``) or does not follow the one before.
    ValueError
        When a shard is not in the directory of ``path``, or there is none.
    """
    out = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(out)
    names: list[str] = []
    for p in shard_paths:
        full = os.path.abspath(os.fspath(p))
        if os.path.dirname(full) != directory:
            raise ValueError(f"shard {full} is not in the directory of {out}")
        names.append(os.path.basename(full))
    if not names:
        raise ValueError("no shard files")
    info, layout = _read_shards(out, names)
    with h5py.File(os.path.join(directory, names[0]), "r") as first, h5py.File(out, "w") as f:
        _write_datasets(f, first, names, info)
        n_events = sum(i["n"] for i in info)
        for k, v in first.attrs.items():
            if k not in _SHARD_ATTRS:
                f.attrs[k] = v
        f.attrs["n_events"] = np.int64(n_events)
        f.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        f.attrs["shards"] = np.array(names, dtype=h5py.string_dtype())
        f.attrs[LAYOUT_ATTR] = layout
        f.flush()
        f.attrs["schema"] = SCHEMA  # last: the file is complete
    return n_events


def _read_shards(out: str, names: list[str]) -> tuple[list[dict[str, Any]], Any]:
    """Check that every shard belongs to the run of the first and follows the one before;
    per shard its events, rows and offsets, and the layout of them all."""
    directory = os.path.dirname(out)
    info: list[dict[str, Any]] = []
    with ExitStack() as stack:
        opened: dict[str, h5py.File] = {}
        for name in names:
            full = os.path.join(directory, name)
            try:
                opened[name] = stack.enter_context(h5py.File(full, "r"))
            except OSError as exc:
                raise EventFileError(f"{full}: cannot read the shard ({exc})") from None
        first = opened[names[0]]
        expected = {k: first.attrs[k] for k in (RUN_ID_ATTR, "seed", "config") if k in first.attrs}
        layout = shard_layout(opened)
        expected[LAYOUT_ATTR] = layout
        expectations = shard_expectations(out, expected)
        for name, f in opened.items():
            check_shard(out, name, f, expectations)
            info.append(
                {
                    "n": int(f["images"].shape[0]),
                    "rows": {g: int(f[f"{g}/event"].shape[0]) for g in _GROUPS},
                    "offsets": {g: f[f"{g}/offsets"][()] for g in _GROUPS},
                }
            )
    return info, layout


def _write_datasets(
    f: h5py.File, first: h5py.File, names: list[str], info: list[dict[str, Any]]
) -> None:
    """The virtual datasets over the shards, and the real offsets, in ``f``."""
    events = [i["n"] for i in info]
    _virtual(f, first, "images", names, events)
    _virtual(f, first, "labels", names, events)
    if "events" in first:
        f.create_group("events")
        for col in first["events"]:
            _virtual(f, first, f"events/{col}", names, events)
    for group, spec in (("particles", STORED_PARTICLE_COLUMNS), ("hits", STORED_HIT_COLUMNS)):
        f.create_group(group)
        counts = [i["rows"][group] for i in info]
        for col in spec:
            _virtual(f, first, f"{group}/{col}", names, counts)
        parts = [np.zeros(1, np.int64)]
        base = 0
        for i in info:
            parts.append(np.asarray(i["offsets"][group][1:], np.int64) + base)
            base += i["rows"][group]
        off = f.create_dataset(f"{group}/offsets", data=np.concatenate(parts))
        for k, v in first[f"{group}/offsets"].attrs.items():
            off.attrs[k] = v


def _virtual(
    f: h5py.File, first: h5py.File, name: str, names: list[str], counts: list[int]
) -> None:
    """Dataset ``name`` of ``f``: the rows of dataset ``name`` of every shard, in order
    (``counts[k]`` rows of shard ``names[k]``), with the attributes of the first shard's."""
    src = first[name]
    tail = tuple(src.shape[1:])
    total = sum(counts)
    if total == 0:
        ds = f.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=src.dtype)
    else:
        layout = h5py.VirtualLayout(shape=(total, *tail), dtype=src.dtype)
        pos = 0
        for fname, c in zip(names, counts, strict=True):
            if c:
                layout[pos : pos + c] = h5py.VirtualSource(
                    fname, name, shape=(c, *tail), dtype=src.dtype
                )
            pos += c
        ds = f.create_virtual_dataset(name, layout, fillvalue=0)
    for k, v in src.attrs.items():
        ds.attrs[k] = v
