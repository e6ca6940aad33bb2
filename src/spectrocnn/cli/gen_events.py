"""``gen-events``: simulate N events and write one HDF5 event file (docs/design.md 3.1, 3.3)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from spectrocnn.cli._common import (
    EXIT_OK,
    UsageError,
    bounded_int,
    make_parser,
    plural,
    positive_int,
    run,
    terminate_as_exit,
)

__all__ = ["build_parser", "main"]

PROG = "gen-events"
_MAX_IMAGE_SIZE = 16384  # spectrocnn.dataset.raster.MAX_IMAGE_SIZE (not imported by --help)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of gen-events."""
    p = make_parser(
        PROG,
        "Simulate N events of a charged-particle spectrometer, rasterize them and write one "
        "HDF5 event file (images, labels, truth; schema spectrocnn.events/2).",
    )
    p.add_argument("--n", type=positive_int("--n"), required=True, help="number of events")
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE.h5",
        help="event file to write; with --shards, the directory to create (DIR/events.h5 and "
        "the shard files)",
    )
    p.add_argument("--config", metavar="FILE.toml", help="configuration file (TOML)")
    p.add_argument(
        "--preset", metavar="NAME", help="detector preset: lecture (default) or telescope"
    )
    p.add_argument(
        "--seed",
        type=bounded_int("--seed", 0, 2**64, "an integer in [0, 2**64)"),
        help="random seed in [0, 2**64) (default: fresh entropy, recorded in the file)",
    )
    p.add_argument(
        "--image-size",
        type=bounded_int(
            "--image-size", 1, _MAX_IMAGE_SIZE + 1, f"an integer in [1, {_MAX_IMAGE_SIZE}]"
        ),
        metavar="PX",
        help="image size in pixels (default 512); a hit radius set in mm ([image] "
        "hit_radius_mm, the lecture preset's 3.125 mm) follows it, one set in pixels "
        "(hit_radius_px) does not",
    )
    p.add_argument(
        "--workers",
        type=positive_int("--workers"),
        metavar="W",
        help="processes making events (default: all cores); the file does not depend on it. "
        "With --shards: the processes of the local Dask cluster",
    )
    p.add_argument(
        "--compression",
        choices=("gzip", "lzf", "none"),
        default="gzip",
        help="image compression (default: gzip, readable by every HDF5 reader)",
    )
    p.add_argument(
        "--shards",
        type=positive_int("--shards"),
        metavar="K",
        help="write K shard files on a Dask cluster and one HDF5 virtual-dataset file "
        "DIR/events.h5 over them (same events as without --shards; needs spectrocnn[dask])",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --shards: address of a running Dask scheduler (tcp://host:8786); "
        "default: a local cluster of --workers processes",
    )
    p.add_argument(
        "--retries",
        type=bounded_int("--retries", 0, None),
        metavar="R",
        help="with --shards: times a failed shard is run again (default 2)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def _size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def _start_fork_server() -> None:
    """Start the process that forks the workers, so that it imports the pipeline while
    this process loads the configuration (saves most of the pool's start-up time)."""
    import multiprocessing
    import multiprocessing.forkserver

    if "forkserver" not in multiprocessing.get_all_start_methods():  # pragma: no cover
        return
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["spectrocnn.dataset.workers"])  # as workers._mp_context
    # The server ignores Ctrl-C only once it has imported the pipeline; started with SIGINT
    # ignored (which survives exec), a Ctrl-C meanwhile does not make it print a traceback.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, old)


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.shards is None:
        for flag in ("scheduler", "retries"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag} needs --shards")
        if args.n > 256 and (args.workers is None or args.workers > 1):  # 256 = CHUNK_EVENTS
            _start_fork_server()
    from spectrocnn.config import load_config
    from spectrocnn.dataset.generate import generate_file

    config = load_config(args.config, preset=args.preset)
    if args.image_size is not None:
        config = config.with_image_size(args.image_size)
    show = not args.quiet and sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=args.n, unit="ev", desc=PROG, file=sys.stderr, dynamic_ncols=True)
    try:
        with terminate_as_exit():
            common = {
                "seed": args.seed,
                "workers": args.workers,
                "compression": args.compression,
                "overwrite": args.overwrite,
                "progress": bar.update if bar is not None else None,
            }
            if args.shards is not None:
                from spectrocnn.dataset.shards import generate_sharded

                result = generate_sharded(
                    config,
                    args.n,
                    args.out,
                    shards=args.shards,
                    scheduler=args.scheduler,
                    retries=2 if args.retries is None else args.retries,
                    **common,
                )
            else:
                result = generate_file(config, args.n, args.out, **common)
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        n = result.n_events
        where = os.fspath(args.out)
        if args.shards is not None:
            where = f"{result.path} ({result.shards} shards)"
        print(
            f"{PROG}: wrote {plural(n, 'event')} to {where} in {result.elapsed_s:.1f} s "
            f"({result.events_per_s:.0f} events/s), {_size(result.file_bytes)}, "
            f"labels {result.n_high}/{n} high ({100 * result.n_high / n:.1f}%), "
            f"seed {result.seed}{_stops(result)}"
        )
    return EXIT_OK


def _stops(result) -> str:
    """``", 3 of 100000 tracks stopped early (2 looped, 1 step_limit)"``; the tracks that
    ended other than by leaving the detector (neutral particles, never propagated, are not
    counted as stopped). Empty for a sharded run (not counted there)."""
    stops = getattr(result, "track_stops", None)
    if stops is None:
        return ""
    early = {k: v for k, v in stops.items() if k not in ("left_detector", "neutral") and v}
    detail = f" ({', '.join(f'{v} {k}' for k, v in early.items())})" if early else ""
    return f", {sum(early.values())} of {sum(stops.values())} tracks stopped early{detail}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gen-events`` console script; returns the exit code."""
    return run(PROG, _body, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
