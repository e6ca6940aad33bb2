"""Peak memory of ``gen-events`` as the configuration grows (issue 14, item 6).

Each setting runs ``gen-events --workers 1`` under a small helper process that reads the
peak resident set size of its one child from ``resource.getrusage(RUSAGE_CHILDREN)``. Two
axes from the ``lecture`` preset: ``hit_radius_px`` 0, 2, 16, 64 (10 particles), and
``n_particles`` 10, 100, 1000 (radius 2, with 5 noise hits per layer); the corner of both
(1000 particles, radius 64, few events: 10-30 s per event); then N and 4N events (N >=
600, two chunks or more) at one setting to show that the peak does not grow with N. The
slow settings run ``--heavy-n`` events, enough to fill a whole chunk (65 events at 1000
particles) or image group (32 events at radius 64). Target: every figure below 1 GiB.

It prints one Markdown table (the README's): per setting the events, the peak memory, the
stored (gzip) image bytes per event and the wall time.

Usage::

    python benchmarks/memory.py [--n 200] [--heavy-n 80] [--corner-n 4] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
from _record import grouped

__all__ = ["main"]

GIB = 1 << 30


def _cmd() -> list[str]:
    exe = Path(sys.executable).with_name("gen-events")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "spectrocnn.cli.gen_events"]


def _run(toml: str, n: int, directory: str) -> tuple[int, float, float]:
    """Peak RSS [bytes], wall time [s] and stored image bytes per event of one gen-events
    run, in a fresh helper process (so that RUSAGE_CHILDREN holds this run's peak alone)."""
    cfg = os.path.join(directory, "config.toml")
    Path(cfg).write_text(toml)
    out = os.path.join(directory, "events.h5")
    args = [*_cmd(), "--n", str(n), "--out", out, "--config", cfg, "--seed", "1",
            "--workers", "1", "--overwrite", "--quiet"]  # fmt: skip
    helper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " time.perf_counter() - t)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", helper, *args], check=True, capture_output=True, text=True
    )
    kib, wall = res.stdout.split()
    with h5py.File(out, "r") as f:
        images = f["images"]
        stored = sum(images.id.get_chunk_info(i).size for i in range(images.id.get_num_chunks()))
    return int(kib) * 1024, float(wall), stored / n


def _toml(radius: int, particles: int, noise: float) -> str:
    return (
        f"n_particles = {particles}\n[noise]\nhits_per_layer = {noise}\n"
        f"[image]\nhit_radius_px = {radius}\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table; exit status 1 if a figure reaches 1 GiB."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="events per run (default 200)")
    ap.add_argument(
        "--heavy-n", type=int, default=80,
        help="events for the slow settings (radius 64, 1000 particles; default 80)",
    )  # fmt: skip
    ap.add_argument("--corner-n", type=int, default=4, help="events at the corner (default 4)")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args(argv)
    worst = 0
    print("| setting | events | peak memory | stored images per event | wall time |")
    print("|---|---|---|---|---|")
    flat_n = max(args.n, 600)  # at least two whole chunks (256 events each)
    # (setting, TOML, events)
    settings = [(f"`hit_radius_px = {r}`, `n_particles = 10`", _toml(r, 10, 0.0),
                 args.heavy_n if r == 64 else args.n) for r in (0, 2, 16, 64)]  # fmt: skip
    settings += [(f"`n_particles = {p}`, `hit_radius_px = 2`, noise 5/layer", _toml(2, p, 5.0),
                  args.heavy_n if p == 1000 else args.n) for p in (10, 100, 1000)]  # fmt: skip
    settings.append(("`n_particles = 1000`, `hit_radius_px = 64`, noise 5/layer",
                     _toml(64, 1000, 5.0), args.corner_n))  # fmt: skip
    settings += [(settings[5][0], settings[5][1], n) for n in (flat_n, 4 * flat_n)]  # flat in N
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        for name, toml, n in settings:
            peak, wall, stored = _run(toml, n, d)
            worst = max(worst, peak)
            print(f"| {name} | {grouped(n)} | {peak / 2**20:.1f} MiB | {grouped(stored)} B "
                  f"| {wall:.1f} s |", flush=True)  # fmt: skip
    print(f"\nlargest peak: {worst / 2**20:.1f} MiB (target < 1 GiB)")
    return 0 if worst < GIB else 1


def _timed() -> int:
    t0 = time.perf_counter()
    status = main()
    print(f"total {time.perf_counter() - t0:.0f} s")
    return status


if __name__ == "__main__":
    from _record import recorded

    sys.exit(recorded("memory", _timed))
