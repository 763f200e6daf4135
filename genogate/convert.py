"""The only place wire messages (``genogate.wire.v1``) and domain values (``genogate.query``,
``genogate.studies``, ``genogate.results``) meet: variants, regions, filters, kinds, studies and results
here, each kind's query and results in its module (``genogate.kinds``), on these.

Decoding validates: a malformed message raises ``InvalidArgument`` with a matchable reason, never a
protobuf or Python error. Results are the exception: a site's own signed output, decoded as released (see
the "Results" section).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genogate import results
from genogate.errors import InvalidArgument, Reason
from genogate.query import (
    MAX_POS,
    AgeRange,
    AncestryIn,
    And,
    Everyone,
    Filter,
    Kind,
    Not,
    Or,
    PhenotypeHas,
    Region,
    SexIs,
    Variant,
    check_filter_size,
)
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import node_pb2 as npb

if TYPE_CHECKING:  # the study types are imported where they are built: the query path never needs them
    from genogate.studies import (
        GrantTerms,
        KindPolicy,
        MembershipRisk,
        NodeInfo,
        NodeUpdate,
        Researcher,
        Review,
        ReviewBody,
        ReviewDecision,
        SignedProposal,
        SignedRevocationList,
        SitePolicy,
        SitePreview,
        Study,
        StudyGrant,
        StudyPreview,
        StudyProposal,
        StudyState,
    )

_SEX_TO_PB = {"F": pb.SEX_FEMALE, "M": pb.SEX_MALE, "U": pb.SEX_UNKNOWN}
_SEX_FROM_PB = {v: k for k, v in _SEX_TO_PB.items()}


# Variants and regions -----------------------------------------------------------------------------------


def variant_to_pb(v: Variant) -> pb.Variant:
    return pb.Variant(chrom=v.chrom, pos=v.pos, ref=v.ref, alt=v.alt)


def variant_from_pb(m: pb.Variant) -> Variant:
    if m.pos > MAX_POS:
        raise InvalidArgument(
            "position too large",
            reason=Reason.INVALID_VARIANT,
            message=f"a variant is malformed: position {m.pos} is past the largest, {MAX_POS}",
        )
    return Variant(m.chrom, int(m.pos), m.ref, m.alt)


def region_to_pb(r: Region) -> pb.Region:
    return pb.Region(chrom=r.chrom, start=r.start, end=r.end)


def region_from_pb(m: pb.Region) -> Region:
    if m.start > MAX_POS or m.end > MAX_POS:
        raise InvalidArgument(
            "position too large",
            reason=Reason.INVALID_REGION,
            message=f"the region is malformed: a position past the largest, {MAX_POS}",
        )
    return Region(m.chrom, int(m.start), int(m.end))


# Filters --------------------------------------------------------------------------------------------------


def filter_to_pb(f: Filter) -> pb.Filter:
    if isinstance(f, Everyone):
        return pb.Filter()
    if isinstance(f, SexIs):
        return pb.Filter(sex_is=pb.Filter.SexIs(sex=_SEX_TO_PB[f.sex]))
    if isinstance(f, AgeRange):
        return pb.Filter(age_range=pb.Filter.AgeRange(min_years=f.min_years, max_years=f.max_years))
    if isinstance(f, AncestryIn):
        return pb.Filter(ancestry_in=pb.Filter.AncestryIn(groups=list(f.groups)))
    if isinstance(f, PhenotypeHas):
        return pb.Filter(phenotype_has=pb.Filter.PhenotypeHas(term=f.term))
    if isinstance(f, And):
        return pb.Filter(all_of=pb.Filter.And(items=[filter_to_pb(i) for i in f.items]))
    if isinstance(f, Or):
        return pb.Filter(any_of=pb.Filter.Or(items=[filter_to_pb(i) for i in f.items]))
    return pb.Filter(negation=pb.Filter.Not(item=filter_to_pb(f.item)))


def filter_from_pb(m: pb.Filter) -> Filter:
    f = _filter_from_pb(m, 0)
    check_filter_size(f)
    return f


def _filter_from_pb(m: pb.Filter, depth: int) -> Filter:
    if depth > 32:  # check_filter_size reports the real limit; this only stops runaway recursion
        raise InvalidArgument(
            "filter nested too deeply", reason=Reason.INVALID_FILTER, message="the cohort filter is malformed"
        )
    which = m.WhichOneof("condition")
    if which is None:
        return Everyone()
    if which == "sex_is":
        if m.sex_is.sex not in _SEX_FROM_PB:
            raise InvalidArgument(
                "sex must be set", reason=Reason.INVALID_FILTER, message="the cohort filter is malformed"
            )
        return SexIs(_SEX_FROM_PB[m.sex_is.sex])  # type: ignore[arg-type]
    if which == "age_range":
        a = m.age_range
        return AgeRange(
            a.min_years if a.HasField("min_years") else None, a.max_years if a.HasField("max_years") else None
        )
    if which == "ancestry_in":
        return AncestryIn(tuple(m.ancestry_in.groups))
    if which == "phenotype_has":
        return PhenotypeHas(m.phenotype_has.term)
    if which == "all_of":
        return And(tuple(_filter_from_pb(i, depth + 1) for i in m.all_of.items))
    if which == "any_of":
        return Or(tuple(_filter_from_pb(i, depth + 1) for i in m.any_of.items))
    return Not(_filter_from_pb(m.negation.item, depth + 1))


# Query kinds (each kind's query: ``genogate.kinds``) ----------------------------------------------


def kind_to_pb(k: Kind) -> int:
    return k.value


def kind_from_pb(value: int) -> Kind:
    try:
        return Kind(value)
    except ValueError:
        raise InvalidArgument("unknown query kind") from None


# Studies and the registry (genogate.studies) --------------------------------------------------------------
# Signed things cross as the exact bytes signed; a study's wire ``proposal`` is decoded from its signed
# payload, so what a client reads is exactly what the researcher signed (unknown fields included).


def study_state_from_pb(value: int) -> StudyState | None:
    """A list filter's state: None for UNSPECIFIED (any state); an unknown value is refused."""
    from genogate.studies import StudyState

    if not value:
        return None
    try:
        return StudyState(value)
    except ValueError:
        raise InvalidArgument(
            f"unknown study state {value}", reason=Reason.INVALID_STUDY, message="the study filter is invalid"
        ) from None


