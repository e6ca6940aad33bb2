"""``train-cnn``: train a CNN on an event file: by default the architecture that suits the
file (``--arch auto``), with early stopping; ``--arch lecture`` is the lecture's network.

Writes a run directory (``--out``, default ``runs/<timestamp>``) with the best and last
models, history.csv, metrics.json, config.json and the lecture's plots; see
:mod:`spectrocnn.model.train` and :mod:`spectrocnn.model.rundir`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
from collections.abc import Sequence

from spectrocnn.cli._common import (
    EXIT_OK,
    UsageError,
    bounded_int,
    cache_mb,
    input_size,
    make_parser,
    plural,
    positive_int,
    run,
    terminate_as_exit,
)
from spectrocnn.errors import SpectrocnnError

__all__ = ["build_parser", "main"]

PROG = "train-cnn"


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--val-fraction must be a number between 0 and 1, got {text!r}"
        ) from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"--val-fraction must be between 0 and 1 (exclusive), got {text}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of train-cnn (imports no TensorFlow)."""
    from spectrocnn.model.architectures import ALIASES, ARCHITECTURES
    from spectrocnn.model.data import DOWNSAMPLE_METHODS
    from spectrocnn.model.device import PRECISIONS
    from spectrocnn.model.trainconfig import DEFAULT_EPOCHS, DEFAULT_PATIENCE

    p = make_parser(
        PROG,
        "Train a CNN on the images of an event file; keep the model with the best "
        "val_accuracy and write history, metrics and plots to a run directory.",
    )
    p.add_argument("file", metavar="FILE.h5", help="training event file")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val", metavar="FILE.h5", help="validation event file")
    val.add_argument(
        "--val-fraction",
        type=_fraction,
        metavar="F",
        help="fraction of FILE held out for validation (default 0.2)",
    )
    aliases = ", ".join(f"{a} = {n}" for a, n in ALIASES.items())
    p.add_argument(
        "--arch",
        metavar="NAME",
        help=f"architecture: auto (default: polar for a barrel detector whose image window "
        f"holds the beam line, else lecture), {', '.join(sorted(ARCHITECTURES))} "
        f"({aliases}); lecture is the lecture's network",
    )
    p.add_argument(
        "--epochs",
        type=positive_int("--epochs"),
        metavar="E",
        help=f"maximum number of epochs (default {DEFAULT_EPOCHS['early_stopping']} with early "
        f"stopping, {DEFAULT_EPOCHS['fixed']} without, as the lecture)",
    )
    p.add_argument(
        "--patience",
        type=bounded_int("--patience", 0, None, "a non-negative integer"),
        metavar="P",
        help=f"stop when val_accuracy has not improved for P epochs, keeping the best model; "
        f"0: off (default {DEFAULT_PATIENCE}; 0 for --arch lecture, which trains its "
        f"{DEFAULT_EPOCHS['fixed']} epochs as in the lecture)",
    )
    p.add_argument(
        "--batch-size", type=positive_int("--batch-size"), metavar="B", help="default 32"
    )
    p.add_argument(
        "--input-size",
        type=input_size,
        metavar="PX",
        help="model input size in pixels (default: the architecture's, 128 for seed, "
        "256 for polar)",
    )
    p.add_argument(
        "--downsample",
        choices=DOWNSAMPLE_METHODS,
        help="max (default: max-pooling keeps every hit), mean (area average) or nearest "
        "(the lecture's image loader)",
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/<timestamp>)")
    p.add_argument(
        "--seed",
        type=bounded_int("--seed", 0, 2**63, "an integer in [0, 2**63)"),
        metavar="S",
        help="seed of the split, shuffling and initial weights (default: drawn, recorded)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out from its last completed epoch; with a "
        "larger --epochs, extend the run (a finished one too)",
    )
    p.add_argument("--legacy-h5", action="store_true", help="also write best_model.h5")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="bf16: Keras mixed_bfloat16 (fast on CPUs with AMX or AVX512_BF16 and on GPUs of "
        "compute capability >= 8.0, slow elsewhere); fp32: float32; auto (default): bf16 "
        "where the hardware has it natively, else fp32",
    )
    p.add_argument(  # the flag's earlier name
        "--mixed-precision", choices=("bf16",), dest="precision", help=argparse.SUPPRESS
    )
    p.add_argument(
        "--threads",
        type=positive_int("--threads"),
        metavar="N",
        help="TensorFlow intra-op threads (default: the cores available to this process)",
    )
    p.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multiworker"),
        help="tf.distribute strategy: default (one device), mirrored (every local GPU, or the "
        "CPU), multiworker (the machines in TF_CONFIG); --batch-size is per replica, a step "
        "takes batch-size x replicas events",
    )
    p.add_argument(
        "--cache-mb",
        type=cache_mb,
        metavar="MB",
        help="memory budget of the downsampled images in MB (default: half of the available "
        "memory, recorded and kept by --resume); files whose images exceed it are streamed "
        "from disk every epoch, shuffled in windows of blocks (README: train-cnn)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars and no per-epoch lines")
    return p


