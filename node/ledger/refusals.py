"""The ledger's budget refusals, with their numbers: what the query asks, what is left, the cap and its period.

Who reads them: the caller of ``Ledger.begin``'s query, which is the study's researcher (a local study's, by
certificate) or the coordinator relaying a researcher-signed query back to that researcher. So a message states
only figures that caller already owns: the study's own spending (every release carries it in
``budget_after``), the researcher's own spending across their studies (also in ``budget_after``), and the
caps, which are policy. The node-wide cap counts every researcher's spending, so its message states the cap,
the period and what the query asks, never what the node has spent or has left: that would disclose other
studies' spending. No figure here depends on genotype data. Amounts are in the ledger's 1e-12 units.
"""

from __future__ import annotations

from genogate.errors import Reason, ResourceExhausted, number
from node.ledger.amounts import amount


def _n(units: int) -> str:
    return number(amount(units))


def _left(spent: int, cap: int) -> str:
    return _n(max(0, cap - spent))


def study_exhausted(
    study_id: str, eps: int, dlt: int, spent_eps: int, spent_dlt: int, eps_cap: int, dlt_cap: int
) -> ResourceExhausted:
    """BUDGET_EXHAUSTED: the charge (``eps``, ``dlt``) does not fit under the study's caps at this site, given
    what the study spent before it (``spent_eps``, ``spent_dlt``). δ is stated when the query asks any or when
    it is δ that does not fit."""
    said = (
        f"the query asks ε {_n(eps)}; the study has ε {_left(spent_eps, eps_cap)} left of its cap of "
        f"ε {_n(eps_cap)} at this site (ε {_n(spent_eps)} spent; the cap holds for the study's whole duration)"
    )
    if dlt > 0 or spent_dlt + dlt > dlt_cap:
        said += (
            f"; it asks δ {_n(dlt)}, with δ {_left(spent_dlt, dlt_cap)} left of the cap of δ {_n(dlt_cap)}"
            f" (δ {_n(spent_dlt)} spent)"
        )
    return ResourceExhausted(
        f"study {study_id!r}: spent (eps {amount(spent_eps)}, delta {amount(spent_dlt)}) + charge ({amount(eps)},"
        f" {amount(dlt)}) exceeds the cap ({amount(eps_cap)}, {amount(dlt_cap)})",
        reason=Reason.BUDGET_EXHAUSTED,
        message=f"the study's privacy budget at this site is exhausted: {said}",
    )


def researcher_exhausted(researcher: str, eps: int, spent: int, cap: int, period_days: int) -> ResourceExhausted:
    """RESEARCHER_BUDGET_EXHAUSTED: the researcher's own spending across their studies here, the cap, the period."""
    return ResourceExhausted(
        f"researcher {researcher!r}: spent {amount(spent)} + charge {amount(eps)} exceeds the researcher cap"
        f" {amount(cap)} over {period_days} days",
        reason=Reason.RESEARCHER_BUDGET_EXHAUSTED,
        message=f"the researcher's privacy budget at this site across all their studies over the last {period_days}"
        f" days is exhausted: the query asks ε {_n(eps)}; the researcher has ε {_left(spent, cap)} left of this"
        f" site's cap of ε {_n(cap)} per researcher per {period_days} days (ε {_n(spent)} spent across"
        " their studies)",
    )


def node_exhausted(eps: int, spent: int, cap: int, period_days: int) -> ResourceExhausted:
    """NODE_BUDGET_EXHAUSTED: the cap and the period only (what everyone spent stays in the detail, for the
    node's operator)."""
    return ResourceExhausted(
        f"node: spent {amount(spent)} + charge {amount(eps)} exceeds the node cap {amount(cap)} over {period_days}"
        " days",
        reason=Reason.NODE_BUDGET_EXHAUSTED,
        message=f"this site's privacy budget across all researchers over the last {period_days} days is exhausted:"
        f" the query asks ε {_n(eps)} and this site's cap across everyone is ε {_n(cap)} per {period_days}"
        " days (what other studies spent is not disclosed)",
    )
