"""Record what a benchmark prints, with the date and the machine, in ``benchmarks/results/``.

Every figure in the README's performance tables is copied from one of these files, and
``tests/test_readme.py`` checks that it is there. A benchmark's ``__main__`` block calls::

    sys.exit(recorded("simulate", main))

and prints its figures as the README quotes them: thousands grouped by a space
(:func:`grouped`: ``20 000 events``, ``1 566 images/s``), fixed decimals (``0.80``).

Run with ``--record`` to write ``benchmarks/results/simulate.txt`` (replaced only when the
run succeeds); without it the script only prints, so quick runs with small sizes leave the
recorded figures alone.
"""

from __future__ import annotations

import io
import os
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

#: CPU features that change the speed of NumPy and TensorFlow here, as /proc/cpuinfo names them.
_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def machine() -> str:
    """One line naming the CPU model, its vector features, the cores and the versions."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    have = [f for f in _FEATURES if f in flags]
    lacks = [f for f in ("avx512f", "amx_tile") if f not in flags]
    features = ", ".join(have) + ("" if not lacks else f"; no {', no '.join(lacks)}")
    import numpy

    return (
        f"{model} ({len(os.sched_getaffinity(0))} cores available; {features}), "
        f"Python {platform.python_version()}, NumPy {numpy.__version__}"
    )


def grouped(value: float, decimals: int = 0) -> str:
    """``value`` with ``decimals`` decimals, thousands grouped by a space (the README's style).

    ``grouped(20000)`` is ``'20 000'``, ``grouped(1566.4)`` ``'1 566'``, ``grouped(2.5, 1)``
    ``'2.5'``.
    """
    return f"{value:,.{decimals}f}".replace(",", " ")


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def recorded(name: str, main: Callable[..., int | None]) -> int:
    """Run ``main()``; with ``--record`` in ``sys.argv``, keep its output in RESULTS/NAME.txt.

    Returns
    -------
    int
        ``main``'s exit code (``None`` counts as 0).
    """
    record = "--record" in sys.argv[1:]
    if record:
        sys.argv = [a for a in sys.argv if a != "--record"]
    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    load_start = os.getloadavg()[0]
    buffer = io.StringIO()
    stdout = sys.stdout
    sys.stdout = _Tee(stdout, buffer) if record else stdout
    try:
        rc = main() or 0
    finally:
        sys.stdout = stdout
    if record and rc == 0:
        RESULTS.mkdir(exist_ok=True)
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        load = f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        text = (
            f"# {command}\n# measured {when} on {machine()}\n"
            f"# load average (1 minute): {load}\n{buffer.getvalue()}"
        )
        tmp = RESULTS / f".{name}.txt.tmp"
        tmp.write_text(text)
        tmp.replace(RESULTS / f"{name}.txt")
        print(f"recorded in {RESULTS / f'{name}.txt'}", file=sys.stderr)
    return rc