def proposal_from_pb(m: cpb.StudyProposal) -> StudyProposal:
    from genogate.studies import StudyProposal

    return StudyProposal(
        title=m.title,
        purpose=m.purpose,
        kinds=tuple(_kind_or_number(k) for k in m.kinds),
        sites=tuple(m.sites),
        epsilon_total_per_site=m.epsilon_total_per_site,
        epsilon_per_query_cap=m.epsilon_per_query_cap,
        duration_days=m.duration_days,
        researcher_key_fingerprint=m.researcher_key_fingerprint,
        description=m.description,
        per_site_breakdown=m.per_site_breakdown,
        assembly=m.assembly,
    )


def proposal_to_pb(p: StudyProposal) -> cpb.StudyProposal:
    return cpb.StudyProposal(
        title=p.title,
        purpose=p.purpose,
        kinds=[_kind_number(k) for k in p.kinds],  # type: ignore[misc]
        sites=p.sites,
        epsilon_total_per_site=p.epsilon_total_per_site,
        epsilon_per_query_cap=p.epsilon_per_query_cap,
        duration_days=p.duration_days,
        researcher_key_fingerprint=p.researcher_key_fingerprint,
        description=p.description,
        per_site_breakdown=p.per_site_breakdown,
        assembly=p.assembly,
    )


def signed_proposal_from_pb(m: cpb.SignedProposal) -> SignedProposal:
    from genogate.studies import SignedProposal

    return SignedProposal(m.payload, m.researcher_signature)


def signed_proposal_to_pb(s: SignedProposal) -> cpb.SignedProposal:
    return cpb.SignedProposal(payload=s.payload, researcher_signature=s.researcher_signature)


def review_from_pb(m: cpb.Review) -> Review:
    from genogate.studies import Review

    return Review(m.payload, m.reviewer_signature, m.reviewer_key_id)


def review_to_pb(r: Review) -> cpb.Review:
    return cpb.Review(payload=r.payload, reviewer_signature=r.reviewer_signature, reviewer_key_id=r.reviewer_key_id)


def review_body_of(r: Review) -> ReviewBody:
    """The review's signed payload decoded (``google.protobuf.message.DecodeError`` when it is not one)."""
    from genogate.studies import ReviewBody, ReviewDecision

    m = cpb.ReviewBody.FromString(r.payload)
    try:
        decision: ReviewDecision | int = ReviewDecision(m.decision)
    except ValueError:
        decision = int(m.decision)
    return ReviewBody(m.study_id, m.proposal_sha256, decision, m.comment, m.reviewed_unix_ms)


