"""The layering rules, read from the source: which package may import which, and no import circles.

* ``genogate`` (shared package and researcher SDK) imports neither side (``node``, ``coordinator``) nor the demo;
* ``coordinator`` never imports ``node``; ``node`` never imports ``coordinator``;
* no circle among the modules of ``genogate``, ``genogate_demo``, ``node`` and ``coordinator``.

Every import counts: module-level, function-level and ``if TYPE_CHECKING:`` ones alike (a function-level
import is a dependency all the same, only a later one). ``from X import Y`` is an import of ``X.Y`` when that
is a module. The generated wire code (``genogate/wire``) is not read. Failures name the rule and the import
(``file:line``); a circle names its modules and the imports that close it."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("genogate", "genogate_demo", "node", "coordinator")
GENERATED = ("genogate.wire",)

#: (importing package, imported package) pairs that break the layering, with the rule each breaks.
FORBIDDEN: Mapping[tuple[str, str], str] = {
    ("genogate", "node"): "the shared package imports neither side",
    ("genogate", "coordinator"): "the shared package imports neither side",
    ("genogate", "genogate_demo"): "the shared package does not import the demo",
    ("coordinator", "node"): "the coordinator never imports the node",
    ("node", "coordinator"): "the node never imports the coordinator",
    ("node", "genogate_demo"): "nothing but the demo imports the demo",
    ("coordinator", "genogate_demo"): "nothing but the demo imports the demo",
}


@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` (both dotted module names)."""

    source: str
    target: str
    where: str  # file:line
    text: str  # the statement, as written

    def __str__(self) -> str:
        return f"{self.where}: {self.text}  ({self.source} -> {self.target})"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root`` by dotted name (generated ones included, as targets)."""
    return {_module_name(f, root): f for pkg in packages for f in sorted((root / pkg).rglob("*.py"))}


def _resolve(name: str, known: Mapping[str, Path]) -> str | None:
    """The longest known module ``name`` is or lies in (``a.b.c`` imports ``a.b`` if ``c`` is no module)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in known:
            return candidate
    return None


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names, relative imports resolved against ``module``."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, root: Path, known: Mapping[str, Path]) -> Iterator[Import]:
    """Every import in the module at ``path`` (at any depth) of a module in ``known``."""
    rel = path.relative_to(root)
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path.name == "__init__.py", node)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
                if alias.name != "*"
            ] or [base]
        else:
            continue
        text = ast.unparse(node)
        for name in dict.fromkeys(targets):
            target = _resolve(name, known)
            if target is not None and target != module:
                yield Import(module, target, f"{rel}:{node.lineno}", text)


def import_graph(root: Path, packages: tuple[str, ...]) -> list[Import]:
    known = _modules(root, packages)
    edges: list[Import] = []
    for module, path in known.items():
        if any(module == g or module.startswith(g + ".") for g in GENERATED):
            continue
        edges.extend(imports_of(module, path, root, known))
    return edges


def layer_violations(edges: list[Import]) -> list[str]:
    out = []
    for e in edges:
        rule = FORBIDDEN.get((e.source.split(".")[0], e.target.split(".")[0]))
        if rule is not None:
            out.append(f"{rule}: {e}")
    return out


def circles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e.target)
        graph.setdefault(e.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def describe(component: list[str], edges: list[Import]) -> str:
    inside = set(component)
    lines = [f"import circle among {', '.join(component)}:"]
    lines += [f"  {e}" for e in edges if e.source in inside and e.target in inside]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    return import_graph(ROOT, PACKAGES)


def test_every_package_is_read(edges: list[Import]) -> None:
    sources = {e.source.split(".")[0] for e in edges}
    assert sources == set(PACKAGES)
    assert len({e.source for e in edges}) > 50  # the whole code base, not a few files


def test_layers(edges: list[Import]) -> None:
    problems = layer_violations(edges)
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_no_import_circles(edges: list[Import]) -> None:
    found = circles(edges)
    assert not found, "\n".join(describe(c, edges) for c in found)


# The checks themselves, on small trees written here --------------------------------------------------------


def _tree(tmp_path: Path, files: Mapping[str, str]) -> list[Import]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(tmp_path, ("genogate", "node", "coordinator"))


def test_the_checks_find_function_level_and_relative_imports_and_circles(tmp_path: Path) -> None:
    edges = _tree(
        tmp_path,
        {
            "genogate/__init__.py": "",
            "genogate/a.py": "def f():\n    from genogate import b\n",
            "genogate/b.py": "from . import c\n",
            "genogate/c.py": "import genogate.a\nfrom genogate.wire.v1 import x_pb2\n",
            "genogate/wire/__init__.py": "",
            "genogate/wire/v1/x_pb2.py": "import node.a\n",  # generated: not read
            "genogate/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from node.a import f\n",
            "node/__init__.py": "",
            "node/a.py": "from genogate.a import f\n",
            "coordinator/__init__.py": "",
            "coordinator/a.py": "from node import a\nfrom genogate.b import *\n",
        },
    )
    pairs = {(e.source, e.target) for e in edges}
    assert ("genogate.a", "genogate.b") in pairs  # function-level, resolved to the submodule
    assert ("genogate.b", "genogate.c") in pairs  # relative
    assert ("genogate.c", "genogate.wire.v1.x_pb2") in pairs
    assert ("coordinator.a", "node.a") in pairs and ("coordinator.a", "genogate.b") in pairs
    assert not any(e.source.startswith("genogate.wire") for e in edges)
    assert circles(edges) == [["genogate.a", "genogate.b", "genogate.c"]]
    problems = layer_violations(edges)
    assert len(problems) == 2
    assert any(p.startswith("the shared package imports neither side: genogate/d.py:3:") for p in problems)
    assert any(p.startswith("the coordinator never imports the node: coordinator/a.py:1:") for p in problems)
    message = describe(circles(edges)[0], edges)
    assert "genogate/a.py:2: from genogate import b" in message and "genogate/c.py:1: import genogate.a" in message


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    edges = _tree(
        tmp_path,
        {
            "genogate/__init__.py": "",
            "genogate/a.py": "import os\nfrom genogate import b\n",
            "genogate/b.py": "import json\n",
            "node/__init__.py": "from genogate import a\n",
            "coordinator/__init__.py": "from genogate.b import x\n",
        },
    )
    assert len(edges) == 3 and circles(edges) == [] and layer_violations(edges) == []
