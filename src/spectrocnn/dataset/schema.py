"""What the event file stores of the truth: schema versions, column dtypes and rounding.

The one home of the stored form of the truth columns (docs/design.md 3.3); the writer and
the reader (:mod:`spectrocnn.dataset.eventfile`), the gen-events pipeline (which makes its
images from the stored hit positions) and the sharded virtual files use it.

Versions
    ``spectrocnn.events/2`` (:data:`SCHEMA`, written): the truth columns of
    :data:`STORED_PARTICLE_COLUMNS` and :data:`STORED_HIT_COLUMNS`, each chunked by
    :data:`TRUTH_CHUNK_ROWS` rows with HDF5's standard shuffle and gzip (level 1) filters,
    readable by every HDF5 reader without plugins (the writer compresses the chunks itself,
    as the filters store them: :mod:`spectrocnn.dataset.chunkfilter`). ``spectrocnn.events/1``
    (:data:`SCHEMA_V1`, read only): every float column float64, stored without a filter,
    and no momentum at the hits.

Precision of the version 2 columns
    - particles: float64, exact (the generator's values, from which the labels come).
    - ``hits/x, y, z`` (measured): float32, rounded to the nearest multiple of the step of
      the hit's layer, :func:`measured_rounding_mm`: the largest power of two [mm] not above
      ``resolution_um / 50`` (``2**-10`` mm = 0.98 um for 50 um), so the rounding error is
      at most 1 % of the layer's resolution (0.49 um at 50 um) and adds 0.002 % to it in
      quadrature; a layer of resolution 0 gets step 0: float32's nearest value.
    - ``hits/true_x, true_y, true_z`` and ``hits/true_px, true_py, true_pz``: float32's
      nearest value, relative error at most ``2**-24`` (6e-8: 0.06 um at 1 m).
    Where ``|value| >= 2**24 * step`` (16 m for a 2**-10 mm step), float32 cannot hold a
    multiple of the step and the value is float32's nearest (:func:`round_to_step`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spectrocnn.simulate.tables import (
    HIT_COLUMNS,
    HIT_MOMENTUM_COLUMNS,
    PARTICLE_COLUMNS,
    EventBatch,
    HitTable,
)

__all__ = [
    "MEASURED_RESOLUTION_FRACTION",
    "SCHEMA",
    "SCHEMAS",
    "SCHEMA_V1",
    "STORED_HIT_COLUMNS",
    "STORED_PARTICLE_COLUMNS",
    "TRUTH_CHUNK_ROWS",
    "TRUTH_FILTER",
    "as_stored",
    "check_rounding",
    "measured_rounding_mm",
    "round_to_step",
    "stored_columns",
    "stored_hit_columns",
]

#: The ``schema`` attribute of the files the writer makes.
SCHEMA = "spectrocnn.events/2"

#: The first version: float64 truth stored plain, no momentum at the hits (read only).
SCHEMA_V1 = "spectrocnn.events/1"

#: Every version the readers take, newest first.
SCHEMAS = (SCHEMA, SCHEMA_V1)

#: Rows per chunk of every truth column (256 KiB of float32, 512 KiB of int64).
TRUTH_CHUNK_ROWS = 1 << 16

#: HDF5 filters of every truth column: shuffle, then gzip level 1 (no plugin to read). The
#: writer stores chunks compressed by :func:`~spectrocnn.dataset.chunkfilter.encode_chunk`.
TRUTH_FILTER: dict[str, Any] = {"compression": "gzip", "compression_opts": 1, "shuffle": True}

#: The measured positions are rounded to a power of two [mm] not above the layer's
#: resolution divided by this.
MEASURED_RESOLUTION_FRACTION = 50

_F32 = np.dtype(np.float32)

#: Stored particle columns (version 2): name -> (dtype, unit); as in memory, all exact.
STORED_PARTICLE_COLUMNS: dict[str, tuple[np.dtype, str | None]] = dict(PARTICLE_COLUMNS)

#: Stored hit columns (version 2): name -> (dtype, unit). The float columns are float32
#: (module docstring); ``true_px, true_py, true_pz`` are the momentum at each crossing.
STORED_HIT_COLUMNS: dict[str, tuple[np.dtype, str | None]] = {
    **{k: ((_F32 if dt.kind == "f" else dt), u) for k, (dt, u) in HIT_COLUMNS.items()},
    **{k: (_F32, u) for k, (_, u) in HIT_MOMENTUM_COLUMNS.items()},
}

_MEASURED = ("x", "y", "z")


def stored_columns(
    schema: str,
) -> tuple[dict[str, tuple[np.dtype, str | None]], dict[str, tuple[np.dtype, str | None]]]:
    """The particle and hit columns a file of ``schema`` holds: name -> (dtype, unit).

    Parameters
    ----------
    schema : str
        One of :data:`SCHEMAS`.

    Returns
    -------
    particles, hits : dict
        Version 1: :data:`~spectrocnn.simulate.PARTICLE_COLUMNS` and
        :data:`~spectrocnn.simulate.HIT_COLUMNS` (float64, no momentum); version 2:
        :data:`STORED_PARTICLE_COLUMNS` and :data:`STORED_HIT_COLUMNS`.
    """
    if schema == SCHEMA_V1:
        return dict(PARTICLE_COLUMNS), dict(HIT_COLUMNS)
    if schema == SCHEMA:
        return dict(STORED_PARTICLE_COLUMNS), dict(STORED_HIT_COLUMNS)
    raise ValueError(f"unknown event file schema {schema!r}")


def measured_rounding_mm(resolution_um: Any) -> np.ndarray:
    """Rounding step of the stored measured positions of each layer [mm].

    Parameters
    ----------
    resolution_um : Detector or array-like (L,)
        A :class:`~spectrocnn.simulate.Detector` (its layers' ``resolution_um``) or the
        resolutions themselves [um], finite and >= 0.

    Returns
    -------
    ndarray float64 (L,)
        ``2**floor(log2(resolution_um * 1e-3 / 50))`` [mm], the largest power of two not
        above 1/50 of the resolution (:data:`MEASURED_RESOLUTION_FRACTION`), so that the
        rounding error, at most half a step, is at most 1 % of the resolution; 0 for a
        layer of resolution 0 (float32's nearest value only).

    Raises
    ------
    ValueError
        A resolution that is negative or not finite.
    """
    layers = getattr(resolution_um, "layers", None)
    if layers is not None:
        resolution_um = [layer.resolution_um for layer in layers]
    res = np.atleast_1d(np.asarray(resolution_um, dtype=np.float64))
    if res.ndim != 1 or not np.all(np.isfinite(res)) or np.any(res < 0):
        raise ValueError(f"resolutions must be finite and >= 0 [um], got {res.tolist()}")
    step = np.zeros_like(res)
    pos = res > 0
    # frexp is exact: m in [0.5, 1), so 2**(e - 1) <= value < 2**e
    _, e = np.frexp(res[pos] * 1e-3 / MEASURED_RESOLUTION_FRACTION)
    step[pos] = np.ldexp(1.0, e - 1)
    return step


def check_rounding(rounding_mm: Sequence[float] | np.ndarray | None) -> np.ndarray | None:
    """``rounding_mm`` as a float64 (L,) array of powers of two or zeros, or None.

    Raises
    ------
    ValueError
        A step that is negative, not finite or not a power of two (or 0).
    """
    if rounding_mm is None:
        return None
    step = np.atleast_1d(np.asarray(rounding_mm, dtype=np.float64))
    mantissa, _ = np.frexp(step)
    if step.ndim != 1 or not np.all(np.isfinite(step)) or np.any(step < 0):
        raise ValueError(f"rounding steps must be finite and >= 0 [mm], got {step.tolist()}")
    if np.any((step > 0) & (mantissa != 0.5)):
        raise ValueError(f"rounding steps must be powers of two or 0 [mm], got {step.tolist()}")
    return step


def round_to_step(values: np.ndarray, step: np.ndarray | float) -> np.ndarray:
    """Each value as float32, the nearest multiple of its ``step`` where one is.

    Parameters
    ----------
    values : ndarray float (n,)
    step : float or ndarray float (n,)
        Powers of two or 0 (0: no step, float32's nearest value).

    Returns
    -------
    ndarray float32 (n,)
        ``float32(round(v / step) * step)`` (half to even) where ``step > 0`` and
        ``|v| < 2**24 * step`` (so the multiple is a float32), else ``float32(v)``;
        NaN and inf unchanged. Applying it again changes nothing.
    """
    v = np.asarray(values, dtype=np.float64)
    if np.ndim(step) == 0 and step == 0:
        with np.errstate(over="ignore"):
            return v.astype(np.float32)
    s = np.broadcast_to(np.asarray(step, dtype=np.float64), v.shape)
    use = (s > 0) & (np.abs(v) < s * 16777216.0)  # 2**24: every multiple is a float32
    out = v.copy()
    out[use] = np.round(v[use] / s[use]) * s[use]  # exact: s is a power of two
    with np.errstate(over="ignore"):
        return out.astype(np.float32)


def stored_hit_columns(hits: HitTable, rounding_mm: np.ndarray | None) -> dict[str, np.ndarray]:
    """The hit columns as a version 2 file stores them.

    Parameters
    ----------
    hits : HitTable
    rounding_mm : ndarray float64 (L,) or None
        Rounding step of the measured positions of each layer (:func:`measured_rounding_mm`);
        None: float32's nearest value.

    Returns
    -------
    dict
        :data:`STORED_HIT_COLUMNS`, name -> array of its dtype; the momentum columns are
        NaN where ``hits`` does not know them (``hits.has_momentum`` false).

    Raises
    ------
    ValueError
        A hit on a layer that ``rounding_mm`` does not cover.
    """
    cols = hits.columns(momentum=True)
    n = len(hits)
    step: np.ndarray | float = 0.0
    if rounding_mm is not None and n:
        layer = cols["layer"].astype(np.int64)
        bad = (layer < 0) | (layer >= len(rounding_mm))
        if np.any(bad):
            raise ValueError(
                f"a hit on layer {int(layer[bad][0])}: the rounding steps cover layers "
                f"0..{len(rounding_mm) - 1}"
            )
        step = rounding_mm[layer]
    out: dict[str, np.ndarray] = {}
    for name, (dtype, _) in STORED_HIT_COLUMNS.items():
        if name in _MEASURED:
            out[name] = round_to_step(cols[name], step)
        elif name in cols:
            with np.errstate(over="ignore"):
                out[name] = np.asarray(cols[name]).astype(dtype, copy=False)
        else:  # the momentum of a batch that does not know it
            out[name] = np.full(n, np.nan, dtype=dtype)
    return out


def as_stored(batch: EventBatch, rounding_mm: np.ndarray | None) -> EventBatch:
    """The batch with its hit values as a version 2 file stores them (:func:`stored_hit_columns`)
    and read back (float64 again, exactly the stored values); the particles unchanged.

    gen-events rasterizes the images from these positions, so that an image is exactly the
    rasterization of the stored measured hits.
    """
    cols = stored_hit_columns(batch.hits, rounding_mm)
    if not batch.hits.has_momentum:
        for name in HIT_MOMENTUM_COLUMNS:
            del cols[name]
    return EventBatch(batch.labels, batch.particles, HitTable(**cols), batch.stop)  # float64 again