def grant_terms_of(g: StudyGrant) -> GrantTerms:
    """The grant's signed payload decoded (``google.protobuf.message.DecodeError`` when it is not one)."""
    return grant_terms_from_pb(pb.GrantBody.FromString(g.payload))


def grant_from_pb(m: pb.StudyGrant) -> StudyGrant:
    from genogate.studies import StudyGrant

    return StudyGrant(m.payload, m.committee_signature, m.committee_key_id)


def grant_to_pb(g: StudyGrant) -> pb.StudyGrant:
    return pb.StudyGrant(
        payload=g.payload, committee_signature=g.committee_signature, committee_key_id=g.committee_key_id
    )


def revocations_from_pb(m: cpb.SignedRevocationList) -> SignedRevocationList:
    from genogate.studies import SignedRevocationList

    return SignedRevocationList(m.payload, m.committee_signature, m.committee_key_id)


def revocations_to_pb(r: SignedRevocationList) -> cpb.SignedRevocationList:
    return cpb.SignedRevocationList(
        payload=r.payload, committee_signature=r.committee_signature, committee_key_id=r.committee_key_id
    )


def study_to_pb(s: Study) -> cpb.Study:
    out = cpb.Study(
        study_id=s.study_id,
        proposal=cpb.StudyProposal.FromString(s.signed_proposal.payload),
        signed_proposal=signed_proposal_to_pb(s.signed_proposal),
        proposal_sha256=s.proposal_sha256,
        state=s.state.value,  # type: ignore[arg-type]
        reviews=[review_to_pb(r) for r in s.reviews],
        approvals_required=s.approvals_required,
        created_unix_ms=s.created_unix_ms,
        updated_unix_ms=s.updated_unix_ms,
        assembly=s.assembly,
    )
    if s.grant is not None:
        out.grant.CopyFrom(grant_to_pb(s.grant))
    return out


def study_from_pb(m: cpb.Study) -> Study:
    from genogate.studies import Study, StudyState

    try:
        state = StudyState(m.state)
    except ValueError:
        raise InvalidArgument(f"unknown study state {m.state}") from None
    return Study(
        study_id=m.study_id,
        proposal=proposal_from_pb(m.proposal),
        signed_proposal=signed_proposal_from_pb(m.signed_proposal),
        proposal_sha256=m.proposal_sha256,
        state=state,
        reviews=tuple(review_from_pb(r) for r in m.reviews),
        approvals_required=m.approvals_required,
        grant=grant_from_pb(m.grant) if m.HasField("grant") else None,
        created_unix_ms=m.created_unix_ms,
        updated_unix_ms=m.updated_unix_ms,
        assembly=m.assembly,
    )


def node_from_pb(m: cpb.NodeInfo) -> NodeInfo:
    from genogate.studies import NodeInfo

    return NodeInfo(
        m.name,
        m.endpoint,
        m.cert_sha256,
        m.genome_build,
        m.registered_unix_ms,
        ca_sha256=m.ca_sha256,
        version=m.version,
        updated_unix_ms=m.updated_unix_ms,
    )


def node_to_pb(n: NodeInfo) -> cpb.NodeInfo:
    return cpb.NodeInfo(
        name=n.name,
        endpoint=n.endpoint,
        cert_sha256=n.cert_sha256,
        genome_build=n.genome_build,
        registered_unix_ms=n.registered_unix_ms,
        ca_sha256=n.ca_sha256,
        version=n.version,
        updated_unix_ms=n.updated_unix_ms,
    )


def node_update_from_pb(m: cpb.UpdateNodeRequest) -> NodeUpdate:
    from genogate.studies import NodeUpdate

    return NodeUpdate(m.name, m.endpoint, m.cert_sha256, m.ca_sha256, m.genome_build, m.from_node)


def node_update_to_pb(u: NodeUpdate) -> cpb.UpdateNodeRequest:
    return cpb.UpdateNodeRequest(
        name=u.name,
        endpoint=u.endpoint,
        cert_sha256=u.cert_sha256,
        ca_sha256=u.ca_sha256,
        genome_build=u.genome_build,
        from_node=u.from_node,
    )


def researcher_from_pb(m: cpb.Researcher) -> Researcher:
    from genogate.studies import Researcher

    return Researcher(m.name, m.affiliation, m.public_key, m.key_fingerprint, m.registered_unix_ms)


