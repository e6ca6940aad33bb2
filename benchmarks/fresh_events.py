"""Fresh events every epoch (issue 18 item 4): does the lecture network still overfit, and
does the simulation keep up with the training?

Prints, in one run:

(a) for the ``lecture`` network (128 x 128, nearest) and the ``polar`` network (256 x 256,
    max-pooled): the images per second that the simulation makes (simulate, rasterize,
    downsample: :func:`spectrocnn.dataset.fresh.fresh_images`, one thread, ``--rate-events``
    lecture events) against the images per second the network trains on (its training
    step alone on in-memory tensors, best of two passes, ``--precision``);
(b) with ``--overlap-events N`` (default 1024; 0: skip), for both networks, the epoch time
    of ``train-cnn --generate --events-per-epoch N`` against that of train-cnn on an event
    file of ``N`` events (the second epoch of each, run one after the other): what the
    simulation, overlapped with the training in a ``tf.data`` thread, costs a real run;
(c) the experiment: the lecture network (``--arch lecture --downsample nearest``) trained
    ``--epochs`` epochs with the same seed on
    - a fixed file of ``--events-per-epoch`` events (``gen-events --seed S``, which is the
      first epoch of the fresh run), validated on ``--val`` = ``gen-events --n M --seed
      validation_seed(S)``;
    - ``train-cnn --generate --preset lecture --events-per-epoch N --val-events M``: new
      events every epoch, validated on the same ``M`` events (simulated in memory: the
      file's events exactly);
    per epoch the training accuracy (over the epoch, as Keras reports it) and the
    validation accuracy of both runs, and the best model of each scored on its training
    events (the file; the fresh run: the events of its best epoch) and on the validation
    events.

Usage::

    python benchmarks/fresh_events.py --workdir /tmp/fresh_exp   # the README's (about 45 min
                                                                 # on 2 shared cores)
    python benchmarks/fresh_events.py --events-per-epoch 2000 --val-events 500 --epochs 2

``--workdir DIR`` keeps the event files and the runs: running again with the same DIR
reuses them (a complete run is only summarised, an interrupted one resumed).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import grouped

BIN = Path(sys.executable).parent

#: network -> input size, downsampling (each network's train-cnn defaults for the lecture)
NETWORKS = {"lecture": (128, "nearest"), "polar": (256, "max")}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events-per-epoch", type=int, default=16000, help="(c): default 16000")
    p.add_argument("--val-events", type=int, default=4000, help="(c): default 4000")
    p.add_argument("--epochs", type=int, default=6, help="(c): epochs of both runs (6)")
    p.add_argument("--precision", default="bf16", help="of every training (bf16)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate-events", type=int, default=1024, help="(a): events (1024)")
    p.add_argument("--overlap-events", type=int, default=1024, help="(b): events (1024)")
    p.add_argument("--workdir", help="keep files and runs here (default: a temporary dir)")
    return p.parse_args()


def _run(cmd: list[str]) -> str:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr}")
    print(f"  {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}"
          f"  ({time.perf_counter() - t:.0f} s)", file=sys.stderr)  # fmt: skip
    return proc.stdout


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _events(path: Path, n: int, seed: int) -> Path:
    if not path.exists():
        _run([str(BIN / "gen-events"), "--n", str(n), "--seed", str(seed), "--out", str(path),
              "--quiet"])  # fmt: skip
    return path


def _train(run: Path, source: list[str], common: list[str]) -> None:
    """train-cnn into ``run`` (resumed, or only summarised, when it holds a run)."""
    resume = ["--resume"] if (run / "config.json").is_file() else []
    _run([str(BIN / "train-cnn"), *source, *common, "--out", str(run), "--quiet", *resume])


def _history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


# -- (a) generation against training --------------------------------------------------------


def _rates(a: argparse.Namespace) -> None:
    import keras
    import tensorflow as tf

    from spectrocnn.config import preset_config
    from spectrocnn.dataset.fresh import epoch_seed, fresh_images
    from spectrocnn.model.architectures import build_model
    from spectrocnn.model.data import downsample
    from spectrocnn.model.device import precision_policy

    config, n, bs = preset_config("lecture"), a.rate_events, 32
    print(f"(a) {grouped(n)} lecture events simulated, rasterized and downsampled in one "
          f"thread, against the training step alone (batch {bs}, {a.precision}, in memory, "
          "best of 2)")  # fmt: skip
    print("| network (input) | generated images/s | trained images/s | generated / trained |")
    print("|---|---|---|---|")
    for arch, (size, method) in NETWORKS.items():
        to_input = functools.partial(downsample, size=size, method=method)
        fresh_images(config, 256, epoch_seed(a.seed, 9), to_input)  # warm caches
        t = time.perf_counter()
        images, labels = fresh_images(config, n, epoch_seed(a.seed, 1), to_input)
        generated = n / (time.perf_counter() - t)
        x = tf.minimum(tf.cast(images, tf.float32), 1.0)[..., tf.newaxis]
        y = tf.cast(labels, tf.float32)
        with precision_policy(a.precision):
            keras.utils.set_random_seed(a.seed)
            model = build_model(arch, size, window_mm=config.image.window_mm)
            model.fit(x[: 4 * bs], y[: 4 * bs], batch_size=bs, epochs=1, verbose=0)  # tracing
            trained = 0.0
            for _ in range(2):
                t = time.perf_counter()
                model.fit(x, y, batch_size=bs, epochs=1, verbose=0, shuffle=False)
                trained = max(trained, n / (time.perf_counter() - t))
        print(f"| {arch} ({size}x{size} {method}) | {grouped(generated)} | {grouped(trained)} | "
              f"{grouped(generated / trained, 1)} |")  # fmt: skip


# -- (b) overlapped in train-cnn ------------------------------------------------------------


def _overlap(a: argparse.Namespace, work: Path) -> None:
    from spectrocnn.dataset.fresh import validation_seed

    n, m = a.overlap_events, 256
    train = _events(work / f"overlap-train{_k(n)}-seed{a.seed}.h5", n, a.seed)
    val = _events(work / f"overlap-val{m}.h5", m, validation_seed(a.seed))
    print()
    print(f"(b) train-cnn, {grouped(n)} training and {m} validation events per epoch, "
          f"{a.precision}, epoch 2 of 2 (epoch 1 traces the graph)")  # fmt: skip
    print("| network (input) | epoch s, event file | epoch s, --generate | --generate / file |")
    print("|---|---|---|---|")
    for arch, (size, method) in NETWORKS.items():
        common = ["--arch", arch, "--input-size", str(size), "--downsample", method,
                  "--epochs", "2", "--patience", "0", "--precision", a.precision,
                  "--seed", str(a.seed)]  # fmt: skip
        runs = {"file": work / f"overlap-{arch}-file", "fresh": work / f"overlap-{arch}-fresh"}
        _train(runs["file"], [str(train), "--val", str(val)], common)
        _train(runs["fresh"], ["--generate", "--preset", "lecture", "--events-per-epoch",
                               str(n), "--val-events", str(m)], common)  # fmt: skip
        t_file, t_fresh = (_history(runs[k])[-1]["epoch_time_s"] for k in ("file", "fresh"))
        print(f"| {arch} ({size}x{size} {method}) | {t_file:.1f} | {t_fresh:.1f} | "
              f"{t_fresh / t_file:.2f} |")  # fmt: skip


# -- (c) the experiment ---------------------------------------------------------------------


def _experiment(a: argparse.Namespace, work: Path) -> None:
    from spectrocnn.dataset.fresh import validation_seed

    n, m, s = a.events_per_epoch, a.val_events, a.seed
    v_seed = validation_seed(s)
    train = _events(work / f"train{_k(n)}-seed{s}.h5", n, s)
    val = _events(work / f"val{_k(m)}.h5", m, v_seed)
    common = ["--arch", "lecture", "--downsample", "nearest", "--epochs", str(a.epochs),
              "--precision", a.precision, "--seed", str(s)]  # fmt: skip
    runs = {"fixed": work / "fixed", "fresh": work / "fresh"}
    _train(runs["fixed"], [str(train), "--val", str(val)], common)
    _train(runs["fresh"], ["--generate", "--preset", "lecture", "--events-per-epoch", str(n),
                           "--val-events", str(m)], common)  # fmt: skip
    hist = {k: _history(r) for k, r in runs.items()}
    metrics = {k: json.loads((r / "metrics.json").read_text()) for k, r in runs.items()}
    print()
    print(f"(c) lecture network (--arch lecture --downsample nearest, 128x128), batch 32, "
          f"{a.precision}, seed {s}, {a.epochs} epochs; validation: the same {grouped(m)} "
          f"events (gen-events --seed {v_seed}) in both runs")  # fmt: skip
    print(
        f"fixed file: {grouped(n)} events of gen-events --seed {s}, every epoch; fresh: "
        f"{grouped(n)} new events every epoch (train-cnn --generate; epoch 1: the file's)"
    )
    print("| epoch | fixed file: accuracy | fixed file: val_accuracy | fresh: accuracy | "
          "fresh: val_accuracy |")  # fmt: skip
    print("|---|---|---|---|---|")
    for e, (f, g) in enumerate(zip(hist["fixed"], hist["fresh"], strict=True), start=1):
        print(f"| {e} | {f['accuracy']:.4f} | {f['val_accuracy']:.4f} | {g['accuracy']:.4f} | "
              f"{g['val_accuracy']:.4f} |")  # fmt: skip
    for k, name in (("fixed", "fixed file"), ("fresh", "fresh")):
        mt = metrics[k]
        gap = mt["train"]["accuracy"] - mt["accuracy"]
        times = [r["epoch_time_s"] for r in hist[k]]
        train_acc = mt["train"]["accuracy"]
        print(f"{name}: best model (epoch {mt['best_epoch']}) accuracy {train_acc:.4f} "
              f"on its training events, {mt['accuracy']:.4f} on the validation events "
              f"(gap {gap:.4f}), ROC AUC {mt['roc_auc']:.4f}; epoch times "
              f"{', '.join(f'{t:.0f}' for t in times)} s")  # fmt: skip


def main() -> None:
    a = _args()
    tmp = None if a.workdir else tempfile.TemporaryDirectory(prefix="spectrocnn-fresh-")
    work = Path(a.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    _rates(a)
    if a.overlap_events:
        _overlap(a, work)
    _experiment(a, work)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("fresh_events", main))
