"""The coordinator's durable state (``coordinator.state``): registry, the study lifecycle with k-of-n signed
reviews, committee-signed grants and revocation lists, expiry from an injected clock, every refusal with
its reason, persistence across reopening, and append-only history. Real Ed25519 keys, SQLite files in
``tmp_path``; every state is closed by the fixture or test that opens it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.preview import DAY_MS
from coordinator.state import CoordinatorState
from genogate.errors import (
    AlreadyExists,
    FailedPrecondition,
    GenogateError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    StoreError,
    Unauthenticated,
)
from genogate.query import Kind
from genogate.signing import Signer, verify
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
T0_MS = int(T0 * 1000)
SITES = ("site-a", "site-b", "site-c")
CERT = "ab" * 32


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def at_ms(self, ms: int) -> None:
        self.t = ms / 1000


def new_signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


@dataclass
class World:
    path: Path
    state: CoordinatorState
    clock: Clock
    committee_signer: Signer
    researcher: Signer
    members: list[Signer]

    def reopen(self) -> CoordinatorState:
        self.state.close()
        self.state = CoordinatorState(self.path, self.committee_signer, 2, self.clock)
        return self.state


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    committee_signer = new_signer()
    state = CoordinatorState(tmp_path / "coordinator.sqlite", committee_signer, 2, clock)
    w = World(tmp_path / "coordinator.sqlite", state, clock, committee_signer, new_signer(), [])
    try:
        for site in SITES:
            state.register_node(
                cpb.NodeInfo(name=site, endpoint=f"{site}.example.org:7000", cert_sha256=CERT, genome_build="GRCh38")
            )
        state.register_researcher("Alice", "Example University", w.researcher.public_raw)
        for name in ("Rev One", "Rev Two", "Rev Three"):
            member = new_signer()
            state.add_committee_member(name, member.public_raw)
            w.members.append(member)
        yield w
    finally:
        w.state.close()


def proposal(researcher: Signer, **overrides: object) -> cpb.StudyProposal:
    fields: dict[str, object] = {
        "title": "BRCA2 carriers in breast cancer",
        "purpose": "DS-C50;NPU",
        "kinds": [pb.QUERY_KIND_ALLELE_FREQUENCY, pb.QUERY_KIND_COHORT_COUNT],
        "sites": ["site-a", "site-b"],
        "epsilon_total_per_site": 10.0,
        "epsilon_per_query_cap": 0.5,
        "duration_days": 30,
        "researcher_key_fingerprint": researcher.key_id,
        "description": "allele frequencies of BRCA2 variants",
        "per_site_breakdown": True,
    }
    fields.update(overrides)
    return cpb.StudyProposal(**fields)  # type: ignore[arg-type]


def signed(p: cpb.StudyProposal, signer: Signer) -> cpb.SignedProposal:
    payload = p.SerializeToString(deterministic=True)
    return cpb.SignedProposal(payload=payload, researcher_signature=signer.sign("genogate.v1.StudyProposal", payload))


def review(
    member: Signer,
    study: cpb.Study,
    decision: cpb.ReviewDecision.ValueType,
    *,
    comment: str = "ok",
    sha: bytes | None = None,
    signer: Signer | None = None,
) -> cpb.Review:
    body = cpb.ReviewBody(
        study_id=study.study_id,
        proposal_sha256=study.proposal_sha256 if sha is None else sha,
        decision=decision,
        comment=comment,
        reviewed_unix_ms=T0_MS,
    )
    payload = body.SerializeToString(deterministic=True)
    sig = (signer or member).sign("genogate.v1.ReviewBody", payload)
    return cpb.Review(payload=payload, reviewer_signature=sig, reviewer_key_id=member.key_id)


def approved(w: World, **overrides: object) -> cpb.Study:
    study = w.state.propose(signed(proposal(w.researcher, **overrides), w.researcher))
    w.state.review(review(w.members[0], study, cpb.REVIEW_DECISION_APPROVE))
    return w.state.review(review(w.members[1], study, cpb.REVIEW_DECISION_APPROVE))


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def refused(exc_type: type[GenogateError], reason: Reason, exc: pytest.ExceptionInfo[GenogateError]) -> None:
    assert type(exc.value) is exc_type
    assert exc.value.reason == reason


# Lifecycle ----------------------------------------------------------------------------------------------------


def test_two_of_three_approvals_issue_a_verifiable_deterministic_grant(world: World) -> None:
    w = world
    s = signed(proposal(w.researcher), w.researcher)
    study = w.state.propose(s)
    assert study.state == cpb.STUDY_STATE_PROPOSED
    assert study.study_id == "S-" + hashlib.sha256(s.payload).hexdigest()[:12]
    assert study.proposal_sha256 == hashlib.sha256(s.payload).digest()
    assert study.signed_proposal == s and study.approvals_required == 2 and not study.HasField("grant")
    assert study.created_unix_ms == T0_MS

    w.clock.t += 60
    once = w.state.review(review(w.members[0], study, cpb.REVIEW_DECISION_APPROVE))
    assert once.state == cpb.STUDY_STATE_PROPOSED and len(once.reviews) == 1 and not once.HasField("grant")
    w.clock.t += 60
    twice = w.state.review(review(w.members[1], study, cpb.REVIEW_DECISION_APPROVE))
    approved_ms = T0_MS + 120_000
    assert twice.state == cpb.STUDY_STATE_APPROVED and twice.updated_unix_ms == approved_ms
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
    assert rejected.state == cpb.STUDY_STATE_REJECTED and not rejected.HasField("grant")
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
    assert revoked.state == cpb.STUDY_STATE_REVOKED and epoch == 1
    assert revoked.HasField("grant") and len(revoked.reviews) == 3
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
    assert w.state.get(study.study_id).state == cpb.STUDY_STATE_APPROVED
    w.clock.at_ms(not_after)
    expired = w.state.get(study.study_id)
    assert expired.state == cpb.STUDY_STATE_EXPIRED and expired.updated_unix_ms == not_after
    assert [s.study_id for s in w.state.list(state=cpb.STUDY_STATE_EXPIRED)] == [study.study_id]
    assert w.state.list(state=cpb.STUDY_STATE_APPROVED) == []
    with pytest.raises(FailedPrecondition):
        w.state.revoke(review(w.members[2], study, cpb.REVIEW_DECISION_REVOKE))
    w.clock.at_ms(not_after - 1)  # stored: a clock that steps back does not revive the grant
    assert w.reopen().get(study.study_id).state == cpb.STUDY_STATE_EXPIRED


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
    assert [s.study_id for s in w.state.list(state=cpb.STUDY_STATE_PROPOSED, researcher=w.researcher.key_id)] == [
        a.study_id
    ]
    assert len(w.state.list(state=cpb.STUDY_STATE_UNSPECIFIED)) == 3
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
    assert study.state == cpb.STUDY_STATE_PROPOSED  # cap == total and the longest duration are allowed


def test_a_payload_that_is_not_a_proposal_is_refused(world: World) -> None:
    with pytest.raises(InvalidArgument) as exc:
        world.state.propose(cpb.SignedProposal(payload=b"\xff\xff\xff", researcher_signature=b"x" * 64))
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
    assert world.state.get(study.study_id).reviews == []


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
    assert w.state.get(study.study_id).state == cpb.STUDY_STATE_PROPOSED


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
    ghost = cpb.Study(study_id="S-000000000000", proposal_sha256=study.proposal_sha256)
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
    node = cpb.NodeInfo(name="site-a", endpoint="site-a.example.org:7000", cert_sha256=CERT, genome_build="GRCh38")
    assert s.register_node(node).registered_unix_ms == T0_MS
    moved = cpb.NodeInfo(name="site-a", endpoint="elsewhere:7000", cert_sha256=CERT, genome_build="GRCh38")
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
        cpb.NodeInfo(name="", endpoint="h:1", cert_sha256=CERT, genome_build="GRCh38"),
        cpb.NodeInfo(name="a b", endpoint="h:1", cert_sha256=CERT, genome_build="GRCh38"),
        cpb.NodeInfo(name="n\n", endpoint="h:1", cert_sha256=CERT, genome_build="GRCh38"),
        cpb.NodeInfo(name="n", endpoint="h:1\n", cert_sha256=CERT, genome_build="GRCh38"),
        cpb.NodeInfo(name="n", endpoint="no-port", cert_sha256=CERT, genome_build="GRCh38"),
        cpb.NodeInfo(name="n", endpoint="h:70000", cert_sha256=CERT, genome_build="GRCh38"),
        cpb.NodeInfo(name="n", endpoint="h:1", cert_sha256="AB" * 32, genome_build="GRCh38"),
        cpb.NodeInfo(name="n", endpoint="h:1", cert_sha256=CERT, genome_build="hg19"),
    ],
)
def test_bad_node_registrations_are_refused(world: World, node: cpb.NodeInfo) -> None:
    with pytest.raises(InvalidArgument) as exc:
        world.state.register_node(node)
    refused(InvalidArgument, Reason.INVALID_STUDY, exc)


def test_bad_keys_are_refused(world: World) -> None:
    with pytest.raises(InvalidArgument):
        world.state.register_researcher("Eve", "X", b"\x01" * 31)
    with pytest.raises(InvalidArgument):
        world.state.add_committee_member("Eve", b"\x01" * 33)
    with pytest.raises(ValueError):
        CoordinatorState(world.path, world.committee_signer, 0)


# Persistence and append-only history ---------------------------------------------------------------------------


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


def test_history_is_recorded_exactly_and_append_only(world: World) -> None:
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

    with raw(w.path) as conn:
        for statement in (
            "UPDATE queries SET epsilon = '0'",
            "DELETE FROM queries",
            "UPDATE reviews SET decision = 2",
            "DELETE FROM reviews",
            "DELETE FROM revocations",
            "UPDATE revocations SET epoch = 0",
            "UPDATE epoch SET value = 0",
            "DELETE FROM studies",
            "UPDATE studies SET state = 'APPROVED'",  # REVOKED -> APPROVED is not a transition
            "UPDATE studies SET proposal = x'00'",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(statement)
    assert w.state.history(study.study_id) == history


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with raw(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError):
        CoordinatorState(path, new_signer(), 2)


def test_a_closed_state_refuses_calls(tmp_path: Path) -> None:
    state = CoordinatorState(tmp_path / "c.sqlite", new_signer(), 1)
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
    assert done.state == cpb.STUDY_STATE_APPROVED
    third = w.state.propose(signed(proposal(w.researcher, title="third", epsilon_total_per_site=0.5), w.researcher))
    with pytest.raises(FailedPrecondition) as info:
        w.state.review(review(w.members[0], third, cpb.REVIEW_DECISION_APPROVE), caps)
    assert "site-a" in info.value.message and "20.5 in all" in info.value.message and "ε 20 per" in info.value.message
    assert w.state.get(third.study_id).state == cpb.STUDY_STATE_PROPOSED and not w.state.get(third.study_id).reviews
    # A rejection is never held back, and a site that publishes no cap checks nothing
    assert w.state.review(review(w.members[1], third, cpb.REVIEW_DECISION_REJECT), caps).state == (
        cpb.STUDY_STATE_REJECTED
    )
    fourth = w.state.propose(signed(proposal(w.researcher, title="fourth", epsilon_total_per_site=0.5), w.researcher))
    w.state.review(review(w.members[0], fourth, cpb.REVIEW_DECISION_APPROVE), {})
    assert w.state.review(review(w.members[1], fourth, cpb.REVIEW_DECISION_APPROVE)).state == cpb.STUDY_STATE_APPROVED


def test_the_grant_carries_the_membership_risk_of_its_budget(world: World) -> None:
    w = world
    from coordinator.preview import SiteCaps
    from genogate import risk

    study = w.state.propose(signed(proposal(w.researcher, epsilon_total_per_site=10.0), w.researcher))
    caps = {"site-a": SiteCaps(per_study=Decimal(2)), "site-b": SiteCaps(per_study=Decimal(4))}
    w.state.review(review(w.members[0], study, cpb.REVIEW_DECISION_APPROVE), caps)
    study = w.state.review(review(w.members[1], study, cpb.REVIEW_DECISION_APPROVE), caps)
    assert pb.GrantBody.FromString(study.grant.payload).risk == risk.membership_risk(4.0)
