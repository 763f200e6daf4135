"""The documentation cannot rot silently.

* **Code names.** Every backticked file path in ``docs/architecture.md`` exists in the repository, and every
  backticked dotted name that starts with one of our packages (``genogate``, ``node``, ``coordinator``,
  ``genogate_demo``, ``tests``) resolves by import, attribute by attribute (``node.ledger.Ledger.begin``; a
  trailing call such as ``open_state(config)`` is read as its name). The other pages of ``docs/`` (and
  ``docs/operations/``) are held to the same rule, except that a path is checked only when its first segment
  names something at the repository's root (``node/service.py`` is; ``site-a/node.toml``, a path inside a
  node's own directory, is not).
* **Links.** Every relative Markdown link of ``docs/`` and ``README.md`` reaches a file of the repository,
  and every ``#anchor`` a heading of the page it points to.
* **Settings.** The settings tables of ``docs/operations.md`` are generated from the config classes; rewrite
  them with ``.venv/bin/python -m tests.contract.test_docs``.
* **A clone is complete.** No tracked file points to the design or conventions documents that lived outside
  the repository, and no Markdown file links outside it.

A path is a span with a ``/`` and no space (``node/service.py``, ``tests/conformance/``); ``../`` paths lie
outside the repository and are not checked. Spans that are neither (``[state] backend``, ``RunQuery``) are
prose. The checkers themselves are tested on small documents written here, so a check that finds nothing
fails."""

from __future__ import annotations

import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coordinator.config import CoordinatorConfig
from genogate import config
from node.config import NodeConfig

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PAGES = sorted(p for p in [*(ROOT / "docs").glob("*.md"), *(ROOT / "docs" / "operations").glob("*.md")] if p != DOC)
OPERATIONS = ROOT / "docs" / "operations.md"
PACKAGES = ("genogate", "node", "coordinator", "genogate_demo", "tests")
FILE_SUFFIXES = {"py", "md", "toml", "proto", "json", "yaml", "sqlite", "duckdb", "svg", "txt", "lock"}
FILE_SUFFIXES |= {"pem", "key", "csr", "ed25519", "gz", "bed", "tsv", "vcf", "fa", "obo", "bak"}

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


# The other pages of docs/ ---------------------------------------------------------------------------------


def anchored(paths: list[str], root: Path = ROOT) -> list[str]:
    """The paths that start at the repository's root: their first segment names something there."""
    return [p for p in paths if (root / p.split("/", 1)[0].split("<", 1)[0].split("*", 1)[0]).exists()]


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_pages_exist() -> None:
    names = {_page_id(p) for p in PAGES}
    expected = {"docs/README.md", "docs/trust-model.md", "docs/privacy.md", "docs/queries.md", "docs/operations.md"}
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_file_a_page_names_exists(page: Path) -> None:
    paths, _ = references(page.read_text())
    problems = [p for p in map(missing_path, anchored(paths)) if p is not None]
    assert not problems, f"{_page_id(page)} names what does not exist:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_name_a_page_quotes_resolves(page: Path) -> None:
    _, names = references(page.read_text())
    problems = [p for p in map(missing_name, names) if p is not None]
    assert not problems, f"{_page_id(page)} quotes names that do not resolve:\n" + "\n".join(problems)


def test_the_pages_quote_code_at_all() -> None:
    found = [references(p.read_text()) for p in PAGES]
    assert sum(len(anchored(paths)) for paths, _ in found) >= 30, "fewer than 30 paths: a broken parser"
    assert sum(len(names) for _, names in found) >= 30, "fewer than 30 names: a broken parser"


# Links ----------------------------------------------------------------------------------------------------

# Pages that other parts of issue 15 write beside docs/operations.md, linked from it before they land.
PENDING = {"docs/operations/consent.md", "docs/operations/preview.md", "docs/operations/nodes.md"}

_LINK = re.compile(r"\[(?:[^\]\n]|\][^(])*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)")


def _prose(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters of any script, digits, ``-``
    and ``_`` kept), spaces turned into hyphens."""
    return "".join(c for c in heading.strip().lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(line.lstrip("#")) for line in _prose(text) if re.match(r"#{1,6} ", line)}


def broken_links(page: Path, root: Path = ROOT, pending: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Every relative link of ``page`` whose file is missing (and not ``pending``) or whose anchor is not a
    heading of the page it points to."""
    problems = []
    for line in _prose(page.read_text()):
        for target in _LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            try:
                rel = str(dest.relative_to(root))
            except ValueError:
                problems.append(f"{target}: outside the repository")
                continue
            if not dest.exists():
                if rel not in pending:
                    problems.append(f"{target}: no file {rel}")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                problems.append(f"{target}: no heading #{anchor} in {rel}")
    return problems


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "SECURITY.md", DOC, *PAGES], ids=_page_id)
def test_every_link_of_a_page_arrives(page: Path) -> None:
    problems = broken_links(page, pending=PENDING)
    assert not problems, f"{_page_id(page)}:\n" + "\n".join(problems)


