"""The map for newcomers (``docs/architecture.md``) cannot rot silently: every backticked file path in it exists
in the repository, and every backticked dotted name that starts with one of our packages (``genogate``,
``node``, ``coordinator``, ``genogate_demo``, ``tests``) resolves by import, attribute by attribute
(``node.ledger.Ledger.begin``; a trailing call such as ``open_state(config)`` is read as its name).

A path is a span with a ``/`` and no space (``node/service.py``, ``tests/conformance/``); ``../`` paths lie
outside the repository and are not checked. Spans that are neither (``[state] backend``, ``RunQuery``) are
prose. The checker itself is tested on a small document written here, so a check that finds nothing fails."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("genogate", "node", "coordinator", "genogate_demo", "tests")
FILE_SUFFIXES = {"py", "md", "toml", "proto", "json", "yaml", "sqlite", "duckdb", "svg", "txt", "lock"}

_SPAN = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"[A-Za-z0-9_.*<>-]+(?:/[A-Za-z0-9_.*<>-]+)*/?")
_NAME = re.compile(r"(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\(.*\))?")


def references(text: str) -> tuple[list[str], list[str]]:
    """The file paths and the dotted names of our packages that ``text`` puts in backticks, in order."""
    paths: list[str] = []
    names: list[str] = []
    for span in _SPAN.findall(text):
        span = span.strip()
        if "/" in span and " " not in span:
            if not span.startswith("../") and _PATH.fullmatch(span):
                paths.append(span)
            continue
        m = _NAME.fullmatch(span)
        if m is None:
            continue
        name = m.group("name")
        parts = name.split(".")
        if parts[0] in PACKAGES and parts[-1] not in FILE_SUFFIXES:
            names.append(name)
    return paths, names


def missing_path(path: str, root: Path = ROOT) -> str | None:
    """Why ``path`` does not name a file or directory of the repository (None if it does). A ``<placeholder>``
    segment (``genogate/kinds/<label>.py``) only needs its directory to exist."""
    if "<" in path:
        parent = path.split("<", 1)[0].rsplit("/", 1)[0]
        return None if (root / parent).is_dir() else f"{path}: no directory {parent}"
    if "*" in path:
        return None if list(root.glob(path)) else f"{path}: matches nothing"
    return None if (root / path).exists() else f"{path}: no such file or directory"


def missing_name(name: str) -> str | None:
    """Why ``name`` does not resolve: the longest importable module prefix, then each attribute in turn."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: object = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue  # this prefix is no module: try a shorter one
            return f"{name}: importing {module_name} fails ({exc})"  # a broken import, not a missing module
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return f"{name}: {'.'.join(parts[:i])} has no {attr!r}"
            obj = getattr(obj, attr)
            i += 1
        return None
    return f"{name}: no module {parts[0]}"


def test_every_file_the_map_names_exists() -> None:
    paths, _ = references(DOC.read_text())
    assert len(paths) >= 30, "the map names the files of the query path: fewer than 30 found means a broken parser"
    problems = [p for p in map(missing_path, paths) if p is not None]
    assert not problems, "docs/architecture.md names what does not exist:\n" + "\n".join(problems)


def test_every_name_the_map_quotes_resolves() -> None:
    _, names = references(DOC.read_text())
    assert len(names) >= 40, "the map quotes the functions of the query path: fewer than 40 found means a broken parser"
    problems = [p for p in map(missing_name, names) if p is not None]
    assert not problems, "docs/architecture.md quotes names that do not resolve:\n" + "\n".join(problems)


def test_the_map_is_linked_from_the_readme_and_security() -> None:
    for doc in ("README.md", "SECURITY.md"):
        assert "docs/architecture.md" in (ROOT / doc).read_text(), doc


# The checker itself ---------------------------------------------------------------------------------------

SAMPLE = """
Files `node/service.py`, `tests/conformance/`, `genogate/kinds/<label>.py`, `proto/genogate/v1/*.proto`,
`../shared/DESIGN.md` (outside), `node/nothing_here.py`. Names `node.ledger.Ledger.begin`,
`coordinator.state.open_state(config)`, `genogate.kinds.KINDS`, `node.ledger.Ledger.no_such_method`,
`genogate.no_such_module.f`, `node.toml`, `numpy.ndarray` (not ours), prose `[state] backend`, `RunQuery`.
"""


def test_the_checker_finds_paths_and_names_and_flags_what_is_missing(tmp_path: Path) -> None:
    paths, names = references(SAMPLE)
    assert paths == [
        "node/service.py",
        "tests/conformance/",
        "genogate/kinds/<label>.py",
        "proto/genogate/v1/*.proto",
        "node/nothing_here.py",
    ]
    assert names == [
        "node.ledger.Ledger.begin",
        "coordinator.state.open_state",
        "genogate.kinds.KINDS",
        "node.ledger.Ledger.no_such_method",
        "genogate.no_such_module.f",
    ]
    assert [p for p in paths if missing_path(p)] == ["node/nothing_here.py"]
    assert missing_path("genogate/<x>/y.py", tmp_path) == "genogate/<x>/y.py: no directory genogate"
    assert [n for n in names if missing_name(n)] == ["node.ledger.Ledger.no_such_method", "genogate.no_such_module.f"]
    assert missing_name("node.ledger.Ledger.no_such_method") == (
        "node.ledger.Ledger.no_such_method: node.ledger.Ledger has no 'no_such_method'"
    )


@pytest.mark.parametrize("name", ["genogate", "nosuchpackage.x"])
def test_names_outside_our_packages_or_without_a_dot_are_not_references(name: str) -> None:
    assert references(f"`{name}`") == ([], [])
