"""The lecture (PH6232, CNNs) end to end: events, the CNN, its training and its evaluation.

1. generate a training file and an independent test file of lecture events (slide 12-13),
   and draw eight events side by side (slide 13);
2. train the lecture's CNN (slide 14) as the lecture did: 128 x 128 inputs made by
   nearest-neighbour downsampling, batch 32, 10 epochs, 20 % held out for validation,
   keeping the model of best validation accuracy (the log of slide 15);
3. plot its learning curves (slide 16), and evaluate the best model on the test file:
   score histograms and ROC curve (slide 17);
4. compare with the classical baseline (fit-tracks).

    python examples/lecture.py --out lecture_out          # about 15-20 minutes on 2 cores
    python examples/lecture.py --n 2000 --out quick       # a quick look
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spectrocnn.config import preset_config
from spectrocnn.dataset import generate_file, open_events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="training events (20000)")
    parser.add_argument("--size", type=int, default=512, help="image size [px] (512)")
    parser.add_argument("--input-size", type=int, default=128, help="CNN input [px] (128)")
    parser.add_argument("--downsample", default="nearest", help="nearest (the lecture), max")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="lecture_out", help="output directory")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    from spectrocnn.display import event_figure
    from spectrocnn.model import TrainConfig, evaluate, train

    # 1. events (slides 12-13)
    config = preset_config("lecture").with_image_size(args.size)
    train_file, test_file = out / "train.h5", out / "test.h5"
    generate_file(config, args.n, train_file, seed=args.seed, overwrite=True)
    generate_file(config, max(args.n // 4, 10), test_file, seed=args.seed + 1, overwrite=True)
    with open_events(train_file) as ev:
        event_figure(ev, list(range(min(8, ev.n_events)))).savefig(out / "slide13_events.png")
        event_figure(ev, [0], truth=True).savefig(out / "event0_truth.png")
    print(f"events: {train_file} ({args.n}), {test_file}; pictures: slide13_events.png")

    # 2. the lecture's CNN and its training (slides 14-15)
    run_dir = out / "run"
    result = train(
        TrainConfig(
            str(train_file),
            val_fraction=0.2,
            arch="lecture",
            epochs=args.epochs,
            batch_size=32,
            input_size=args.input_size,
            downsample=args.downsample,
            seed=args.seed,
        ),
        run_dir,
        resume=(run_dir / "state.json").exists(),
        report=print,
    )
    print(
        f"best val_accuracy {result.best_val_accuracy:.4f} at epoch {result.best_epoch}; "
        f"curves (slide 16): {run_dir / 'accuracy.png'}, {run_dir / 'loss.png'}"
    )

    # 3. evaluation on the independent test file (slide 17)
    ev_result = evaluate(run_dir / "best_model.keras", test_file, out / "test_eval")
    print(
        f"test file: accuracy {ev_result.metrics['accuracy']:.4f}, ROC AUC "
        f"{ev_result.metrics['roc_auc']:.4f}; {out / 'test_eval' / 'roc.png'}, "
        f"{out / 'test_eval' / 'scores.png'}"
    )

    # 4. the physicist's answer: fit the tracks
    from spectrocnn.cli import fit_tracks

    fit_tracks.main([str(test_file)])
    (out / "summary.json").write_text(
        json.dumps(
            {
                "best_val_accuracy": result.best_val_accuracy,
                "best_epoch": result.best_epoch,
                "test_accuracy": ev_result.metrics["accuracy"],
                "test_roc_auc": ev_result.metrics["roc_auc"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
