"""The membership bound the committee reads (``genogate.risk``): checked against brute force, the
Neyman-Pearson power of every test at every false-positive rate, for the mechanism that attains the
(ε, δ) bound and for random ε-DP output distributions; and its statement in words."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genogate import risk


def np_power(p: np.ndarray, q: np.ndarray, fpr: float) -> float:
    """The most power any (randomised) test of "member" (outcomes ~ q) against "non-member" (~ p) has at
    false-positive rate ``fpr``: flag outcomes in decreasing order of q/p until ``fpr`` of p's mass is used
    (Neyman-Pearson), splitting the last outcome."""
    order = sorted(range(len(p)), key=lambda i: -(q[i] / p[i]) if p[i] > 0 else -math.inf)
    used = power = 0.0
    for i in order:
        if p[i] == 0:
            power += q[i]
            continue
        take = min(1.0, (fpr - used) / p[i])
        if take <= 0:
            break
        used += take * p[i]
        power += take * q[i]
    return min(1.0, power)


def tight_pair(eps: float, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Randomised response with a δ escape: the (ε, δ)-DP mechanism whose tests reach the bound."""
    e = math.exp(eps)
    p = np.array([0.0, (1 - delta) / (1 + e), (1 - delta) * e / (1 + e), delta])
    q = np.array([delta, (1 - delta) * e / (1 + e), (1 - delta) / (1 + e), 0.0])
    return p, q


@pytest.mark.parametrize("eps", [0.01, 0.1, 0.5, 1.0, 2.0, 4.0, 10.0])
@pytest.mark.parametrize("delta", [0.0, 1e-5, 1e-2])
def test_the_bound_is_the_brute_force_power_of_the_tight_mechanism_at_every_fpr(eps: float, delta: float) -> None:
    p, q = tight_pair(eps, delta)
    for fpr in np.linspace(0, 1, 201):
        assert risk.tpr_bound(eps, delta, float(fpr)) == pytest.approx(np_power(p, q, float(fpr)), abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    eps=st.floats(0.01, 8.0),
    weights=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=6),
    tilt=st.lists(st.floats(-0.5, 0.5), min_size=6, max_size=6),
)
def test_no_test_against_a_pure_dp_mechanism_beats_the_bound(
    eps: float, weights: list[float], tilt: list[float]
) -> None:
    """Any pair of output distributions whose ratio stays within e^ε (an ε-DP mechanism on neighbours): tilts
    of at most ε/2 each way, renormalised by a factor within e^(±ε/2), keep every ratio within e^(±ε)."""
    p = np.array(weights) / sum(weights)
    q = p * np.exp(eps * np.array(tilt[: len(p)]))
    q = q / q.sum()
    assert max(float(np.max(q / p)), float(np.max(p / q))) <= math.exp(eps) * (1 + 1e-12)
    assert np_power(p, q, 0.05) <= risk.tpr_bound(eps, 0.0) + 1e-12


def test_the_tighter_of_the_two_inequalities_is_used() -> None:
    # At ε = 4 the first inequality alone allows 100%; the second caps it at 1 - e^-4 (0.95 - δ).
    assert risk.tpr_bound(4.0, 1e-5) == pytest.approx(1 - math.exp(-4) * (0.95 - 1e-5))
    assert risk.tpr_bound(0.1, 1e-5) == pytest.approx(math.exp(0.1) * 0.05 + 1e-5)
    assert risk.tpr_bound(1000.0, 0.0) == 1.0


def test_the_statement_is_accurate_at_small_and_large_budgets() -> None:
    small = risk.membership_risk(0.1)
    assert "ε = 0.1" in small.statement and "at most 5.5% of members" in small.statement
    assert small.true_positive_rate_bound == pytest.approx(0.0552685, abs=1e-6)
    assert (small.false_positive_rate, small.delta) == (0.05, risk.DEFAULT_DELTA)
    large = risk.membership_risk(10.0)
    assert "at most 100% of members" in large.statement
    assert "does not protect membership" in large.statement
    mid = risk.membership_risk(4.0)
    assert "at most 98% of members" in mid.statement and "does not protect membership" in mid.statement
    for r in (small, mid, large):  # beside the bound, the attack suite's point at the nearest budget
        point = risk.measured_point(r.epsilon)
        assert point is not None and r.measured_true_positive_rate == point.true_positive_rate
        assert point.epsilon >= r.epsilon or point.epsilon == max(m.epsilon for m in risk.MEASURED)
        assert "Measured:" in r.statement and f"ε = {point.epsilon:g}" in r.measured_attack
        assert "; measured " in risk.risk_text(r)


@pytest.mark.parametrize("eps", [0.0, -1.0, math.nan, math.inf])
def test_an_unusable_epsilon_is_refused(eps: float) -> None:
    with pytest.raises(ValueError):
        risk.membership_risk(eps)


def test_a_measured_point_is_taken_at_the_nearest_budget_at_least_as_large() -> None:
    table = (
        risk.Measured(2.0, 0.08, "differencing"),
        risk.Measured(4.0, 0.11, "differencing"),
        risk.Measured(10.0, 0.2, "differencing"),
    )
    assert risk.measured_point(3.0, table) == table[1]
    assert risk.measured_point(4.0, table) == table[1]
    assert risk.measured_point(50.0, table) == table[2]  # none as large: the nearest
    assert risk.measured_point(1.0, ()) is None


def test_the_measured_points_are_the_attack_suites_published_results() -> None:
    """``MEASURED`` is what `make attacks` last published (docs/security/differencing.json), never guessed."""
    import json
    from pathlib import Path

    published = json.loads((Path(__file__).parents[2] / "docs" / "security" / "differencing.json").read_text())
    assert [(m.epsilon, m.true_positive_rate) for m in risk.MEASURED] == [
        (p["epsilon"], round(p["tpr_at_5pct_fpr"], 3)) for p in published["points"]
    ]
    assert all(m.true_positive_rate <= risk.tpr_bound(m.epsilon, 0) + 0.05 for m in risk.MEASURED)
