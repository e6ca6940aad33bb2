"""Benchmark of train-cnn's input pipeline and training loop (issue 4).

Prints, in one run:

(a) the input pipeline alone: images per second read from the HDF5 file and downsampled to
    the model input size, and images per second of ``tf.data`` float32 batches from memory
    (one epoch each);
(b) the model's training step alone on in-memory float32 tensors, images per second, in
    the precision train-cnn would train in (``--precision``, default ``auto``: bf16 where
    the CPU computes it natively) and with the geometry train-cnn takes from the file
    (``polar``'s radial range);
(a) and (b) for each network of ``--archs`` (default: ``lecture`` at 128x128 and ``polar``
at 256x256, their default input sizes);
(c) train-cnn's epoch time (the ``lecture`` network, 128x128) divided by the epoch time of
    the same model trained by
    ``model.fit`` on in-memory float32 tensors (same data, same split, same epochs, with
    validation each epoch in both; train-cnn's epochs include its checkpointing). The
    first epoch of each run (graph tracing) is left out; on a shared machine compare the
    medians and the fastest epochs, and use ``--repeat`` for more pairs.

Targets: what feeds every epoch >= 10 x (b); (c) <= 1.10. train-cnn reads and downsamples
the file once, before the first epoch, and feeds every epoch from memory with ``tf.data``:
that rate against (b) is the target. Reading the file is what a streamed run
(``--cache-mb`` below the images) does every epoch: printed against (b) too, and timed as
whole epochs by ``benchmarks/streaming.py``. (a) and (b) alternate in ``--rounds`` rounds
(best of each), so that a change of load on a shared machine does not fall on one alone.

Usage::

    python benchmarks/train_pipeline.py               # 4000 lecture events, 3 epochs
    python benchmarks/train_pipeline.py --n 20000 --epochs 3 --file events.h5
    python benchmarks/train_pipeline.py --epochs 0      # (a) and (b) only

Without ``--file`` it generates its event file with the lecture preset (gen-events'
library function) in a temporary directory.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _record import grouped


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000, help="events to generate (default 4000)")
    p.add_argument("--file", help="use this event file instead of generating one")
    p.add_argument("--epochs", type=int, default=3, help="epochs for (c) (default 3; 0: no (c))")
    p.add_argument("--archs", nargs="+", default=["lecture", "polar"], help="for (a) and (b)")
    p.add_argument("--input-size", type=int, help="default: each network's own")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--step-images", type=int, default=1024, help="images timed for (b)")
    p.add_argument("--repeat", type=int, default=1, help="pairs of runs for (c) (default 1)")
    p.add_argument("--threads", type=int, help="TensorFlow intra-op threads")
    p.add_argument("--precision", default="auto", help="of (b): auto (default), fp32, bf16")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of (a) and (b)")
    return p.parse_args()


def _epoch_times(keras):
    class Times(keras.callbacks.Callback):
        """Seconds between consecutive epoch ends (as train-cnn's epoch_time_s)."""

        def on_train_begin(self, logs=None):
            self.times, self.last = [], time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now

    return Times()


def _pipeline_and_step(
    tf,
    keras,
    build_model,
    load_images,
    make_dataset,
    open_event_file,
    path,
    arch,
    size,
    args,
    step=True,
):
    """(a) and (b) for one network at one input size, in ``--rounds`` alternating rounds
    (read, tf.data, step; the best of each): returns the images in memory."""
    bs = args.batch_size
    from spectrocnn.model.device import POLICIES, describe_devices, resolve_precision

    precision = resolve_precision(args.precision, describe_devices(tf), arch)[0]
    model = None
    t_load = t_iter = math.inf
    rate_b = 0.0
    for _ in range(args.rounds if step else 1):
        with open_event_file(path) as ev:
            n, shape = ev.n_events, ev.image_shape
            t = time.perf_counter()
            data = load_images(ev, size, "max")
            t_load = min(t_load, time.perf_counter() - t)
        order = np.random.default_rng(0).permutation(n)
        t = time.perf_counter()
        for _x, _y in make_dataset(
            data.images, data.labels, order, batch_size=bs, scale=data.scale
        ):
            pass
        t_iter = min(t_iter, time.perf_counter() - t)
        if not step:
            break
        # (b) the training step alone on in-memory tensors
        m = min(args.step_images, n)
        x_mem = tf.minimum(tf.cast(data.images[:m], tf.float32), 1.0)[..., tf.newaxis]
        y_mem = tf.cast(data.labels[:m], tf.float32)
        policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(POLICIES[precision])
        try:
            if model is None:
                keras.utils.set_random_seed(args.seed)
                model = build_model(
                    arch,
                    size,
                    window_mm=data.info["window_mm"],
                    barrel_radius_mm=data.info.get("barrel_radius_mm"),
                )
                model.fit(x_mem[: 4 * bs], y_mem[: 4 * bs], batch_size=bs, epochs=1, verbose=0)
            t = time.perf_counter()
            model.fit(x_mem, y_mem, batch_size=bs, epochs=1, verbose=0, shuffle=False)
            rate_b = max(rate_b, m / (time.perf_counter() - t))
        finally:
            keras.mixed_precision.set_global_policy(policy)
    rate_read, rate_feed = n / t_load, n / t_iter
    print(
        f"(a) input pipeline, {grouped(n)} events {shape[0]}x{shape[1]} -> {size}x{size}: "
        f"reading the file + downsampling {grouped(rate_read)} img/s (train-cnn does this "
        f"once, before the first epoch; a streamed run every epoch), tf.data batches from "
        f"memory {grouped(rate_feed)} img/s (every epoch)"
    )
    if not step:
        return data
    print(
        f"(b) training step, {arch} architecture, batch {bs}, {precision}, in memory: "
        f"{grouped(rate_b, 1)} img/s (best of {args.rounds} rounds, alternating with (a))"
    )
    print(
        f"    what feeds every epoch in memory, tf.data / (b) = "
        f"{grouped(rate_feed / rate_b, 1)} for {arch} at {size}x{size}  (target >= 10)"
    )
    print(
        f"    reading the file / (b) = {grouped(rate_read / rate_b, 1)}: the rate of a "
        "streamed epoch's input (benchmarks/streaming.py times streamed epochs)"
    )
    return data


def main() -> None:
    args = _args()
    from spectrocnn.model._tf import available_cores, configure_threads, tensorflow
    from spectrocnn.model.architectures import INPUT_SIZES, build_model
    from spectrocnn.model.data import load_images, make_dataset, open_event_file, split_indices
    from spectrocnn.model.train import TrainConfig, train

    tf = tensorflow()
    intra, inter = configure_threads(args.threads)
    import keras

    print(
        f"machine: {os.cpu_count()} logical CPUs, {available_cores()} available; TensorFlow "
        f"{tf.__version__} (intra-op {intra}, inter-op {inter}), Keras {keras.__version__}"
    )
    tmp = tempfile.TemporaryDirectory(prefix="spectrocnn-bench-")
    path = Path(args.file) if args.file else Path(tmp.name) / "events.h5"
    if not args.file:
        from spectrocnn.config import preset_config
        from spectrocnn.dataset import generate_file

        t = time.perf_counter()
        generate_file(preset_config("lecture"), args.n, path, seed=args.seed)
        print(f"generated {args.n} lecture events in {time.perf_counter() - t:.1f} s: {path}")
    bs = args.batch_size
    for arch in args.archs:
        size = args.input_size or INPUT_SIZES[arch]
        data = _pipeline_and_step(
            tf,
            keras,
            build_model,
            load_images,
            make_dataset,
            open_event_file,
            path,
            arch,
            size,
            args,
        )
    if args.epochs <= 0:
        tmp.cleanup()
        return
    size = args.input_size or INPUT_SIZES["lecture"]
    if size != data.images.shape[1] or args.archs[-1] != "lecture":
        data = _pipeline_and_step(
            tf,
            keras,
            build_model,
            load_images,
            make_dataset,
            open_event_file,
            path,
            "lecture",
            size,
            args,
            step=False,
        )
    n = data.n

    # (c) train-cnn's epochs against in-memory epochs, same data, split and epochs
    tr, va = split_indices(n, 0.2, args.seed)
    x_all = tf.minimum(tf.cast(data.images, tf.float32), 1.0)[..., tf.newaxis]
    y_all = tf.cast(data.labels, tf.float32)
    xt, yt = tf.gather(x_all, tr), tf.gather(y_all, tr)
    xv, yv = tf.gather(x_all, va), tf.gather(y_all, va)
    del x_all
    mem_times: list[float] = []
    cnn_times: list[float] = []
    for r in range(args.repeat):
        keras.utils.set_random_seed(args.seed)
        model = build_model("lecture", size)
        times = _epoch_times(keras)
        model.fit(
            xt,
            yt,
            batch_size=bs,
            epochs=args.epochs,
            validation_data=(xv, yv),
            validation_batch_size=256,
            shuffle=True,
            verbose=0,
            callbacks=[times],
        )
        mem_times += times.times[1:] if args.epochs > 1 else times.times
        del model

        run_dir = Path(tmp.name) / f"run{r}"
        config = TrainConfig(
            str(path),
            arch="lecture",
            patience=0,
            precision="fp32",
            epochs=args.epochs,
            batch_size=bs,
            input_size=size,
            seed=args.seed,
            threads=args.threads,
        )
        train(config, run_dir)
        with (run_dir / "history.csv").open() as fh:
            t_run = [float(row["epoch_time_s"]) for row in csv.DictReader(fh)]
        cnn_times += t_run[1:] if args.epochs > 1 else t_run
    med = statistics.median(cnn_times) / statistics.median(mem_times)
    best = min(cnn_times) / min(mem_times)
    print(
        f"(c) epoch time, {len(tr)} training + {len(va)} validation events, {args.epochs} "
        f"epochs x {args.repeat} (first epoch of each run left out): train-cnn "
        f"{', '.join(f'{t:.1f}' for t in cnn_times)} s; in memory "
        f"{', '.join(f'{t:.1f}' for t in mem_times)} s"
    )
    print(
        f"    train-cnn / in memory = {med:.3f} (medians), {best:.3f} (fastest epochs)  "
        "(target <= 1.10)"
    )
    if not math.isfinite(med):  # pragma: no cover
        raise SystemExit(1)
    tmp.cleanup()


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("train_pipeline", main))
