"""What every command shares: the argument parser, error handling and exit codes.

Exit codes (docs/design.md 3.1): 0 success; 2 bad usage or invalid configuration; 1 runtime
failure (unreadable or corrupt input, I/O error); 130 interrupted. Errors are one line on
stderr naming the bad value, without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from spectrocnn import __version__
from spectrocnn.errors import ConfigError, EventFileError

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "UsageError",
    "bounded_int",
    "cache_mb",
    "input_size",
    "make_parser",
    "plural",
    "positive_int",
    "run",
    "terminate_as_exit",
]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def plural(n: int, noun: str) -> str:
    """``"1 event"``, ``"2 events"``: a count with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class UsageError(ConfigError):
    """Bad command-line usage detected after parsing (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        # "argument --n: --n must be ..." -> "--n must be ..." (our types name the flag)
        m = re.match(r"argument (\S+): (\1 .*)", message)
        text = m.group(2) if m else message
        if message.startswith("the following arguments are required"):
            text += f" (usage: {self.short_usage()}; {self.prog} --help lists every option)"
        elif message.startswith(("unrecognized arguments", "ambiguous option")):
            text += f" ({self.prog} --help lists the options)"
        raise UsageError(text)

    def short_usage(self) -> str:
        """``prog`` with its required arguments and ``[options]``, on one line."""
        parts = [self.prog]
        for action in self._actions:
            if action.option_strings:
                if action.required:
                    choices = "|".join(map(str, action.choices or ()))
                    metavar = action.metavar or choices or action.dest.upper()
                    parts.append(f"{action.option_strings[-1]} {metavar}")
            elif action.nargs not in ("?", "*", argparse.SUPPRESS):
                parts.append(action.metavar or action.dest)
        return " ".join(parts) + " [options]"


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--version``, ``--debug`` and one-line errors."""
    p = _Parser(prog=prog, description=description)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    return p


def bounded_int(
    name: str, lo: int, hi: int | None = None, what: str | None = None
) -> Callable[[str], int]:
    """An argparse type for an integer in ``[lo, hi)`` whose error names the flag and value.

    Parameters
    ----------
    name : str
        The flag, for the message (``"--seed"``).
    lo, hi : int
        Smallest allowed value and the exclusive upper bound (None: no bound).
    what : str, optional
        How the message describes the allowed values; default ``"an integer in [lo, hi)"``.
    """
    if what is None:
        what = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi})"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {what}, got {text!r}") from None
        if value < lo or (hi is not None and value >= hi):
            raise argparse.ArgumentTypeError(f"{name} must be {what}, got {value}")
        return value

    return parse


def positive_int(name: str) -> Callable[[str], int]:
    """An argparse type for a positive integer whose error names the flag and the value."""
    return bounded_int(name, 1, None, "a positive integer")


def input_size(text: str) -> int:
    """The argparse type of ``--input-size``: an integer that
    :func:`~spectrocnn.model.data.check_preprocessing` accepts (its error, one line)."""
    from spectrocnn.model.data import check_preprocessing

    try:
        value: int | str = int(text)
    except ValueError:
        value = text  # named in the message
    try:
        return check_preprocessing(value, size_flag="--input-size")[0]  # type: ignore[return-value]
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cache_mb(text: str) -> float:
    """The argparse type of ``--cache-mb``: a positive number of MB
    (:func:`~spectrocnn.model.streaming.check_cache_mb`, its error, one line)."""
    from spectrocnn.model.streaming import check_cache_mb

    try:
        value: float | str = float(text)
    except ValueError:
        value = text  # named in the message
    try:
        return check_cache_mb(value, "--cache-mb")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a command body, turning errors into one line on stderr and an exit code.

    ``body`` parses ``argv`` itself (with a parser from :func:`make_parser`) and returns an
    exit code. :class:`~spectrocnn.errors.ConfigError` -> 2,
    :class:`~spectrocnn.errors.EventFileError` and ``OSError`` -> 1, ``KeyboardInterrupt``
    -> 130. With ``--debug`` in argv the traceback is shown as well, with debug logging,
    TensorFlow's C++ log (``TF_CPP_MIN_LOG_LEVEL=0``) and Python warnings; without it
    TensorFlow's C++ log is off (``TF_CPP_MIN_LOG_LEVEL=3``; either unless set already) and
    Python warnings (Keras' notices) are dropped, so that a failing command prints one line
    and a ``--quiet`` one its summary only.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format=f"{prog}: %(levelname)s: %(message)s",
    )
    # Before anything imports TensorFlow (its C++ core reads this once): no start-up lines
    # unless --debug. The rest of its chatter is quieted where it is imported (model._tf).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")
    if not debug:  # Python warnings (the libraries' notices): to logging, below its level
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").setLevel(logging.ERROR)
    try:
        return body(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        if debug:
            logging.exception("configuration error")
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (EventFileError, OSError, MemoryError, RuntimeError) as exc:
        if debug:
            logging.exception("runtime error")
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_RUNTIME


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, EventFileError):
        # "[Errno 30] Read-only file system: 'x'" -> "Read-only file system: 'x'"
        text = exc.strerror
        if exc.filename is not None:
            text += f": {os.fsdecode(exc.filename)!r}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit(128 + signal) inside the block, so that a
    command removes its temporary output and stops its workers as on Ctrl-C."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    sigs = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    try:
        old = {s: signal.signal(s, handler) for s in sigs}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
