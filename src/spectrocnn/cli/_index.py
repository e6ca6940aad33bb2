"""What ``python -m spectrocnn`` prints: the version and the commands, one line each.

The commands are the public modules of :mod:`spectrocnn.cli` (``gen_events`` is the console
script ``gen-events``); :data:`SUMMARIES` holds the line shown for each, and a test checks
that it names every module and every console script in ``pyproject.toml``.
"""

from __future__ import annotations

import pkgutil
import sys
from collections.abc import Sequence

import spectrocnn
import spectrocnn.cli

__all__ = ["SUMMARIES", "commands", "main"]

#: One line per command, in the order of the work: make events, look, fit, train, evaluate.
SUMMARIES = {
    "gen-events": "simulate N events and write one HDF5 event file (images, labels, truth)",
    "show-event": "draw events of an event file, optionally with their true tracks",
    "fit-tracks": "the classical baseline: find and fit tracks, classify events by p_T",
    "export-events": "write an event file as the lecture's PNG folders or TrackML CSV files",
    "train-cnn": "train a CNN on an event file's images; keep the best model",
    "eval-cnn": "score a saved model on an event file: metrics, ROC, score histograms",
}


def commands() -> list[tuple[str, str]]:
    """(command, one-line summary) of every module of :mod:`spectrocnn.cli`, in work order.

    Raises
    ------
    KeyError
        For a command module without an entry in :data:`SUMMARIES`.
    """
    names = {
        m.name.replace("_", "-")
        for m in pkgutil.iter_modules(spectrocnn.cli.__path__)
        if not m.name.startswith("_")
    }
    order = [name for name in SUMMARIES if name in names]
    return [(name, SUMMARIES[name]) for name in order + sorted(names - set(order), key=str)]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the version and the commands; ``--version`` prints the version alone."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        print(f"spectrocnn {spectrocnn.__version__}")
        return 0
    if args:
        print(f"usage: python -m spectrocnn [--version]; got {' '.join(args)!r}", file=sys.stderr)
        return 2
    rows = commands()
    width = max(len(name) for name, _ in rows)
    version = spectrocnn.__version__
    print(f"spectrocnn {version}: simulate a spectrometer, train a CNN on its events")
    print("commands (each has --help):")
    for name, text in rows:
        print(f"  {name:<{width}}  {text}")
    return 0
