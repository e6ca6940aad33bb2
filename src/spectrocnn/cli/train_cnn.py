"""``train-cnn``: train a CNN on an event file: by default the architecture that suits the
file (``--arch auto``), with early stopping; ``--arch lecture`` is the lecture's network.

Writes a run directory (``--out``, default ``runs/<timestamp>``) with the best and last
models, history.csv, metrics.json, config.json and the lecture's plots; see
:mod:`spectrocnn.model.train` and :mod:`spectrocnn.model.rundir`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
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


def _add_generate_arguments(p: argparse.ArgumentParser) -> None:
    """--generate and its options: fresh events every epoch instead of an event file."""
    from spectrocnn.model.trainconfig import DEFAULT_FRESH_EVENTS

    p.add_argument(
        "--generate",
        nargs="?",
        const="",
        metavar="CONFIG.toml",
        help="train on events simulated afresh every epoch from this configuration (TOML, as "
        "gen-events --config; without it the --preset's), validate on a fixed simulated set; "
        "no event file",
    )
    p.add_argument(
        "--preset", metavar="NAME", help="with --generate: lecture (default) or telescope"
    )
    p.add_argument(
        "--events-per-epoch",
        type=positive_int("--events-per-epoch"),
        metavar="N",
        help=f"with --generate: events simulated per epoch (default "
        f"{DEFAULT_FRESH_EVENTS['events_per_epoch']})",
    )
    p.add_argument(
        "--val-events",
        type=positive_int("--val-events"),
        metavar="M",
        help=f"with --generate: fixed validation events, simulated once (default "
        f"{DEFAULT_FRESH_EVENTS['val_events']})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of train-cnn (imports no TensorFlow)."""
    p = make_parser(
        PROG,
        "Train a CNN on the images of an event file, or on events simulated afresh every "
        "epoch (--generate); keep the model with the best val_accuracy (or --monitor) and "
        "write history, metrics and plots to a run directory. The file's labels may be "
        "binary (gen-events'), multiclass or a float target "
        "(write_events(labels=..., label_spec=...)).",
    )
    p.add_argument(
        "file", metavar="FILE.h5", nargs="?", help="training event file (none with --generate)"
    )
    _add_generate_arguments(p)
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val", metavar="FILE.h5", help="validation event file")
    val.add_argument(
        "--val-fraction",
        type=_fraction,
        metavar="F",
        help="fraction of FILE held out for validation (default 0.2)",
    )
    _add_training_arguments(p)
    _add_run_arguments(p)
    return p


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of the model and its training: architecture, epochs, batches, input."""
    from spectrocnn.labels import CLASS_WEIGHTS
    from spectrocnn.model.architectures import ALIASES, ARCHITECTURES
    from spectrocnn.model.callbacks import MIN_DELTA
    from spectrocnn.model.data import DOWNSAMPLE_METHODS
    from spectrocnn.model.task import MONITORS
    from spectrocnn.model.trainconfig import DEFAULT_EPOCHS, DEFAULT_PATIENCE

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
        help=f"early stopping: stop when P epochs in a row bring no val_accuracy at least "
        f"{MIN_DELTA:g} above the best so far, or when val_accuracy reaches 1.0; the model "
        f"of the highest val_accuracy is kept; 0: off (default {DEFAULT_PATIENCE}; 0 for "
        f"--arch lecture, which trains its {DEFAULT_EPOCHS['fixed']} epochs as in the lecture)",
    )
    p.add_argument(
        "--class-weight",
        choices=CLASS_WEIGHTS,
        help="none (default): every event weighs 1; balanced: class c weighs n / (k * n_c) "
        "in the loss (n training events, k classes, n_c of class c; scikit-learn's "
        "definition), for rare classes; binary and multiclass labels",
    )
    p.add_argument(
        "--monitor",
        choices=MONITORS,
        help="the validation score the best model is kept for and early stopping watches: "
        "val_accuracy, val_auc (ROC AUC, binary labels; for a rare class), val_loss; auto "
        "(default): val_accuracy for classes, val_loss for a regression target",
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


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of the run: its directory, seed, resumption, precision, devices, output."""
    from spectrocnn.model.device import PRECISIONS

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
    p.add_argument(
        "--lit-cache",
        metavar="DIR",
        help="a directory on a local disk for the lit pixels of images that exceed --cache-mb "
        "even as lit pixels: written once, read every epoch (full shuffle, no decoding), "
        "removed at the end; without it such files are streamed (README: train-cnn)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars and no per-epoch lines")


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
    "strategy": "strategy", "patience": "patience", "class_weight": "class_weight",
    "monitor": "monitor", "events_per_epoch": "events_per_epoch", "val_events": "val_events",
    "cache_mb": "cache_mb", "lit_cache": "lit_cache",
}  # fmt: skip

