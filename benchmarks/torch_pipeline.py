"""Benchmark of the PyTorch datasets (issue 18) against train-cnn's input pipeline.

Prints, in one run on the same event file (its pages read once beforehand, so that every
reader finds them in the page cache):

(a) ``DataLoader(EventFileDataset(file, s), batch_size=B, shuffle=True, num_workers=W)``
    for W = 0 and W = 2: images per second delivered over one epoch (read + downsample +
    float32 batches, worker start included), the same every epoch; and with
    ``in_memory=True``, its first epoch (the loading included) and a later one;
(b) train-cnn's input pipeline on the same file at the same size
    (:func:`spectrocnn.model.data.load_images` then
    :func:`~spectrocnn.model.data.make_dataset`, float32 batches): images per second of its
    first epoch (reading and downsampling the whole file into memory, then the batches)
    and of a later epoch (batches from memory);
(c) ratios (a) / (b);
(d) ``DataLoader(FreshEventsDataset(preset, n, batch_size=B), batch_size=None,
    num_workers=W)`` for W = 0 and 2: freshly simulated events per second (simulation,
    rasterization and downsampling), unless ``--fresh 0``.

PyTorch runs first, TensorFlow (imported only for (b)) afterwards, so that no worker
process is forked from a process running TensorFlow's threads. ``--repeat R`` measures
each pipeline R times, interleaved, and keeps the best.

Usage::

    python benchmarks/torch_pipeline.py                  # 2000 lecture events, 128x128
    python benchmarks/torch_pipeline.py --file events.h5 --input-size 256 --record

Without ``--file`` it generates its event file with the lecture preset (gen-events'
library function) in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _record import grouped


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="events to generate (default 2000)")
    p.add_argument("--file", help="use this event file instead of generating one")
    p.add_argument("--input-size", type=int, default=128, help="default 128")
    p.add_argument("--downsample", default="max", help="default max")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="default 0 2")
    p.add_argument("--fresh", type=int, default=512, help="fresh events per run (0: no (d))")
    p.add_argument("--repeat", type=int, default=1, help="runs of each pipeline (best kept)")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


def _warm(path: Path) -> None:
    """Read the file's pages once, so that the first reader is not the only cold one."""
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def _epoch(ds, workers: int, args: argparse.Namespace) -> float:
    """Images per second of one shuffled epoch of a DataLoader over ``ds``."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    t = time.perf_counter()
    n = sum(len(y) for _x, y in loader)
    return n / (time.perf_counter() - t)


def _torch_rates(path: Path, args: argparse.Namespace) -> dict[str, float]:
    """Best images per second of each DataLoader configuration, keyed by a label."""
    from spectrocnn.torchdata import EventFileDataset

    ds = EventFileDataset(path, args.input_size, args.downsample)
    best: dict[str, float] = {}

    def keep(label: str, rate: float) -> None:
        best[label] = max(best.get(label, 0.0), rate)

    for _ in range(args.repeat):
        for w in args.workers:
            keep(f"num_workers={w}", _epoch(ds, w, args))
        for w in args.workers:
            t = time.perf_counter()
            mem = EventFileDataset(path, args.input_size, args.downsample, in_memory=True)
            t_load = time.perf_counter() - t
            rate = _epoch(mem, w, args)
            keep(f"in_memory, num_workers={w}, first epoch", len(mem) / (t_load + len(mem) / rate))
            keep(f"in_memory, num_workers={w}, later epoch", _epoch(mem, w, args))
    return best


def _fresh_rates(args: argparse.Namespace) -> dict[int, float]:
    from torch.utils.data import DataLoader

    from spectrocnn.config import preset_config
    from spectrocnn.torchdata import FreshEventsDataset

    ds = FreshEventsDataset(
        preset_config("lecture"),
        args.fresh,
        batch_size=args.batch_size,
        input_size=args.input_size,
        downsample=args.downsample,
        seed=args.seed,
    )
    best: dict[int, float] = {}
    for _ in range(args.repeat):
        for w in args.workers:
            t = time.perf_counter()
            n = sum(len(y) for _x, y in DataLoader(ds, batch_size=None, num_workers=w))
            best[w] = max(best.get(w, 0.0), n / (time.perf_counter() - t))
    return best


def _train_cnn_rates(path: Path, args: argparse.Namespace) -> tuple[float, float]:
    """train-cnn's pipeline: (first epoch with the loading, later epoch) images per second."""
    from spectrocnn.model._tf import configure_threads, tensorflow
    from spectrocnn.model.data import load_images, make_dataset, open_event_file

    tf = tensorflow()
    configure_threads(None)
    first = later = 0.0
    for _ in range(args.repeat):
        t = time.perf_counter()
        with open_event_file(path) as ev:
            data = load_images(ev, args.input_size, args.downsample)
        images, labels = tf.constant(data.images), tf.constant(data.labels)
        order = np.random.default_rng(args.seed).permutation(data.n)
        ds = make_dataset(images, labels, order, batch_size=args.batch_size, scale=data.scale)
        for _x, _y in ds:
            pass
        first = max(first, data.n / (time.perf_counter() - t))
        t = time.perf_counter()
        for _x, _y in ds:
            pass
        later = max(later, data.n / (time.perf_counter() - t))
    return first, later


def main() -> None:
    args = _args()
    import torch

    tmp = tempfile.TemporaryDirectory(prefix="spectrocnn-bench-")
    path = Path(args.file) if args.file else Path(tmp.name) / "events.h5"
    if not args.file:
        from spectrocnn.config import preset_config
        from spectrocnn.dataset import generate_file

        t = time.perf_counter()
        generate_file(preset_config("lecture"), args.n, path, seed=args.seed)
        print(f"generated {args.n} lecture events in {time.perf_counter() - t:.1f} s: {path}")
    from spectrocnn.dataset import open_events

    with open_events(path) as ev:
        n, (h, w) = ev.n_events, ev.image_shape
    _warm(path)
    s, bs = args.input_size, args.batch_size
    print(
        f"machine: {os.cpu_count()} logical CPUs, {len(os.sched_getaffinity(0))} available; "
        f"PyTorch {torch.__version__}; {n} events {h}x{w} -> {s}x{s} ({args.downsample}), "
        f"batch {bs}, best of {args.repeat}"
    )
    loader = _torch_rates(path, args)
    for label, rate in loader.items():
        print(f"(a) DataLoader(EventFileDataset), {label}: {grouped(rate)} img/s")
    fresh = _fresh_rates(args) if args.fresh > 0 else {}
    first, later = _train_cnn_rates(path, args)
    print(
        f"(b) train-cnn's pipeline (load_images + make_dataset): first epoch {grouped(first)} "
        f"img/s (reading the file into memory), later epochs {grouped(later)} img/s"
    )
    for label, rate in loader.items():
        if "in_memory" not in label:  # every epoch reads the file
            versus = f"{rate / first:.2f} of its first epoch, {rate / later:.2f} of a later one"
        elif "later" in label:
            versus = f"{rate / later:.2f} of its later epochs"
        else:
            versus = f"{rate / first:.2f} of its first epoch"
        print(f"(c) {label} / train-cnn: {versus}")
    for wk, rate in fresh.items():
        print(
            f"(d) DataLoader(FreshEventsDataset), {args.fresh} lecture events, "
            f"num_workers={wk}: {grouped(rate)} img/s (simulated, rasterized, downsampled)"
        )
    tmp.cleanup()


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("torch_pipeline", main))
