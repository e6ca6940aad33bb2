"""Helpers shared by several test modules (imported as ``_helpers``)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from spectrocnn.dataset.raster import ImageSpec
from spectrocnn.simulate import HIT_COLUMNS, HIT_MOMENTUM_COLUMNS, PARTICLE_COLUMNS, EventBatch
from spectrocnn.simulate.tables import HitTable


def assert_batches_equal(a: EventBatch, b: EventBatch) -> None:
    assert np.array_equal(a.labels, b.labels)
    for name, spec in (("particles", PARTICLE_COLUMNS), ("hits", HIT_COLUMNS)):
        ta, tb = getattr(a, name), getattr(b, name)
        for col, (dtype, _) in spec.items():
            x, y = getattr(ta, col), getattr(tb, col)
            assert x.dtype == dtype and y.dtype == dtype, (name, col)
            assert np.array_equal(x, y, equal_nan=dtype.kind == "f"), (name, col)


def stored_like(batch: EventBatch, resolution_um=None) -> EventBatch:
    """``batch`` with its hit values as the README says a version 2 event file stores them,
    computed here from that statement alone: measured ``x, y, z`` rounded (half to even) to
    a multiple of ``2**floor(log2(resolution_um / 1000 / 50))`` mm of the hit's layer
    (``resolution_um``: one value per layer; None or 0: no step) and then to float32;
    true positions and momenta float32's nearest; particles unchanged."""
    h = batch.hits
    step = np.zeros(len(h))
    if resolution_um is not None:
        res = np.asarray(resolution_um, dtype=float)[h.layer.astype(int)]
        pos = res > 0
        step[pos] = [2.0 ** math.floor(math.log2(r / 1000 / 50)) for r in res[pos]]

    def measured(x: np.ndarray) -> np.ndarray:
        out = x.copy()
        use = (step > 0) & (np.abs(x) < step * 2.0**24)
        out[use] = np.round(x[use] / step[use]) * step[use]
        return out.astype(np.float32).astype(np.float64)

    cols = h.columns(momentum=True)
    for name in ("x", "y", "z"):
        cols[name] = measured(cols[name])
    for name in ("true_x", "true_y", "true_z", "true_px", "true_py", "true_pz"):
        if name in cols:
            cols[name] = cols[name].astype(np.float32).astype(np.float64)
    return EventBatch(batch.labels, batch.particles, HitTable(**cols), batch.stop)


def assert_truth_as_stored(read: EventBatch, memory: EventBatch, resolution_um=None) -> None:
    """``read`` (from a version 2 file) holds ``memory``'s truth as :func:`stored_like`
    says, the momentum at the hits included (NaN where ``memory`` does not know it)."""
    expected = stored_like(memory, resolution_um)
    assert_batches_equal(read, expected)
    assert read.hits.has_momentum
    for col in HIT_MOMENTUM_COLUMNS:
        want = getattr(expected.hits, col)
        if want is None:
            want = np.full(len(expected.hits), np.nan)
        assert np.array_equal(getattr(read.hits, col), want, equal_nan=True), col


def exact_pixel(x: float, y: float, spec: ImageSpec) -> tuple[int, int] | None:
    """The documented convention in exact rational arithmetic on the float values."""
    x0, x1, y0, y1 = (Fraction(v) for v in spec.window_mm)
    n = spec.size
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    col = math.floor((Fraction(x) - x0) / (x1 - x0) * n)
    row = math.floor((y1 - Fraction(y)) / (y1 - y0) * n)
    if 0 <= col < n and 0 <= row < n:
        return row, col
    return None


def brute_force_images(x, y, ev, n_events, spec):
    """Disk of every in-window hit, pixel by pixel (exact pixel, documented offsets)."""
    n = spec.size
    counts = np.zeros((n_events, n, n), dtype=np.int64)
    r = spec.hit_radius_px
    offs = [(a, b) for a in range(-r, r + 1) for b in range(-r, r + 1) if a * a + b * b <= r * r]
    for xi, yi, ei in zip(x.tolist(), y.tolist(), ev.tolist(), strict=True):
        pix = exact_pixel(xi, yi, spec)
        if pix is None:
            continue
        for a, b in offs:
            if 0 <= pix[0] + a < n and 0 <= pix[1] + b < n:
                counts[ei, pix[0] + a, pix[1] + b] += 1
    return np.minimum(counts, 255).astype(np.uint8)


def sparse_images(rng: np.random.Generator, n: int, h: int, w: int, hits: int) -> np.ndarray:
    """Images with ``hits`` random lit pixels each, values 1..255."""
    imgs = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        r, c = rng.integers(0, h, hits), rng.integers(0, w, hits)
        imgs[i, r, c] = rng.integers(1, 256, hits)
    return imgs


