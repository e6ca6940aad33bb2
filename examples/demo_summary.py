"""The few lines ``make demo`` and ``make lecture`` end with: what was trained, how well, and
where everything is.

    python examples/demo_summary.py RUN_DIR [--fit FIT.json] [--picture PNG] [--title TEXT]

Reads the run's ``metrics.json`` and ``config.json`` (train-cnn) and the JSON that
``fit-tracks --json`` printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="train-cnn run directory")
    p.add_argument("--fit", type=Path, help="output of fit-tracks --json")
    p.add_argument("--picture", type=Path, action="append", default=[], help="pictures made")
    p.add_argument("--title", default="summary")
    args = p.parse_args(argv)
    m = json.loads((args.run / "metrics.json").read_text())
    c = json.loads((args.run / "config.json").read_text())
    why = (c.get("arch_choice") or {}).get("reason")
    lines = [
        f"== {args.title} ==",
        f"CNN        {c['arch']}{f' ({why})' if why else ''}, {c['input_size']}x"
        f"{c['input_size']} by {c['downsample']} downsampling, {c.get('precision', 'fp32')}",
        f"           validation accuracy {m['accuracy']:.4f}, ROC AUC {m['roc_auc']:.4f} on "
        f"{m['n_val']} events; best epoch {m['best_epoch']} of {m['epochs']}"
        + (f" ({m['stop_reason']})" if m.get("stop_reason") else "")
        + f"; {m['train_time_s']:.0f} s training on {(m.get('device') or {}).get('summary', '?')}",
    ]
    if args.fit is not None:
        f = json.loads(args.fit.read_text())
        lines.append(
            f"fit-tracks accuracy {f['accuracy']:.4f}, ROC AUC {f['roc_auc']:.4f} on "
            f"{f['n_events']} events (classical circle fit, cut at p_T >= "
            f"{f['cut_pt_GeV']:.2f} GeV/c)"
        )
    lines.append(f"model      {args.run / 'best_model.keras'}")
    plots = ", ".join(n for n in ("accuracy.png", "loss.png", "roc.png", "scores.png"))
    lines.append(f"plots      {args.run}/{{{plots}}}")
    for pic in args.picture:
        lines.append(f"picture    {pic}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
