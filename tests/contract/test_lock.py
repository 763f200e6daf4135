"""The hashed dependency locks match pyproject.toml: ``make lock`` was run after the last change to the
declared dependencies, and every declared dependency is pinned with hashes."""

from __future__ import annotations

import re
import sys
import tomllib

from genogate.launch import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import lock  # noqa: E402


def _pinned(text: str) -> dict[str, str]:
    return {m[0].lower(): m[1] for m in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.MULTILINE)}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_both_locks_were_made_from_the_current_declarations() -> None:
    assert lock.recorded_hash(lock.LOCK) == lock.declared_hash(), "run `make lock`"
    assert lock.recorded_hash(lock.RUNTIME_LOCK) == lock.declared_hash(), "run `make lock`"
    assert lock.main(["--check"]) == 0


def test_every_declared_dependency_is_pinned_with_hashes_and_runtime_agrees() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    full, runtime = _pinned(lock.LOCK.read_text()), _pinned(lock.RUNTIME_LOCK.read_text())
    declared = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    dev = project["project"]["optional-dependencies"]["dev"]
    assert all(_name(r) in runtime for r in declared), set(map(_name, declared)) - set(runtime)
    assert all(_name(r) in full for r in declared + dev), set(map(_name, declared + dev)) - set(full)
    assert all(full[n] == v for n, v in runtime.items())  # the same versions in the image as in CI
    for text in (lock.LOCK.read_text(), lock.RUNTIME_LOCK.read_text()):
        blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 3)[3])
        assert all("--hash=sha256:" in b for b in blocks if "==" in b)


def test_a_changed_declaration_fails_the_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    changed = tmp_path / "pyproject.toml"
    changed.write_text((ROOT / "pyproject.toml").read_text().replace('"pyyaml>=6"', '"pyyaml>=6.0.1"'))
    assert lock.declared_hash(changed) != lock.recorded_hash(lock.LOCK)
