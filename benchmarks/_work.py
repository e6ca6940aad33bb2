"""The work directory and the lecture event file of the benchmarks that run the commands
(``time_to_accuracy.py``, ``precision.py``)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The directory of the console scripts of this Python (gen-events, train-cnn, ...).
BIN = Path(sys.executable).parent


@contextmanager
def work_dir(path: str | None, prefix: str) -> Iterator[Path]:
    """``path`` (created, kept) or, when None, a temporary directory removed at the end."""
    if path:
        work = Path(path)
        work.mkdir(parents=True, exist_ok=True)
        yield work
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def lecture_events(work: Path, n: int) -> tuple[Path, float | None]:
    """``work/events-N.h5``: ``gen-events --n N --seed 1`` (lecture preset), made once.

    Returns the path and the seconds gen-events took (None when the file was there).

    Raises
    ------
    SystemExit
        gen-events failed (its stderr in the message).
    """
    events = work / f"events-{n}.h5"
    if events.exists():
        return events, None
    cmd = [str(BIN / "gen-events"), "--n", str(n), "--seed", "1", "--out", str(events), "--quiet"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{proc.stderr}")
    return events, time.perf_counter() - t
