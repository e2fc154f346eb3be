"""No import cycles in the package: not at the top level, not behind a lazy import inside a function,
not behind `if TYPE_CHECKING:`. A cycle hidden that way still ties the modules into one (neither can be
understood, tested or moved without the other), and turns into an import-time failure the day someone
hoists the import.

The graph: a node per module under openrealtime/ (a package's __init__ is the package's node); an edge
for each `import a.b` (to a.b) and each `from a import x` (to a.x when x is a submodule, else to a),
relative imports resolved against the importing module's package. Every import statement in the file
counts, wherever it is.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "openrealtime"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # path:line of the import statement


def module_names() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports(name: str, source: str, modules: Collection[str], *, is_package: bool = False,
            label: str = "") -> Iterator[Edge]:
    """The edges of module `name` (its text: `source`) to the `modules`."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, label or name)):
        where = f"{label or name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.append(submodule if submodule in modules else source)
        else:
            continue
        for target in targets:
            # `import a.b.c` of a name that is not a module (an attribute): the nearest module above it
            while target and target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target in modules and target != name:
                yield Edge(name, target, where)


def import_graph() -> dict[str, dict[str, Edge]]:
    modules = module_names()
    graph: dict[str, dict[str, Edge]] = {name: {} for name in modules}
    for name, path in modules.items():
        for edge in imports(name, path.read_text(), modules, is_package=path.name == "__init__.py",
                            label=str(path.relative_to(ROOT))):
            graph[name].setdefault(edge.target, edge)
    return graph


def strongly_connected(graph: dict[str, dict[str, Edge]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def a_cycle(graph: dict[str, dict[str, Edge]], component: list[str]) -> list[Edge]:
    """One cycle through the component's first module (breadth-first: the shortest)."""
    members = set(component)
    start = component[0]
    came_from: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, edge in sorted(graph[node].items()):
                if target not in members or target in came_from:
                    continue
                came_from[target] = edge
                if target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came_from[path[0].source])
                    return path
                following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def describe(graph: dict[str, dict[str, Edge]], component: list[str]) -> str:
    cycle = a_cycle(graph, component)
    lines = [f"{' ↔ '.join(component)}:"]
    lines += [f"    {edge.source} → {edge.target}  ({edge.where})" for edge in cycle]
    return "\n".join(lines)


def cycles() -> list[str]:
    graph = import_graph()
    return [describe(graph, component) for component in strongly_connected(graph)]


def test_every_kind_of_import_is_an_edge():
    source = """
from __future__ import annotations
import os
from typing import TYPE_CHECKING
from .. import ids
from ..protocol import server_events as ev, ProtocolError
from .sibling import thing
import pkg.deep.leaf.attribute
if TYPE_CHECKING:
    from .typing_only import Type
def later():
    from ..lazy import helper
"""
    modules = {"pkg", "pkg.ids", "pkg.protocol", "pkg.protocol.server_events", "pkg.sub", "pkg.sub.here",
               "pkg.sub.sibling", "pkg.sub.typing_only", "pkg.lazy", "pkg.deep.leaf"}
    edges = {e.target: e.where for e in imports("pkg.sub.here", source, modules, label="here.py")}
    assert edges == {"pkg.ids": "here.py:5", "pkg.protocol.server_events": "here.py:6", "pkg.protocol": "here.py:6",
                     "pkg.sub.sibling": "here.py:7", "pkg.deep.leaf": "here.py:8", "pkg.sub.typing_only": "here.py:10",
                     "pkg.lazy": "here.py:12"}
    # in a package's __init__, "." is the package itself
    assert [e.target for e in imports("pkg.sub", "from . import sibling", modules, is_package=True)] == \
        ["pkg.sub.sibling"]


def test_a_cycle_is_found_and_described():
    graph = {"a": {"b": Edge("a", "b", "a.py:1")}, "b": {"c": Edge("b", "c", "b.py:1")},
             "c": {"a": Edge("c", "a", "c.py:3")}, "d": {"a": Edge("d", "a", "d.py:1")}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert describe(graph, ["a", "b", "c"]).splitlines() == [
        "a ↔ b ↔ c:", "    a → b  (a.py:1)", "    b → c  (b.py:1)", "    c → a  (c.py:3)"]


def test_no_import_cycles():
    found = cycles()
    assert not found, "import cycles:\n" + "\n".join(found)
