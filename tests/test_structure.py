"""The package's structure: what simulate/ may import, and that its modules form no cycle.

Both read the source with :mod:`ast` (nothing is imported), so a lazy import inside a
function counts as much as one at the top of a module; imports under
``if TYPE_CHECKING:`` are for type checkers only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

SIMULATE = Path(__file__).resolve().parents[1] / "src" / "spectrocnn" / "simulate"
PACKAGE = "spectrocnn.simulate"
#: Libraries that simulate/ (physics: NumPy and SciPy in, arrays out) never imports.
HEAVY = ("h5py", "tensorflow", "keras", "matplotlib")


def _module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement outside TYPE_CHECKING blocks."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _simulate_modules() -> dict[str, ast.AST]:
    paths = sorted(SIMULATE.glob("*.py"))
    assert paths, f"no modules found under {SIMULATE}"
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in paths}


def test_simulate_imports_no_heavy_libs():
    """No module under simulate/ imports h5py, TensorFlow/Keras or matplotlib, even lazily."""
    offenders = []
    for name, tree in _simulate_modules().items():
        for module, _ in _imports(tree):
            if module.split(".")[0] in HEAVY:
                offenders.append(f"{name} imports {module}")
    assert not offenders, offenders


def _import_graph() -> dict[str, set[str]]:
    """Edges module -> simulate module it imports (a submodule named in ``from
    spectrocnn.simulate import x`` counts as that submodule)."""
    modules = _simulate_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for module, names in _imports(tree):
            if module == PACKAGE:
                targets = {f"{PACKAGE}.{n}" for n in names if f"{PACKAGE}.{n}" in modules}
                if len(targets) < len(names):  # a name from the package's __init__
                    targets.add(PACKAGE)
            elif module.startswith(PACKAGE + "."):
                targets = {module}
            else:
                continue
            graph[name] |= targets - {name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
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
    graph = _import_graph()
    assert f"{PACKAGE}.geometry" in graph[f"{PACKAGE}.stepper"]  # the parse sees imports
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_simulate_cycle_finder_finds_a_cycle():
    """The cycle check itself: a graph with a cycle is caught, a DAG is not."""
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