def resume_command(argv: Sequence[str] | None, out: str) -> str:
    """The shell command line that resumes a stopped run: the original arguments,
    ``--out`` (when it was not given) and ``--resume``, each quoted with :func:`shlex.quote`.

    Parameters
    ----------
    argv : sequence of str
        The arguments the run was started with (without the program name).
    out : str
        The run directory.
    """
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--resume"]
    has_out = any(a == "--out" or a.startswith("--out=") for a in args)
    if not has_out:
        args += ["--out", out]
    return shlex.join([PROG, *args, "--resume"])


#: CLI option -> TrainConfig field (None: not given).
_OPTIONS = {
    "val": "val", "val_fraction": "val_fraction", "arch": "arch", "epochs": "epochs",
    "batch_size": "batch_size", "input_size": "input_size", "downsample": "downsample",
    "seed": "seed", "precision": "precision", "threads": "threads",
    "strategy": "strategy", "patience": "patience", "cache_mb": "cache_mb",
}  # fmt: skip


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from spectrocnn.model.rundir import completed_epochs, default_run_dir, load_run_config
    from spectrocnn.model.train import train
    from spectrocnn.model.trainconfig import TrainConfig

    given = {field: getattr(args, opt) for opt, field in _OPTIONS.items()}
    given = {k: v for k, v in given.items() if v is not None}
    if args.legacy_h5:
        given["legacy_h5"] = True
    if args.resume:
        if args.out is None:
            raise UsageError("--resume needs --out DIR, the run directory to continue")
        saved = load_run_config(args.out)
        if saved.val is not None and "val_fraction" in given:
            given.pop("val_fraction")  # ignored with a validation file
        config = dataclasses.replace(saved, input=args.file, **given)
    else:
        config = TrainConfig(input=args.file, **given)  # input size: the architecture's

    def report(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    out = args.out if args.out is not None else str(default_run_dir())
    try:
        with terminate_as_exit():
            result = train(
                config, out, resume=args.resume,
                progress=not args.quiet and sys.stderr.isatty(), report=report,
            )  # fmt: skip
    except BaseException as exc:
        # a bad input (SpectrocnnError) would stop the resumed run as well: no hint then
        if not isinstance(exc, SpectrocnnError) and completed_epochs(out) > 0:
            print(f"{PROG}: continue the run with: {resume_command(argv, out)}", file=sys.stderr)
        raise
    m = result.metrics
    auc = m.get("roc_auc")
    rate = result.images_per_second
    score = result.score_time_s
    scored = "" if math.isnan(score) else f", {score:.0f} s scoring"
    if result.already_complete:
        print(
            f"{PROG}: run {result.out_dir} is already complete ({plural(result.epochs, 'epoch')})"
        )
    print(
        f"{PROG}: best val_accuracy {result.best_val_accuracy:.5f} at epoch {result.best_epoch}"
        f" of {result.epochs}, ROC AUC {'n/a' if auc is None else f'{auc:.4f}'}; "
        f"{result.train_time_s:.0f} s training ({rate:.0f} images/s){scored}; "
        + (f"{result.stop_reason}; " if result.stop_reason else "")
        + f"run in {result.out_dir}"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train-cnn``; returns the exit code."""
    return run(PROG, _body, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
