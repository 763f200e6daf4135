"""The coordinator-state conformance suite: what any ``CoordinatorState`` implementation must do, run against
every implementation in ``IMPLEMENTATIONS`` (today SQLite on a real file; a PostgreSQL one is one more entry).

Covered: the registry, the study lifecycle with k-of-n signed reviews, committee-signed grants and revocation
lists, expiry from an injected clock, every refusal with its reason, committed budgets and per-researcher caps,
persistence across reopening, query history, closing, and that every implementation provides every method of
the protocol. Real Ed25519 keys; every state is closed by the fixture or test that opens it. What is specific
to the SQLite file (its triggers, a foreign file) is in ``tests/unit/test_coordinator_sqlite.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.preview import DAY_MS
from coordinator.state import CoordinatorState, SqliteCoordinatorState
from genogate.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    StoreError,
    Unauthenticated,
)
from genogate.query import Kind
from genogate.signing import Signer, verify
from genogate.studies import NodeInfo, NodeUpdate, SignedProposal, StudyState
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from tests.coordstate import (
    CA,
    CERT,
    SITES,
    T0_MS,
    Opener,
    World,
    approved,
    new_signer,
    open_world,
    proposal,
    refused,
    review,
    signed,
)


def _sqlite(where: Path, signer: Signer, k: int, clock: Callable[[], float]) -> CoordinatorState:
    return SqliteCoordinatorState(where / "coordinator.sqlite", signer, k, clock)


IMPLEMENTATIONS: dict[str, tuple[type, Opener]] = {
    # name: (class, open the state kept at ``where`` (a fresh directory per test; the same one reopens it))
    "sqlite": (SqliteCoordinatorState, _sqlite),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def opener(request: pytest.FixtureRequest) -> Opener:
    return IMPLEMENTATIONS[request.param][1]


@pytest.fixture
def world(tmp_path: Path, opener: Opener) -> Iterator[World]:
    with open_world(tmp_path, opener) as w:
        yield w


# The interface ------------------------------------------------------------------------------------------------


def _protocol_methods() -> dict[str, inspect.Signature]:
    names = [n for n, v in vars(CoordinatorState).items() if callable(v) and not n.startswith("_")]
    return {n: inspect.signature(getattr(CoordinatorState, n)) for n in names}


@pytest.mark.parametrize("name", sorted(IMPLEMENTATIONS))
def test_every_implementation_implements_every_protocol_method(name: str) -> None:
    cls = IMPLEMENTATIONS[name][0]
    methods = _protocol_methods()
    assert {"propose", "review", "revoke", "get", "list", "register_node", "record_query", "history"} <= set(methods)
    for method, expected in methods.items():
        impl = getattr(cls, method, None)
        assert callable(impl), f"{cls.__name__} lacks {method}"
        got = inspect.signature(impl)
        assert list(got.parameters) == list(expected.parameters), f"{cls.__name__}.{method}{got} != {expected}"
        for p, q in zip(got.parameters.values(), expected.parameters.values(), strict=True):
            assert (p.kind, p.default) == (q.kind, q.default), f"{cls.__name__}.{method}: parameter {p.name}"


def test_an_opened_state_is_a_coordinator_state(world: World) -> None:
    assert isinstance(world.state, CoordinatorState)


# Lifecycle ----------------------------------------------------------------------------------------------------


def test_two_of_three_approvals_issue_a_verifiable_deterministic_grant(world: World) -> None:
    w = world
    s = signed(proposal(w.researcher), w.researcher)
    study = w.state.propose(s)
    assert study.state == StudyState.PROPOSED
    assert study.study_id == "S-" + hashlib.sha256(s.payload).hexdigest()[:12]
    assert study.proposal_sha256 == hashlib.sha256(s.payload).digest()
    assert study.signed_proposal == s and study.approvals_required == 2 and study.grant is None
    assert study.created_unix_ms == T0_MS

    w.clock.t += 60
    once = w.state.review(review(w.members[0], study, cpb.REVIEW_DECISION_APPROVE))
    assert once.state == StudyState.PROPOSED and len(once.reviews) == 1 and once.grant is None
    w.clock.t += 60
    twice = w.state.review(review(w.members[1], study, cpb.REVIEW_DECISION_APPROVE))
    approved_ms = T0_MS + 120_000
    assert twice.state == StudyState.APPROVED and twice.updated_unix_ms == approved_ms
    assert [r.reviewer_key_id for r in twice.reviews] == [w.members[0].key_id, w.members[1].key_id]

    grant = twice.grant
    assert grant.committee_key_id == w.committee_signer.key_id
    verify(w.committee_signer.public_raw, "genogate.v1.GrantBody", grant.payload, grant.committee_signature)
    body = pb.GrantBody.FromString(grant.payload)
    assert body.SerializeToString(deterministic=True) == grant.payload
    assert body.study_id == study.study_id
    assert body.researcher_key_fingerprint == w.researcher.key_id
    assert body.researcher_public_key == w.researcher.public_raw
    assert body.purpose == "DS-C50;NPU"
    assert list(body.kinds) == [pb.QUERY_KIND_ALLELE_FREQUENCY, pb.QUERY_KIND_COHORT_COUNT]
    assert list(body.sites) == ["site-a", "site-b"]
    assert (body.epsilon_total, body.epsilon_per_query_cap) == (10.0, 0.5)
    assert body.not_before_unix_ms == approved_ms
    assert body.not_after_unix_ms == approved_ms + 30 * DAY_MS
    assert body.revocation_epoch == 0 and body.per_site_breakdown
    assert w.state.get(study.study_id) == twice

    with pytest.raises(FailedPrecondition) as exc:  # a third vote on a study no longer PROPOSED
        w.state.review(review(w.members[2], study, cpb.REVIEW_DECISION_APPROVE))
    refused(FailedPrecondition, Reason.FAILED_PRECONDITION, exc)


def test_proposing_the_same_payload_twice_returns_the_existing_study(world: World) -> None:
    s = signed(proposal(world.researcher), world.researcher)
    first = world.state.propose(s)
    world.clock.t += 5
    assert world.state.propose(s) == first
    assert len(world.state.list()) == 1


def test_one_rejection_rejects(world: World) -> None:
    w = world
    study = w.state.propose(signed(proposal(w.researcher), w.researcher))
    w.state.review(review(w.members[0], study, cpb.REVIEW_DECISION_APPROVE))
    rejected = w.state.review(review(w.members[1], study, cpb.REVIEW_DECISION_REJECT, comment="no IRB"))
    assert rejected.state == StudyState.REJECTED and rejected.grant is None
    assert cpb.ReviewBody.FromString(rejected.reviews[-1].payload).comment == "no IRB"
    with pytest.raises(FailedPrecondition):
        w.state.review(review(w.members[2], study, cpb.REVIEW_DECISION_APPROVE))
    with pytest.raises(FailedPrecondition):
        w.state.revoke(review(w.members[2], study, cpb.REVIEW_DECISION_REVOKE))


def test_revocation_advances_the_epoch_and_the_signed_list_names_the_study(world: World) -> None:
    w = world
    study = approved(w)
    w.clock.t += 10
    first = w.state.revocations()
    assert cpb.RevocationList.FromString(first.payload).epoch == 0

    revocation = review(w.members[2], study, cpb.REVIEW_DECISION_REVOKE, comment="consent withdrawn")
    revoked, epoch = w.state.revoke(revocation)
    assert revoked.state == StudyState.REVOKED and epoch == 1
    assert revoked.grant is not None and len(revoked.reviews) == 3
    assert w.state.revoke(revocation) == (revoked, 1)  # an identical resend changes nothing

    signed_list = w.state.revocations()
    assert signed_list.committee_key_id == w.committee_signer.key_id
    verify(
        w.committee_signer.public_raw,
        "genogate.v1.RevocationList",
        signed_list.payload,
        signed_list.committee_signature,
    )
    body = cpb.RevocationList.FromString(signed_list.payload)
    assert list(body.revoked_study_ids) == [study.study_id]
    assert body.epoch == 1 and body.issued_unix_ms == int(w.clock.t * 1000)
    assert body.SerializeToString(deterministic=True) == signed_list.payload

    with pytest.raises(FailedPrecondition) as exc:  # revoking twice
        w.state.revoke(review(w.members[0], study, cpb.REVIEW_DECISION_REVOKE))
    refused(FailedPrecondition, Reason.FAILED_PRECONDITION, exc)

    later = approved(w, title="a second study")  # grants issued now carry the new epoch
    assert pb.GrantBody.FromString(later.grant.payload).revocation_epoch == 1
    _, epoch2 = w.state.revoke(review(w.members[2], later, cpb.REVIEW_DECISION_REVOKE))
    ids = cpb.RevocationList.FromString(w.state.revocations().payload).revoked_study_ids
    assert epoch2 == 2 and list(ids) == sorted([study.study_id, later.study_id])


def test_expiry_is_derived_from_the_clock_and_stored(world: World) -> None:
    w = world
    study = approved(w, duration_days=1)
    not_after = pb.GrantBody.FromString(study.grant.payload).not_after_unix_ms
    w.clock.at_ms(not_after - 1)
    assert w.state.get(study.study_id).state == StudyState.APPROVED
    w.clock.at_ms(not_after)
    expired = w.state.get(study.study_id)
    assert expired.state == StudyState.EXPIRED and expired.updated_unix_ms == not_after
    assert [s.study_id for s in w.state.list(state=StudyState.EXPIRED)] == [study.study_id]
    assert w.state.list(state=StudyState.APPROVED) == []
    with pytest.raises(FailedPrecondition):
        w.state.revoke(review(w.members[2], study, cpb.REVIEW_DECISION_REVOKE))
    w.clock.at_ms(not_after - 1)  # stored: a clock that steps back does not revive the grant
    assert w.reopen().get(study.study_id).state == StudyState.EXPIRED


def test_list_filters_by_state_and_researcher_newest_first(world: World) -> None:
    w = world
    other = new_signer()
    w.state.register_researcher("Bob", "Elsewhere", other.public_raw)
    a = w.state.propose(signed(proposal(w.researcher, title="a"), w.researcher))
    w.clock.t += 1
    b = w.state.propose(signed(proposal(other, title="b"), other))
    w.clock.t += 1
    c = approved(w, title="c")
    assert [s.study_id for s in w.state.list()] == [c.study_id, b.study_id, a.study_id]
    assert [s.study_id for s in w.state.list(researcher=other.key_id)] == [b.study_id]
    assert [s.study_id for s in w.state.list(state=StudyState.PROPOSED, researcher=w.researcher.key_id)] == [a.study_id]
    assert len(w.state.list(state=None)) == 3
    with pytest.raises(InvalidArgument):
        w.state.list(state=42)


# Refusals -----------------------------------------------------------------------------------------------------


def test_a_forged_proposal_signature_is_refused(world: World) -> None:
    forged = signed(proposal(world.researcher), new_signer())  # names Alice's key, signed by another
    with pytest.raises(Unauthenticated) as exc:
        world.state.propose(forged)
    refused(Unauthenticated, Reason.BAD_SIGNATURE, exc)
    assert world.state.list() == []


def test_an_unregistered_researcher_is_refused(world: World) -> None:
    stranger = new_signer()
    with pytest.raises(PermissionDenied) as exc:
        world.state.propose(signed(proposal(stranger), stranger))
    refused(PermissionDenied, Reason.NOT_AUTHORIZED, exc)


def test_unknown_sites_are_named_in_the_detail_only(world: World) -> None:
    with pytest.raises(InvalidArgument) as exc:
        world.state.propose(signed(proposal(world.researcher, sites=["site-a", "site-x", "site-y"]), world.researcher))
    refused(InvalidArgument, Reason.INVALID_STUDY, exc)
    assert "unknown sites: site-x, site-y" in exc.value.detail
    assert "site-x" not in exc.value.message


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"purpose": "HMB-ish"}, "purpose"),
        ({"purpose": "NPU"}, "purpose"),
        ({"epsilon_per_query_cap": 10.5}, "exceeds"),
        ({"epsilon_total_per_site": 0.0}, "epsilon_total_per_site"),
        ({"epsilon_per_query_cap": float("nan")}, "epsilon_per_query_cap"),
        ({"epsilon_total_per_site": float("inf")}, "epsilon_total_per_site"),
        ({"epsilon_total_per_site": -1.0}, "epsilon_total_per_site"),
        ({"title": "  "}, "title"),
        ({"kinds": []}, "no query kinds"),
        ({"kinds": [pb.QUERY_KIND_UNSPECIFIED]}, "unspecified"),
        ({"kinds": [pb.QUERY_KIND_COHORT_COUNT, pb.QUERY_KIND_COHORT_COUNT]}, "twice"),
        ({"sites": []}, "no sites"),
        ({"sites": ["site-a", "site-a"]}, "twice"),
        ({"duration_days": 0}, "duration_days"),
        ({"duration_days": 3651}, "duration_days"),
    ],
)
def test_invalid_proposals_are_refused_with_invalid_study(
    world: World, overrides: dict[str, object], needle: str
) -> None:
    with pytest.raises(InvalidArgument) as exc:
        world.state.propose(signed(proposal(world.researcher, **overrides), world.researcher))
    refused(InvalidArgument, Reason.INVALID_STUDY, exc)
    assert needle in exc.value.detail
    assert exc.value.message == "the study proposal is invalid"


def test_proposal_edges_that_are_accepted(world: World) -> None:
    study = world.state.propose(
        signed(proposal(world.researcher, epsilon_per_query_cap=10.0, duration_days=3650), world.researcher)
    )
    assert study.state == StudyState.PROPOSED  # cap == total and the longest duration are allowed


def test_a_payload_that_is_not_a_proposal_is_refused(world: World) -> None:
    with pytest.raises(InvalidArgument) as exc:
        world.state.propose(SignedProposal(payload=b"\xff\xff\xff", researcher_signature=b"x" * 64))
    refused(InvalidArgument, Reason.INVALID_STUDY, exc)


def test_a_review_by_a_key_outside_the_committee_is_refused(world: World) -> None:
    study = world.state.propose(signed(proposal(world.researcher), world.researcher))
    with pytest.raises(PermissionDenied) as exc:
        world.state.review(review(new_signer(), study, cpb.REVIEW_DECISION_APPROVE))
    refused(PermissionDenied, Reason.UNTRUSTED_COMMITTEE, exc)
    with pytest.raises(PermissionDenied):  # the researcher cannot approve their own study either
        world.state.review(review(world.researcher, study, cpb.REVIEW_DECISION_APPROVE))


def test_a_forged_review_signature_is_refused(world: World) -> None:
    study = world.state.propose(signed(proposal(world.researcher), world.researcher))
    forged = review(world.members[0], study, cpb.REVIEW_DECISION_APPROVE, signer=new_signer())
    with pytest.raises(Unauthenticated) as exc:
        world.state.review(forged)
    refused(Unauthenticated, Reason.BAD_SIGNATURE, exc)
    assert world.state.get(study.study_id).reviews == ()


def test_a_review_of_another_proposal_version_is_refused(world: World) -> None:
    study = world.state.propose(signed(proposal(world.researcher), world.researcher))
    stale = review(world.members[0], study, cpb.REVIEW_DECISION_APPROVE, sha=hashlib.sha256(b"older").digest())
    with pytest.raises(FailedPrecondition) as exc:
        world.state.review(stale)
    refused(FailedPrecondition, Reason.FAILED_PRECONDITION, exc)


def test_one_vote_per_member(world: World) -> None:
    w = world
    study = w.state.propose(signed(proposal(w.researcher), w.researcher))
    vote = review(w.members[0], study, cpb.REVIEW_DECISION_APPROVE)
    w.state.review(vote)
    assert len(w.state.review(vote).reviews) == 1  # an identical resend is not a second vote
    for decision, comment in ((cpb.REVIEW_DECISION_APPROVE, "again"), (cpb.REVIEW_DECISION_REJECT, "changed mind")):
        with pytest.raises(AlreadyExists) as exc:
            w.state.review(review(w.members[0], study, decision, comment=comment))
        refused(AlreadyExists, Reason.ALREADY_EXISTS, exc)
    assert w.state.get(study.study_id).state == StudyState.PROPOSED


def test_decisions_belong_to_their_operation_and_studies_must_exist(world: World) -> None:
    w = world
    study = w.state.propose(signed(proposal(w.researcher), w.researcher))
    with pytest.raises(InvalidArgument) as exc:
        w.state.review(review(w.members[0], study, cpb.REVIEW_DECISION_REVOKE))
    refused(InvalidArgument, Reason.INVALID_STUDY, exc)
    with pytest.raises(InvalidArgument):
        w.state.review(review(w.members[0], study, cpb.REVIEW_DECISION_UNSPECIFIED))
    with pytest.raises(InvalidArgument):
        w.state.revoke(review(w.members[0], study, cpb.REVIEW_DECISION_APPROVE))
    ghost = dataclasses.replace(study, study_id="S-000000000000")
    with pytest.raises(NotFound) as nf:
        w.state.review(review(w.members[0], ghost, cpb.REVIEW_DECISION_APPROVE))
    refused(NotFound, Reason.NOT_FOUND, nf)
    with pytest.raises(NotFound):
        w.state.get("S-000000000000")


def test_revoking_a_study_that_is_not_approved_is_refused(world: World) -> None:
    study = world.state.propose(signed(proposal(world.researcher), world.researcher))
    with pytest.raises(FailedPrecondition) as exc:
        world.state.revoke(review(world.members[0], study, cpb.REVIEW_DECISION_REVOKE))
    refused(FailedPrecondition, Reason.FAILED_PRECONDITION, exc)
    assert cpb.RevocationList.FromString(world.state.revocations().payload).epoch == 0


# Registry -----------------------------------------------------------------------------------------------------


def test_registry_is_idempotent_and_refuses_conflicts(world: World) -> None:
    s = world.state
    node = NodeInfo(name="site-a", endpoint="site-a.example.org:7000", cert_sha256=CERT, genome_build="GRCh38")
    assert s.register_node(node).registered_unix_ms == T0_MS
    moved = NodeInfo(name="site-a", endpoint="elsewhere:7000", cert_sha256=CERT, genome_build="GRCh38")
    with pytest.raises(AlreadyExists) as exc:
        s.register_node(moved)
    refused(AlreadyExists, Reason.ALREADY_EXISTS, exc)
    assert [n.name for n in s.list_nodes()] == list(SITES)

    r = s.register_researcher("Alice", "Example University", world.researcher.public_raw)
    assert r.key_fingerprint == hashlib.sha256(world.researcher.public_raw).hexdigest() == world.researcher.key_id
    with pytest.raises(AlreadyExists):
        s.register_researcher("Mallory", "Example University", world.researcher.public_raw)
    assert [m.key_id for m in s.committee()] == [world.members[i].key_id for i in (0, 2, 1)]  # by name


@pytest.mark.parametrize(
    "node",
    [
        NodeInfo(name="", endpoint="h:1", cert_sha256=CERT, genome_build="GRCh38"),
        NodeInfo(name="a b", endpoint="h:1", cert_sha256=CERT, genome_build="GRCh38"),
        NodeInfo(name="n\n", endpoint="h:1", cert_sha256=CERT, genome_build="GRCh38"),
        NodeInfo(name="n", endpoint="h:1\n", cert_sha256=CERT, genome_build="GRCh38"),
        NodeInfo(name="n", endpoint="no-port", cert_sha256=CERT, genome_build="GRCh38"),
        NodeInfo(name="n", endpoint="h:70000", cert_sha256=CERT, genome_build="GRCh38"),
        NodeInfo(name="n", endpoint="h:1", cert_sha256="AB" * 32, genome_build="GRCh38"),
        NodeInfo(name="n", endpoint="h:1", cert_sha256=CERT, genome_build="hg19"),
    ],
)
def test_bad_node_registrations_are_refused(world: World, node: NodeInfo) -> None:
    with pytest.raises(InvalidArgument) as exc:
        world.state.register_node(node)
    refused(InvalidArgument, Reason.INVALID_STUDY, exc)


@pytest.mark.parametrize(
    "pins",
    [("", ""), (CERT, CA), ("", "AB" * 32)],
    ids=["no pin", "two pins", "uppercase CA"],
)
def test_a_registration_has_exactly_one_well_formed_pin(world: World, pins: tuple[str, str]) -> None:
    node = NodeInfo(name="n", endpoint="h:1", cert_sha256=pins[0], genome_build="GRCh38", ca_sha256=pins[1])
    with pytest.raises(InvalidArgument) as exc:
        world.state.register_node(node)
    refused(InvalidArgument, Reason.INVALID_STUDY, exc)


def test_a_node_pinned_by_its_ca_registers_at_version_one(world: World) -> None:
    node = NodeInfo(name="site-d", endpoint="d:7000", cert_sha256="", genome_build="GRCh38", ca_sha256=CA)
    got = world.state.register_node(node)
    assert (got.ca_sha256, got.cert_sha256, got.version) == (CA, "", 1)
    assert got.registered_unix_ms == got.updated_unix_ms == T0_MS
    assert world.state.register_node(node) == got  # idempotent
    assert [n for n in world.state.list_nodes() if n.name == "site-d"] == [got]


def test_update_changes_only_what_it_names_steps_the_version_and_survives_reopening(world: World) -> None:
    w = world
    before = next(n for n in w.state.list_nodes() if n.name == "site-a")
    assert before.version == 1
    w.clock.t += 60
    old, new = w.state.update_node(NodeUpdate("site-a", endpoint="moved.example.org:7001"))
    assert old == before
    assert new == dataclasses.replace(
        before, endpoint="moved.example.org:7001", version=2, updated_unix_ms=T0_MS + 60_000
    )
    assert new.registered_unix_ms == before.registered_unix_ms

    w.clock.t += 60  # a CA pin replaces the certificate pin, and back
    _, by_ca = w.state.update_node(NodeUpdate("site-a", ca_sha256=CA))
    assert (by_ca.cert_sha256, by_ca.ca_sha256, by_ca.version, by_ca.endpoint) == ("", CA, 3, "moved.example.org:7001")
    _, by_cert = w.state.update_node(NodeUpdate("site-a", cert_sha256="cd" * 32, genome_build="GRCh37"))
    assert (by_cert.cert_sha256, by_cert.ca_sha256, by_cert.genome_build, by_cert.version) == (
        "cd" * 32,
        "",
        "GRCh37",
        4,
    )

    same = w.state.update_node(NodeUpdate("site-a", endpoint="moved.example.org:7001"))  # no change: no step
    assert same == (by_cert, by_cert)
    assert w.state.register_node(by_cert) == by_cert  # a re-registration of the current details is idempotent
    assert next(n for n in w.reopen().list_nodes() if n.name == "site-a") == by_cert


@pytest.mark.parametrize(
    "update",
    [
        NodeUpdate("site-a", endpoint="no-port"),
        NodeUpdate("site-a", cert_sha256="xyz"),
        NodeUpdate("site-a", cert_sha256=CERT, ca_sha256=CA),
        NodeUpdate("site-a", genome_build="hg19"),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(world: World, update: NodeUpdate) -> None:
    before = world.state.list_nodes()
    with pytest.raises(InvalidArgument) as exc:
        world.state.update_node(update)
    refused(InvalidArgument, Reason.INVALID_STUDY, exc)
    assert world.state.list_nodes() == before


def test_updating_or_removing_an_unregistered_node_is_not_found_naming_it(world: World) -> None:
    for call in (
        lambda: world.state.update_node(NodeUpdate("site-z", endpoint="z:1")),
        lambda: world.state.remove_node("site-z"),
    ):
        with pytest.raises(NotFound) as exc:
            call()
        refused(NotFound, Reason.NOT_FOUND, exc)
        assert "site-z" in exc.value.message


def test_removal_is_refused_while_an_active_study_names_the_node_unless_forced(world: World) -> None:
    w = world
    study = approved(w)  # names site-a and site-b
    proposed = w.state.propose(signed(proposal(w.researcher, sites=["site-b"], title="other"), w.researcher))
    with pytest.raises(FailedPrecondition) as exc:
        w.state.remove_node("site-b")
    refused(FailedPrecondition, Reason.FAILED_PRECONDITION, exc)
    assert study.study_id in exc.value.message and proposed.study_id in exc.value.message
    assert "--force" in exc.value.message
    assert "site-b" in [n.name for n in w.state.list_nodes()]

    node, naming = w.state.remove_node("site-c")  # no study names it
    assert node.name == "site-c" and naming == []
    node, naming = w.state.remove_node("site-b", force=True)
    assert node.name == "site-b" and naming == sorted([study.study_id, proposed.study_id])
    assert [n.name for n in w.state.list_nodes()] == ["site-a"]
    assert w.state.get(study.study_id).state == StudyState.APPROVED  # the study itself is untouched

    w.clock.t += 10  # the name can be registered again, afresh
    again = w.state.register_node(NodeInfo("site-b", "new-b:7000", CERT, "GRCh38"))
    assert (again.version, again.registered_unix_ms) == (1, T0_MS + 10_000)
    assert [n.name for n in w.reopen().list_nodes()] == ["site-a", "site-b"]


def test_a_revoked_or_expired_study_does_not_hold_its_nodes(world: World) -> None:
    w = world
    study = approved(w, sites=["site-c"], duration_days=1)
    with pytest.raises(FailedPrecondition):
        w.state.remove_node("site-c")
    w.clock.t += 2 * 86_400
    assert w.state.remove_node("site-c")[1] == []
    assert w.state.get(study.study_id).state == StudyState.EXPIRED


def test_bad_keys_are_refused(world: World) -> None:
    with pytest.raises(InvalidArgument):
        world.state.register_researcher("Eve", "X", b"\x01" * 31)
    with pytest.raises(InvalidArgument):
        world.state.add_committee_member("Eve", b"\x01" * 33)
    with pytest.raises(ValueError):
        world.opener(world.where, world.committee_signer, 0, world.clock)


# Persistence and history ---------------------------------------------------------------------------


def test_state_survives_reopening(world: World) -> None:
    w = world
    study = approved(w)
    revoked, _ = w.state.revoke(review(w.members[2], study, cpb.REVIEW_DECISION_REVOKE))
    pending = w.state.propose(signed(proposal(w.researcher, title="pending"), w.researcher))
    w.state.record_query("q-1", study.study_id, Kind.COHORT_COUNT, Decimal("0.1"), ["site-a"], {"site-a": "answered"})
    nodes, committee, history = w.state.list_nodes(), w.state.committee(), w.state.history(study.study_id)

    s = w.reopen()
    assert s.get(study.study_id) == revoked
    assert s.get(pending.study_id) == pending
    assert (s.list_nodes(), s.committee(), s.history(study.study_id)) == (nodes, committee, history)
    assert cpb.RevocationList.FromString(s.revocations().payload).epoch == 1
    assert s.researcher_key(w.researcher.key_id) == w.researcher.public_raw
    assert s.epoch() == 1


def test_history_is_recorded_exactly_and_kept(world: World) -> None:
    w = world
    study = approved(w)
    w.clock.t += 1
    rec = w.state.record_query(
        "q-1",
        study.study_id,
        Kind.ALLELE_FREQUENCY,
        Decimal("0.1"),
        ["site-a", "site-b"],
        {"site-b": "refused:BUDGET_EXHAUSTED", "site-a": "answered"},
    )
    w.state.record_query(
        "q-1", study.study_id, Kind.ALLELE_FREQUENCY, Decimal("0.1"), ["site-b"], {"site-b": "answered"}
    )
    history = w.state.history(study.study_id)
    assert history[0] == rec and rec.created_ms == T0_MS + 1000
    assert history[0].epsilon == Decimal("0.1") and history[0].sites == ("site-a", "site-b")
    assert history[0].outcomes == {"site-a": "answered", "site-b": "refused:BUDGET_EXHAUSTED"}
    assert [h.sites for h in history] == [("site-a", "site-b"), ("site-b",)]  # every run, retries included
    with pytest.raises(NotFound):
        w.state.record_query("q-2", "S-nope", Kind.COHORT_COUNT, Decimal("0.1"), ["site-a"], {})
    with pytest.raises(InvalidArgument) as exc:
        w.state.record_query("q-2", study.study_id, Kind.COHORT_COUNT, Decimal("0"), ["site-a"], {})
    assert exc.value.reason == Reason.INVALID_EPSILON
    w.state.revoke(review(w.members[2], study, cpb.REVIEW_DECISION_REVOKE))

    assert w.state.history(study.study_id) == history


def test_history_rows_name_their_audit_entry_and_may_carry_its_time(world: World) -> None:
    """``record_query(audit_seq=, created_ms=)``: what ``coordinator.record`` records with every run and what
    ``recover_history`` restores from the audit log; ``last_audit_seq`` is where that recovery starts."""
    w = world
    study = approved(w)
    assert w.state.last_audit_seq() == 0
    w.state.record_query("q-0", study.study_id, Kind.COHORT_COUNT, Decimal("0.1"), ["site-a"], {"site-a": "answered"})
    assert w.state.last_audit_seq() == 0  # a run recorded without an audit position (as before schema 3)
    w.state.record_query("q-1", study.study_id, Kind.COHORT_COUNT, Decimal("0.1"), ["site-a"], {}, audit_seq=7)
    restored = w.state.record_query(
        "q-2", study.study_id, Kind.COHORT_COUNT, Decimal("0.1"), ["site-a"], {}, audit_seq=9, created_ms=1234
    )
    assert restored.created_ms == 1234 and w.state.history(study.study_id)[-1] == restored
    assert w.state.last_audit_seq() == 9
    assert w.reopen().last_audit_seq() == 9
    with pytest.raises(InvalidArgument):
        w.state.record_query("q-3", study.study_id, Kind.COHORT_COUNT, Decimal("0.1"), [], {}, audit_seq=-1)


def test_a_closed_state_refuses_calls(world: World) -> None:
    state = world.state
    state.close()
    state.close()
    with pytest.raises(StoreError):
        state.list_nodes()


# Issue 13, item 2: the researcher's committed ε per site, and approvals refused over a site's cap.


def test_committed_sums_the_researchers_approved_grants_capped_by_each_sites_per_study_cap(world: World) -> None:
    w = world
    from coordinator.preview import SiteCaps

    approved(w, title="one", epsilon_total_per_site=4.0)
    approved(w, title="two", sites=["site-b", "site-c"], epsilon_total_per_site=6.0)
    w.state.propose(signed(proposal(w.researcher, title="pending", epsilon_total_per_site=9.0), w.researcher))
    assert w.state.committed(w.researcher.key_id) == {
        "site-a": Decimal("4.0"),
        "site-b": Decimal("10.0"),
        "site-c": Decimal("6.0"),
    }
    caps = {"site-b": SiteCaps(per_study=Decimal(5))}
    assert w.state.committed(w.researcher.key_id, caps)["site-b"] == Decimal(9)  # 4 + min(6, 5)
    assert w.state.committed("f" * 64) == {}


def test_an_approval_over_a_sites_per_researcher_cap_is_refused_naming_the_site_and_numbers(world: World) -> None:
    w = world
    from coordinator.preview import SiteCaps

    caps = {"site-a": SiteCaps(per_researcher=Decimal(20), period_days=30)}
    approved(w, title="first", epsilon_total_per_site=10.0)
    # 10 committed + 10 proposed = 20: exactly at the cap is allowed
    second = w.state.propose(signed(proposal(w.researcher, title="second"), w.researcher))
    w.state.review(review(w.members[0], second, cpb.REVIEW_DECISION_APPROVE), caps)
    done = w.state.review(review(w.members[1], second, cpb.REVIEW_DECISION_APPROVE), caps)
    assert done.state == StudyState.APPROVED
    third = w.state.propose(signed(proposal(w.researcher, title="third", epsilon_total_per_site=0.5), w.researcher))
    with pytest.raises(FailedPrecondition) as info:
        w.state.review(review(w.members[0], third, cpb.REVIEW_DECISION_APPROVE), caps)
    assert "site-a" in info.value.message and "20.5 in all" in info.value.message and "ε 20 per" in info.value.message
    assert w.state.get(third.study_id).state == StudyState.PROPOSED and not w.state.get(third.study_id).reviews
    # A rejection is never held back, and a site that publishes no cap checks nothing
    assert w.state.review(review(w.members[1], third, cpb.REVIEW_DECISION_REJECT), caps).state == (StudyState.REJECTED)
    fourth = w.state.propose(signed(proposal(w.researcher, title="fourth", epsilon_total_per_site=0.5), w.researcher))
    w.state.review(review(w.members[0], fourth, cpb.REVIEW_DECISION_APPROVE), {})
    assert w.state.review(review(w.members[1], fourth, cpb.REVIEW_DECISION_APPROVE)).state == StudyState.APPROVED


def test_the_grant_carries_the_membership_risk_of_its_budget(world: World) -> None:
    w = world
    from coordinator.preview import SiteCaps
    from genogate import risk
    from genogate.convert import risk_from_pb

    study = w.state.propose(signed(proposal(w.researcher, epsilon_total_per_site=10.0), w.researcher))
    caps = {"site-a": SiteCaps(per_study=Decimal(2)), "site-b": SiteCaps(per_study=Decimal(4))}
    w.state.review(review(w.members[0], study, cpb.REVIEW_DECISION_APPROVE), caps)
    study = w.state.review(review(w.members[1], study, cpb.REVIEW_DECISION_APPROVE), caps)
    assert risk_from_pb(pb.GrantBody.FromString(study.grant.payload).risk) == risk.membership_risk(4.0)


# Lookups of what does not exist, and calls from many threads ----------------------------------------------------


def test_unknown_keys_and_studies_are_not_found(world: World) -> None:
    w = world
    with pytest.raises(NotFound) as exc:
        w.state.researcher_key("f" * 64)
    refused(NotFound, Reason.NOT_FOUND, exc)
    with pytest.raises(NotFound):
        w.state.history("S-000000000000")
    assert w.state.epoch() == 0 and w.state.list(researcher="f" * 64) == []


def test_concurrent_calls_are_each_all_or_nothing_and_revocations_get_distinct_epochs(world: World) -> None:
    w = world
    n = 6

    def approve_and_revoke(i: int) -> tuple[str, int]:
        study = approved(w, title=f"study {i}")
        revoked, epoch = w.state.revoke(review(w.members[2], study, cpb.REVIEW_DECISION_REVOKE))
        return revoked.study_id, epoch

    with ThreadPoolExecutor(max_workers=n) as pool:
        done = list(pool.map(approve_and_revoke, range(n)))
    assert sorted(epoch for _, epoch in done) == list(range(1, n + 1))
    assert w.state.epoch() == n
    studies = w.state.list()
    assert sorted(s.study_id for s in studies) == sorted(sid for sid, _ in done)
    assert all(s.state == StudyState.REVOKED and len(s.reviews) == 3 for s in studies)
    assert sorted(cpb.RevocationList.FromString(w.state.revocations().payload).revoked_study_ids) == sorted(
        sid for sid, _ in done
    )
