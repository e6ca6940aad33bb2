"""Benchmark of ``gen-events`` against the floor of writing the same images with h5py.

In one run (issue 3):

* ``gen-events --n N`` (default preset: 512 x 512, gzip) with ``--workers 1`` and
  ``--workers 2``, timed as whole commands (interpreter start-up included), with the peak
  memory of the command's process tree;
* the floor: h5py writing the same images, already in memory, into a dataset with the same
  filter (gzip level 1) and chunking (1, H, W), in one process. The images are read from
  the gen-events file in blocks of 256 outside the timed region; only the writes are timed.

It prints each time, the ratio gen-events / floor (targets: <= 1.5 with 1 worker, <= 1.0
with 2) and the peak memory (target: < 1 GiB). The machine may be shared: the runs are
interleaved and ``--repeat`` takes the best of several.

Usage::

    python benchmarks/gen_events.py [--n 20000] [--repeat 1] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
from _record import grouped

__all__ = ["main"]

BLOCK = 256


def _gen_events_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("gen-events")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "spectrocnn.cli.gen_events"]


def _tree_rss_bytes(root: int, cpu: dict[int, float] | None = None) -> tuple[int, int]:
    """Sum and maximum of the resident set sizes of ``root`` and its descendants [bytes];
    with ``cpu``, each one's CPU time so far (user + system [s]) is stored in it by pid."""
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parent[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    members = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in members and pid not in members:
                members.add(pid)
                changed = True
    page = os.sysconf("SC_PAGE_SIZE")
    total = biggest = 0
    for pid in members if cpu is not None else ():
        cpu[pid] = max(cpu.get(pid, 0.0), used[pid])
    for pid in members:
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss = int(f.read().split()[1]) * page
        except OSError:
            continue
        total += rss
        biggest = max(biggest, rss)
    return total, biggest


def run_gen_events(n: int, out: Path, workers: int, seed: int) -> dict[str, float]:
    """Run gen-events as a command; wall time [s], peak memory of its process tree and the
    CPU time of the tree (``cpu_s``: each process's own user + system time as last seen by
    the poll every 50 ms, summed; what a process spends in its last 50 ms is missed)."""
    cmd = [*_gen_events_cmd(), "--n", str(n), "--out", str(out), "--seed", str(seed)]
    cmd += ["--workers", str(workers), "--overwrite", "--quiet"]
    peak = {"sum": 0, "max": 0}
    cpu: dict[int, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            total, biggest = _tree_rss_bytes(proc.pid, cpu)
            peak["sum"] = max(peak["sum"], total)
            peak["max"] = max(peak["max"], biggest)
            done.wait(0.05)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    rc = proc.wait()
    elapsed = time.perf_counter() - t0
    done.set()
    th.join()
    if rc != 0:
        raise SystemExit(f"gen-events failed with exit code {rc}: {' '.join(cmd)}")
    return {
        "s": elapsed,
        "rss_sum": peak["sum"],
        "rss_max": peak["max"],
        "cpu_s": sum(cpu.values()),
    }


def run_floor(source: Path, out: Path) -> float:
    """Time h5py writing the images of ``source`` (held in memory) with the same filter."""
    with h5py.File(source, "r") as src:
        images = src["images"]
        n, h, w = images.shape
        elapsed = 0.0
        with h5py.File(out, "w") as dst:
            ds = dst.create_dataset(
                "images",
                shape=(n, h, w),
                chunks=(1, h, w),
                dtype=np.uint8,
                compression="gzip",
                compression_opts=1,
            )
            for a in range(0, n, BLOCK):
                b = min(n, a + BLOCK)
                block = images[a:b]  # read outside the timed region
                t0 = time.perf_counter()
                ds[a:b] = block
                elapsed += time.perf_counter() - t0
            t0 = time.perf_counter()
            dst.flush()
        elapsed += time.perf_counter() - t0
    return elapsed


def _same_images(a: Path, b: Path, k: int = 64) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        n = fa["images"].shape[0]
        idx = sorted({0, n - 1, *np.linspace(0, n - 1, k).astype(int).tolist()})
        return all(np.array_equal(fa["images"][i], fb["images"][i]) for i in idx) and (
            np.array_equal(fa["labels"][:], fb["labels"][:])
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="events (default 20000)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each, best taken")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--dir", help="directory for the files (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the files")
    args = p.parse_args(argv)

    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-gen-events-"))
    tmp.mkdir(parents=True, exist_ok=True)
    f1, f2, ff = tmp / "events_w1.h5", tmp / "events_w2.h5", tmp / "floor.h5"
    best: dict[str, float] = {}
    mem: dict[str, dict[str, float]] = {}
    try:
        for _ in range(max(1, args.repeat)):
            for key, workers, path in (("w1", 1, f1), ("w2", 2, f2)):
                r = run_gen_events(args.n, path, workers, args.seed)
                best[key] = min(best.get(key, np.inf), r["s"])
                m = mem.setdefault(key, {"rss_sum": 0, "rss_max": 0})
                m["rss_sum"] = max(m["rss_sum"], r["rss_sum"])
                m["rss_max"] = max(m["rss_max"], r["rss_max"])
                if key == "w1":
                    floor = run_floor(f1, ff)
                    best["floor"] = min(best.get("floor", np.inf), floor)
        same = _same_images(f1, f2)
        size_gen = os.path.getsize(f1)
        with h5py.File(f1, "r") as f:
            img_bytes = sum(
                f["images"].id.get_chunk_info(i).size for i in range(f["images"].shape[0])
            )
        img_floor = os.path.getsize(ff)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)

    n = args.n
    mib = 1024**2
    print(
        f"gen-events benchmark: {grouped(n)} events, default preset (512x512, gzip), "
        f"seed {args.seed}"
    )
    print(f"cores available: {len(os.sched_getaffinity(0))}, best of {max(1, args.repeat)}")
    print(
        f"floor (h5py write from memory, gzip-1, chunks (1,H,W)): {best['floor']:.2f} s "
        f"({grouped(n / best['floor'])} images/s), images {grouped(img_floor / n)} B/event"
    )
    for key, target in (("w1", 1.5), ("w2", 1.0)):
        s = best[key]
        ratio = s / best["floor"]
        ok = "ok" if ratio <= target else "MISSED"
        print(
            f"gen-events --workers {key[1]}: {s:.2f} s ({grouped(n / s)} events/s), "
            f"ratio {ratio:.2f} (target <= {target}: {ok}), "
            f"peak memory {mem[key]['rss_sum'] / mib:.0f} MiB (all processes), "
            f"{mem[key]['rss_max'] / mib:.0f} MiB (largest process)"
        )
    print(
        f"file: {size_gen / mib:.1f} MiB ({grouped(size_gen / n)} B/event; images "
        f"{grouped(img_bytes / n)} B/event); workers 1 and 2 identical: {same}"
    )
    return 0


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("gen_events", main))
