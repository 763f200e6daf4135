"""The rules of a study proposal and a dry run of one, recording nothing.

``proposal_problems`` is the one statement of what a proposal must satisfy: ``coordinator.state`` refuses
a proposal with any problem, and ``preview`` lists them for a researcher before they sign. ``grant_body``
is the one statement of the terms an approval issues. ``preview`` adds, per site, what the site itself said
of the study (``NodeService.DescribePolicy``, asked by the servicer over the fan-out: build, purpose, kinds,
caps, participant bucket) and the noise a researcher should expect at the per-query cap, and how many queries
the budget buys. Its ``problems`` are only what blocks approval or a query at a site (``site_problems`` reads a
site's answer); information goes to its ``notes``. One half-width per proposal (the first requested kind's, at
the per-query cap) is both every site's figure and its kind's note, printed alike (``halfwidth_text``).

**Above the study** (issue 13, item 2): a site caps each researcher's ε across all their studies there
(``GetNodeInfoResponse.epsilon_per_researcher_cap``). ``over_researcher_caps`` is the one statement of the
rule the committee applies: the ε the researcher's approved, unexpired studies may already spend at a site
(each grant's budget capped by the site's per-study cap: ``committed``) plus the new study's must not exceed
the site's per-researcher cap. The preview lists a breach as a problem; ``CoordinatorState.review`` refuses
an approval that would make one. A site that does not publish a cap (0) is not checked.

**Risk in words** (item 3): ``study_risk`` states, for the study's total ε at its most exposed site, the bound
on any membership attacker (``genogate.risk``); the preview and the grant carry it.

A preview never fails on a value it is given: anything unusable is a problem in the list. Everything here
is domain values (``genogate.studies``): the rules read a ``StudyProposal`` (converted from the signed bytes
or the request at the edge; it may name kinds this version does not know, kept as numbers, which are
problems), ``grant_body`` states the ``GrantTerms`` an approval issues (``coordinator.state`` converts them to
the ``GrantBody`` bytes the committee signs), and ``preview`` answers a ``StudyPreview`` (the servicer
converts).

OpenDP (through ``genogate.privacy``) is imported only when a preview plans its interval half-widths, so
that what imports this module for the rules (``coordinator.state``, ``genogate-coordinator status``) does
not load it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from genogate import duo, risk
from genogate.envelope import exact_decimal
from genogate.errors import GenogateError, InvalidArgument, Reason
from genogate.genome import BUILDS
from genogate.kinds import KINDS
from genogate.query import Kind
from genogate.studies import (
    GrantTerms,
    MembershipRisk,
    NodeInfo,
    SitePolicy,
    SitePreview,
    StudyPreview,
    StudyProposal,
    halfwidth_text,
)

MAX_DURATION_DAYS = 3650
MIN_PLANNABLE = Decimal("1e-12")
"""Smallest per-query ε the preview plans noise for (far below any site's floor)."""
MAX_SITES = 256
"""Most sites one proposal or query may name."""
SITE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A registered site's name (used with fullmatch): what a name must look like before it is looked up."""
MAX_TEXT = 10_000
"""Longest title or description, in characters."""
MAX_EPSILON = Decimal(10**6)
"""Largest ε a proposal may name: node ledgers refuse larger caps (``node.ledger.MAX_AMOUNT``)."""
DAY_MS = 86_400_000


@dataclass(frozen=True)
class SiteCaps:
    """What a site publishes about its budgets (GetNodeInfo); None where it does not say (0 on the wire)."""

    per_study: Decimal | None = None
    per_researcher: Decimal | None = None
    period_days: int = 0
    per_query_min: Decimal | None = None
    reachable: bool = False


def caps_of_policy(policy: SitePolicy) -> SiteCaps:
    """``SiteCaps`` from what a site said in DescribePolicy (0 on the wire: it does not say)."""
    return SiteCaps(
        per_study=epsilon_decimal(policy.epsilon_total_cap),
        per_researcher=epsilon_decimal(policy.epsilon_per_researcher_cap),
        period_days=policy.budget_period_days,
        per_query_min=epsilon_decimal(policy.epsilon_per_query_min),
        reachable=True,
    )


def caps_of(info: object) -> SiteCaps:
    """``SiteCaps`` from a ``GetNodeInfoResponse`` (None: the site could not be asked)."""
    if info is None:
        return SiteCaps()

    def dec(x: float) -> Decimal | None:
        return epsilon_decimal(x)

    return SiteCaps(
        per_study=dec(getattr(info, "epsilon_total_cap", 0.0)),
        per_researcher=dec(getattr(info, "epsilon_per_researcher_cap", 0.0)),
        period_days=int(getattr(info, "budget_period_days", 0)),
        per_query_min=dec(getattr(info, "epsilon_per_query_min", 0.0)),
        reachable=True,
    )


def study_epsilon_at(grant_total: Decimal, caps: SiteCaps | None) -> Decimal:
    """What a study with budget ``grant_total`` may spend at a site: the smaller of it and the site's cap."""
    if caps is None or caps.per_study is None:
        return grant_total
    return min(grant_total, caps.per_study)


def over_researcher_caps(
    proposed: Decimal, sites: list[str], committed: Mapping[str, Decimal], caps: Mapping[str, SiteCaps]
) -> list[str]:
    """One line per site where the researcher's committed ε plus this study's would exceed the site's
    per-researcher cap, naming the site and the numbers; empty when none does (or no site says its cap)."""
    out = []
    for site in dict.fromkeys(sites):
        c = caps.get(site)
        if c is None or c.per_researcher is None:
            continue
        new = study_epsilon_at(proposed, c)
        already = committed.get(site, Decimal(0))
        if already + new > c.per_researcher:
            period = f" over {c.period_days} days" if c.period_days else ""
            out.append(
                f"{site}: the researcher's approved studies there may spend ε {_fmt(already)} and this study "
                f"{_fmt(new)}, {_fmt(already + new)} in all, over the site's cap of ε {_fmt(c.per_researcher)} "
                f"per researcher{period}"
            )
    return out


def _fmt(x: Decimal) -> str:
    return f"{x.normalize():f}" if x == x.to_integral_value() or abs(x) >= Decimal("1e-6") else f"{x:.3g}"


def study_risk(p: StudyProposal, caps: Mapping[str, SiteCaps] | None = None) -> MembershipRisk | None:
    """The membership bound for the study's total ε at its most exposed site (the proposal's total capped by
    each site's per-study cap, where known); None when the proposal's ε is unusable."""
    total = epsilon_decimal(p.epsilon_total_per_site)
    if total is None:
        return None
    caps = caps or {}
    worst = max((study_epsilon_at(total, caps.get(s)) for s in p.sites), default=total)
    return risk.membership_risk(float(worst), risk.DEFAULT_DELTA)


def epsilon_decimal(x: float) -> Decimal | None:
    """A wire ε read exactly (``genogate.envelope.exact_decimal``); None unless positive, finite and at most
    MAX_EPSILON."""
    value = exact_decimal(x)
    return value if value is not None and value <= MAX_EPSILON else None


def study_assembly(p: StudyProposal, builds: Mapping[str, str]) -> tuple[str, list[str]]:
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


def check_shape(p: StudyProposal) -> None:
    """Refuse (``InvalidArgument``) a proposal that cannot even be previewed: an ε that is not a positive
    finite number at most ``MAX_EPSILON`` (INVALID_EPSILON), a duration outside 1 to ``MAX_DURATION_DAYS``, no
    site or more than ``MAX_SITES``, a site name that cannot be one, an over-long title (INVALID_STUDY)."""
    for value, name in (
        (p.epsilon_total_per_site, "epsilon_total_per_site"),
        (p.epsilon_per_query_cap, "epsilon_per_query_cap"),
    ):
        if epsilon_decimal(value) is None:
            raise InvalidArgument(
                f"{name}={value!r}",
                reason=Reason.INVALID_EPSILON,
                message=f"{name} must be a positive finite number at most {MAX_EPSILON}",
            )
    problems = []
    if not 1 <= p.duration_days <= MAX_DURATION_DAYS:
        problems.append(f"duration_days must be 1 to {MAX_DURATION_DAYS}")
    if not 1 <= len(p.sites) <= MAX_SITES:
        problems.append(f"a study names 1 to {MAX_SITES} sites")
    elif not all(SITE_NAME_RE.fullmatch(s) for s in p.sites):
        problems.append("a site name is 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)")
    if len(p.title) > MAX_TEXT or len(p.description) > MAX_TEXT:
        problems.append(f"title and description are at most {MAX_TEXT} characters")
    if problems:
        raise InvalidArgument("; ".join(problems), reason=Reason.INVALID_STUDY, message="; ".join(problems))


def proposal_problems(p: StudyProposal, registered: Mapping[str, str]) -> list[str]:
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
    if not p.kinds:
        problems.append("no query kinds requested")
    if bad := [str(k) for k in p.kinds if not isinstance(k, Kind)]:
        problems.append(f"unknown or unspecified query kinds: {', '.join(bad)}")
    if len(set(p.kinds)) != len(p.kinds):
        problems.append("a query kind is requested twice")
    if not p.sites:
        problems.append("no sites requested")
    if len(p.sites) > MAX_SITES:
        problems.append(f"{len(p.sites)} sites requested; at most {MAX_SITES}")
    elif unknown := [s for s in p.sites if s not in registered_sites]:
        named = [s for s in unknown if SITE_NAME_RE.fullmatch(s)]
        malformed = len(unknown) - len(named)
        listed = ", ".join(named[:20]) + (f" and {len(named) - 20} more" if len(named) > 20 else "")
        if named:
            problems.append(f"unknown sites: {listed}")
        if malformed:
            problems.append(
                f"{malformed} site name{'s are' if malformed > 1 else ' is'} not a site name "
                "(1-64 of A-Z a-z 0-9 . _ -)"
            )
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
    p: StudyProposal,
    *,
    study_id: str,
    researcher_public_key: bytes,
    approved_ms: int,
    revocation_epoch: int,
    assembly: str,
    caps: Mapping[str, SiteCaps] | None = None,
) -> GrantTerms:
    """The terms an approval at ``approved_ms`` issues: in force from then for ``duration_days``, on the
    genome build ``assembly`` (``study_assembly``), with the membership bound of its budget (``study_risk``,
    using the sites' per-study ``caps`` where known). The committee signs them as a ``GrantBody``
    (``genogate.convert.grant_terms_to_pb``, serialized deterministically)."""
    return GrantTerms(
        study_id=study_id,
        researcher_key_fingerprint=p.researcher_key_fingerprint,
        purpose=p.purpose,
        kinds=tuple(p.kinds),
        sites=tuple(p.sites),
        epsilon_total=p.epsilon_total_per_site,
        epsilon_per_query_cap=p.epsilon_per_query_cap,
        not_before_unix_ms=approved_ms,
        not_after_unix_ms=approved_ms + p.duration_days * DAY_MS,
        revocation_epoch=revocation_epoch,
        per_site_breakdown=p.per_site_breakdown,
        researcher_public_key=researcher_public_key,
        assembly=assembly,
        risk=study_risk(p, caps),
    )


