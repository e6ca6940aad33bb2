"""Benchmark of streaming training (issue 18 item 1): train-cnn on a file whose downsampled
images exceed the memory budget (``--cache-mb``) against the same run in memory.

Prints, in one run:

(a) epoch time on a 20 000-event file (``--file20k``), each network with train-cnn's
    default settings (``polar``: ``--arch auto``, 256x256; the lecture network: ``--arch
    lecture``, 128x128), one epoch (``--epochs``), three ways, the runs alternating: in
    memory (the default budget); on lit pixels in memory (``--cache-mb``, default 256 MB:
    less than the dense images of either network, more than their lit pixels,
    :mod:`spectrocnn.model.litpixels`); streamed from the file every epoch
    (``--stream-mb``, default 16 MB: less than the lit pixels too); on lit pixels on disk
    (``--stream-mb`` and ``--lit-cache`` in the work directory). With the peak memory
    (max RSS) of each command. The epoch time is train-cnn's own (``epoch_time_s`` of
    history.csv: training and validation; the runs in memory read their file before the
    first epoch). Target: streamed / in memory <= 1.20. Reading alone: one streamed epoch
    decoded without training.
(b) peak memory of streamed train-cnn (the lecture network at ``--memory-input-size``,
    default 16x16, one epoch, ``--memory-cache-mb``, default 2 MB) on the 20 000-event
    file and on a 200 000-event file (``--file200k``): flat in the number of events.
(c) how well a streamed epoch shuffles the training events of the 20 000-event file (the
    ``polar`` windows of (a)), against the in-memory run's full shuffle: the correlation
    between file position and place in the epoch, the mean distance in the epoch between
    neighbours in the file (closed forms: ``(L + 1) / 3`` for two events of a window of
    ``L`` events, which neighbours in one block of 64 are, ``(m + 1) / 3`` for neighbours
    in two blocks and for a full shuffle of ``m``) and the number of different blocks
    (64 neighbouring events of the file) in a batch of 32 (closed form for a window of
    ``W`` whole blocks: ``W (1 - C(L - 64, 32) / C(L, 32))``; for a full shuffle nearly 32).

Usage::

    python benchmarks/streaming.py --workdir /tmp/stream-bench --record
    python benchmarks/streaming.py --file20k a.h5 --file200k b.h5 --archs polar

Without ``--file20k``/``--file200k`` it generates them (gen-events ``--seed 1``, the
lecture preset) in the work directory: the 200 000-event file takes a few minutes and about
600 MB.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _record import grouped, recorded

ARCH_FLAGS = {"polar": [], "lecture": ["--arch", "lecture"]}
ARCH_NAMES = {"polar": "polar (--arch auto, 256x256)", "lecture": "lecture network (128x128)"}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", help="where the event files and runs go (default: a temp dir)")
    p.add_argument("--file20k", help="the 20 000-event file (default: generated)")
    p.add_argument("--file200k", help="the 200 000-event file (default: generated)")
    p.add_argument("--archs", nargs="+", default=["polar", "lecture"], choices=list(ARCH_FLAGS))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1, help="pairs of runs per network in (a)")
    p.add_argument("--cache-mb", type=float, default=256.0,
                   help="budget of the runs on lit pixels (below the dense images, above "
                   "their lit pixels; default 256)")  # fmt: skip
    p.add_argument(
        "--stream-mb",
        type=float,
        default=16.0,
        help="budget of the streamed runs (below the lit pixels; default 16)",
    )
    p.add_argument("--memory-input-size", type=int, default=16)
    p.add_argument("--memory-cache-mb", type=float, default=2.0)
    p.add_argument("--skip", nargs="*", default=[], choices=["a", "b", "c"])
    return p.parse_args()


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": src + (os.pathsep + path if path else "")}


def _command(module: str, args: list[str]) -> tuple[float, float]:
    """Run ``python -m module args``; (wall seconds, peak RSS of the process [MiB])."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", module, *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    _, err = proc.communicate()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({code}): {err.decode()[-2000:]}")
    return time.perf_counter() - t, usage.ru_maxrss / 1024  # ru_maxrss: KiB on Linux


def _generate(path: Path, n: int) -> Path:
    if not path.exists():
        args = ["--n", str(n), "--out", str(path), "--seed", "1", "--quiet"]
        wall, _ = _command("spectrocnn.cli.gen_events", args)
        print(f"generated {grouped(n)} lecture events in {grouped(wall)} s: {path}", flush=True)
    return path


