"""Plain-text output for people: aligned tables, key/value blocks, and the renderings of the studies, nodes,
researchers and previews (``genogate.studies``) that the ``genogate`` command line prints (machine output is
JSON, produced elsewhere).

``table`` pads every column to its widest cell; a column whose cells are all numbers (or empty) is
right-aligned. Cells are rendered by ``cell``: ``None`` as ``-``, booleans as yes/no, floats compactly.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from genogate.query import Kind

if TYPE_CHECKING:  # the renderings of studies import them when called: ``table`` alone stays light
    from genogate.studies import (
        GrantTerms,
        NodeInfo,
        Researcher,
        Review,
        ReviewBody,
        ReviewDecision,
        SitePreview,
        Study,
        StudyPreview,
        StudyProposal,
        StudyState,
    )

EMPTY = "-"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def cell(value: Any) -> str:
    """One value as table text."""
    if value is None or value == "":
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, indent: str = "") -> str:
    """An aligned plain-text table (no trailing spaces); numeric columns are right-aligned."""
    raw = [list(r) for r in rows]
    for r in raw:
        if len(r) != len(headers):
            raise ValueError(f"row has {len(r)} cells, the table has {len(headers)} columns")
    numeric = [
        any(_is_number(r[i]) for r in raw) and all(_is_number(r[i]) or r[i] is None or r[i] == "" for r in raw)
        for i in range(len(headers))
    ]
    text = [[cell(v) for v in r] for r in raw]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if right else c.ljust(w) for c, w, right in zip(cells, widths, numeric, strict=True)]
        return (indent + "  ".join(out)).rstrip()

    return "\n".join([line(list(headers))] + [line(r) for r in text])


def kv(pairs: Iterable[tuple[str, Any]], *, indent: str = "") -> str:
    """``key: value`` lines with the values aligned."""
    items = [(k, cell(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0) + 1
    return "\n".join(f"{indent}{(k + ':').ljust(width)} {v}".rstrip() for k, v in items)


def when(unix_ms: int) -> str:
    """A timestamp in milliseconds as UTC text (``-`` for 0)."""
    if unix_ms <= 0:
        return EMPTY
    return dt.datetime.fromtimestamp(unix_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# Enums ------------------------------------------------------------------------------------------------------


def state_label(state: StudyState) -> str:
    return state.name.lower()


def decision_label(decision: ReviewDecision | int) -> str:
    from genogate.studies import ReviewDecision

    if isinstance(decision, ReviewDecision):
        return decision.name.lower()
    return "unspecified" if decision == 0 else str(int(decision))


def kind_label(kind: Kind | int) -> str:
    if isinstance(kind, Kind):
        return kind.label
    return "unspecified" if kind == 0 else str(int(kind))


def kinds_text(kinds: Iterable[Kind | int]) -> str:
    return ",".join(kind_label(k) for k in kinds)


# Studies, previews and the registry -----------------------------------------------------------------------


def _reviews(study: Study) -> list[tuple[ReviewBody | None, Review]]:
    from genogate.convert import review_body_of

    out: list[tuple[ReviewBody | None, Review]] = []
    for review in study.reviews:
        try:
            out.append((review_body_of(review), review))
        except Exception:  # noqa: BLE001 - a display must not fail on one odd review
            out.append((None, review))
    return out


def approvals(study: Study) -> str:
    """``approved/required``, counting distinct reviewer keys that approved."""
    from genogate.studies import ReviewDecision

    keys = {r.reviewer_key_id for body, r in _reviews(study) if body and body.decision == ReviewDecision.APPROVE}
    return f"{len(keys)}/{study.approvals_required}"


def studies(items: Sequence[Study]) -> str:
    if not items:
        return "no studies"
    rows = [
        (
            s.study_id,
            state_label(s.state),
            s.proposal.title,
            s.proposal.purpose,
            ",".join(s.proposal.sites),
            s.proposal.epsilon_total_per_site,
            approvals(s),
            when(s.created_unix_ms),
        )
        for s in items
    ]
    return table(("ID", "STATE", "TITLE", "PURPOSE", "SITES", "EPSILON/SITE", "APPROVALS", "CREATED"), rows)


def proposal_pairs(p: StudyProposal) -> list[tuple[str, Any]]:
    return [
        ("title", p.title),
        ("purpose", p.purpose),
        ("kinds", kinds_text(p.kinds)),
        ("sites", ",".join(p.sites)),
        ("epsilon per site", p.epsilon_total_per_site),
        ("epsilon per query cap", p.epsilon_per_query_cap),
        ("duration", f"{p.duration_days} days"),
        ("per-site breakdown", p.per_site_breakdown),
        ("researcher key", p.researcher_key_fingerprint),
        ("description", p.description),
    ]


def study(s: Study, *, revocation_epoch: int | None = None) -> str:
    from genogate import risk
    from genogate.convert import grant_terms_of

    pairs: list[tuple[str, Any]] = [
        ("study", s.study_id),
        ("state", state_label(s.state)),
        ("approvals", approvals(s)),
        *proposal_pairs(s.proposal),
        ("proposal sha256", s.proposal_sha256.hex()),
        ("created", when(s.created_unix_ms)),
        ("updated", when(s.updated_unix_ms)),
    ]
    if s.grant is not None:
        pairs.append(("grant signed by", s.grant.committee_key_id))
        body: GrantTerms | None
        try:
            body = grant_terms_of(s.grant)
        except Exception:  # noqa: BLE001 - shown as unreadable, never fatal
            body = None
        if body is not None:
            pairs += [
                ("grant valid from", when(body.not_before_unix_ms)),
                ("grant valid to", when(body.not_after_unix_ms)),
            ]
            if body.risk is not None:
                pairs.append(("membership risk", body.risk.statement))
    elif s.proposal.epsilon_total_per_site > 0 and math.isfinite(s.proposal.epsilon_total_per_site):
        # Before approval: the bound for the proposal's own total (a site's cap can only make it smaller).
        pairs.append(("membership risk", risk.membership_risk(s.proposal.epsilon_total_per_site).statement))
    if revocation_epoch is not None:
        pairs.append(("revocation epoch", revocation_epoch))
    out = [kv(pairs)]
    reviewed = _reviews(s)
    if reviewed:
        rows = [
            (
                decision_label(b.decision) if b else "unreadable",
                r.reviewer_key_id[:16],
                when(b.reviewed_unix_ms) if b else None,
                b.comment if b else None,
            )
            for b, r in reviewed
        ]
        out += ["", "reviews:", table(("DECISION", "REVIEWER", "WHEN", "COMMENT"), rows, indent="  ")]
    return "\n".join(out)


def participants_text(at_least: int, below: int) -> str | None:
    """A site's participant bucket as people read it: ``<10``, ``100-999``; None when not published."""
    if below <= 0:
        return None
    return f"<{below:,}" if at_least <= 0 else f"{at_least:,}-{below - 1:,}"


