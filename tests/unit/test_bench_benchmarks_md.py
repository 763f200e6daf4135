"""``make bench`` rewrites BENCHMARKS.md's measured sections and keeps the federation section (replaced in
place later) and the hand-written history below ``bench.run.KEPT``."""

from __future__ import annotations

from pathlib import Path

from bench.federation_report import BEGIN, END
from bench.run import KEPT, _write_measured


def test_a_full_run_keeps_the_federation_section_and_the_history(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\nold numbers\n\n{BEGIN}\nfederation\n{END}\n\n{KEPT}\n\n## After issue 9\n\nA/B\n")
    _write_measured(out, "# Benchmarks\n\nnew numbers\n")
    text = out.read_text()
    assert "new numbers" in text and "old numbers" not in text
    assert text.index("new numbers") < text.index(BEGIN) < text.index(KEPT) < text.index("## After issue 9")
    assert f"{BEGIN}\nfederation\n{END}" in text and text.endswith("A/B\n")


def test_a_first_run_writes_the_marker(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    _write_measured(out, "# Benchmarks\n\nnumbers\n")
    assert out.read_text() == f"# Benchmarks\n\nnumbers\n\n{KEPT}\n"
