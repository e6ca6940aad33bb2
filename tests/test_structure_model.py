"""The layout of the package: what each part may import (docs/design.md 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spectrocnn

PACKAGE = Path(spectrocnn.__file__).parent


def imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``import`` and ``from ... import`` statement in
    ``source``, wherever it stands (module level, functions, classes, ``if`` blocks)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def imports_of(module: str, source: str) -> list[int]:
    """Lines of ``source`` that import ``module`` or one of its submodules."""
    return sorted(line for line, name in imported_modules(source) if name.split(".")[0] == module)


def test_the_import_finder_sees_every_kind_of_import():
    source = (
        "import os, h5py\n"
        "from h5py import File\n"
        "import h5py.h5s as h5s\n"
        "def read():\n"
        "    import h5py\n"
        "class A:\n"
        "    def f(self):\n"
        "        if True:\n"
        "            from h5py._hl import dataset\n"
        "import h5pyx\n"
        "from .h5py import x\n"
        "'import h5py'\n"
    )
    assert imports_of("h5py", source) == [1, 2, 3, 5, 9]


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "model").rglob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_model_never_imports_h5py(path):
    """model/ reads event files through dataset/ (EventFile.image_blocks), never HDF5."""
    lines = imports_of("h5py", path.read_text())
    assert not lines, f"{path.relative_to(PACKAGE)} imports h5py on line(s) {lines}"
