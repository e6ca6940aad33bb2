"""Bytes per event of the event file by dataset, schema 1 against schema 2, and the speed of
gen-events against its floor (issue 18 item 2).

In one run, on the ``lecture`` preset (512 x 512, gzip), seed ``--seed``:

* ``gen-events --n N`` of this code with ``--workers 1`` and ``--workers 2``, timed as
  whole commands, and the floor of ``benchmarks/gen_events.py`` (h5py writing the same
  images from memory with gzip level 1), interleaved; with ``--baseline-src DIR`` (the
  ``src`` directory of another checkout, e.g. the code before schema 2) that code's
  ``gen-events --workers 1`` and ``--workers 2`` too, in the same rounds. The CPU time of
  the ``--workers 1`` runs (one process: user + system) compares the two codes' work where
  a shared machine makes wall times drift, and so does the CPU time of all the processes
  of each run (sampled: :func:`gen_events.run_gen_events`), the least of the rounds;
* the file of schema 1 for the same events: the baseline's file when it is one, else
  written here as the code before schema 2 wrote it (the events of gen-events' chunks
  before any rounding, images with the encoder's table 0 alone, float64 truth without a
  filter, integer columns with shuffle and gzip, chunks of 16 384 rows);
* the storage of every dataset of the files (``get_storage_size``) per event, and the
  whole files per event (HDF5's own metadata included): schema 1, the baseline's file when
  it is of another schema (e.g. the code before a change of the writer), this code's.

Target: at most 6 KB (6 000 bytes) per event for the lecture preset, gen-events / floor at
most 1.0 with 2 workers. The machine may be shared: ``--repeat`` takes the best of several.

Usage::

    python benchmarks/file_size.py [--n 20000] [--repeat 1] [--baseline-src DIR] [--record]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
from _record import grouped
from gen_events import run_floor, run_gen_events

__all__ = ["main"]

TARGET_BYTES = 6000


@contextmanager
def _pythonpath(src: str | None):
    """Run the commands started inside with ``PYTHONPATH=src`` (None: unchanged)."""
    old = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = src
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def write_schema_1(path: Path, n: int, seed: int) -> None:
    """The lecture file of ``n`` events and ``seed`` as the code before schema 2 wrote it."""
    from spectrocnn.config import preset_config
    from spectrocnn.dataset import deflate
    from spectrocnn.dataset.eventfile import event_summaries
    from spectrocnn.dataset.pipeline import chunk_events, chunk_rng
    from spectrocnn.dataset.raster import rasterize_sparse
    from spectrocnn.simulate import HIT_COLUMNS, PARTICLE_COLUMNS, simulate_events
    from spectrocnn.simulate.tables import concatenate_batches

    cfg = preset_config("lecture")
    sim, spec, chunk = cfg.simulation, cfg.image, chunk_events(cfg.simulation)
    saved = deflate.LITLEN_TABLES
    deflate.LITLEN_TABLES = (saved[0], saved[0])  # the encoder before its second table
    deflate._tables.cache_clear()
    deflate._stacked.cache_clear()
    batches = []
    gzip = {"compression": "gzip", "compression_opts": 1}
    try:
        with h5py.File(path, "w") as f:
            h, w = spec.shape
            images = f.create_dataset(
                "images", shape=(n, h, w), chunks=(1, h, w), dtype=np.uint8, **gzip
            )
            for i in range(-(-n // chunk)):
                b = simulate_events(sim, min(chunk, n - i * chunk), chunk_rng(seed, i))
                u, v = spec.project(b.hits.x, b.hits.y, b.hits.z)
                sparse = rasterize_sparse(u, v, b.hits.event, b.n_events, spec)
                for k, stream in enumerate(deflate.encode_zlib(sparse)):
                    images.id.write_direct_chunk((i * chunk + k, 0, 0), stream)
                batches.append(b)
            batch = concatenate_batches(batches)
            f["labels"] = batch.labels
            for name, values in event_summaries(batch, sim.threshold).items():
                f[f"events/{name}"] = values
            for group, columns in (("particles", PARTICLE_COLUMNS), ("hits", HIT_COLUMNS)):
                for col, (dtype, _) in columns.items():
                    filt = {**gzip, "shuffle": True} if dtype.kind in "iu" else {}
                    data = getattr(getattr(batch, group), col)
                    f.create_dataset(
                        f"{group}/{col}", data=data, chunks=(16384,), maxshape=(None,), **filt
                    )
                f[f"{group}/offsets"] = batch.event_offsets(group)
    finally:
        deflate.LITLEN_TABLES = saved
        deflate._tables.cache_clear()
        deflate._stacked.cache_clear()


def _children_cpu_s() -> float:
    """User + system CPU time of the waited-for child processes so far [s]."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def storage(path: Path) -> dict[str, int]:
    """Dataset name -> bytes it takes in the file (a virtual dataset: 0)."""
    out: dict[str, int] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, o: out.__setitem__(name, o.id.get_storage_size())
            if isinstance(o, h5py.Dataset) else None
        )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="events (default 20000)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of timings, best taken")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--baseline-src", help="src directory of the code to compare with")
    p.add_argument("--dir", help="directory for the files (default: a temporary one)")
    args = p.parse_args(argv)

    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-file-size-"))
    tmp.mkdir(parents=True, exist_ok=True)
    files = {"w1": tmp / "v2_w1.h5", "w2": tmp / "v2_w2.h5", "base": tmp / "v1_w2.h5"}
    files["base_w1"] = tmp / "v1_w1.h5"
    runs = [("w1", 1, None), ("w2", 2, None)]
    if args.baseline_src:
        src = os.path.abspath(args.baseline_src)
        runs += [("base_w1", 1, src), ("base", 2, src)]
    best: dict[str, float] = {}
    try:
        for _ in range(max(1, args.repeat)):
            for key, workers, src in runs:
                cpu = _children_cpu_s()
                with _pythonpath(src):
                    r = run_gen_events(args.n, files[key], workers, args.seed)
                best[key] = min(best.get(key, np.inf), r["s"])
                best[f"{key}_tree_cpu"] = min(best.get(f"{key}_tree_cpu", np.inf), r["cpu_s"])
                if workers == 1:
                    used = _children_cpu_s() - cpu
                    best[f"{key}_cpu"] = min(best.get(f"{key}_cpu", np.inf), used)
                if key == "w1":
                    floor = run_floor(files["w1"], tmp / "floor.h5")
                    best["floor"] = min(best.get("floor", np.inf), floor)
        columns = {"s1": files["base"], "base": files["base"], "w2": files["w2"]}
        if not args.baseline_src:
            del columns["base"]
            write_schema_1(files["base"], args.n, args.seed)
        elif _schema(files["base"]) == "spectrocnn.events/1":
            del columns["base"]
        else:  # a baseline of schema 2: schema 1 written here too
            columns["s1"] = tmp / "v1_here.h5"
            write_schema_1(columns["s1"], args.n, args.seed)
        sizes = {k: storage(path) for k, path in columns.items()}
        totals = {k: os.path.getsize(path) for k, path in columns.items()}
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    _report(args, best, sizes, totals)
    return 0