def _kinds_allowed(s: SitePreview) -> str | None:
    if not s.kinds:
        return None
    allowed = [kind_label(k.kind) + ("*" if k.note else "") for k in s.kinds if k.allowed]
    return ",".join(allowed) if allowed else "none"


def preview(response: StudyPreview) -> str:
    from genogate.studies import halfwidth_text

    g = response.grant_body
    out = [
        kv(
            [
                ("purpose", g.purpose),
                ("kinds", kinds_text(g.kinds)),
                ("sites", ",".join(g.sites)),
                ("assembly", g.assembly),
                ("epsilon per site", g.epsilon_total),
                ("epsilon per query cap", g.epsilon_per_query_cap),
                ("valid from", when(g.not_before_unix_ms)),
                ("valid to", when(g.not_after_unix_ms)),
                ("per-site breakdown", g.per_site_breakdown),
            ]
        )
    ]
    if response.sites:
        typical = next((k for k in g.kinds if isinstance(k, Kind)), Kind.COHORT_COUNT)
        said = [
            (
                s.site,
                s.registered,
                s.reachable,
                s.genome_build,
                s.purpose_accepted if s.reachable else None,
                _kinds_allowed(s),
                participants_text(s.participants_at_least, s.participants_below),
                halfwidth_text(s.count_ci95_half_width) if s.registered and s.count_ci95_half_width > 0 else None,
            )
            for s in response.sites
        ]
        headers = ("SITE", "REGISTERED", "REACHABLE", "BUILD", "PURPOSE OK", "KINDS ALLOWED", "PARTICIPANTS", "CI95")
        out += ["", table(headers, said)]
        out += [
            "",
            "as each site said itself; KINDS ALLOWED: of the requested (* under a condition, see notes); "
            "PARTICIPANTS: whose consent admits the purpose, in powers of ten (- where the site does not say); "
            f"CI95: the 95% half-width of one {kind_label(typical)} answer at the per-query cap",
        ]
        budgets = [
            (
                s.site,
                s.epsilon_per_query_min if s.epsilon_per_query_min else None,
                s.epsilon_per_query_cap if s.epsilon_per_query_cap else None,
                s.epsilon_total_cap if s.epsilon_total_cap else None,
                s.epsilon_per_researcher_cap if s.epsilon_per_researcher_cap else None,
                s.budget_period_days or None,
                s.researcher_epsilon_committed,
                s.researcher_epsilon_spent if s.researcher_epsilon_spent >= 0 else None,
            )
            for s in response.sites
        ]
        headers = (
            "SITE",
            "EPSILON MIN",
            "QUERY CAP",
            "STUDY CAP",
            "RESEARCHER CAP",
            "PERIOD DAYS",
            "COMMITTED",
            "SPENT",
        )
        out += ["", table(headers, budgets)]
        out += [
            "",
            "QUERY CAP, STUDY CAP: the site's own caps on ε per query and per study; RESEARCHER CAP: its cap on ε per "
            "researcher across all their studies there; COMMITTED: what the researcher's approved studies may spend "
            "there; SPENT: what the site's ledger says they spent in its period (- where unknown)",
        ]
    if response.risk is not None:
        out += ["", f"membership risk: {response.risk.statement}"]
    if response.notes:
        out += ["", "notes:"] + [f"  - {n}" for n in response.notes]
    if response.problems:
        out += ["", "problems:"] + [f"  - {p}" for p in response.problems]
    else:
        out += ["", "no problems found"]
    return "\n".join(out)


