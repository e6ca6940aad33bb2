"""Thin command-line front ends: parse, build the configuration, call the library.

Each public module is one command (``gen_events`` is the console script ``gen-events``)
with ``build_parser()`` and ``main(argv)``; the package itself exports nothing.
"""

from __future__ import annotations

__all__: list[str] = []
