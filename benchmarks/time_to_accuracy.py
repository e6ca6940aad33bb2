"""Benchmark of issue 17: train-cnn's default network against the lecture's, time to answer.

Runs, on one lecture-preset event file (``--n`` events, seed 1; 20 % held out):

1. ``train-cnn FILE`` with its defaults (``--arch auto``: ``polar`` here, early stopping):
   the training time until the validation accuracy first reaches ``--target`` (0.99), the
   epoch, and the command's wall time;
2. ``train-cnn FILE --arch lecture --downsample nearest`` (the lecture: 10 epochs): the
   training time until its best epoch.

Training time is the sum of ``epoch_time_s`` in history.csv (each epoch with its validation
pass and checkpoint). Prints both side by side and their ratio (target: at least 20).

With ``--lecture-epochs E`` below 10 the lecture network trains E epochs only (it takes
about 260 s an epoch on 20 000 events on 2 cores); its time to best is then *estimated* as
its median epoch time times ``--lecture-best-epoch`` (default 9, the best epoch of the full
lecture run on these events recorded in the README), and the output says so.

Usage::

    python benchmarks/time_to_accuracy.py --n 20000 --workdir tta       # full: about 50 min
    python benchmarks/time_to_accuracy.py --n 20000 --lecture-epochs 1  # estimate, 10 min

``--workdir DIR`` keeps the files and runs (and reuses them when run again).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _work import BIN, lecture_events, work_dir


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="events (20000)")
    p.add_argument("--target", type=float, default=0.99, help="validation accuracy (0.99)")
    p.add_argument("--lecture-epochs", type=int, default=10, help="lecture epochs (10)")
    p.add_argument("--lecture-best-epoch", type=int, default=9)
    p.add_argument("--workdir", help="keep files and runs here (default: a temporary dir)")
    p.add_argument("--skip-lecture", action="store_true", help="only the default network")
    return p.parse_args()


def _run(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr}")
    print(proc.stdout.strip(), file=sys.stderr)
    return time.perf_counter() - t


def _history(run: Path) -> list[dict[str, float]]:
    with (run / "history.csv").open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def main() -> None:
    args = _args()
    with work_dir(args.workdir, "spectrocnn-tta-") as work:
        events, t = lecture_events(work, args.n)
        if t is not None:
            print(f"gen-events --n {args.n}: {t:.1f} s")
        _default_and_lecture(args, work, events)


def _default_and_lecture(args: argparse.Namespace, work: Path, events: Path) -> None:
    """Train both networks on ``events`` in ``work`` and print the comparison."""
    # 1. the defaults
    run = work / "default"
    cmd = [str(BIN / "train-cnn"), str(events), "--out", str(run), "--seed", "1", "--quiet"]
    wall = _run([*cmd, "--resume"] if (run / "config.json").is_file() else cmd)
    hist = _history(run)
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    elapsed, reached = 0.0, None
    for i, row in enumerate(hist):
        elapsed += row["epoch_time_s"]
        if row["val_accuracy"] >= args.target:
            reached = (i + 1, elapsed)
            break
    accs = ", ".join(f"{r['val_accuracy']:.4f}" for r in hist)
    times = ", ".join(f"{r['epoch_time_s']:.0f}" for r in hist)
    print(
        f"default ({config['arch']}, {config['input_size']}x{config['input_size']}, patience "
        f"{config['patience']}, {config['precision']}): val_accuracy per epoch {accs}; epoch "
        f"times {times} s; {metrics['stop_reason']}; command wall time {wall:.0f} s"
    )
    if reached is None:
        print(f"  never reached {args.target}")
        t_default = float("nan")
    else:
        t_default = reached[1]
        print(f"  reached {args.target} at epoch {reached[0]} after {t_default:.0f} s of training")

    if args.skip_lecture:
        return
    # 2. the lecture's network, as in the lecture
    run = work / f"lecture-{args.lecture_epochs}"
    cmd = [str(BIN / "train-cnn"), str(events), "--out", str(run), "--seed", "1", "--quiet",
           "--arch", "lecture", "--downsample", "nearest",
           "--epochs", str(args.lecture_epochs)]  # fmt: skip
    _run([*cmd, "--resume"] if (run / "config.json").is_file() else cmd)
    hist = _history(run)
    precision = json.loads((run / "config.json").read_text())["precision"]
    accs = [r["val_accuracy"] for r in hist]
    times = [r["epoch_time_s"] for r in hist]
    if args.lecture_epochs >= 10:
        best = accs.index(max(accs))
        t_lecture = sum(times[: best + 1])
        how = f"measured: best val_accuracy {accs[best]:.4f} at epoch {best + 1}"
    else:
        per_epoch = statistics.median(times[1:] or times)
        t_lecture = per_epoch * args.lecture_best_epoch
        how = (
            f"ESTIMATED: {len(times)} epoch(s) measured ({', '.join(f'{t:.0f}' for t in times)}"
            f" s), median {per_epoch:.0f} s x best epoch {args.lecture_best_epoch} of the full "
            "lecture run"
        )
    print(
        f"lecture (128x128 nearest, 10 epochs, {precision}): time to its best {t_lecture:.0f} s "
        f"({how})"
    )
    print(
        f"ratio lecture time-to-best / default time-to-{args.target}: "
        f"{t_lecture / t_default:.1f}  (target >= 20)"
    )


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("time_to_accuracy", main))
