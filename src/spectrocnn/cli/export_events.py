"""``export-events``: the lecture's PNG folders or TrackML-style CSV files from an event file."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence

from spectrocnn.cli._common import (
    EXIT_OK,
    UsageError,
    bounded_int,
    make_parser,
    plural,
    run,
    terminate_as_exit,
)

__all__ = ["build_parser", "main"]

PROG = "export-events"

_STYLES = ("dark-on-white", "light-on-black", "counts")  # = dataset.export.PNG_STYLES


def _fraction(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0.0 <= value < 1.0):
            raise argparse.ArgumentTypeError(f"{name} must be a number in [0, 1), got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of export-events."""
    p = make_parser(
        PROG,
        "Export an event file as the lecture's PNG folders (DIR/Training/{HiPt,LoPt}, "
        "DIR/Testing/{HiPt,LoPt}, one grayscale PNG per event at the stored image size, "
        "512x512 for the lecture preset) or as TrackML-style CSV files "
        "(eventNNNNNNNNN-hits.csv, -particles.csv, -truth.csv). The directory appears only "
        "when complete.",
    )
    p.add_argument("file", metavar="FILE.h5", help="event file written by gen-events")
    p.add_argument(
        "--format",
        required=True,
        choices=("png", "trackml"),
        help="png: the lecture's folder layout; trackml: TrackML CSV files",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory to create")
    p.add_argument(
        "--test-fraction",
        type=_fraction("--test-fraction"),
        metavar="F",
        help="png: fraction of each class written to Testing, in [0, 1) (default 0.2)",
    )
    p.add_argument(
        "--seed",
        type=bounded_int("--seed", 0, 2**64, "an integer in [0, 2**64)"),
        metavar="S",
        help="png: seed of the train/test split (default: fresh, recorded in DIR/export.json)",
    )
    p.add_argument(
        "--style",
        choices=_STYLES,
        help="png: dark-on-white (default; pixel 255 = no hit, 0 = hit, like the lecture's "
        "pictures), light-on-black (0 = no hit, 255 = hit) or counts (the stored hit counts "
        "0..255, lossless)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing DIR (only once the new one is complete)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.format != "png":
        for flag, value in (
            ("--test-fraction", args.test_fraction),
            ("--seed", args.seed),
            ("--style", args.style),
        ):
            if value is not None:
                raise UsageError(f"{flag} applies to --format png only")
    from spectrocnn.dataset.eventfile import open_events
    from spectrocnn.dataset.export import export_png, export_trackml

    with open_events(args.file) as ev:  # the reader's errors before a bar appears
        n = ev.n_events
    show = not args.quiet and sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="ev", desc=PROG, file=sys.stderr, dynamic_ncols=True)
    progress = bar.update if bar is not None else None
    try:
        with terminate_as_exit():
            if args.format == "png":
                result = export_png(
                    args.file,
                    args.out,
                    test_fraction=0.2 if args.test_fraction is None else args.test_fraction,
                    seed=args.seed,
                    style=args.style or "dark-on-white",
                    overwrite=args.overwrite,
                    progress=progress,
                )
            else:
                result = export_trackml(
                    args.file, args.out, overwrite=args.overwrite, progress=progress
                )
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        out = os.fspath(args.out)
        rate = f"in {result.elapsed_s:.1f} s ({result.events_per_s:.0f} events/s)"
        if result.format == "png":
            tr, te = result.counts["Training"], result.counts["Testing"]
            # every class but the first (binary: "118 HiPt")
            of = lambda d: ", ".join(f"{n} {c}" for c, n in list(d.items())[1:])  # noqa: E731
            print(
                f"{PROG}: wrote {plural(result.n_events, 'event')} to {out} as PNG {rate}: "
                f"Training {sum(tr.values())} ({of(tr)}), "
                f"Testing {sum(te.values())} ({of(te)}), seed {result.seed}"
            )
        else:
            print(
                f"{PROG}: wrote {plural(result.n_events, 'event')} to {out} as TrackML CSV {rate}: "
                f"{plural(result.n_particles, 'particle')}, {plural(result.n_hits, 'hit')}"
            )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``export-events`` console script; returns the exit code."""
    return run(PROG, _body, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
