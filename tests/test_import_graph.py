"""The package's modules import one another without a cycle, and each layer only the layers below it.

The graph is built from the sources, never by importing them: every ``.py`` file under ``sdk/``,
``training/``, ``export/`` and ``cli/`` is parsed with :mod:`ast`. What counts as an import:

- every ``import`` and ``from ... import`` statement, absolute (``rationalizer...``) or relative,
  wherever it is written: at module level, inside a function, under ``if TYPE_CHECKING:``. A
  function-level import still runs, at call time, and still makes one module depend on the other
  (the cycle bundle -> integrity -> paths -> bundle was closed by one in ``paths.py``);
- a string constant that is exactly the dotted name of one of the package's submodules: the backend
  registry imports its backends by name, so the name is as much a dependency as an import statement
  (the bare package name is left out: ``"rationalizer"`` is also the cache folder's name).

An import points at the most specific module it names: ``from a.b import c`` is an edge to ``a.b.c``
when that is a module, else to ``a.b``. The packages above the target (whose ``__init__`` Python runs
first) are not edges of their own, as in import-linter: Python registers a package before running
its ``__init__``, so a submodule importing a sibling through its parent is no cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "rationalizer"
LAYERS = {"sdk": PACKAGE, "training": f"{PACKAGE}.training", "export": f"{PACKAGE}.export", "cli": f"{PACKAGE}.cli"}
"""Source folder -> the import name it is installed as (pyproject's package-dir)."""
FORBIDDEN = {"sdk": {"training", "export", "cli"}, "training": {"cli"}, "export": {"cli"}}
"""Dependencies flow cli -> training/export -> sdk, never back."""

Edges = dict[str, dict[str, list[str]]]
"""module -> {module it imports -> where ("file:line") each such import is written}."""


def modules(root: Path, layers: dict[str, str]) -> dict[str, tuple[Path, str]]:
    """Every module of the package: its import name -> (source file, the layer folder it lies in)."""
    found: dict[str, tuple[Path, str]] = {}
    for folder, name in layers.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([name, *parts])] = (path, folder)
    return found


def _target(name: str, known: set[str]) -> str | None:
    """The most specific module of the package that ``name`` lies in (None: not the package's)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> list[tuple[str, int]]:
    """(module imported, line) for every import in ``tree``, at any depth, and every module-name string."""
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from a import b`: b is a submodule or a name defined in a
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value \
                and node.value in known:
            names = [node.value]
        for name in names:
            target = _target(name, known)
            if target is not None and target != module:
                out.append((target, node.lineno))
    return out


def import_graph(root: Path = ROOT, layers: dict[str, str] = LAYERS) -> tuple[Edges, dict[str, str]]:
    """The package's import graph from its sources, and each module's layer folder."""
    found = modules(root, layers)
    known = set(found)
    edges: Edges = {name: defaultdict(list) for name in found}
    for name, (path, _) in found.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target, line in _imported(tree, name, path.name == "__init__.py", known):
            where = f"{path.relative_to(root)}:{line}"
            if where not in edges[name][target]:  # `from a import b, c` is one import
                edges[name][target].append(where)
    return edges, {name: folder for name, (_, folder) in found.items()}


def cycles(edges: Edges) -> list[list[str]]:
    """One cycle (its modules in import order, the first repeated last) per strongly connected group of
    modules (Tarjan's algorithm, iterative: the graph is small but recursion limits are not generous)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return [_cycle_in(group, edges) for group in groups]


def _cycle_in(group: set[str], edges: Edges) -> list[str]:
    """A shortest cycle through the group's first module, found breadth-first inside the group."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if child in group and child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in its strongly connected group")


def describe(cycle: list[str], edges: Edges) -> str:
    """A cycle as lines ``a -> b  (file:line)`` a person can follow."""
    return "\n".join(f"  {a} -> {b}  ({', '.join(edges[a][b])})" for a, b in zip(cycle, cycle[1:]))


def test_the_package_has_no_import_cycle():
    edges, _ = import_graph()
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n\n".join(describe(cycle, edges) for cycle in found)


def test_each_layer_imports_only_the_layers_below_it():
    edges, layer = import_graph()
    wrong = [f"  {a} ({layer[a]}/) -> {b} ({layer[b]}/)  ({', '.join(where)})"
             for a, targets in edges.items() for b, where in targets.items() if layer[b] in FORBIDDEN.get(layer[a], ())]
    assert not wrong, "imports against the layering (cli -> training/export -> sdk):\n" + "\n".join(wrong)


def test_the_graph_sees_every_kind_of_import():
    # the graph must be the real one: a checker that missed function-level or relative imports would pass vacuously
    edges, layer = import_graph()
    assert len(layer) > 50 and set(layer.values()) == set(LAYERS)
    assert f"{PACKAGE}.bundle" in edges[f"{PACKAGE}.backends.hf"]  # relative, module level
    assert f"{PACKAGE}.backends.hf" in edges[f"{PACKAGE}.backends"]  # a module named in a string (the registry)
    assert f"{PACKAGE}.export.pipeline" in edges[f"{PACKAGE}.cli.export"]  # absolute, inside a function
    assert f"{PACKAGE}.paths" in edges[f"{PACKAGE}.base_model"]


def test_a_function_level_cycle_is_found_and_printed(tmp_path):
    pkg = tmp_path / "src"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import A\n")
    (pkg / "a.py").write_text("from .sub import b\nA = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import os\n\ndef f():\n    from pkg.c import C\n    return C\n")
    (pkg / "c.py").write_text("def g():\n    from . import a\n    return a\n")
    (pkg / "leaf.py").write_text("import json\nfrom pkg import A\n")
    edges, _ = import_graph(tmp_path, {"src": "pkg"})
    assert edges["pkg.leaf"].keys() == {"pkg"}  # a name from the package's __init__: an edge to the package
    assert cycles(edges) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]
    text = describe(cycles(edges)[0], edges)
    assert "pkg.sub.b -> pkg.c  (src/sub/b.py:4)" in text and "pkg.c -> pkg.a  (src/c.py:2)" in text