def researcher_to_pb(r: Researcher) -> cpb.Researcher:
    return cpb.Researcher(
        name=r.name,
        affiliation=r.affiliation,
        public_key=r.public_key,
        key_fingerprint=r.key_fingerprint,
        registered_unix_ms=r.registered_unix_ms,
    )


# Previews: exact both ways, so that a preview the SDK returns converts back to the very response the
# coordinator sent (the CLI's --json prints that). A kind this version does not know stays its number.


def _kind_or_number(value: int) -> Kind | int:
    try:
        return Kind(value)
    except ValueError:
        return int(value)


def _kind_number(k: Kind | int) -> int:
    return k.value if isinstance(k, Kind) else int(k)


def risk_from_pb(m: pb.MembershipRisk) -> MembershipRisk:
    from genogate.studies import MembershipRisk

    return MembershipRisk(
        epsilon=m.epsilon,
        delta=m.delta,
        false_positive_rate=m.false_positive_rate,
        true_positive_rate_bound=m.true_positive_rate_bound,
        statement=m.statement,
        measured_true_positive_rate=m.measured_true_positive_rate,
        measured_attack=m.measured_attack,
    )


def risk_to_pb(r: MembershipRisk) -> pb.MembershipRisk:
    return pb.MembershipRisk(
        epsilon=r.epsilon,
        delta=r.delta,
        false_positive_rate=r.false_positive_rate,
        true_positive_rate_bound=r.true_positive_rate_bound,
        statement=r.statement,
        measured_true_positive_rate=r.measured_true_positive_rate,
        measured_attack=r.measured_attack,
    )


def grant_terms_from_pb(m: pb.GrantBody) -> GrantTerms:
    from genogate.studies import GrantTerms

    return GrantTerms(
        study_id=m.study_id,
        researcher_key_fingerprint=m.researcher_key_fingerprint,
        purpose=m.purpose,
        kinds=tuple(_kind_or_number(k) for k in m.kinds),
        sites=tuple(m.sites),
        epsilon_total=m.epsilon_total,
        epsilon_per_query_cap=m.epsilon_per_query_cap,
        not_before_unix_ms=m.not_before_unix_ms,
        not_after_unix_ms=m.not_after_unix_ms,
        revocation_epoch=m.revocation_epoch,
        per_site_breakdown=m.per_site_breakdown,
        researcher_public_key=m.researcher_public_key,
        assembly=m.assembly,
        risk=risk_from_pb(m.risk) if m.HasField("risk") else None,
    )


def grant_terms_to_pb(g: GrantTerms) -> pb.GrantBody:
    out = pb.GrantBody(
        study_id=g.study_id,
        researcher_key_fingerprint=g.researcher_key_fingerprint,
        purpose=g.purpose,
        kinds=[_kind_number(k) for k in g.kinds],  # type: ignore[misc]
        sites=g.sites,
        epsilon_total=g.epsilon_total,
        epsilon_per_query_cap=g.epsilon_per_query_cap,
        not_before_unix_ms=g.not_before_unix_ms,
        not_after_unix_ms=g.not_after_unix_ms,
        revocation_epoch=g.revocation_epoch,
        per_site_breakdown=g.per_site_breakdown,
        researcher_public_key=g.researcher_public_key,
        assembly=g.assembly,
    )
    if g.risk is not None:
        out.risk.CopyFrom(risk_to_pb(g.risk))
    return out


def kind_policy_from_pb(m: pb.KindPolicy) -> KindPolicy:
    from genogate.studies import KindPolicy

    return KindPolicy(_kind_or_number(m.kind), m.allowed, int(m.refusal), m.note)


def kind_policy_to_pb(k: KindPolicy) -> pb.KindPolicy:
    return pb.KindPolicy(kind=_kind_number(k.kind), allowed=k.allowed, refusal=k.refusal, note=k.note)  # type: ignore[arg-type]


def site_policy_from_pb(m: npb.DescribePolicyResponse) -> SitePolicy:
    """A node's DescribePolicy answer as values (the coordinator's preview reads it)."""
    from genogate.studies import SitePolicy

    return SitePolicy(
        name=m.name,
        genome_build=m.genome_build,
        version=m.version,
        purpose_accepted=m.purpose_accepted,
        purpose_reason=m.purpose_reason,
        kinds=tuple(kind_policy_from_pb(k) for k in m.kinds),
        epsilon_per_query_cap=m.epsilon_per_query_cap,
        epsilon_per_query_min=m.epsilon_per_query_min,
        epsilon_total_cap=m.epsilon_total_cap,
        epsilon_per_researcher_cap=m.epsilon_per_researcher_cap,
        epsilon_per_node_cap=m.epsilon_per_node_cap,
        budget_period_days=m.budget_period_days,
        participants_at_least=m.participants_at_least,
        participants_below=m.participants_below,
    )