def nodes(items: Sequence[NodeInfo]) -> str:
    if not items:
        return "no nodes"
    rows = [
        (n.name, n.endpoint, n.genome_build, n.pin, n.version, when(n.registered_unix_ms), when(n.updated_unix_ms))
        for n in items
    ]
    return table(("NAME", "ENDPOINT", "BUILD", "PINNED (SHA-256)", "VERSION", "REGISTERED", "UPDATED"), rows)


def node_change(before: NodeInfo, after: NodeInfo) -> str:
    """What ``nodes update`` changed, field by field (old -> new), or that nothing changed."""
    fields = (("endpoint", "endpoint"), ("pinned", "pin"), ("build", "genome_build"))
    changed = [
        (label, f"{getattr(before, f)} -> {getattr(after, f)}")
        for label, f in fields
        if getattr(before, f) != getattr(after, f)
    ]
    if not changed:
        return f"{after.name}: nothing changed (version {after.version})\n" + nodes([after])
    return kv([("node", after.name), *changed, ("version", f"{before.version} -> {after.version}")])


def node_removed(node: NodeInfo, studies: Sequence[str]) -> str:
    """What ``nodes remove`` did, and which active studies still name the site (forced removal)."""
    lines = [f"removed {node.name} ({node.endpoint}, version {node.version})"]
    if studies:
        lines.append(
            f"{len(studies)} active {'study names' if len(studies) == 1 else 'studies name'} it and will report it "
            f"refused (not registered): {', '.join(studies)}"
        )
    return "\n".join(lines)


def researcher(r: Researcher) -> str:
    return kv(
        [
            ("name", r.name),
            ("affiliation", r.affiliation),
            ("public key", r.public_key.hex()),
            ("key fingerprint", r.key_fingerprint),
            ("registered", when(r.registered_unix_ms)),
        ]
    )
