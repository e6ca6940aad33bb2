"""Benchmark of sharded generation on a local Dask cluster against the plain pipeline.

In one run (issue 7), timed as whole commands (interpreter start-up included), on the
default preset (512 x 512, gzip):

* ``gen-events --n N --workers W`` (one file, W processes);
* ``gen-events --n N --shards K --workers W`` (K shard files and the virtual file, written
  by a local Dask cluster of W single-threaded worker processes: cluster start-up, task
  shipping and the assembly of the virtual file included).

It prints both wall times, the ratio sharded / plain, and checks that both outputs hold
the same events (images and labels). The machine may be shared: the runs are interleaved
and ``--repeat`` takes the best of several.

Usage::

    python benchmarks/shards.py [--n 20000] [--shards 4] [--workers 2] [--repeat 1] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from _record import grouped

__all__ = ["main"]

BLOCK = 1024


def _gen_events_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("gen-events")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "spectrocnn.cli.gen_events"]


def _timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([*_gen_events_cmd(), *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"gen-events {' '.join(args)} failed:\n{proc.stderr}")
    return elapsed


def _same_events(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        if not np.array_equal(fa["labels"][()], fb["labels"][()]):
            return False
        n = fa["images"].shape[0]
        for s in range(0, n, BLOCK):
            if not np.array_equal(fa["images"][s : s + BLOCK], fb["images"][s : s + BLOCK]):
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="events (default 20000)")
    p.add_argument("--shards", type=int, default=4, help="shards (default 4)")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each, best taken")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=args.dir))
    plain, sharded = work / "plain.h5", work / "sharded"
    common = ["--n", str(args.n), "--seed", str(args.seed), "--workers", str(args.workers),
              "--quiet", "--overwrite"]  # fmt: skip
    t_plain: list[float] = []
    t_sharded: list[float] = []
    try:
        for _ in range(args.repeat):
            t_plain.append(_timed([*common, "--out", str(plain)]))
            t_sharded.append(_timed([*common, "--out", str(sharded), "--shards", str(args.shards)]))
        same = _same_events(plain, sharded / "events.h5")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b = min(t_plain), min(t_sharded)
    print(f"gen-events --n {args.n}: {grouped(args.n)} events, {args.workers} processes, "
          f"best of {args.repeat}:")  # fmt: skip
    print(f"  one file (--workers {args.workers}):          {a:5.1f} s  "
          f"{grouped(args.n / a):>6} events/s")  # fmt: skip
    print(f"  --shards {args.shards} on a local Dask cluster: {b:5.1f} s  "
          f"{grouped(args.n / b):>6} events/s")  # fmt: skip
    print(f"  ratio sharded / one file: {b / a:.2f}; same events: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("shards", main))
