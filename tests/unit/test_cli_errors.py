"""The operator command lines behind ``genogate.cliutil.run``, as real processes: an expected problem is one
line on stderr with the program's name and the exit code that kind of problem has (the researcher CLI's are in
test_cli_profile.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from genogate.errors import StoreError


def _run(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=120, check=False
    )


def test_node_cli_a_malformed_filter_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _run("node.cli", "freq", "--store", str(tmp_path / "store.duckdb"), "--where", "sex=Q")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("genogate-node: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "store.duckdb").exists()  # refused before the store was opened


def test_node_cli_a_missing_store_exits_with_the_store_errors_code(tmp_path: Path) -> None:
    done = _run("node.cli", "freq", "--store", str(tmp_path / "absent.duckdb"))
    assert done.returncode == StoreError.exit_code == 5, done.stderr
    assert done.stderr.startswith("genogate-node: error: "), done.stderr
    assert done.stderr.count("\n") == 1 and "absent.duckdb" in done.stderr, done.stderr


def test_coordinator_cli_a_missing_config_is_one_line_and_exit_3(tmp_path: Path) -> None:
    done = _run("coordinator.cli", "serve", "--config", str(tmp_path / "absent.toml"))
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("genogate-coordinator: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "absent.toml" in done.stderr