def site_preview_from_pb(m: cpb.SitePreview) -> SitePreview:
    from genogate.studies import SitePreview

    return SitePreview(
        site=m.site,
        registered=m.registered,
        reachable=m.reachable,
        purpose_accepted=m.purpose_accepted,
        kinds_refused=tuple(_kind_or_number(k) for k in m.kinds_refused),
        epsilon_total_cap=m.epsilon_total_cap,
        count_ci95_half_width=m.count_ci95_half_width,
        epsilon_per_researcher_cap=m.epsilon_per_researcher_cap,
        researcher_epsilon_committed=m.researcher_epsilon_committed,
        researcher_epsilon_spent=m.researcher_epsilon_spent,
        budget_period_days=m.budget_period_days,
        epsilon_per_query_min=m.epsilon_per_query_min,
        genome_build=m.genome_build,
        version=m.version,
        note=m.note,
        kinds=tuple(kind_policy_from_pb(k) for k in m.kinds),
        epsilon_per_query_cap=m.epsilon_per_query_cap,
        participants_at_least=m.participants_at_least,
        participants_below=m.participants_below,
    )


def site_preview_to_pb(s: SitePreview) -> cpb.SitePreview:
    return cpb.SitePreview(
        site=s.site,
        registered=s.registered,
        reachable=s.reachable,
        purpose_accepted=s.purpose_accepted,
        kinds_refused=[_kind_number(k) for k in s.kinds_refused],  # type: ignore[misc]
        epsilon_total_cap=s.epsilon_total_cap,
        count_ci95_half_width=s.count_ci95_half_width,
        epsilon_per_researcher_cap=s.epsilon_per_researcher_cap,
        researcher_epsilon_committed=s.researcher_epsilon_committed,
        researcher_epsilon_spent=s.researcher_epsilon_spent,
        budget_period_days=s.budget_period_days,
        epsilon_per_query_min=s.epsilon_per_query_min,
        genome_build=s.genome_build,
        version=s.version,
        note=s.note,
        kinds=[kind_policy_to_pb(k) for k in s.kinds],
        epsilon_per_query_cap=s.epsilon_per_query_cap,
        participants_at_least=s.participants_at_least,
        participants_below=s.participants_below,
    )


def preview_from_pb(m: cpb.PreviewStudyResponse) -> StudyPreview:
    from genogate.studies import StudyPreview

    return StudyPreview(
        grant_body=grant_terms_from_pb(m.grant_body),
        sites=tuple(site_preview_from_pb(s) for s in m.sites),
        problems=tuple(m.problems),
        risk=risk_from_pb(m.risk) if m.HasField("risk") else None,
        notes=tuple(m.notes),
    )


def preview_to_pb(p: StudyPreview) -> cpb.PreviewStudyResponse:
    out = cpb.PreviewStudyResponse(
        grant_body=grant_terms_to_pb(p.grant_body),
        sites=[site_preview_to_pb(s) for s in p.sites],
        problems=p.problems,
        notes=p.notes,
    )
    if p.risk is not None:
        out.risk.CopyFrom(risk_to_pb(p.risk))
    return out


# Results (genogate.results) -------------------------------------------------------------------------------
# Field for field: a domain result converts to the message the node built before these types existed, so
# the signed bytes and every response are byte-identical (tests/unit/test_convert_results.py). Messages are
# filled in place (no sub-message built and then copied into its parent): the node converts every result
# it releases, a 1,000-variant allele frequency included, and this keeps that no slower than building the
# wire message directly was. Decoding does not validate: a result is a site's own signed output, read by the
# coordinator and the SDK (its variants are taken as released, without the query-side checks).
#
# Here are the values every kind shares; each kind converts its own result with these ``fill_*`` functions
# (``QueryKind.result_to_pb`` ... in ``genogate.kinds.<label>``), and ``genogate.kinds`` dispatches a whole
# result, combination or release body by its kind (``result_to_pb`` ... ``release_body_from_pb``).

_MECHANISM_TO_PB: dict[str, int] = {
    "discrete_laplace": pb.NOISE_MECHANISM_DISCRETE_LAPLACE,
    "discrete_gaussian": pb.NOISE_MECHANISM_DISCRETE_GAUSSIAN,
}
_MECHANISM_FROM_PB: dict[int, str] = {v: k for k, v in _MECHANISM_TO_PB.items()}
_new = object.__new__
_set = object.__setattr__


