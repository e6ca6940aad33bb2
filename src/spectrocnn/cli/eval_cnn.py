"""``eval-cnn``: metrics, ROC curve and score histograms of a saved model on an event file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from spectrocnn.cli._common import (
    EXIT_OK,
    bounded_int,
    cache_mb,
    input_size,
    make_parser,
    positive_int,
    run,
)

__all__ = ["build_parser", "main"]

PROG = "eval-cnn"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of eval-cnn (imports no TensorFlow)."""
    from spectrocnn.model.data import DOWNSAMPLE_METHODS

    p = make_parser(
        PROG,
        "Evaluate a saved model on an event file: write metrics.json (accuracy, loss, ROC "
        "AUC, confusion matrix), roc.png and scores.png; for your own labels the metrics "
        "of their kind (multiclass: accuracy, loss, confusion matrix; regression: MAE, "
        "RMSE, predicted.png). The input size and downsampling "
        "come from the run's config.json beside the model, else from the model's input "
        "shape with max pooling (with a warning; --downsample states it).",
    )
    p.add_argument("model", metavar="MODEL", help="saved model (.keras or .h5)")
    p.add_argument("file", metavar="FILE.h5", help="event file")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (default: eval_<FILE stem> beside the model); the files of "
        "an earlier evaluation in it are replaced as one set, those this one does not write "
        "removed (other files are kept)",
    )
    p.add_argument(
        "--threads",
        type=positive_int("--threads"),
        metavar="N",
        help="TensorFlow intra-op threads (default: the cores available to this process)",
    )
    p.add_argument(
        "--input-size",
        type=input_size,
        metavar="PX",
        help="the model's input size in pixels (default: the model's input shape; must match it)",
    )
    p.add_argument(
        "--downsample",
        choices=DOWNSAMPLE_METHODS,
        help="how the images are downsampled to the input size (default: the run's "
        "config.json beside the model, else max with a warning); one that contradicts "
        "config.json is used with a warning",
    )
    p.add_argument(
        "--explain",
        type=bounded_int("--explain", 0),
        default=0,
        metavar="K",
        help="also draw, for K events of each kind (most confident label 1, most confident "
        "label 0, misclassified), the image with the network's gradient saliency "
        "(Simonyan et al. 2014), the true tracks and the high-momentum track into "
        "DIR/explain/ with explain.json (default 0: none; binary labels)",
    )
    p.add_argument(
        "--cache-mb",
        type=cache_mb,
        metavar="MB",
        help="memory budget of the downsampled images in MB (default: half of the available "
        "memory); a file whose images exceed it is scored block by block from disk",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no TensorFlow messages: only the summary line (and warnings)",
    )
    return p


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from spectrocnn.model.evaluate import evaluate

    result = evaluate(
        args.model, args.file, args.out, threads=args.threads,
        progress=not args.quiet and sys.stderr.isatty(), explain=args.explain,
        input_size=args.input_size, downsample=args.downsample, cache_mb=args.cache_mb,
    )  # fmt: skip
    m = result.metrics
    if m.get("label_kind") == "regression":
        what = f"MAE {m['mae']:.4g}, RMSE {m['rmse']:.4g}"
    else:
        auc = m.get("roc_auc")
        what = f"accuracy {m['accuracy']:.5f}" + (
            "" if "roc_auc" not in m else f", ROC AUC {'n/a' if auc is None else f'{auc:.4f}'}"
        )
    print(
        f"{PROG}: {what}, loss {m['loss']:.4f} on {m['n_events']} events "
        f"({m['device']['summary']}); results in {result.out_dir}"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval-cnn``; returns the exit code."""
    return run(PROG, _body, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