#: The message when neither an event file nor --generate is given.
_NO_INPUT = (
    "the following arguments are required: FILE.h5, or --generate (usage: train-cnn FILE.h5 "
    "[options], or train-cnn --generate [CONFIG.toml] [options]; train-cnn --help lists every "
    "option)"
)


def _check_sources(args: argparse.Namespace, generated_run: bool) -> None:
    """One-line errors for an event file and --generate together, or the flags of
    --generate without it (``generated_run``: resuming a run on fresh events, whose
    config.json holds them)."""
    gen = args.generate is not None
    if gen and args.file is not None:
        raise UsageError(
            f"an event file ({args.file}) and --generate together: train on the file, or on "
            "fresh events with --generate, not both"
        )
    if gen and (args.val is not None or args.val_fraction is not None):
        flag = "--val" if args.val is not None else "--val-fraction"
        raise UsageError(
            f"{flag} with --generate: the validation events are simulated (--val-events M)"
        )
    if gen and args.lit_cache is not None:
        raise UsageError("--lit-cache with --generate: fresh events are simulated into memory")
    if gen and args.cache_mb is not None:
        raise UsageError(
            "--cache-mb with --generate: fresh events are simulated into memory every epoch "
            "(--events-per-epoch N sets how many)"
        )
    if not gen and args.preset is not None:
        raise UsageError("--preset without --generate: an event file has its own configuration")
    if not gen and not generated_run:
        for flag in ("events_per_epoch", "val_events"):
            if getattr(args, flag) is not None:
                raise UsageError(
                    f"--{flag.replace('_', '-')} without --generate: it sets the simulated "
                    "events of --generate"
                )
        if args.file is None:
            raise UsageError(_NO_INPUT)


def _source(args: argparse.Namespace, saved_generate: dict | None = None) -> dict:
    """The TrainConfig fields of the events to train on: ``input``, or ``generate`` (the
    configuration of --generate's file or --preset; resuming a run on fresh events without
    --generate, ``saved_generate``, the one its config.json records)."""
    from spectrocnn.config import config_from_dict, load_config

    if args.generate is not None:
        return {"input": None, "generate": load_config(args.generate or None, preset=args.preset)}
    if saved_generate is not None and args.file is None:
        return {"generate": config_from_dict(saved_generate)}
    return {} if args.file is None else {"input": args.file}


def _not_in_result(record: logging.LogRecord) -> bool:
    """Drop the run's warnings about its result: they end the summary line instead."""
    return not getattr(record, "in_result", False)


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
        _check_sources(args, saved.generated)
        if saved.val is not None and "val_fraction" in given:
            given.pop("val_fraction")  # ignored with a validation file
        config = dataclasses.replace(saved, **_source(args, saved.generate), **given)
    else:
        _check_sources(args, False)
        config = TrainConfig(**_source(args), **given)  # input size: the architecture's

    def report(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    out = args.out if args.out is not None else str(default_run_dir())
    logging.getLogger("spectrocnn.model.train").addFilter(_not_in_result)  # once
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
    rate = result.images_per_second
    score = result.score_time_s
    scored = "" if math.isnan(score) else f", {score:.0f} s scoring"
    if result.already_complete:
        print(
            f"{PROG}: run {result.out_dir} is already complete ({plural(result.epochs, 'epoch')})"
        )
    print(
        f"{PROG}: {_best(result)}; "
        f"{result.train_time_s:.0f} s training ({rate:.0f} images/s){scored}; "
        + (f"{result.stop_reason}; " if result.stop_reason else "")
        + f"run in {result.out_dir}"
        + "".join(f"; WARNING: {w}" for w in result.warnings)
    )
    return EXIT_OK


def _best(result) -> str:
    """``best val_accuracy 0.83 at epoch 7 of 10, ROC AUC 0.91``, or as the monitor and
    the labels have it (``best val_loss 0.41 ..., MAE 0.52, RMSE 0.64``)."""
    m = result.metrics
    monitor = result.monitor
    best = result.best_val_accuracy if monitor == "val_accuracy" else result.best_score
    text = f"best {monitor} {best:.5f} at epoch {result.best_epoch} of {result.epochs}"
    if m.get("label_kind") == "regression":
        return text + f", MAE {m['mae']:.4g}, RMSE {m['rmse']:.4g}"
    if m.get("label_kind") == "multiclass":
        return text + (f", accuracy {m['accuracy']:.5f}" if monitor != "val_accuracy" else "")
    auc = m.get("roc_auc")
    text += f", ROC AUC {'n/a' if auc is None else f'{auc:.4f}'}"
    if monitor != "val_accuracy":
        text += f", accuracy {m['accuracy']:.5f}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train-cnn``; returns the exit code."""
    return run(PROG, _body, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