def fill_variant(m: pb.Variant, v: Variant) -> None:
    m.chrom, m.pos, m.ref, m.alt = v.chrom, v.pos, v.ref, v.alt


def released_variant(m: pb.Variant) -> Variant:
    """A released variant as the site named it (no query-side validation: see the section's note)."""
    v = _new(Variant)
    _set(v, "chrom", m.chrom)
    _set(v, "pos", m.pos)
    _set(v, "ref", m.ref)
    _set(v, "alt", m.alt)
    return v


def fill_noisy(m: pb.NoisyValue, v: results.NoisyValue) -> None:
    m.estimate = v.estimate
    m.noise_scale = v.noise_scale
    m.ci95_low = v.ci95_low
    m.ci95_high = v.ci95_high
    m.below_threshold = v.below_threshold
    m.threshold = v.threshold
    m.mechanism = _MECHANISM_TO_PB.get(v.mechanism, pb.NOISE_MECHANISM_UNSPECIFIED)  # type: ignore[assignment]
    m.noise_stddev = v.noise_stddev


def noisy_to_pb(v: results.NoisyValue) -> pb.NoisyValue:
    m = pb.NoisyValue()
    fill_noisy(m, v)
    return m


def noisy_from_pb(m: pb.NoisyValue) -> results.NoisyValue:
    return results.NoisyValue(
        m.estimate,
        m.noise_scale,
        m.ci95_low,
        m.ci95_high,
        m.below_threshold,
        m.threshold,
        _MECHANISM_FROM_PB.get(m.mechanism, ""),
        m.noise_stddev,
    )


def fill_combined(m: pb.CombinedValue, v: results.CombinedValue) -> None:
    if v.estimate is not None:
        m.estimate = v.estimate
    m.ci95_low = v.ci95_low
    m.ci95_high = v.ci95_high
    m.noise_stddev = v.noise_stddev
    m.sites_below_threshold = v.sites_below_threshold
    m.sites = v.sites
    m.threshold = v.threshold
    m.released = v.released
    m.not_computed = v.not_computed


def combined_value_to_pb(v: results.CombinedValue) -> pb.CombinedValue:
    m = pb.CombinedValue()
    fill_combined(m, v)
    return m


def combined_value_from_pb(m: pb.CombinedValue) -> results.CombinedValue:
    return results.CombinedValue(
        m.estimate if m.HasField("estimate") else None,
        m.ci95_low,
        m.ci95_high,
        m.noise_stddev,
        m.sites_below_threshold,
        m.sites,
        m.threshold,
        m.released,
        m.not_computed,
    )


def fill_odds_ratio(m: pb.OddsRatio, o: results.OddsRatio) -> None:
    m.estimate, m.ci95_low, m.ci95_high, m.log_se, m.not_computed = (
        o.estimate,
        o.ci95_low,
        o.ci95_high,
        o.log_se,
        o.not_computed,
    )


def odds_ratio_to_pb(o: results.OddsRatio) -> pb.OddsRatio:
    m = pb.OddsRatio()
    fill_odds_ratio(m, o)
    return m


def odds_ratio_from_pb(m: pb.OddsRatio) -> results.OddsRatio:
    return results.OddsRatio(m.estimate, m.ci95_low, m.ci95_high, m.log_se, m.not_computed)


def budget_to_pb(b: results.BudgetStatus) -> pb.BudgetStatus:
    return pb.BudgetStatus(
        study_id=b.study_id,
        site=b.site,
        epsilon_cap=b.epsilon_cap,
        epsilon_spent=b.epsilon_spent,
        epsilon_remaining=b.epsilon_remaining,
        queries_answered=b.queries_answered,
        researcher_epsilon_cap=b.researcher_epsilon_cap,
        researcher_epsilon_spent=b.researcher_epsilon_spent,
        budget_period_days=b.budget_period_days,
        consent_epoch=b.consent_epoch,
    )


def budget_from_pb(m: pb.BudgetStatus) -> results.BudgetStatus:
    return results.BudgetStatus(
        m.study_id,
        m.site,
        m.epsilon_cap,
        m.epsilon_spent,
        m.epsilon_remaining,
        m.queries_answered,
        m.researcher_epsilon_cap,
        m.researcher_epsilon_spent,
        m.budget_period_days,
        m.consent_epoch,
    )
