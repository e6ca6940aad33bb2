"""Shared test settings: small, fast and headless."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import signal

# A test run started in the background (`make test &`, nohup) inherits SIGINT ignored, and
# so would every command the tests start (an ignored signal survives exec), so that the
# Ctrl-C tests could not interrupt them. Restore Python's default; children then start
# with SIGINT at its default and turn it into KeyboardInterrupt, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
