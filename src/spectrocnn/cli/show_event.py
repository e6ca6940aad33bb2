"""``show-event``: a picture (PNG, PDF, SVG, JPEG, ...) of one event, or a grid of events
like the lecture's slide 13."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from spectrocnn._atomic import atomic_path
from spectrocnn.cli._common import UsageError, bounded_int, make_parser, positive_int, run

__all__ = ["build_parser", "main"]

PROG = "show-event"


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = make_parser(
        PROG,
        "Draw events of an event file as a picture (the format from the --out extension).",
    )
    p.add_argument("file", metavar="FILE.h5", help="event file written by gen-events")
    p.add_argument(
        "--index",
        type=bounded_int("--index", 0),
        default=0,
        help="(first) event to draw (default 0)",
    )
    p.add_argument(
        "--grid",
        type=positive_int("--grid"),
        default=1,
        metavar="N",
        help="draw N consecutive events side by side, 4 per row (default 1)",
    )
    p.add_argument(
        "--truth",
        action="store_true",
        help="overlay the true trajectories (coloured by momentum, the high-momentum track "
        "highlighted) and the layers",
    )
    p.add_argument(
        "--out",
        metavar="PICTURE",
        help="output picture; its extension picks the format: png, pdf, svg, jpg, eps, ps, "
        "tif, webp, ... (default event_<I>.png, or events_<I>-<J>.png with --grid); an "
        "existing file is replaced only when the new picture is complete",
    )
    return p


#: matplotlib's formats that need something else installed (pgf: LaTeX) or are no
#: picture files (raw, rgba: headerless pixel dumps).
_LEFT_OUT = frozenset({"pgf", "raw", "rgba"})


def supported_formats() -> list[str]:
    """Picture formats show-event writes: the extensions matplotlib's Agg canvas supports."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return sorted(set(FigureCanvasAgg.get_supported_filetypes()) - _LEFT_OUT)


def picture_format(out: str) -> str:
    """The format named by the extension of ``out``.

    Raises
    ------
    UsageError
        No extension, or one of a format matplotlib cannot write.
    """
    ext = os.path.splitext(out)[1].lower().lstrip(".")
    formats = supported_formats()
    if ext not in formats:
        what = f"extension '.{ext}'" if ext else "no extension"
        raise UsageError(f"--out {out!r} has {what}; the picture formats are {', '.join(formats)}")
    return ext


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    from spectrocnn.dataset import open_events
    from spectrocnn.display import event_figure

    first, n = args.index, args.grid
    out = args.out or (f"event_{first}.png" if n == 1 else f"events_{first}-{first + n - 1}.png")
    fmt = picture_format(out)
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise UsageError(f"--out directory {out_dir!r} does not exist")
    with open_events(args.file) as ev:
        if ev.n_events == 0:
            raise UsageError(f"event file {args.file} holds no events")
        if first + n > ev.n_events:
            raise UsageError(
                f"--index {first} with --grid {n} needs events up to {first + n - 1}, "
                f"but {args.file} holds {ev.n_events} (0 to {ev.n_events - 1})"
            )
        fig = event_figure(ev, list(range(first, first + n)), truth=args.truth)
    with atomic_path(out) as tmp:  # an existing picture is replaced only on success
        fig.savefig(tmp, format=fmt)
    print(f"{PROG}: wrote {out} ({n} event{'s' if n > 1 else ''})", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``show-event``; returns the exit code."""
    return run(PROG, _body, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
