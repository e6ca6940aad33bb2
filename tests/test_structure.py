"""The layout of the package (docs/design.md 2 and 5), read from the source with :mod:`ast`.

Nothing here imports the package: a lazy import inside a function counts as much as one at
the top of a module. Imports under ``if TYPE_CHECKING:`` are for type checkers only; the
checks of what a part may import at run time leave them out, the h5py check of model/
counts them too.

- what each part imports: model/ never h5py; simulate/ never h5py, TensorFlow or
  matplotlib, and its modules form no cycle, nor do those of model/; the parts import one
  way, from the front ends down to the physics;
- no module takes a private name (one leading underscore) of another module;
- no source file over 600 lines and no function over 80, unless the file's top comment
  says why (the ``# size`` convention of docs/design.md 5).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "spectrocnn"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    """``spectrocnn.a.b`` of ``src/spectrocnn/a/b.py`` (a package: its ``__init__.py``)."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether ``name`` (dotted) is a module or package of the source tree."""
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # absolute: relative imports resolved
    names: tuple[str, ...]  # ``from module import names``; () for ``import module``
    typing_only: bool  # under ``if TYPE_CHECKING:``


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(source: str, module: str = "", is_package: bool = False) -> list[Import]:
    """Every import statement of ``source`` wherever it stands (module level, functions,
    classes, ``if`` blocks), relative ones resolved against ``module``."""
    found: list[Import] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, a.name, (), typing_only) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, target] if target else base)
            names = tuple(a.name for a in node.names)
            found.append(Import(node.lineno, target, names, typing_only))
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(ast.parse(source), False)
    return found


def imports_of(library: str, source: str) -> list[int]:
    """Lines of ``source`` that import ``library`` or one of its submodules."""
    return sorted(
        i.line for i in imports(source, "spectrocnn.x") if i.module.split(".")[0] == library
    )


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
        "if TYPE_CHECKING:\n"
        "    import h5py\n"
    )
    assert imports_of("h5py", source) == [1, 2, 3, 5, 9, 14]
    assert [i.typing_only for i in imports(source) if i.line in (5, 14)] == [False, True]
    rel = imports("from . import a\nfrom ..b import c\n", "spectrocnn.reco.finder")
    assert [(i.module, i.names) for i in rel] == [
        ("spectrocnn.reco", ("a",)),
        ("spectrocnn.b", ("c",)),
    ]
    rel = imports("from .x import y\n", "spectrocnn.reco", is_package=True)
    assert rel[0].module == "spectrocnn.reco.x"


# ----------------------------------------------------------------------------- libraries
@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "model").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_model_never_imports_h5py(path):
    """model/ reads event files through dataset/ (EventFile.image_blocks), never HDF5."""
    lines = imports_of("h5py", path.read_text())
    assert not lines, f"{path.relative_to(PACKAGE)} imports h5py on line(s) {lines}"


#: Libraries that simulate/ (physics: NumPy and SciPy in, arrays out) never imports.
HEAVY = ("h5py", "tensorflow", "keras", "matplotlib")


@pytest.mark.parametrize("path", sorted((PACKAGE / "simulate").glob("*.py")), ids=lambda p: p.name)
def test_simulate_imports_no_heavy_libs(path):
    """No module under simulate/ imports h5py, TensorFlow/Keras or matplotlib, even lazily."""
    bad = [
        f"line {i.line}: {i.module}"
        for i in imports(path.read_text(), module_name(path))
        if not i.typing_only and i.module.split(".")[0] in HEAVY
    ]
    assert not bad, f"simulate/{path.name} imports {bad}"


# ----------------------------------------------------------------------------- import graphs
def _targets(imp: Import) -> set[str]:
    """The modules of the package an import takes: ``from spectrocnn.a import b`` takes the
    submodule ``spectrocnn.a.b`` where there is one, else (a name) ``spectrocnn.a``."""
    if not imp.names:
        return {imp.module}
    subs = {f"{imp.module}.{n}" for n in imp.names if is_module(f"{imp.module}.{n}")}
    return subs | ({imp.module} if len(subs) < len(imp.names) else set())


