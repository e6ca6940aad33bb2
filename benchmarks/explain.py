"""Does the network look at the right track? (issue 20) Gradient saliency checked on truth.

For the lecture network (``seed``, 128 x 128 by max-pooling, train-cnn's default) and the
``polar`` network (256 x 256 by max-pooling), trained on lecture events (``--n`` events,
seed 1, 20 % held out for validation) or taken from ``--seed-model``/``--polar-model``,
this computes the gradient saliency ``|d logit / d input|`` (Simonyan et al. 2014,
:mod:`spectrocnn.model.explain`) of every correctly classified label-1 event of an
independent test file (``--n-test`` events, seed 2) and reports:

- **hits**: the share of those events in which the majority (and: all) of the 1 % most
  salient hit pixels (pixels of the model input holding a hit) lie within 3 input pixels
  of a hit of the high-momentum track; and the mean share per event;
- **all pixels**: the same with the top 1 % of *all* input pixels (hit or empty). At
  256 x 256 that is 656 pixels, about twice the ~310 pixels within 3 pixels of a 16-hit
  track, so no event can have a majority there; shown for completeness;
- **top pixel**: the share of events whose single most salient pixel is within 3 pixels.

Usage::

    python benchmarks/explain.py --n 4000 --n-test 1000 --epochs 2 --record
    python benchmarks/explain.py --polar-model RUN/best_model.keras --test test.h5

``--workdir DIR`` keeps the files and runs (a second run reuses them).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: key -> (row name, architecture, input size, downsampling)
ROWS = {
    "seed": ("seed (lecture), max-pool 128", "seed", 128, "max"),
    "polar": ("polar, max-pool 256", "polar", 256, "max"),
}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000, help="training events (4000)")
    p.add_argument("--n-test", type=int, default=1000, help="test events (1000)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each network (2)")
    p.add_argument("--test", help="test event file (default: generated, seed 2)")
    p.add_argument("--seed-model", help="a trained seed model (default: train one)")
    p.add_argument("--polar-model", help="a trained polar model (default: train one)")
    p.add_argument("--only", default="seed,polar", help="networks to measure (seed,polar)")
    p.add_argument("--workdir", help="keep files and runs here (default: a temporary dir)")
    return p.parse_args()


def _focus(model_path: Path, test: Path) -> dict[str, float]:
    from spectrocnn.dataset import open_events
    from spectrocnn.model.explain import explain_events, track_focus

    with open_events(test) as ev:
        labels = np.asarray(ev.labels)
        truth = ev.truth()
        window = ev.window_mm
    idx = np.flatnonzero(labels == 1)
    t0 = time.perf_counter()
    ex = explain_events(model_path, test, idx)
    seconds = time.perf_counter() - t0
    ok = ex.scores >= 0.5
    from spectrocnn.dataset.eventfile import slice_batch
    from spectrocnn.simulate.events import concatenate_batches

    tr = concatenate_batches([slice_batch(truth, int(i), int(i) + 1) for i in idx[ok]])
    attr, inputs = ex.attribution[ok], ex.inputs[ok]
    hits = track_focus(attr, tr, window, inputs=inputs)
    every = track_focus(attr, tr, window)
    top1 = track_focus(attr, tr, window, inputs=None, top_fraction=1e-9)
    return {
        "n_label1": len(idx),
        "n_correct": int(ok.sum()),
        "accuracy_label1": float(ok.mean()) if len(ok) else math.nan,
        "hits_majority": float(np.mean(hits > 0.5)),
        "hits_all": float(np.mean(hits == 1.0)),
        "hits_mean": float(np.nanmean(hits)),
        "all_majority": float(np.mean(every > 0.5)),
        "all_mean": float(np.nanmean(every)),
        "top_pixel": float(np.mean(top1 == 1.0)),
        "seconds": seconds,
    }


def _describe(model: Path) -> str:
    """Where a model comes from: its run's config.json and state.json, when beside it."""
    import json

    run = model.resolve().parent
    try:
        cfg = json.loads((run / "config.json").read_text())
        state = json.loads((run / "state.json").read_text())
    except (OSError, ValueError):
        return f"{model} (no run directory beside it)"
    f = cfg.get("input_file", {})
    return (
        f"{model}: {cfg.get('arch')} trained by train-cnn on {Path(str(cfg.get('input'))).name} "
        f"(file seed {f.get('seed')}, {cfg.get('n_train')} training / {cfg.get('n_val')} "
        f"validation events), {cfg.get('input_size')} px by {cfg.get('downsample')}, seed "
        f"{cfg.get('seed')}, best val_accuracy {state.get('best_val_accuracy'):.4f} at epoch "
        f"{state.get('best_epoch')} of {state.get('completed_epochs')}"
    )


def main() -> int:
    a = _args()
    import matplotlib

    matplotlib.use("Agg")
    from spectrocnn.config import preset_config
    from spectrocnn.dataset import generate_file
    from spectrocnn.model import TrainConfig, train

    tmp = None
    if a.workdir:
        work = Path(a.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="explain-bench-")
        work = Path(tmp.name)
    only = [k for k in a.only.split(",") if k]
    config = preset_config("lecture")
    test = Path(a.test) if a.test else work / "test.h5"
    if not test.exists():
        generate_file(config, a.n_test, test, seed=2)
    given = {"seed": a.seed_model, "polar": a.polar_model}
    train_file = work / "train.h5"
    results = {}
    for key in only:
        name, arch, size, down = ROWS[key]
        model = Path(given[key]) if given[key] else None
        train_s = None
        if model is None:
            if not train_file.exists():
                generate_file(config, a.n, train_file, seed=1)
            run = work / f"run_{key}"
            t0 = time.perf_counter()
            result = train(
                TrainConfig(str(train_file), arch=arch, epochs=a.epochs, input_size=size,
                            downsample=down, seed=1),
                run, resume=(run / "state.json").exists(),
            )  # fmt: skip
            train_s = time.perf_counter() - t0
            model = run / "best_model.keras"
            print(f"# {key}: best val_accuracy {result.best_val_accuracy:.4f} at epoch "
                  f"{result.best_epoch} of {a.epochs} ({train_s:.0f} s)", flush=True)  # fmt: skip
        print(f"# {key}: {_describe(model)}", flush=True)
        results[key] = (name, _focus(model, test))

    source = ("trained here: " f"{a.n} lecture events (seed 1, 20 % validation), {a.epochs} epochs"
              if not all(given[k] for k in only) else "given models")  # fmt: skip
    print(f"# {source}; test file {test.name}: {a.n_test if not a.test else 'given'} events; "
          "gradient saliency |d logit / d input| (Simonyan et al. 2014); near = within 3 "
          "input pixels of a hit of the high-momentum track")  # fmt: skip
    print("| network | label-1 events correct | majority of top 1 % hit pixels near | "
          "all of them near | mean share | top pixel near | top 1 % of all pixels: "
          "majority near (mean share) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, r in results.values():
        print(f"| {name} | {r['n_correct']} / {r['n_label1']} | {r['hits_majority']:.1%} | "
              f"{r['hits_all']:.1%} | {r['hits_mean']:.3f} | {r['top_pixel']:.1%} | "
              f"{r['all_majority']:.1%} ({r['all_mean']:.3f}) |")  # fmt: skip
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _record import recorded

    raise SystemExit(recorded("explain", main))