def write_event_file(
    path: Path,
    n: int = 160,
    size: int = 64,
    seed: int = 0,
    labels: np.ndarray | None = None,
    window_mm: tuple[float, float, float, float] = (-400.0, 400.0, -400.0, 400.0),
) -> tuple[np.ndarray, np.ndarray]:
    """An event file with synthetic images and no truth rows.

    Class 1 events have a straight row of hits, class 0 events scattered hits only.
    """
    from spectrocnn.dataset import EventFileWriter, ImageSpec
    from spectrocnn.simulate.events import (
        HIT_COLUMNS,
        PARTICLE_COLUMNS,
        EventBatch,
        HitTable,
        ParticleTable,
    )

    rng = np.random.default_rng(seed)
    lab = rng.permutation(np.arange(n) % 2).astype(np.uint8) if labels is None else labels
    lab = np.asarray(lab, np.uint8)
    imgs = sparse_images(rng, n, size, size, 10)
    for i in np.flatnonzero(lab):
        imgs[i, rng.integers(0, size), :: max(1, size // 16)] = 1
    parts = ParticleTable(**{k: np.zeros(0, dt) for k, (dt, _) in PARTICLE_COLUMNS.items()})
    hits = HitTable(**{k: np.zeros(0, dt) for k, (dt, _) in HIT_COLUMNS.items()})
    with EventFileWriter(path, n, ImageSpec(size=size, window_mm=window_mm), seed=seed) as w:
        w.append(EventBatch(lab, parts, hits), imgs)
    return imgs, lab


def make_sharded(
    directory: Path,
    n: int,
    shards: int,
    seed: int,
    config: dict | None = None,
    client: object | None = None,
) -> Path:
    """A sharded event set (gen-events --shards) made in this process, on a Dask cluster of
    one thread (no worker processes to start) unless ``client`` is given; returns the path
    of its virtual file. ``config``: a configuration dict (default: 16x16 images)."""
    from spectrocnn.config import config_from_dict
    from spectrocnn.dataset.shards import generate_sharded

    cfg = config_from_dict(config if config is not None else {"image": {"size": 16}})
    if client is not None:
        return Path(
            generate_sharded(cfg, n, directory, shards=shards, seed=seed, client=client).path
        )
    import distributed

    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ) as c:
        return Path(generate_sharded(cfg, n, directory, shards=shards, seed=seed, client=c).path)


def auto_precision_here(arch: str = "polar") -> str:
    """What ``--precision auto`` must choose on this machine's CPU, read independently of
    the package: bf16 where /proc/cpuinfo lists a native bfloat16 instruction set (AMX or
    AVX512_BF16), fp32 elsewhere and always for the lecture network (README, "Precision")."""
    if arch == "lecture":
        return "fp32"
    try:
        with open("/proc/cpuinfo") as f:
            flags = {w for line in f if line.startswith("flags") for w in line.split()}
    except OSError:
        return "fp32"
    return "bf16" if flags & {"amx_bf16", "avx512_bf16"} else "fp32"


def to_v1(src: Path, dst: Path) -> None:
    """Write ``src`` (an event file of schema 2) as the code before schema 2 wrote it: the
    truth columns of ``HIT_COLUMNS`` and ``PARTICLE_COLUMNS`` in float64 (momentum at the
    hits dropped), chunks of 16 384 rows, integer columns with shuffle and gzip level 1,
    float columns without a filter, ``schema`` = ``spectrocnn.events/1`` written last
    (tests/data/v1_layout.json is the layout of a file of that code)."""
    import h5py

    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for name in ("images", "labels", "events"):
            if name in f:
                f.copy(f[name], g, name)
        for group, spec in (("particles", PARTICLE_COLUMNS), ("hits", HIT_COLUMNS)):
            out = g.create_group(group)
            for col, (dtype, unit) in spec.items():
                data = f[group][col][()].astype(dtype)
                filt = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
                ds = out.create_dataset(
                    col, shape=(0,), maxshape=(None,), chunks=(16384,), dtype=dtype,
                    **(filt if dtype.kind in "iu" else {}),
                )  # fmt: skip
                ds.resize((len(data),))
                ds[:] = data
                if unit is not None:
                    ds.attrs["units"] = unit
            f.copy(f[group]["offsets"], out, "offsets")
        g["hits/particle"].attrs["description"] = "row in /particles, -1 = noise hit"
        for k, v in f.attrs.items():
            if k != "schema":
                g.attrs[k] = v
        g.flush()
        g.attrs["schema"] = "spectrocnn.events/1"


def train_on_local_workers(args: list[list[str]], timeout: float = 300) -> list[tuple[int, str]]:
    """Run ``train-cnn args[i]`` as worker ``i`` of a local multi-worker cluster (each its own
    process, ``TF_CONFIG`` naming free ports of 127.0.0.1); (exit code, stderr) of each."""
    import json
    import os
    import socket
    import subprocess
    import sys

    socks = [socket.socket() for _ in args]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        workers = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()
    code = "import sys; from spectrocnn.cli.train_cnn import main; sys.exit(main())"
    procs = []
    for index, argv in enumerate(args):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        procs.append(subprocess.Popen([sys.executable, "-c", code, *argv], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))  # fmt: skip
    try:
        results = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return [(p.returncode, err) for p, (_, err) in zip(procs, results, strict=True)]
