"""Studies and the registry between domain values (``genogate.studies``) and wire messages
(``genogate.convert``): round trips over generated values, the wire ``Study`` exactly as the state built it
before it spoke domain types (its proposal decoded from the signed bytes, unknown fields included), the
study-state filter's refusals, and previews exact both ways (the CLI's --json prints a preview converted back
to the wire: it must be the coordinator's very response)."""

from __future__ import annotations

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given, settings
from hypothesis import strategies as st

from genogate.convert import (
    grant_from_pb,
    grant_terms_from_pb,
    grant_terms_of,
    grant_terms_to_pb,
    grant_to_pb,
    kind_policy_to_pb,
    node_from_pb,
    node_to_pb,
    preview_from_pb,
    preview_to_pb,
    proposal_from_pb,
    proposal_to_pb,
    researcher_from_pb,
    researcher_to_pb,
    review_body_of,
    review_from_pb,
    review_to_pb,
    revocations_from_pb,
    revocations_to_pb,
    risk_from_pb,
    risk_to_pb,
    site_policy_from_pb,
    site_preview_from_pb,
    site_preview_to_pb,
    study_from_pb,
    study_state_from_pb,
    study_to_pb,
)
from genogate.errors import InvalidArgument, Reason
from genogate.query import Kind
from genogate.studies import (
    GrantTerms,
    KindPolicy,
    MembershipRisk,
    NodeInfo,
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
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import node_pb2 as npb

text = st.text(max_size=20)
blob = st.binary(max_size=40)
ms = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
proposals = st.builds(
    StudyProposal,
    title=text,
    purpose=text,
    kinds=st.lists(st.sampled_from(Kind), unique=True).map(tuple),
    sites=st.lists(text, max_size=4).map(tuple),
    epsilon_total_per_site=finite,
    epsilon_per_query_cap=finite,
    duration_days=st.integers(min_value=0, max_value=2**32 - 1),
    researcher_key_fingerprint=text,
    description=text,
    per_site_breakdown=st.booleans(),
    assembly=text,
)
reviews = st.builds(Review, blob, blob, text)
grants = st.builds(StudyGrant, blob, blob, text)


@st.composite
def studies(draw: st.DrawFn) -> Study:
    proposal = draw(proposals)
    payload = proposal_to_pb(proposal).SerializeToString(deterministic=True)
    return Study(
        study_id=draw(text),
        proposal=proposal,
        signed_proposal=SignedProposal(payload, draw(blob)),
        proposal_sha256=draw(blob),
        state=draw(st.sampled_from(StudyState)),
        reviews=tuple(draw(st.lists(reviews, max_size=3))),
        approvals_required=draw(st.integers(min_value=0, max_value=2**32 - 1)),
        grant=draw(st.none() | grants),
        created_unix_ms=draw(ms),
        updated_unix_ms=draw(ms),
        assembly=draw(text),
    )


def _as_the_state_built_it(s: Study) -> cpb.Study:
    """The wire study as ``coordinator/state.py`` built it before it spoke domain types (the reference)."""
    out = cpb.Study(
        study_id=s.study_id,
        proposal=cpb.StudyProposal.FromString(s.signed_proposal.payload),
        signed_proposal=cpb.SignedProposal(
            payload=s.signed_proposal.payload, researcher_signature=s.signed_proposal.researcher_signature
        ),
        proposal_sha256=s.proposal_sha256,
        state=cpb.StudyState.Value("STUDY_STATE_" + s.state.name),
        reviews=[
            cpb.Review(payload=r.payload, reviewer_signature=r.reviewer_signature, reviewer_key_id=r.reviewer_key_id)
            for r in s.reviews
        ],
        approvals_required=s.approvals_required,
        created_unix_ms=s.created_unix_ms,
        updated_unix_ms=s.updated_unix_ms,
    )
    if s.grant is not None:
        out.grant.CopyFrom(
            pb.StudyGrant(
                payload=s.grant.payload,
                committee_signature=s.grant.committee_signature,
                committee_key_id=s.grant.committee_key_id,
            )
        )
    out.assembly = s.assembly
    return out


@settings(max_examples=60, deadline=None)
@given(studies())
def test_a_study_round_trips_and_its_wire_form_is_the_states_former_one(s: Study) -> None:
    wire = study_to_pb(s)
    assert study_from_pb(wire) == s
    assert wire.SerializeToString(deterministic=True) == _as_the_state_built_it(s).SerializeToString(deterministic=True)
    assert wire.HasField("grant") == (s.grant is not None)


@settings(max_examples=60, deadline=None)
@given(proposals)
def test_a_proposal_round_trips(p: StudyProposal) -> None:
    assert proposal_from_pb(proposal_to_pb(p)) == p


# A signed proposal may name kinds this version does not know (0, past the last, negative), twice even: the
# coordinator's checks report them, so the domain proposal keeps them as numbers and converts back exactly.
_known = {kind.value for kind in Kind}
unknown_kind = st.integers(min_value=-(2**31), max_value=2**31 - 1).filter(lambda k: k not in _known)
wire_proposals = st.builds(
    cpb.StudyProposal,
    title=text,
    purpose=text,
    kinds=st.lists(st.sampled_from(sorted(_known)) | unknown_kind, max_size=6),
    sites=st.lists(text, max_size=4),
    epsilon_total_per_site=st.floats(),
    epsilon_per_query_cap=st.floats(),
    duration_days=st.integers(min_value=0, max_value=2**32 - 1),
    researcher_key_fingerprint=text,
    description=text,
    per_site_breakdown=st.booleans(),
    assembly=text,
)


@settings(max_examples=100, deadline=None)
@given(wire_proposals)
def test_a_wire_proposal_with_any_kinds_converts_back_to_the_same_bytes(m: cpb.StudyProposal) -> None:
    p = proposal_from_pb(m)
    assert proposal_to_pb(p).SerializeToString(deterministic=True) == m.SerializeToString(deterministic=True)
    assert [k.value if isinstance(k, Kind) else k for k in p.kinds] == list(m.kinds)
    assert all(isinstance(k, Kind) == (w in _known) for k, w in zip(p.kinds, m.kinds, strict=True))


@settings(max_examples=60, deadline=None)
@given(proposals, st.lists(st.sampled_from(Kind) | unknown_kind, max_size=6).map(tuple))
def test_a_proposal_with_unknown_kinds_round_trips(p: StudyProposal, kinds: tuple[Kind | int, ...]) -> None:
    p = StudyProposal(**{**p.__dict__, "kinds": kinds})
    assert proposal_from_pb(proposal_to_pb(p)) == p


def test_known_proposal_kinds_decode_to_members_and_unknown_ones_stay_numbers() -> None:
    wire = cpb.StudyProposal(kinds=[pb.QUERY_KIND_CARRIER_COUNT, 0, 77, pb.QUERY_KIND_CARRIER_COUNT])  # type: ignore[list-item]
    assert proposal_from_pb(wire).kinds == (Kind.CARRIER_COUNT, 0, 77, Kind.CARRIER_COUNT)


def test_the_wire_proposal_is_decoded_from_the_signed_bytes_unknown_fields_included() -> None:
    known = cpb.StudyProposal(title="t", kinds=[pb.QUERY_KIND_COHORT_COUNT], sites=["a"], duration_days=3)
    payload = known.SerializeToString(deterministic=True) + b"\x98\x06\x01"  # field 99 = 1, unknown to us
    s = Study(
        "S-1",
        proposal_from_pb(known),
        SignedProposal(payload, b"sig"),
        b"h",
        StudyState.PROPOSED,
        (),
        2,
        None,
        1,
        2,
        "",
    )
    wire = study_to_pb(s)
    assert wire.proposal.SerializeToString().endswith(b"\x98\x06\x01")
    assert wire.signed_proposal.payload == payload


@settings(max_examples=60, deadline=None)
@given(
    st.builds(NodeInfo, text, text, text, text, ms),
    st.builds(Researcher, text, text, blob, text, ms),
    reviews,
    grants,
    st.builds(SignedRevocationList, blob, blob, text),
)
def test_registry_entries_and_signed_things_round_trip(
    node: NodeInfo, researcher: Researcher, review: Review, grant: StudyGrant, revocations: SignedRevocationList
) -> None:
    assert node_from_pb(node_to_pb(node)) == node
    assert researcher_from_pb(researcher_to_pb(researcher)) == researcher
    assert review_from_pb(review_to_pb(review)) == review
    assert grant_from_pb(grant_to_pb(grant)) == grant
    assert revocations_from_pb(revocations_to_pb(revocations)) == revocations


def test_study_states_are_the_wire_numbers() -> None:
    wire = {name.removeprefix("STUDY_STATE_"): v for name, v in cpb.StudyState.items() if v}
    assert {s.name: s.value for s in StudyState} == wire


def test_the_list_filter_state_is_any_when_unspecified_and_refuses_unknown_values() -> None:
    assert study_state_from_pb(0) is None
    assert [study_state_from_pb(v) for v in range(1, 6)] == list(StudyState)
    with pytest.raises(InvalidArgument) as exc:
        study_state_from_pb(42)
    assert exc.value.reason == Reason.INVALID_STUDY and exc.value.message == "the study filter is invalid"


def test_a_wire_study_in_an_unknown_state_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        study_from_pb(cpb.Study(study_id="S-1", state=9))  # type: ignore[arg-type]


# Previews -------------------------------------------------------------------------------------------------

u32 = st.integers(min_value=0, max_value=2**32 - 1)
# A kind this version does not know stays its number (a previewed proposal may name one): 0 or past the last.
kinds = st.lists(
    st.sampled_from(Kind) | st.just(0) | st.integers(min_value=max(k.value for k in Kind) + 1, max_value=2**31 - 1),
    max_size=5,
).map(tuple)
risks = st.builds(MembershipRisk, finite, finite, finite, finite, text, finite, text)
terms = st.builds(
    GrantTerms,
    study_id=text,
    researcher_key_fingerprint=text,
    purpose=text,
    kinds=kinds,
    sites=st.lists(text, max_size=4).map(tuple),
    epsilon_total=finite,
    epsilon_per_query_cap=finite,
    not_before_unix_ms=ms,
    not_after_unix_ms=ms,
    revocation_epoch=st.integers(min_value=0, max_value=2**64 - 1),
    per_site_breakdown=st.booleans(),
    researcher_public_key=blob,
    assembly=text,
    risk=st.none() | risks,
)
kind_policies = st.builds(
    KindPolicy,
    kind=st.sampled_from(list(Kind)) | st.integers(min_value=0, max_value=2**31 - 1).filter(lambda k: k > 5),
    allowed=st.booleans(),
    refusal=st.sampled_from([int(r) for r in Reason]),
    note=text,
)
site_previews = st.builds(
    SitePreview,
    site=text,
    registered=st.booleans(),
    reachable=st.booleans(),
    purpose_accepted=st.booleans(),
    kinds_refused=kinds,
    epsilon_total_cap=finite,
    count_ci95_half_width=finite,
    epsilon_per_researcher_cap=finite,
    researcher_epsilon_committed=finite,
    researcher_epsilon_spent=finite,
    budget_period_days=u32,
    epsilon_per_query_min=finite,
    genome_build=text,
    version=text,
    note=text,
    kinds=st.lists(kind_policies, max_size=3).map(tuple),
    epsilon_per_query_cap=finite,
    participants_at_least=st.integers(min_value=0, max_value=2**64 - 1),
    participants_below=st.integers(min_value=0, max_value=2**64 - 1),
)
previews = st.builds(
    StudyPreview,
    grant_body=terms,
    sites=st.lists(site_previews, max_size=3).map(tuple),
    problems=st.lists(text, max_size=3).map(tuple),
    risk=st.none() | risks,
    notes=st.lists(text, max_size=3).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(previews)
def test_a_preview_round_trips_both_ways_and_prints_the_same_json(p: StudyPreview) -> None:
    wire = preview_to_pb(p)
    back = preview_from_pb(wire)
    assert back == p
    again = preview_to_pb(back)
    assert again.SerializeToString(deterministic=True) == wire.SerializeToString(deterministic=True)
    assert MessageToDict(again, preserving_proto_field_name=True) == MessageToDict(
        wire, preserving_proto_field_name=True
    )
    assert wire.HasField("risk") == (p.risk is not None)
    assert wire.grant_body.HasField("risk") == (p.grant_body.risk is not None)
    assert [int(k) for k in wire.grant_body.kinds] == [
        k.value if isinstance(k, Kind) else k for k in p.grant_body.kinds
    ]


@settings(max_examples=60, deadline=None)
@given(risks, terms, site_previews)
def test_risks_grant_terms_and_site_previews_round_trip(
    risk: MembershipRisk, grant: GrantTerms, site: SitePreview
) -> None:
    assert risk_from_pb(risk_to_pb(risk)) == risk
    assert grant_terms_from_pb(grant_terms_to_pb(grant)) == grant
    assert site_preview_from_pb(site_preview_to_pb(site)) == site


MAX_U64 = 2**64 - 1


@settings(max_examples=60, deadline=None)
@given(st.lists(kind_policies, max_size=3), u32, st.integers(min_value=0, max_value=2**64 - 1))
def test_a_sites_describe_policy_answer_reads_field_for_field(
    kinds: list[KindPolicy], days: int, participants: int
) -> None:
    wire = npb.DescribePolicyResponse(
        name="site-a",
        genome_build="GRCh38",
        version="0.1.0",
        purpose_accepted=False,
        purpose_reason="no",
        kinds=[kind_policy_to_pb(k) for k in kinds],
        epsilon_per_query_cap=1.0,
        epsilon_per_query_min=0.001,
        epsilon_total_cap=4.0,
        epsilon_per_researcher_cap=8.0,
        epsilon_per_node_cap=100.0,
        budget_period_days=days,
        participants_at_least=participants,
        participants_below=MAX_U64,
    )
    said = site_policy_from_pb(wire)
    assert said == SitePolicy(
        "site-a",
        "GRCh38",
        "0.1.0",
        False,
        "no",
        tuple(kinds),
        1.0,
        0.001,
        4.0,
        8.0,
        100.0,
        days,
        participants,
        2**64 - 1,
    )


def test_known_kinds_decode_to_members_and_unknown_ones_stay_numbers() -> None:
    wire = pb.GrantBody(kinds=[pb.QUERY_KIND_CARRIER_COUNT, 0, 77])  # type: ignore[list-item]
    assert grant_terms_from_pb(wire).kinds == (Kind.CARRIER_COUNT, 0, 77)


def test_a_grant_and_a_review_read_from_their_signed_bytes() -> None:
    body = pb.GrantBody(study_id="S-1", kinds=[pb.QUERY_KIND_COHORT_COUNT], not_after_unix_ms=9)
    body.risk.statement = "words"
    terms = grant_terms_of(StudyGrant(body.SerializeToString(), b"sig", "k"))
    assert (terms.study_id, terms.kinds, terms.not_after_unix_ms) == ("S-1", (Kind.COHORT_COUNT,), 9)
    assert terms.risk is not None and terms.risk.statement == "words"
    review = cpb.ReviewBody(
        study_id="S-1", proposal_sha256=b"h", decision=cpb.REVIEW_DECISION_REJECT, comment="no", reviewed_unix_ms=5
    )
    assert review_body_of(Review(review.SerializeToString(), b"sig", "k")) == ReviewBody(
        "S-1", b"h", ReviewDecision.REJECT, "no", 5
    )
    unknown = cpb.ReviewBody(study_id="S-1", decision=9)  # type: ignore[arg-type]
    assert review_body_of(Review(unknown.SerializeToString(), b"", "k")).decision == 9


def test_review_decisions_are_the_wire_numbers() -> None:
    wire = {name.removeprefix("REVIEW_DECISION_"): v for name, v in cpb.ReviewDecision.items() if v}
    assert {d.name: d.value for d in ReviewDecision} == wire
