"""The federation section of ``make bench`` works end to end: real node and coordinator processes, real mTLS,
an approved study, the floors of ``bench.relay_floor``, the profiler, the section written between its markers.
No timing is asserted (figures on a shared 2-core machine drift); what is checked is that every measurement ran
and reached the report with the rows the issue asks for, and that the rest of BENCHMARKS.md is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import federation
from bench.federation import AF_1, AF_1000, CASE_CONTROL, COHORT, Plan
from bench.federation_report import BEGIN, END, Target, write_section
from genogate.query import Variant

ROOT = Path(__file__).resolve().parents[2]

PROSE_BEFORE = "# Benchmarks\n\nThe lead's prose, above the section.\n\n"
PROSE_AFTER = "\n\n## Why a target is missed\n\nThe lead's prose, below the section.\n"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_smallest_federation_run_writes_its_section_between_the_markers(tmp_path: Path) -> None:
    """``python -m bench.run --only federation`` at its smallest (one site, a few queries of each case): exit 0,
    a JSON of every measurement, and a section with a row for every case, target and table, replacing the old
    section only."""
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(PROSE_BEFORE + f"{BEGIN}\nan old federation section\n{END}" + PROSE_AFTER)
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--only", "federation", "--federation-plan", "smallest"]
        + ["--work", str(work), "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith(PROSE_BEFORE + BEGIN) and text.endswith(END + PROSE_AFTER)
    assert "an old federation section" not in text and text.count(BEGIN) == 1 and text.count(END) == 1
    section = text[text.index(BEGIN) : text.index(END)]
    for row in (
        *(f"| {case} |" for case in (AF_1, COHORT, CASE_CONTROL, AF_1000)),
        "| single-variant AF at 1 site, p50 / asyncio floor p50 |",
        "| 1,000-variant AF vector at 1 site, p50 / one node asked directly |",
        "| each extra site, p50 increment / the floor's | one site count only |",
        "| throughput at 1 site, 2 client threads / the floor's |",
        "`genogate query ...` wall time / `python -c pass`",
        *(f"| coordinator audit growth per {case} query / 20 KB |" for case in (AF_1, COHORT, CASE_CONTROL, AF_1000)),
        "| 1 | ",  # the latency-against-sites row
        "| coordinator / relay |",
        "| each node / echo server |",
        "| coordinator: function | self % | inclusive % |",
        "| node: function | self % | inclusive % |",
    ):
        assert row in section, row
    res = json.loads((work / "federation-smallest.json").read_text())
    assert set(res["cases"]) == {"sites", AF_1, COHORT, CASE_CONTROL, AF_1000}
    assert res["cases"][AF_1000]["direct"]["p50_ms"] > 0
    assert set(res["sites"]["rows"]) == {"1"}
    assert all(v > 0 for row in res["throughput"].values() for v in row.values())
    assert res["cpu"]["genogate"]["per_process_ms"]["nodes"] and res["profile"]["top"]["coordinator"]
    assert set(res["cli"]) == {"genogate query allele-frequency", "genogate --help"}
    assert all(row["ratio"] > 0 and row["python_ms"] > 0 and row["cpu_ratio"] > 0 for row in res["cli"].values())
    # The coordinator audited every federated query: it grew by something for each case.
    assert all(row["coordinator audit.sqlite"] > 0 for row in res["audit"].values())


def test_a_sampled_federation_answers_every_measurement_at_one_site(tmp_path: Path) -> None:
    """The fast variant: one node and the coordinator as real processes, the single-variant case only, a few
    interleaved calls against both floors, and the latency-against-sites scan at one site."""
    plan = Plan.smallest()
    plan = Plan(**{**plan.__dict__, "cases": (AF_1,), "n": 2, "n_sites": 2})
    store = federation.store_for(tmp_path, plan.samples, plan.variants, plan.seed)
    fed = federation.start(tmp_path, store, 1)
    try:
        cases = federation.measure_cases(fed, tmp_path, plan)
        sites = federation.measure_sites(fed, tmp_path, plan)
    finally:
        fed.stop()
    assert set(cases) == {"sites", "audit", AF_1}
    assert cases["audit"][AF_1]["coordinator audit.sqlite"] > 0  # each federated query is audited
    assert set(cases[AF_1]) == {"genogate", "floor_asyncio", "floor_futures"}
    assert all(x["p50_ms"] > 0 and x["p99_ms"] >= x["p50_ms"] for x in cases[AF_1].values())
    assert set(sites["rows"]) == {"1"} and sites["increment_ms"]["genogate"] is None


def test_each_question_is_distinct() -> None:
    """No two calls ask the same question (a node would answer a repeat from its cache)."""
    variants = [Variant("1", 1000 + i, "A", "G") for i in range(1200)]
    for case in (AF_1, COHORT, CASE_CONTROL, AF_1000):
        asked = [repr(federation.question(case, variants, i)) for i in range(300)]
        assert len(set(asked)) == len(asked), case


def test_the_section_replaces_only_what_is_between_its_markers(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    write_section(path, f"{BEGIN}\none\n{END}\n")
    assert path.read_text() == f"{BEGIN}\none\n{END}\n"
    path.write_text(PROSE_BEFORE + path.read_text().rstrip("\n") + PROSE_AFTER)
    write_section(path, f"{BEGIN}\ntwo\n{END}\n")
    assert path.read_text() == PROSE_BEFORE + f"{BEGIN}\ntwo\n{END}" + PROSE_AFTER
    other = tmp_path / "C.md"
    other.write_text("# Benchmarks\n\nno section yet\n")
    write_section(other, f"{BEGIN}\nthree\n{END}\n")
    assert other.read_text() == f"# Benchmarks\n\nno section yet\n\n{BEGIN}\nthree\n{END}\n"


def test_a_target_at_its_limit_is_met_and_just_past_it_missed() -> None:
    assert Target("a", "", 2.0, 2, True).met is True
    assert Target("a", "", 2.0000001, 2, True).met is False
    assert Target("b", "", 0.5, 0.5, False).met is True
    assert Target("b", "", 0.4999999, 0.5, False).met is False
    assert Target("c", "", None, 2, True).met is None
