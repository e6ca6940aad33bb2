"""Wall time and accuracy of ``make demo`` (README, "Set-up on a fresh machine").

    python benchmarks/demo.py [--n 20000 2000] [--workdir DIR] [--record]

Runs ``make demo N=... DEMO=<workdir>/demo-N`` from the repository root for each N, in a
fresh output directory (nothing to resume), with the virtual environment the Makefile uses
(``VENV``, default ``.venv``; it must be installed already: the figure is the time *after
installation*). Prints per N: the wall time of the whole command, the time train-cnn spent
training (``metrics.json``: ``train_time_s``), the epochs run and the best one, and the
validation accuracy of the CNN and of fit-tracks, as the README's ``make demo`` rows quote
them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _record import grouped

ROOT = Path(__file__).resolve().parents[1]


def _demo(n: int, work: Path, venv: str) -> None:
    out = work / f"demo-{n}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["make", "--no-print-directory", "demo", f"N={n}", f"DEMO={out}", f"VENV={venv}"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / f"run-{n}-seed1" / "metrics.json").read_text())
    fit = json.loads((out / f"fit-{n}-seed1.json").read_text())
    print(
        f"make demo N={n}: {grouped(wall)} s wall after installation; train-cnn "
        f"{metrics.get('arch', 'polar')}: {grouped(metrics['train_time_s'])} s "
        f"training, {metrics['epochs']} epochs, best {metrics['best_epoch']}, validation "
        f"accuracy {metrics['accuracy']:.4f} ({metrics['accuracy']:.5f}); fit-tracks "
        f"{fit['accuracy']:.4f}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[20000, 2000], help="events per demo")
    p.add_argument("--workdir", type=Path, help="keep the demo directories here")
    p.add_argument("--venv", default=os.environ.get("VENV", ".venv"))
    args = p.parse_args()
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="spectrocnn-demo-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for n in args.n:
            _demo(n, work, args.venv)
    return 0


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("demo", main))
