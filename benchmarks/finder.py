"""Track-finding benchmark (issue 14 item 8): ``fit-tracks --no-truth`` in crowded events.

Generates (once, kept in ``--workdir``) one event file per row with ``gen-events``
(``--image-size 32``: the finder uses the hits, not the images; fixed seeds), runs
``fit-tracks FILE --no-truth --json`` on each and prints one table: events, particles per
event, found tracks, tracks per findable particle, efficiency, fake rate, duplicate rate
(definitions in the README's fit-tracks section), event accuracy at the best p_T cut, ROC
AUC, and the command's wall time per event (reading the file included).

Usage::

    python benchmarks/finder.py                       # the full table (2 000 events a row)
    python benchmarks/finder.py --n 200 --rows p100   # a quick look at one row
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _record import grouped

#: key -> (row name, TOML configuration text)
ROWS = {
    "lecture": ("`lecture` preset (10 particles)", ""),
    "p100": ("100 particles", "n_particles = 100\n"),
    "p300": ("300 particles", "n_particles = 300\n"),
    "p1000": ("1 000 particles", "n_particles = 1000\n"),
    "vtx10": (
        "10 particles, vertex spread 10 mm in x and y",
        "[gun]\nvertex_sigma_mm = [10.0, 10.0, 0.0]\n",
    ),
}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="events per file (2000)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--workdir", default="finder-bench", help="event files go here")
    return p.parse_args()


def _rate(rate: float, count: int) -> str:
    """A fake or duplicate rate as the README writes it: ``0``, or ``3.3e-6 (2)`` with the count."""
    return "0" if count == 0 else f"{rate:.1e} ({count})".replace("e-0", "e-")


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, check=True)


def main() -> None:
    args = _args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for key in args.rows:
        name, toml = ROWS[key]
        path = work / f"{key}-{args.n}.h5"
        if not path.exists():
            seed = 100 + list(ROWS).index(key)  # fixed per row
            cfg = work / f"{key}.toml"
            cfg.write_text(toml)
            t = time.perf_counter()
            _cli(
                "spectrocnn.cli.gen_events", "--n", str(args.n), "--out", str(path),
                "--config", str(cfg), "--image-size", "32", "--seed", str(seed),
                "--workers", "1", "--quiet",
            )  # fmt: skip
            print(f"generated {path} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        t = time.perf_counter()
        out = _cli("spectrocnn.cli.fit_tracks", str(path), "--no-truth", "--json")
        r = json.loads(out.stdout)
        rows.append((name, r))
        print(f"{name}: done in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    cols = ["sample", "events", "findable", "found tracks", "per findable", "efficiency",
            "fake rate", "duplicate rate", "accuracy", "ROC AUC", "ms/event"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("-" * (len(c) + 2) for c in cols) + "|")
    for name, r in rows:
        f = r["finding"]
        cells = [
            name, grouped(r["n_events"]), grouped(f["n_findable"]), grouped(r["n_tracks"]),
            f"{f['tracks_per_findable']:.4f}", f"{f['efficiency']:.6f}",
            _rate(f["fake_rate"], f["n_fake"]), _rate(f["duplicate_rate"], f["n_duplicate"]),
            f"{r['accuracy']:.4f}", f"{r['roc_auc']:.4f}",
            f"{1e3 * r['seconds'] / r['n_events']:.1f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
        print(
            f"  {name}: {f['n_findable_matched']} of {f['n_findable']} findable matched, "
            f"{f['n_fake']} fakes, {f['n_duplicate']} duplicates",
            file=sys.stderr,
        )
    print(f"\n(ms/event: fit-tracks' own time, file reading included; {os.cpu_count()} cores)")


if __name__ == "__main__":
    from _record import recorded

    raise SystemExit(recorded("finder", main))