def _schema(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return str(f.attrs.get("schema", ""))


_HEADINGS = {"s1": "schema 1", "base": "baseline", "w2": "this code"}


def _report(args, best, sizes, totals) -> None:
    n = args.n
    keys = list(sizes)
    print(f"event file size: {grouped(n)} events, lecture preset (512x512, gzip), seed {args.seed}")
    where = {"s1": "schema 1 writer", "base": "baseline code", "w2": "gen-events --workers 2"}
    if "base" not in keys and args.baseline_src:
        where["s1"] = "baseline code"
    print("; ".join(f"{_HEADINGS[k]}: {where[k]}" for k in keys)
          + (f" (baseline: {args.baseline_src})" if args.baseline_src else ""))  # fmt: skip
    print(f"{'dataset':28s} " + " ".join(f"{_HEADINGS[k]:>10s}" for k in keys)
          + "   [bytes per event]")  # fmt: skip
    for name in sorted(set().union(*(sizes[k] for k in keys))):
        values = (sizes[k].get(name) for k in keys)
        cells = [f"{grouped(v / n, 1):>10s}" if v is not None else f"{'-':>10s}" for v in values]
        print(f"{name:28s} {' '.join(cells)}")
    for label, pick in (
        ("truth (particles, hits)", ("particles/", "hits/")),
        ("images", ("images",)),
    ):
        sums = (sum(v for k, v in sizes[s].items() if k.startswith(pick)) for s in keys)
        print(f"{label:28s} " + " ".join(f"{grouped(v / n, 1):>10s}" for v in sums))
    per_event = [totals[k] / n for k in keys]
    a, b = totals["s1"] / n, totals["w2"] / n
    ok = "ok" if b <= TARGET_BYTES else "MISSED"
    print(f"{'whole file':28s} " + " ".join(f"{grouped(v, 1):>10s}" for v in per_event)
          + f"   (target <= {grouped(TARGET_BYTES)}: {ok}; {b / a:.2f} of schema 1)")  # fmt: skip
    img = [sum(v for k, v in sizes[s].items() if k == "images") / n for s in ("w2", "s1")]
    print(f"images: {grouped(img[0])} B per event (schema 1: {grouped(img[1])} B)")
    print(
        f"floor (h5py writing the images from memory, gzip-1): {best['floor']:.2f} s, "
        f"best of {max(1, args.repeat)}, {len(os.sched_getaffinity(0))} cores"
    )
    for key, label, target in (("w1", "--workers 1", 1.5), ("w2", "--workers 2", 1.0),
                               ("base_w1", "--workers 1, baseline code", 1.5),
                               ("base", "--workers 2, baseline code", 1.0)):  # fmt: skip
        if key in best:
            ratio = best[key] / best["floor"]
            ok = "ok" if ratio <= target else "MISSED"
            print(
                f"gen-events {label}: {best[key]:.2f} s ({grouped(n / best[key])} events/s), "
                f"ratio {ratio:.2f} (target <= {target}: {ok})"
            )
    if "base_w1_cpu" in best:
        a, b = best["w1_cpu"], best["base_w1_cpu"]
        print(
            f"CPU time of gen-events --workers 1: this code {a:.2f} s, baseline {b:.2f} s: "
            f"{a / b:.2f} x; wall time of --workers 2: {best['w2'] / best['base']:.2f} x"
        )
        for w, (a, b) in ((k[-1], (best[f"{k}_tree_cpu"], best[f"{base}_tree_cpu"]))
                          for k, base in (("w1", "base_w1"), ("w2", "base"))):  # fmt: skip
            print(
                f"CPU time of all processes of gen-events --workers {w} (sampled every 50 ms, "
                f"least of {max(1, args.repeat)}): this code {a:.2f} s, baseline {b:.2f} s: "
                f"{a / b:.2f} x"
            )


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("file_size", main))
