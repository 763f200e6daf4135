"""Studies and the registry between domain values (``genogate.studies``) and wire messages
(``genogate.convert``): round trips over generated values, the wire ``Study`` exactly as the state built it
before it spoke domain types (its proposal decoded from the signed bytes, unknown fields included), and the
study-state filter's refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genogate.convert import (
    grant_from_pb,
    grant_to_pb,
    node_from_pb,
    node_to_pb,
    proposal_from_pb,
    proposal_to_pb,
    researcher_from_pb,
    researcher_to_pb,
    review_from_pb,
    review_to_pb,
    revocations_from_pb,
    revocations_to_pb,
    study_from_pb,
    study_state_from_pb,
    study_to_pb,
)
from genogate.errors import InvalidArgument, Reason
from genogate.query import Kind
from genogate.studies import (
    NodeInfo,
    Researcher,
    Review,
    SignedProposal,
    SignedRevocationList,
    Study,
    StudyGrant,
    StudyProposal,
    StudyState,
)
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb

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
