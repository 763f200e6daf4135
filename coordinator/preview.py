"""The rules of a study proposal and a dry run of one, recording nothing.

``proposal_problems`` is the one statement of what a proposal must satisfy: ``coordinator.state`` refuses
a proposal with any problem, and ``preview`` lists them for a researcher before they sign. ``grant_body``
is the one statement of the terms an approval issues. ``preview`` adds, per site, the noise a researcher
should expect at the per-query cap, and how many queries the budget buys.

Importing this module imports OpenDP (through ``node.dp``) for the interval half-widths.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from decimal import Decimal

from opendp.mod import OpenDPException

from genogate import duo
from genogate.errors import GenogateError
from genogate.genome import BUILDS
from genogate.query import Kind
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from node import dp

MAX_DURATION_DAYS = 3650
MAX_EPSILON = Decimal(10**6)
"""Largest ε a proposal may name: node ledgers refuse larger caps (``node.ledger.MAX_AMOUNT``)."""
DAY_MS = 86_400_000
_PER_VARIANT = (Kind.ALLELE_FREQUENCY, Kind.CASE_CONTROL)


def epsilon_decimal(x: float) -> Decimal | None:
    """A wire ε read exactly (``Decimal(repr(x))``); None unless positive, finite and at most MAX_EPSILON."""
    if not math.isfinite(x) or x <= 0:
        return None
    value = Decimal(repr(x))
    return value if value <= MAX_EPSILON else None


def study_assembly(p: cpb.StudyProposal, builds: Mapping[str, str]) -> tuple[str, list[str]]:
    """The genome build a study's queries use (the proposal's own, else the one its sites share) and the
    problems with it: an unknown build, sites that differ in build, sites on another build than the proposal
    names. ``builds`` maps registered site names to their builds."""
    problems: list[str] = []
    if p.assembly and p.assembly not in BUILDS:
        problems.append(f"assembly {p.assembly[:20]!r} is not one of {', '.join(BUILDS)}")
    on = {site: builds[site] for site in p.sites if site in builds}
    distinct = sorted(set(on.values()))
    if len(distinct) > 1:
        listed = ", ".join(f"{site} {build}" for site, build in sorted(on.items()))
        problems.append(f"the sites differ in genome build ({listed}): a study's sites must share one build")
    elif p.assembly and distinct and distinct[0] != p.assembly:
        problems.append(f"the study asks for {p.assembly} but its sites' data is on {distinct[0]}")
    resolved = p.assembly or (distinct[0] if len(distinct) == 1 else "")
    return resolved, problems


def proposal_problems(p: cpb.StudyProposal, registered: Mapping[str, str]) -> list[str]:
    """Every reason the proposal cannot be accepted, human-readable; empty when none. ``registered`` maps
    each registered site to its genome build (liftover is out of scope: a study's sites share one build).

    The researcher key is not checked here (``CoordinatorState.propose`` authenticates it)."""
    registered_sites = registered.keys()
    problems: list[str] = []
    if not p.title.strip():
        problems.append("the title is empty")
    try:
        duo.parse_purpose(p.purpose)
    except ValueError as exc:
        problems.append(f"purpose {p.purpose!r}: {exc}")
    valid = {kind.value for kind in Kind}
    if not p.kinds:
        problems.append("no query kinds requested")
    if bad := [str(k) for k in p.kinds if k not in valid]:
        problems.append(f"unknown or unspecified query kinds: {', '.join(bad)}")
    if len(set(p.kinds)) != len(p.kinds):
        problems.append("a query kind is requested twice")
    if not p.sites:
        problems.append("no sites requested")
    if unknown := [s for s in p.sites if s not in registered_sites]:
        problems.append(f"unknown sites: {', '.join(unknown)}")
    if len(set(p.sites)) != len(p.sites):
        problems.append("a site is requested twice")
    total, cap = epsilon_decimal(p.epsilon_total_per_site), epsilon_decimal(p.epsilon_per_query_cap)
    for value, name in ((total, "epsilon_total_per_site"), (cap, "epsilon_per_query_cap")):
        if value is None:
            problems.append(f"{name} must be a positive finite number at most {MAX_EPSILON}")
    if total is not None and cap is not None and cap > total:
        problems.append(f"epsilon_per_query_cap {cap} exceeds epsilon_total_per_site {total}")
    if not 1 <= p.duration_days <= MAX_DURATION_DAYS:
        problems.append(f"duration_days must be 1 to {MAX_DURATION_DAYS}, got {p.duration_days}")
    problems += study_assembly(p, registered)[1]
    return problems


def grant_body(
    p: cpb.StudyProposal,
    *,
    study_id: str,
    researcher_public_key: bytes,
    approved_ms: int,
    revocation_epoch: int,
    assembly: str,
) -> pb.GrantBody:
    """The terms an approval at ``approved_ms`` issues: in force from then for ``duration_days``, on the
    genome build ``assembly`` (``study_assembly``)."""
    return pb.GrantBody(
        study_id=study_id,
        researcher_key_fingerprint=p.researcher_key_fingerprint,
        researcher_public_key=researcher_public_key,
        purpose=p.purpose,
        kinds=list(p.kinds),
        sites=list(p.sites),
        epsilon_total=p.epsilon_total_per_site,
        epsilon_per_query_cap=p.epsilon_per_query_cap,
        not_before_unix_ms=approved_ms,
        not_after_unix_ms=approved_ms + p.duration_days * DAY_MS,
        revocation_epoch=revocation_epoch,
        per_site_breakdown=p.per_site_breakdown,
        assembly=assembly,
    )


def _halfwidth(kind: Kind, epsilon: Decimal) -> float | None:
    """95% half-width of one released count of ``kind`` (one variant) at ``epsilon``; None if unplannable."""
    try:
        hw = dp.plan(dp.SENSITIVITY[kind](1), epsilon, Decimal(0)).ci95_halfwidth
    except (GenogateError, ArithmeticError, ValueError, OpenDPException):
        return None
    # At a huge epsilon the scale is tiny and OpenDP's accuracy helper answers -inf: the noise is nil.
    return None if math.isnan(hw) or hw == math.inf else max(hw, 0.0)


def _budget_lines(p: cpb.StudyProposal) -> list[str]:
    """How many queries of each requested kind the per-site budget buys at the cap, and their noise."""
    total, cap = epsilon_decimal(p.epsilon_total_per_site), epsilon_decimal(p.epsilon_per_query_cap)
    if total is None or cap is None or cap > total:
        return []
    n = int(total // cap)
    lines: list[str] = []
    for kind in dict.fromkeys(Kind(k) for k in p.kinds if k in {kind.value for kind in Kind}):
        hw = _halfwidth(kind, cap)
        what = f"{kind.label}: {n} {'query' if n == 1 else 'queries'}"
        what += f"{' of 1 variant' if kind in _PER_VARIANT else ''} at eps {cap}"
        lines.append(f"{what}, each count ±{hw:.3g} (95%)" if hw is not None else f"{what}: noise not plannable")
    return lines


def preview(
    proposal: cpb.StudyProposal,
    nodes: Mapping[str, cpb.NodeInfo],
    *,
    researcher_public_key: bytes = b"",
    revocation_epoch: int = 0,
    now_ms: int | None = None,
) -> cpb.PreviewStudyResponse:
    """A dry run of ``proposal`` against the registered ``nodes`` (by name).

    ``grant_body`` is what an approval at ``now_ms`` (default: now) would issue, with an empty study id
    and unsigned; pass the researcher's key and the current revocation epoch to fill those terms.
    ``problems`` lists every blocking problem first, then, for a valid budget, one line per requested kind
    saying how many queries fit at the cap and with what noise (so it is never empty for a valid proposal).

    Per site, ``registered`` and the noise are computed here; ``epsilon_total_cap`` is the proposal's own
    per-site total. ``reachable`` and ``purpose_accepted`` stay False and ``kinds_refused`` empty: only the
    node can answer them, and the server fills them by asking each registered node."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    cap = epsilon_decimal(proposal.epsilon_per_query_cap)
    halfwidth = (_halfwidth(Kind.COHORT_COUNT, cap) if cap is not None else None) or 0.0
    sites = [
        cpb.SitePreview(
            site=site,
            registered=site in nodes,
            epsilon_total_cap=proposal.epsilon_total_per_site,
            count_ci95_half_width=halfwidth,
        )
        for site in proposal.sites
    ]
    builds = {name: node.genome_build for name, node in nodes.items()}
    body = grant_body(
        proposal,
        study_id="",
        researcher_public_key=researcher_public_key,
        approved_ms=now,
        revocation_epoch=revocation_epoch,
        assembly=study_assembly(proposal, builds)[0],
    )
    problems = proposal_problems(proposal, builds) + _budget_lines(proposal)
    return cpb.PreviewStudyResponse(grant_body=body, sites=sites, problems=problems)
