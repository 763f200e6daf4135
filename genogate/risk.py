"""What a privacy budget allows a membership attacker, in words a committee can weigh (issue 13, item 3).

For an (ε, δ)-differentially private release, any test of "is this person's data at this site?" (a
hypothesis test between the two neighbouring datasets) with false-positive rate FPR has a true-positive rate
bounded by both standard inequalities (Kairouz, Oh and Viswanath 2015; Dong, Roth and Su's f-DP):

* TPR <= e^ε · FPR + δ, and
* 1 - FPR <= e^ε · (1 - TPR) + δ, that is TPR <= 1 - e^(-ε) · (1 - δ - FPR);

so ``TPR <= min(1, e^ε · FPR + δ, 1 - e^(-ε) · (1 - δ - FPR))``, and the bound is tight (a two-outcome
randomised response with a δ escape reaches it). It holds for every attacker, whatever they know, over the
whole budget one site's ledger can spend on the study: the ε to use is a study's total at one site (the
smaller of the proposal's and the site's cap), not the per-query cap.

Beside the bound, the power the shipped attack suite (``make attacks``) measured at a comparable budget, from
``MEASURED``; until the suite's results are filled in there, ``measured_true_positive_rate`` is -1 and the
statement says "not measured".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from genogate.studies import MembershipRisk

FALSE_POSITIVE_RATE = 0.05
DEFAULT_DELTA = 1e-5
"""δ assumed when a site does not say: the node's default ``[policy] delta_per_study_cap``."""


@dataclass(frozen=True)
class Measured:
    """One point of a measured attack curve: the total ε spent at one site, and the attack's TPR at 5% FPR."""

    epsilon: float
    true_positive_rate: float
    attack: str


ATTACK = "single-target differencing (make attacks, SECURITY.md)"
MEASURED: tuple[Measured, ...] = (
    Measured(1, 0.071, ATTACK),
    Measured(2, 0.163, ATTACK),
    Measured(4, 0.196, ATTACK),
    Measured(8, 0.244, ATTACK),
    Measured(10, 0.379, ATTACK),
)
"""Points measured by ``make attacks`` at ``FALSE_POSITIVE_RATE``: the single-target differencing attack on the
1000 Genomes subset through real nodes, one study's whole budget spent on one target (SECURITY.md; its
machine-readable results in docs/security/differencing.json, which a test holds this table equal to)."""


def tpr_bound(epsilon: float, delta: float, fpr: float = FALSE_POSITIVE_RATE) -> float:
    """The largest true-positive rate any test at ``fpr`` can have against an (ε, δ)-DP release."""
    if not (epsilon >= 0 and 0 <= delta <= 1 and 0 <= fpr <= 1):
        raise ValueError("need epsilon >= 0, and delta and fpr in [0, 1]")
    if epsilon > 700:  # e^ε overflows; the bound is 1 long before
        return 1.0
    e = math.exp(epsilon)
    return max(0.0, min(1.0, e * fpr + delta, 1.0 - (1.0 - delta - fpr) / e))


def measured_point(epsilon: float, table: tuple[Measured, ...] | None = None) -> Measured | None:
    """The measured point at the budget nearest ``epsilon`` (on a log scale), preferring one at least as
    large (an attack with more budget is at least as strong); None when nothing was measured."""
    points = MEASURED if table is None else table
    if not points or not epsilon > 0:
        return None
    above = [m for m in points if m.epsilon >= epsilon]
    pool = above or list(points)
    return min(pool, key=lambda m: abs(math.log(m.epsilon / epsilon)))


def _percent(x: float) -> str:
    p = 100 * x
    return f"{p:.0f}%" if p >= 10 or p == 0 else f"{p:.2g}%"


def _number(x: float) -> str:
    return f"{x:.3g}"


def membership_risk(
    epsilon: float, delta: float = DEFAULT_DELTA, *, fpr: float = FALSE_POSITIVE_RATE
) -> MembershipRisk:
    """The bound at ``fpr`` for a study's total (ε, δ) at one site, with its statement and the measured point."""
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError("epsilon must be a positive finite number")
    if not math.isfinite(delta) or not 0 <= delta < 1:
        raise ValueError("delta must be in [0, 1)")
    bound = tpr_bound(epsilon, delta, fpr)
    head = (
        f"With ε = {_number(epsilon)} and δ = {delta:.2g} spent at one site, any test of whether one person's data "
        f"is at that site that wrongly flags {_percent(fpr)} of non-members can flag at most {_percent(bound)} of "
        "members"
    )
    if bound >= 0.9:
        statement = (
            f"{head}: the budget alone does not protect membership; what does is the noise of each answer at its "
            "per-query ε and the minimum reportable count, so keep per-query ε small and the study's total low."
        )
    elif bound <= 2 * fpr:
        statement = (
            f"{head} (a blind guess flags {_percent(fpr)}): the budget leaves little room for membership inference."
        )
    else:
        statement = (
            f"{head} (a blind guess flags {_percent(fpr)}): an attacker who spends the whole budget on one person "
            "can tell membership this much better than chance."
        )
    point = measured_point(epsilon)
    measured_rate, measured_attack = -1.0, ""
    if point is not None:
        measured_rate = point.true_positive_rate
        measured_attack = f"{point.attack} at ε = {_number(point.epsilon)}"
        statement += (
            f" Measured: {point.attack} at ε = {_number(point.epsilon)} flagged {_percent(point.true_positive_rate)}"
            f" of members at {_percent(fpr)} false positives."
        )
    else:
        statement += " Measured attack power at this budget: not measured (see SECURITY.md, make attacks)."
    return MembershipRisk(
        epsilon=epsilon,
        delta=delta,
        false_positive_rate=fpr,
        true_positive_rate_bound=bound,
        statement=statement,
        measured_true_positive_rate=measured_rate,
        measured_attack=measured_attack,
    )


def risk_text(risk: MembershipRisk) -> str:
    """One line for tables: the bound, and the measured point where there is one."""
    if not risk.statement:
        return "-"
    measured = (
        f"; measured {_percent(risk.measured_true_positive_rate)} ({risk.measured_attack})"
        if risk.measured_true_positive_rate >= 0
        else "; not measured"
    )
    return (
        f"TPR <= {_percent(risk.true_positive_rate_bound)} at {_percent(risk.false_positive_rate)} FPR "
        f"(ε {_number(risk.epsilon)}, δ {risk.delta:.2g}){measured}"
    )
