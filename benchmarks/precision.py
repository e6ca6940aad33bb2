"""Benchmark of issue 17: bfloat16 against float32, both networks, same seed and data.

On one lecture-preset event file (``--n`` events, seed 1; 20 % held out) it runs, for the
default network (``--arch auto``: ``polar`` here) and the lecture's
(``--arch lecture --downsample nearest``), ``train-cnn --precision fp32`` and
``train-cnn --precision bf16`` with the same ``--seed``, ``--patience 0`` and ``--epochs``
(the two precisions of a network one after the other, in alternating order, so that both
see the same load). It prints, per network: the epoch times, the median epoch time of
each precision (epochs 2.. when there are several: the first includes graph tracing), the
speed ratio fp32 / bf16 (above 1: bf16 is faster), the best validation accuracy of each and
their difference in points (target: bf16 within 0.5 point of fp32).

Whether the CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16``, the rule of
``--precision auto``) is printed first: without it bf16 is emulated and the speed ratio
says nothing about machines that have it.

Usage::

    python benchmarks/precision.py --n 4000 --epochs 3 --lecture-epochs 2 --workdir prec

``--workdir DIR`` keeps the file and the runs (completed runs are reused).
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

#: network -> train-cnn flags (the lecture's network as in the lecture)
NETWORKS = {
    "default": [],
    "lecture": ["--arch", "lecture", "--downsample", "nearest"],
}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000, help="events (4000)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the default network (3)")
    p.add_argument("--lecture-epochs", type=int, default=2, help="epochs of the lecture's (2)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", help="keep files and runs here (default: a temporary dir)")
    return p.parse_args()


def _train(events: Path, run: Path, flags: list[str]) -> float:
    """Run train-cnn into ``run`` (reused when complete); returns the wall time [s]."""
    if (run / "metrics.json").is_file():
        return float("nan")
    cmd = [str(BIN / "train-cnn"), str(events), "--out", str(run), "--quiet", *flags]
    if (run / "config.json").is_file():
        cmd.append("--resume")
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr}")
    return time.perf_counter() - t


def _summary(run: Path) -> dict:
    with (run / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    times = [float(r["epoch_time_s"]) for r in rows]
    return {
        "arch": config["arch"],
        "size": config["input_size"],
        "times": times,
        "median": statistics.median(times[1:] or times),
        "best": float(metrics["accuracy"]),
        "best_epoch": int(metrics["best_epoch"]),
        "accs": [float(r["val_accuracy"]) for r in rows],
    }


def main() -> None:
    args = _args()
    from spectrocnn.model.device import NATIVE_BF16_FLAGS, cpu_flags

    native = sorted(cpu_flags() & set(NATIVE_BF16_FLAGS))
    print(
        "bfloat16 on this CPU: "
        + (f"native ({', '.join(native)})" if native else "EMULATED (no amx_bf16, avx512_bf16)")
        + f"; --precision auto picks {'bf16' if native else 'fp32'} here (no GPU)"
    )
    with work_dir(args.workdir, "spectrocnn-precision-") as work:
        events, _ = lecture_events(work, args.n)
        for k, (name, flags) in enumerate(NETWORKS.items()):
            _compare(events, work, name, flags, k, args)


def _compare(events: Path, work: Path, name: str, flags: list[str], k: int, args) -> None:
    """Train network ``name`` in fp32 and bf16 (in alternating order: ``k``) into ``work``
    and print the comparison."""
    epochs = args.epochs if name == "default" else args.lecture_epochs
    order = ("fp32", "bf16") if k % 2 == 0 else ("bf16", "fp32")
    res = {}
    for precision in order:
        run = work / f"{name}-{precision}-{epochs}"
        _train(events, run, [*flags, "--precision", precision, "--seed", str(args.seed),
                             "--patience", "0", "--epochs", str(epochs)])  # fmt: skip
        res[precision] = _summary(run)
    f, b = res["fp32"], res["bf16"]
    print(f"{name} network ({f['arch']}, {f['size']}x{f['size']}, {epochs} epochs, "
          f"order {' then '.join(order)}):")  # fmt: skip
    for p in ("fp32", "bf16"):
        r = res[p]
        print(
            f"  {p}: epoch times {', '.join(f'{t:.1f}' for t in r['times'])} s (median "
            f"{r['median']:.1f} s); val_accuracy {', '.join(f'{a:.5f}' for a in r['accs'])}"
            f"; best {r['best']:.5f} at epoch {r['best_epoch']}"
        )
    diff = 100 * (b["best"] - f["best"])
    print(
        f"  speed fp32 / bf16 epoch time: {f['median'] / b['median']:.2f}; best val_accuracy"
        f" bf16 - fp32: {diff:+.2f} points (target within 0.5)"
    )


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("precision", main))
