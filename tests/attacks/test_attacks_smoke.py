"""``make attacks`` keeps working: a tiny sample of every attack (``python -m attacks --quick``) through real node
and coordinator processes on the real 1000 Genomes subset and a synthetic cohort, and the harness's statistics.

The smoke run checks what does not depend on luck: every attack produced its rows, the exact-answer Beacon
attack finds the members (no noise: deterministic for the seed), every differencing trial got a fresh, charged
answer, every timing probe was refused for budget, and the stated intervals cover at their claimed rates
(false-failure rate below 1e-7 each: a binomial lower tail).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attacks import report
from attacks.__main__ import main
from attacks.stats import _log_pmf, clopper_pearson, roc
from tests.conftest import require_shared

BUDGET_REASONS = {"BUDGET_EXHAUSTED", "RESEARCHER_BUDGET_EXHAUSTED", "NODE_BUDGET_EXHAUSTED"}


def test_roc_auc_and_tpr_at_a_fixed_fpr() -> None:
    perfect = roc([3, 4, 5], [0, 1, 2])
    assert perfect.auc == 1.0 and perfect.tpr_at(0.05) == 1.0
    ties = roc([1, 1, 1, 1], [1, 1])
    assert ties.auc == 0.5 and ties.tpr_at(0.05) == pytest.approx(0.05)  # a randomised test at 5%
    shifted = roc(np.arange(100) + 0.5, np.arange(100))  # P(pos > neg) = 5050/10000
    assert shifted.auc == pytest.approx(0.505)
    reversed_ = roc([0, 1], [2, 3])
    assert reversed_.auc == 0.0 and reversed_.tpr_at(0.5) == 0.0
    with pytest.raises(ValueError):
        roc([], [1])


def test_clopper_pearson_matches_known_values() -> None:
    low, high = clopper_pearson(950, 1000)
    assert low == pytest.approx(0.93461, abs=1e-4) and high == pytest.approx(0.96266, abs=1e-4)
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(0.30850, abs=1e-4))
    assert clopper_pearson(10, 10) == (pytest.approx(0.69150, abs=1e-4), 1.0)


def _min_covered(n: int, p: float, alpha: float = 1e-7) -> int:
    """The largest k with P(Binomial(n, p) < k) <= alpha."""
    cdf = np.cumsum(np.exp(_log_pmf(n, p)))
    return int(np.searchsorted(cdf, alpha, side="right"))


@pytest.mark.slow
def test_every_attack_runs_on_a_small_sample(tmp_path: Path) -> None:
    require_shared()
    security = tmp_path / "SECURITY.md"
    security.write_text(f"# s\n{report.BEGIN}\nold\n{report.END}\n")
    assert main(["--quick", "--no-plots", "--out", str(tmp_path / "out"), "--security", str(security)]) == 0
    assert "old" in security.read_text()  # a quick run publishes nothing
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = doc["results"]
    assert {r["attack"] for r in rows} == {"membership", "differencing", "timing", "coverage"}

    exact = {r["statistic"]: r for r in rows if r["attack"] == "membership" and r["setting"] == "exact answers"}
    assert set(exact) == {"beacon_lrt", "homer", "sankararaman"}
    assert exact["beacon_lrt"]["auc"] >= 0.9  # exact answers give members away
    noisy = [r for r in rows if r["attack"] == "membership" and r["setting"] != "exact answers"]
    assert len(noisy) == 3 and all(r["epsilon"] > 0 for r in noisy)

    diff = [r for r in rows if r["attack"] == "differencing"]
    assert [r["epsilon"] for r in diff] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert all(r["refused_trials"] == 0 and r["n_pos"] == r["n_neg"] > 0 for r in diff)
    assert diff[-1]["answers_from_store"] == 0  # every trial a fresh draw
    points = json.loads((tmp_path / "out" / "differencing.json").read_text())["points"]
    assert [p["epsilon"] for p in points] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert all(0 <= p["tpr_at_5pct_fpr"] <= 1 for p in points)

    timing = [r for r in rows if r["attack"] == "timing"]
    assert {r["setting"].split(",")[0] for r in timing} == {"in-memory path", "DuckDB path"}
    assert any(r["data"].startswith("synthetic") for r in timing) and len(timing) == 12  # 3 nodes, 2 shapes, 2 stats
    for r in timing:
        assert set(r["refusals"]) <= BUDGET_REASONS, r["refusals"]  # every probe refused, none answered
        assert r["median_ms_held"] > 0 and r["median_ms_absent"] > 0

    coverage = [r for r in rows if r["attack"] == "coverage"]
    assert len(coverage) == 4
    for r in coverage:
        # A node's per-value interval covers at least 95%; the coordinator's combined procedure at least 92.5%
        # where suppressed and released sums mix (README), 95% otherwise.
        claim = 0.925 if r["setting"].startswith("coordinator") else 0.95
        assert r["n"] > 0 and r["covered"] >= _min_covered(r["n"], claim), r