def _halfwidth(kind: Kind, epsilon: Decimal) -> float | None:
    """95% half-width of one released count of ``kind`` (one variant) at ``epsilon``; None if unplannable.

    Below ``MIN_PLANNABLE`` nothing is planned: no node answers there, and OpenDP takes 0.3-0.5 s to refuse
    ε = 5e-324 (work any caller could ask of PreviewStudy, which needs no signature)."""
    if epsilon < MIN_PLANNABLE:
        return None
    from opendp.mod import OpenDPException  # here, not at import: see the module docstring

    from genogate import privacy

    try:
        hw = privacy.plan(KINDS[kind].sensitivity(1), epsilon, Decimal(0)).ci95_halfwidth
    except (GenogateError, ArithmeticError, ValueError, OpenDPException):
        return None
    # At a huge epsilon the scale is tiny and OpenDP's accuracy helper answers -inf: the noise is nil.
    return None if math.isnan(hw) or hw == math.inf else max(hw, 0.0)


def typical_kind(p: StudyProposal) -> Kind:
    """The kind whose noise a preview's per-site figure shows: the first requested kind this version knows
    (cohort-count when there is none)."""
    return next((k for k in p.kinds if isinstance(k, Kind)), Kind.COHORT_COUNT)


def _budget_lines(p: StudyProposal) -> list[str]:
    """How many queries of each requested kind the per-site budget buys at the cap, and their noise (the
    figure the per-site column shows for the first kind: ``_halfwidth`` printed by ``halfwidth_text``)."""
    total, cap = epsilon_decimal(p.epsilon_total_per_site), epsilon_decimal(p.epsilon_per_query_cap)
    if total is None or cap is None or cap > total:
        return []
    try:
        ratio = total / cap
        n = int(total // cap) if ratio < 10**12 else None
    except (ArithmeticError, InvalidOperation):  # DivisionImpossible at ratios past the context's precision
        n = None
    lines: list[str] = []
    for kind in dict.fromkeys(k for k in p.kinds if isinstance(k, Kind)):
        hw = _halfwidth(kind, cap)
        count = "more than 10^12 queries" if n is None else f"{n} {'query' if n == 1 else 'queries'}"
        what = f"{kind.label}: {count}"
        what += f"{' of 1 variant' if KINDS[kind].per_variant else ''} at eps {cap}"
        shown = halfwidth_text(hw) if hw is not None else ""
        lines.append(f"{what}, each count {shown} (95%)" if shown else f"{what}: noise not plannable")
    return lines


def site_problems(
    site: str,
    said: SitePolicy,
    *,
    registered_build: str,
    assembly: str,
    cap: Decimal | None,
) -> tuple[list[str], list[str]]:
    """What a site's own answer (``said``) means for the proposal: its real problems (the purpose or a kind
    refused, the per-query cap above the site's, a build other than registered or asked) and information
    (kinds answered under a condition)."""
    problems, notes = [], []
    if not said.purpose_accepted:
        problems.append(f"{site}: {said.purpose_reason or 'the purpose is not accepted'}")
    for k in said.kinds:
        if not k.allowed:
            label = k.kind.label if isinstance(k.kind, Kind) else str(k.kind)
            problems.append(f"{site}: refuses {label}: {k.note or 'not answered by its policy'}")
        elif k.note:
            label = k.kind.label if isinstance(k.kind, Kind) else str(k.kind)
            notes.append(f"{site}: {label}: {k.note}")
    site_cap = epsilon_decimal(said.epsilon_per_query_cap)
    if cap is not None and site_cap is not None and cap > site_cap:
        problems.append(
            f"{site}: the per-query cap ε {_fmt(cap)} is above the site's cap of ε {_fmt(site_cap)} per query: "
            "queries asking more are refused there"
        )
    if said.genome_build and registered_build and said.genome_build != registered_build:
        problems.append(
            f"{site}: serves {said.genome_build[:20]} but is registered as {registered_build}: "
            "the operator must update its registration"
        )
    elif said.genome_build and assembly and said.genome_build != assembly:
        problems.append(f"{site}: serves {said.genome_build[:20]}, and the study asks for {assembly}")
    return problems, notes


def preview(
    proposal: StudyProposal,
    nodes: Mapping[str, NodeInfo],
    *,
    researcher_public_key: bytes = b"",
    revocation_epoch: int = 0,
    now_ms: int | None = None,
    caps: Mapping[str, SiteCaps] | None = None,
    committed: Mapping[str, Decimal] | None = None,
    spent: Mapping[str, float] | None = None,
    epsilon_per_query_min: Decimal | None = None,
    policies: Mapping[str, SitePolicy | str] | None = None,
) -> StudyPreview:
    """A dry run of ``proposal`` against the registered ``nodes`` (by name), as domain values (the servicer
    converts them to its response).

    ``grant_body`` is what an approval at ``now_ms`` (default: now) would issue, with an empty study id
    and unsigned; pass the researcher's key and the current revocation epoch to fill those terms.
    ``problems`` lists only what blocks approval or a query at a site: the proposal's own problems, sites
    unknown or unreachable, a purpose or kind a site refuses, the per-query cap above a site's cap or below its
    floor, a build mismatch, a researcher cap exceeded. ``notes`` is information: for a valid budget, one line
    per requested kind saying how many queries fit at the cap and with what noise, and kinds a site answers
    under a condition.

    ``policies`` is what each registered site said of the proposal (``NodeService.DescribePolicy``, asked by
    the servicer), or why it could not be asked (a message); a site missing from it was not asked. A site's
    caps come from its answer, else from ``caps`` (GetNodeInfo), else ``epsilon_total_cap`` is the proposal's
    own per-site total and the others 0 ("the site does not say"). ``committed`` is the proposing researcher's
    committed ε per site (``CoordinatorState.committed``), ``spent`` what each site's ledger says they spent
    over its period (negative: not known). ``epsilon_per_query_min`` is the coordinator's floor, used where a
    site publishes none. Every site's ``count_ci95_half_width`` is the half-width of one answer of the first
    requested kind at the per-query cap: the very number the notes print for that kind."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    committed, spent, policies = committed or {}, spent or {}, policies or {}
    caps = dict(caps or {})
    for site, answer in policies.items():
        if isinstance(answer, SitePolicy):
            caps[site] = caps_of_policy(answer)
    cap = epsilon_decimal(proposal.epsilon_per_query_cap)
    halfwidth = (_halfwidth(typical_kind(proposal), cap) if cap is not None else None) or 0.0
    builds = {name: node.genome_build for name, node in nodes.items()}
    assembly, _ = study_assembly(proposal, builds)
    sites = []
    site_problems_: list[str] = []
    notes: list[str] = []
    for site in proposal.sites:
        c = caps.get(site, SiteCaps())
        said = policies.get(site)
        sp = SitePreview(
            site=site,
            registered=site in nodes,
            reachable=isinstance(said, SitePolicy) or (said is None and c.reachable),
            purpose_accepted=isinstance(said, SitePolicy) and said.purpose_accepted,
            kinds_refused=tuple(k.kind for k in said.kinds if not k.allowed) if isinstance(said, SitePolicy) else (),
            epsilon_total_cap=float(c.per_study) if c.per_study is not None else proposal.epsilon_total_per_site,
            count_ci95_half_width=halfwidth,
            epsilon_per_researcher_cap=float(c.per_researcher or 0),
            researcher_epsilon_committed=float(committed.get(site, Decimal(0))),
            researcher_epsilon_spent=spent.get(site, -1.0),
            budget_period_days=c.period_days,
            epsilon_per_query_min=float(c.per_query_min or 0),
        )
        if isinstance(said, SitePolicy):
            sp = dataclasses.replace(
                sp,
                genome_build=said.genome_build,
                version=said.version,
                note=said.purpose_reason,
                kinds=said.kinds,
                epsilon_per_query_cap=said.epsilon_per_query_cap,
                participants_at_least=said.participants_at_least,
                participants_below=said.participants_below,
            )
            more, info = site_problems(
                site, said, registered_build=builds.get(site, ""), assembly=proposal.assembly or assembly, cap=cap
            )
            site_problems_ += more
            notes += info
        elif isinstance(said, str):
            sp = dataclasses.replace(sp, note=said)
            site_problems_.append(f"{site}: could not be asked ({said})")
        sites.append(sp)
        floor = c.per_query_min or epsilon_per_query_min
        if cap is not None and floor is not None and cap < floor:
            site_problems_.append(
                f"{site}: refuses queries below ε {_fmt(floor)}, and the per-query cap {_fmt(cap)} is below it"
            )
    terms = grant_body(
        proposal,
        study_id="",
        researcher_public_key=researcher_public_key,
        approved_ms=now,
        revocation_epoch=revocation_epoch,
        assembly=assembly,
        caps=caps,
    )
    total = epsilon_decimal(proposal.epsilon_total_per_site)
    over = over_researcher_caps(total, list(proposal.sites), committed, caps) if total is not None else []
    problems = proposal_problems(proposal, builds) + site_problems_ + over
    return StudyPreview(
        grant_body=terms,
        sites=tuple(sites),
        problems=tuple(problems),
        risk=terms.risk,
        notes=tuple(_budget_lines(proposal) + notes),
    )