def test_the_link_checker_finds_missing_files_anchors_and_escapes(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Accounting: ε and δ\n\n## The `unit` of privacy\n")
    page = tmp_path / "docs" / "a.md"
    page.write_text(
        "# Top\n[ok](b.md#accounting-ε-and-δ) [ok](b.md#the-unit-of-privacy) [self](#top) [web](https://x.org)\n"
        "[gone](c.md) [bad anchor](b.md#nothing) [out](../../elsewhere.md) [later](later.md)\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page, tmp_path, pending={"docs/later.md"}) == [
        "c.md: no file docs/c.md",
        "b.md#nothing: no heading #nothing in docs/b.md",
        "../../elsewhere.md: outside the repository",
    ]


# The settings tables of docs/operations.md ------------------------------------------------------------------

SETTINGS = {"node": NodeConfig, "coordinator": CoordinatorConfig}


def _first_sentence(text: str) -> str:
    m = re.search(r"(?<!e\.g)(?<!i\.e)\.(?=\s+[A-Z0-9('])", text)
    return text[: m.end()] if m else text


def settings_table(cls: type[Any]) -> str:
    """A Markdown table of every setting of a config class: the setting, its default and its help's first
    sentence (the full help is in the generated example file)."""
    rows = ["| setting | default | what |", "|---|---|---|"]
    for s in config.describe(cls):
        default = "(required)" if s.required else "(unset)" if s.default is None else config.toml_value(s.default)
        what = _first_sentence(s.help).replace("|", "\\|")
        rows.append(f"| `[{s.section}] {s.key}` | `{default}` | {what} |")
    return "\n".join(rows)


def _block(name: str) -> tuple[str, str]:
    return f"<!-- settings:{name}:begin -->\n", f"<!-- settings:{name}:end -->"


def with_tables(text: str) -> str:
    """``text`` with every settings block rewritten from the config classes."""
    for name, cls in SETTINGS.items():
        begin, end = _block(name)
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + begin + settings_table(cls) + "\n" + end + tail
    return text


def test_the_settings_tables_are_current() -> None:
    text = OPERATIONS.read_text()
    assert text == with_tables(text), (
        "docs/operations.md: the settings tables differ from the config classes; rewrite them with "
        ".venv/bin/python -m tests.contract.test_docs"
    )
    for name, cls in SETTINGS.items():
        for s in config.describe(cls):
            assert f"`[{s.section}] {s.key}`" in text, (name, s.section, s.key)


def test_the_settings_table_has_every_setting_and_its_default() -> None:
    table = settings_table(NodeConfig)
    assert "| `[policy] min_reportable_count` | `10` | Noisy counts below this" in table
    assert "| `[node] name` | `(required)` |" in table
    assert "| `[ontologies] mondo` | `(unset)` |" in table
    assert len(table.splitlines()) == 2 + len(config.describe(NodeConfig))
    assert [f.name for f in dataclasses.fields(CoordinatorConfig)][0] in settings_table(CoordinatorConfig)


# A clone is complete -----------------------------------------------------------------------------------------

_OUTSIDE_DOCS = ("DESIGN" + ".md", "CONVENTIONS" + ".md")  # split so that this file does not name them
_OUTSIDE_LINKS = ("](" + "../shared", "](../" + "../shared")
_BINARY = {".png", ".gz", ".duckdb", ".sqlite", ".bcf", ".jpg"}


def tracked_files(root: Path = ROOT) -> list[Path]:
    """The files git tracks (every file outside hidden and build directories when git is not available)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
        return [root / name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        skip = {".venv", ".git", "build", "node_modules"}
        return [p for p in root.rglob("*") if p.is_file() and not (set(p.relative_to(root).parts) & skip)]


def outside_references(path: Path, text: str) -> list[str]:
    """Where ``text`` names a design document that a clone lacks, or (in Markdown) links outside the
    repository's own files into the shared directory beside it."""
    problems = [f"names {name}" for name in _OUTSIDE_DOCS if name in text]
    if path.suffix == ".md":
        problems += [f"links {link}..." for link in _OUTSIDE_LINKS if link in text]
    return problems


def test_no_tracked_file_points_outside_the_clone() -> None:
    files = [p for p in tracked_files() if p.suffix not in _BINARY and p.is_file()]
    assert len(files) > 100, "git ls-files found too few files"
    problems = []
    for path in files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        problems += [f"{path.relative_to(ROOT)}: {p}" for p in outside_references(path, text)]
    assert not problems, "\n".join(problems)


def test_the_outside_check_flags_what_it_should(tmp_path: Path) -> None:
    md = tmp_path / "a.md"
    assert outside_references(md, "see [design](" + "../shared/x.md)") != []
    assert outside_references(md, "the " + "DESIGN" + ".md file") != []
    assert outside_references(tmp_path / "a.py", "data in ../shared/data") == []
    assert outside_references(md, "[trust](docs/trust-model.md)") == []


def main() -> None:
    """Rewrite the settings tables of docs/operations.md from the config classes."""
    OPERATIONS.write_text(with_tables(OPERATIONS.read_text()))
    print(f"rewrote the settings tables of {OPERATIONS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()


# The checker itself ---------------------------------------------------------------------------------------

SAMPLE = """
Files `node/service.py`, `tests/conformance/`, `genogate/kinds/<label>.py`, `proto/genogate/v1/*.proto`,
`../outside/DESIGN_NOTES.md` (outside), `node/nothing_here.py`. Names `node.ledger.Ledger.begin`,
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