def import_graph(paths: list[Path], *, typing: bool = False) -> dict[str, set[str]]:
    """Edges module -> modules of the package it imports (at run time unless ``typing``)."""
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = module_name(path)
        edges = graph.setdefault(name, set())
        for imp in imports(path.read_text(), name, path.name == "__init__.py"):
            if imp.module.split(".")[0] == "spectrocnn" and (typing or not imp.typing_only):
                edges |= _targets(imp) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_simulate_modules_have_no_import_cycle():
    """The modules of simulate/ import each other in one direction only (a DAG)."""
    graph = import_graph(sorted((PACKAGE / "simulate").glob("*.py")))
    graph = {k: {m for m in v if m.startswith("spectrocnn.simulate")} for k, v in graph.items()}
    assert "spectrocnn.simulate.geometry" in graph["spectrocnn.simulate.stepper"]  # sees imports
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_model_modules_have_no_import_cycle():
    """The modules of model/ import each other in one direction only, lazy imports inside
    functions included (evaluate takes the attribution from explain, both take the run's
    preprocessing from rundir)."""
    paths = [p for p in sorted((PACKAGE / "model").glob("*.py")) if p.name != "__init__.py"]
    graph = import_graph(paths)
    graph = {k: {m for m in v if m.startswith("spectrocnn.model.")} for k, v in graph.items()}
    assert "spectrocnn.model.explain" in graph["spectrocnn.model.evaluate"]  # sees lazy imports
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_simulate_cycle_finder_finds_a_cycle():
    """The cycle check itself: a graph with a cycle is caught, a DAG is not."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


#: The leaves (docs/design.md 2): they import nothing of the package but one another; any
#: part may use them. ``spectrocnn`` is the package's __init__ (``__version__``, the errors;
#: ``simulate_particles`` imported from simulate on first use).
LEAVES = {"errors", "seeds", "_validate", "_atomic", "_files", "_modelfile", "metrics", "labels"}
#: What each part may import at run time besides the leaves (docs/design.md 2): from the
#: front ends down to the physics; torchdata also takes the downsampling of model/data.py,
#: and model/explain.py draws events with display.py.
MAY_IMPORT = {
    "__main__": {"cli"},
    "cli": {"spectrocnn", "config", "model", "reco", "display", "torchdata", "dataset", "simulate"},
    "torchdata": {"model", "dataset", "simulate"},
    "model": {"display", "dataset", "simulate"},
    "config": {"dataset", "simulate"},
    "reco": {"simulate"},
    "display": {"dataset", "simulate"},
    "dataset": {"spectrocnn", "simulate"},
    "simulate": set(),
    "spectrocnn": {"simulate"},
}


def part_of(module: str) -> str:
    """The part of ``spectrocnn.a.b``: ``a`` (``spectrocnn`` for the package's __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "spectrocnn"


def test_the_parts_import_one_way():
    """cli -> config/model/reco/display/torchdata -> dataset -> simulate, nothing upward
    (type-only imports aside); the leaves take nothing of the package but leaves."""
    graph = import_graph(SOURCES)
    assert set(map(part_of, graph)) == LEAVES | set(MAY_IMPORT)  # every part is placed
    bad = []
    for module, targets in sorted(graph.items()):
        src = part_of(module)
        allowed = LEAVES | ({src} if src != "spectrocnn" else set())
        allowed |= MAY_IMPORT.get(src, set())
        bad += [f"{module} -> {t}" for t in sorted(targets) if part_of(t) not in allowed]
    assert not bad, "imports against docs/design.md 2: " + ", ".join(bad)


# ----------------------------------------------------------------------------- private names
def _dotted(node: ast.expr) -> list[str] | None:
    """``["a", "b", "c"]`` of the expression ``a.b.c``, or None for anything else."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute) and (head := _dotted(node.value)) is not None:
        return [*head, node.attr]
    return None


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str, module: str, is_package: bool = False) -> list[str]:
    """Where ``source`` (the module ``module``) takes a private name of another module of
    the package: ``from spectrocnn.a import _x`` (a private module itself excepted: its
    public names are the point), or ``m._x`` with ``m`` a module of the package that
    ``source`` imported (``import spectrocnn.a as m``, ``from spectrocnn import a``)."""
    found, aliases = [], {}
    for imp in imports(source, module, is_package):
        if imp.module.split(".")[0] != "spectrocnn":
            continue
        if not imp.names:
            aliases[imp.module.split(".")[0]] = imp.module.split(".")[0]
        for name in imp.names:
            if is_module(f"{imp.module}.{name}"):
                aliases[name] = f"{imp.module}.{name}"
            elif _is_private(name) and imp.module != module:
                found.append(f"line {imp.line}: from {imp.module} import {name}")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname: a.name for a in node.names if a.asname}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            chain = _dotted(node.value)
            if chain and chain[0] in aliases:
                owner = ".".join([aliases[chain[0]], *chain[1:]])
                if is_module(owner) and owner != module:
                    found.append(f"line {node.lineno}: {owner}.{node.attr}")
    return found


def test_the_private_name_finder():
    source = (
        "import spectrocnn.dataset.raster as r\n"
        "import spectrocnn.model.data\n"
        "from spectrocnn.simulate import helix\n"
        "from spectrocnn.simulate.stepper import _step, propagate_rk\n"
        "from spectrocnn.model import _tf\n"  # a private module: its public names are fine
        "from spectrocnn._atomic import write_json\n"
        "from spectrocnn import __version__\n"
        "from ._gx2f_core import _QOP_MAX\n"
        "from .finder import _own\n"  # the module itself
        "def f(self):\n"
        "    return r._grid, spectrocnn.model.data._x, helix._y, self._z, _tf.tensorflow\n"
    )
    assert private_uses(source, "spectrocnn.reco.finder") == [
        "line 4: from spectrocnn.simulate.stepper import _step",
        "line 8: from spectrocnn.reco._gx2f_core import _QOP_MAX",
        "line 11: spectrocnn.dataset.raster._grid",
        "line 11: spectrocnn.model.data._x",
        "line 11: spectrocnn.simulate.helix._y",
    ]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_takes_a_private_name_of_another(path):
    """A name with one leading underscore belongs to its module: another module that needs
    it needs a public name (in a private module where it is internal to the package)."""
    bad = private_uses(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not bad, f"{path.relative_to(PACKAGE)} takes private names: {bad}"


# ----------------------------------------------------------------------------- sizes
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
#: A line of a file's top comment (the comment lines before its docstring) that allows it
#: more lines: ``# size: WHY`` (the file) or ``# size of NAME[, NAME ...]: WHY`` (those
#: functions; ``Class.method``, ``outer.inner``); WHY, with the comment lines that follow
#: it, is at least five words.
SIZE_NOTE = re.compile(r"# size(?: of (?P<names>[\w.]+(?:, [\w.]+)*))?: (?P<why>.*)")


@dataclass(frozen=True)
class SizeNotes:
    file: str | None  # why the file may be longer, or None
    functions: dict[str, str]  # qualified name -> why


def size_notes(source: str) -> SizeNotes:
    """The ``# size`` notes of the top comment of ``source``."""
    top = []
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        top.append(line)
    file_why, functions = None, {}
    for i, line in enumerate(top):
        if not (m := SIZE_NOTE.fullmatch(line)):
            continue
        rest = []
        for more in top[i + 1 :]:
            if SIZE_NOTE.fullmatch(more):
                break
            rest.append(more.lstrip("#").strip())
        why = " ".join([m["why"], *rest]).strip()
        if m["names"] is None:
            file_why = why
        else:
            functions |= dict.fromkeys(m["names"].split(", "), why)
    return SizeNotes(file_why, functions)


def function_lines(source: str) -> dict[str, int]:
    """Lines of each function of ``source`` by qualified name (``Class.method``,
    ``outer.inner``): from its ``def`` line to its last line, comments and blank lines
    included, its docstring left out (decorators are not counted)."""
    sizes: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    n = child.end_lineno - child.lineno + 1
                    if ast.get_docstring(child, clean=False) is not None:
                        doc = child.body[0]
                        n -= doc.end_lineno - doc.lineno + 1
                    sizes[name] = n
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return sizes


def size_problems(source: str) -> list[str]:
    """What breaks the size rule in ``source``, with stale and unexplained notes."""
    notes = size_notes(source)
    n_lines = len(source.splitlines())
    problems = []
    if n_lines > MAX_FILE_LINES and notes.file is None:
        problems.append(f"{n_lines} lines (> {MAX_FILE_LINES}) and no '# size: WHY' at the top")
    if notes.file is not None and n_lines <= MAX_FILE_LINES:
        problems.append(f"'# size:' note, but only {n_lines} lines: drop the note")
    sizes = function_lines(source)
    for name, n in sizes.items():
        if n > MAX_FUNCTION_LINES and name not in notes.functions:
            problems.append(f"{name}() has {n} lines (> {MAX_FUNCTION_LINES}) and no note")
    for name in notes.functions:
        if sizes.get(name, 0) <= MAX_FUNCTION_LINES:
            problems.append(f"'# size of {name}:' but {name}() is not over {MAX_FUNCTION_LINES}")
    for why in [notes.file, *notes.functions.values()]:
        if why is not None and len(why.split()) < 5:
            problems.append(f"the reason {why!r} is too short to explain anything")
    return problems


def test_the_size_rule_itself():
    body = "    x = 1\n" * 80
    long_fn = f'def f():\n    """Doc.\n\n    More doc.\n    """\n{body}'
    assert function_lines(long_fn) == {"f": 81}
    nested = "class A:\n    def m(self):\n        def inner():\n            pass\n"
    assert function_lines(nested) == {"A.m": 3, "A.m.inner": 2}
    assert size_problems(long_fn) == ["f() has 81 lines (> 80) and no note"]
    why = "# size of f: one formula, line by line as the paper\n# gives it, kept whole\n"
    assert size_problems(why + long_fn) == []
    assert size_notes(why).functions == {
        "f": "one formula, line by line as the paper gives it, kept whole"
    }
    assert size_problems("# size of f: too long\n" + long_fn) == [
        "the reason 'too long' is too short to explain anything"
    ]
    assert size_problems("# size of g: it is long for a good reason\n") == [
        "'# size of g:' but g() is not over 80"
    ]
    many = "x = 1\n" * 601
    assert size_problems(many) == ["601 lines (> 600) and no '# size: WHY' at the top"]
    assert size_problems("# size: the schema has one home, reader and writer\n" + many) == []
    assert size_problems('"""Doc."""\n# size: later comments do not count at all\n' + many)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_file_over_600_lines_no_function_over_80_unless_the_top_says_why(path):
    """docs/design.md 5: a long file or function is split, or its file's top comment says
    why not (``# size: WHY``, ``# size of NAME: WHY``)."""
    problems = size_problems(path.read_text())
    assert not problems, f"{path.relative_to(PACKAGE)}: " + "; ".join(problems)