def _train(path: Path, out: Path, flags: list[str]) -> tuple[list[float], float, float]:
    """(epoch times [s], wall [s], peak RSS [MiB]) of one train-cnn run."""
    shutil.rmtree(out, ignore_errors=True)
    args = [str(path), "--out", str(out), "--seed", "1", "--quiet", *flags]
    wall, rss = _command("spectrocnn.cli.train_cnn", args)
    with (out / "history.csv").open() as fh:
        times = [float(row["epoch_time_s"]) for row in csv.DictReader(fh)]
    return times, wall, rss


def reading_alone(path: Path, args: argparse.Namespace) -> None:
    """(a) the cost of streaming: one streamed epoch of the polar settings read without
    training (every training and validation event decoded and downsampled once)."""
    from spectrocnn.dataset import open_events
    from spectrocnn.model._tf import available_cores
    from spectrocnn.model.data import split_indices
    from spectrocnn.model.streamdata import EventStream, file_order, training_epochs
    from spectrocnn.model.streaming import plan_streaming, streamed_set

    with open_events(path) as ev:
        n, source = ev.n_events, streamed_set(ev, 256, "max")
    train_idx, val_idx = split_indices(n, 0.2, seed=1)
    plan = plan_streaming(args.stream_mb, 256, n)
    t = time.perf_counter()
    for epochs in (
        training_epochs(train_idx, 1, range(1), plan, 32),
        file_order(val_idx, plan, 256),
    ):
        for _ in EventStream(source, epochs):
            pass
    dt = time.perf_counter() - t
    print(
        f"(a) reading alone: one streamed epoch of {grouped(n)} events at 256x256 (training and "
        f"validation) read without training in {dt:.1f} s with {available_cores()} decoding "
        f"threads: {grouped(n / dt)} images/s",
        flush=True,
    )


def epoch_times(path: Path, work: Path, args: argparse.Namespace) -> None:
    """(a): epochs in memory, on lit pixels and streamed from the file, alternating."""
    for arch in args.archs:
        flags = [*ARCH_FLAGS[arch], "--epochs", str(args.epochs)]
        kinds = {
            "memory": flags,
            "lit pixels": [*flags, "--cache-mb", f"{args.cache_mb:g}"],
            "streamed": [*flags, "--cache-mb", f"{args.stream_mb:g}"],
            "lit pixels on disk": [
                *flags,
                "--cache-mb",
                f"{args.stream_mb:g}",
                "--lit-cache",
                str(work / "lit-cache"),
            ],
        }
        epochs: dict[str, list[float]] = {k: [] for k in kinds}
        rss: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(args.repeat):
            for kind, f in kinds.items():
                times, _, peak = _train(path, work / f"{arch}_{kind.replace(' ', '_')}_{r}", f)
                epochs[kind] += times
                rss[kind].append(peak)
                print(f"    {arch} {kind}: epochs {', '.join(f'{t:.1f}' for t in times)} s, "
                      f"peak {grouped(peak)} MiB", flush=True)  # fmt: skip
        mem, lit, streamed, disk = (statistics.median(epochs[k]) for k in kinds)
        print(
            f"(a) epoch time, {ARCH_NAMES[arch]}, 20 000 events, {args.epochs} epoch(s) x "
            f"{args.repeat}: in memory {mem:.1f} s; lit pixels in memory (--cache-mb "
            f"{args.cache_mb:g}) {lit:.1f} s: {lit / mem:.2f}; streamed from the file "
            f"(--cache-mb {args.stream_mb:g}) {streamed:.1f} s: {streamed / mem:.2f} (target "
            f"<= 1.20); lit pixels on disk (--cache-mb {args.stream_mb:g} --lit-cache) "
            f"{disk:.1f} s: {disk / mem:.2f}; peak memory {grouped(max(rss['memory']))} MiB "
            f"in memory, {grouped(max(rss['lit pixels']))} MiB lit pixels, "
            f"{grouped(max(rss['streamed']))} MiB streamed, "
            f"{grouped(max(rss['lit pixels on disk']))} MiB lit pixels on disk",
            flush=True,
        )


