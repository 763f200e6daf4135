"""The newcomer's path: the demo generates, ingests and queries a cohort end to end (small sizes here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.processes import ROOT


def test_demo_runs_and_prints_the_planted_variants(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "node.demo", "--dir", str(tmp_path / "demo"), "--samples", "800", "--variants", "3000"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    ).stdout
    assert "exact allele frequencies of the planted variants" in out
    rows = [line for line in out.splitlines() if line.strip().startswith("chr")]
    assert len(rows) == 5  # five planted variants, each with case and control AC/AN/AF
    assert all(len(r.split()) == 7 for r in rows)
    assert (tmp_path / "demo" / "node" / "store.duckdb").is_file()
