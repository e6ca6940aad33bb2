"""``python -m spectrocnn``: the version and the commands (:mod:`spectrocnn.cli._index`)."""

from __future__ import annotations

import sys

from spectrocnn.cli._index import main

if __name__ == "__main__":
    sys.exit(main())