def peak_memory(files: dict[int, Path], work: Path, args: argparse.Namespace) -> None:
    """(b): peak RSS of streamed train-cnn as the file grows."""
    s = args.memory_input_size
    flags = ["--arch", "lecture", "--input-size", str(s), "--epochs", "1",
             "--cache-mb", f"{args.memory_cache_mb:g}"]  # fmt: skip
    peaks = {}
    for n, path in files.items():
        _, wall, peaks[n] = _train(path, work / f"memory_{n}", flags)
        in_memory = n * s * s / 2**20
        print(
            f"    {grouped(n)} events: peak {grouped(peaks[n])} MiB in {grouped(wall)} s (in "
            f"memory the images alone would take {grouped(in_memory)} MiB)",
            flush=True,
        )
    (n1, p1), (n2, p2) = sorted(peaks.items())
    print(
        f"(b) peak memory of streamed train-cnn (lecture network, {s}x{s}, --cache-mb "
        f"{args.memory_cache_mb:g}, 1 epoch): {grouped(n1)} events {grouped(p1)} MiB, "
        f"{grouped(n2)} events {grouped(p2)} MiB: {p2 / p1:.2f}",
        flush=True,
    )


def _distinct_blocks(window: int, block: int, batch: int) -> float:
    """Expected blocks of ``block`` events met by ``batch`` events drawn without
    replacement from a window of ``window`` events made of whole blocks."""
    if window <= batch:
        return window / block
    miss = math.exp(math.lgamma(window - block + 1) - math.lgamma(window - block - batch + 1)
                    - math.lgamma(window + 1) + math.lgamma(window - batch + 1))  # fmt: skip
    return window / block * (1 - miss)


def shuffle_quality(n: int, args: argparse.Namespace) -> None:
    """(c): statistics of the streamed order against the full shuffle (polar windows)."""
    from spectrocnn.model.data import epoch_order, split_indices
    from spectrocnn.model.streaming import STREAM_BLOCK, plan_streaming, stream_order

    train_idx, _ = split_indices(n, 0.2, seed=1)
    m = len(train_idx)
    plan = plan_streaming(args.cache_mb, 256, n)
    assert plan is not None
    block, batch, epochs = STREAM_BLOCK, 32, 10
    stats: dict[str, list[float]] = {"full": [], "stream": []}
    for kind in stats:
        corr, dist, blocks = [], [], []
        for e in range(epochs):
            if kind == "full":
                order = epoch_order(train_idx, 1, e)
            else:
                order, _ = stream_order(train_idx, 1, e, block=block,
                                        window_blocks=plan.window_blocks)  # fmt: skip
            rank = np.searchsorted(train_idx, order)  # file rank of each place
            place = np.empty(m, np.int64)
            place[rank] = np.arange(m)
            corr.append(np.corrcoef(np.arange(m), place)[0, 1])
            dist.append(np.mean(np.abs(np.diff(place))))
            b = rank[: m // batch * batch].reshape(-1, batch) // block
            blocks.append(np.mean([len(np.unique(row)) for row in b]))
        stats[kind] = [float(np.mean(corr)), float(np.mean(dist)), float(np.mean(blocks))]
    window = plan.window_events
    # neighbours in one block share a window, (L + 1) / 3 apart; across blocks (m + 1) / 3
    near = ((block - 1) * (window + 1) + (m + 1)) / (3 * block)
    f, s = stats["full"], stats["stream"]
    print(
        f"(c) shuffle of {grouped(m)} training events, windows of {grouped(window)} events "
        f"({plan.window_blocks} blocks of {block}; polar at --cache-mb {args.cache_mb:g}), "
        f"mean of {epochs} epochs: correlation of file position and epoch position "
        f"{s[0]:.4f} (full shuffle {f[0]:.4f}); mean distance in the epoch between file "
        f"neighbours {grouped(s[1])} (closed form {grouped(near)}; full shuffle "
        f"{grouped(f[1])}, closed form {grouped((m + 1) / 3)}); "
        f"different blocks in a batch of {batch}: {s[2]:.1f} (closed form "
        f"{_distinct_blocks(window, block, batch):.1f}; full shuffle {f[2]:.1f})",
        flush=True,
    )


def main() -> int:
    args = _args()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="stream-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {len(os.sched_getaffinity(0))} cores available; page size "
          f"{resource.getpagesize()} B; work directory {work}", flush=True)  # fmt: skip
    f20 = Path(args.file20k) if args.file20k else _generate(work / "events_20k.h5", 20_000)
    if "c" not in args.skip:
        shuffle_quality(20_000, args)
    if "a" not in args.skip:
        reading_alone(f20, args)
        epoch_times(f20, work, args)
    if "b" not in args.skip:
        f200 = Path(args.file200k) if args.file200k else _generate(work / "events_200k.h5",
                                                                   200_000)  # fmt: skip
        peak_memory({20_000: f20, 200_000: f200}, work, args)
    return 0


if __name__ == "__main__":
    sys.exit(recorded("streaming", main))
