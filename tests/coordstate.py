"""A populated coordinator state for tests: three registered sites, a researcher, three committee members
(k = 2), a settable clock, and helpers that sign proposals and reviews with real Ed25519 keys. Used by the
conformance suite (every implementation) and the SQLite-specific unit tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.state import CoordinatorState
from genogate.errors import GenogateError, Reason
from genogate.signing import Signer
from genogate.studies import NodeInfo, Review, SignedProposal, Study
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
T0_MS = int(T0 * 1000)
SITES = ("site-a", "site-b", "site-c")
CERT = "ab" * 32
CA = "ca" * 32


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def at_ms(self, ms: int) -> None:
        self.t = ms / 1000


class Opener(Protocol):
    """Opens (or reopens) an implementation's state kept at ``where``, with the committee signer, k and clock."""

    def __call__(self, where: Path, signer: Signer, k: int, clock: Callable[[], float]) -> CoordinatorState: ...


def new_signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


@dataclass
class World:
    where: Path
    opener: Opener
    state: CoordinatorState
    clock: Clock
    committee_signer: Signer
    researcher: Signer
    members: list[Signer]

    def reopen(self) -> CoordinatorState:
        self.state.close()
        self.state = self.opener(self.where, self.committee_signer, 2, self.clock)
        return self.state


@contextlib.contextmanager
def open_world(where: Path, opener: Opener) -> Iterator[World]:
    clock = Clock()
    committee_signer = new_signer()
    state = opener(where, committee_signer, 2, clock)
    w = World(where, opener, state, clock, committee_signer, new_signer(), [])
    try:
        for site in SITES:
            state.register_node(
                NodeInfo(name=site, endpoint=f"{site}.example.org:7000", cert_sha256=CERT, genome_build="GRCh38")
            )
        state.register_researcher("Alice", "Example University", w.researcher.public_raw)
        for name in ("Rev One", "Rev Two", "Rev Three"):
            member = new_signer()
            state.add_committee_member(name, member.public_raw)
            w.members.append(member)
        yield w
    finally:
        w.state.close()


def sqlite_opener(where: Path, signer: Signer, k: int, clock: Callable[[], float]) -> CoordinatorState:
    """The SQLite implementation's state in ``where`` (an ``Opener``)."""
    from coordinator.state import SqliteCoordinatorState

    return SqliteCoordinatorState(where / "coordinator.sqlite", signer, k, clock)


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


def signed(p: cpb.StudyProposal, signer: Signer) -> SignedProposal:
    payload = p.SerializeToString(deterministic=True)
    return SignedProposal(payload=payload, researcher_signature=signer.sign("genogate.v1.StudyProposal", payload))


def review(
    member: Signer,
    study: Study,
    decision: cpb.ReviewDecision.ValueType,
    *,
    comment: str = "ok",
    sha: bytes | None = None,
    signer: Signer | None = None,
) -> Review:
    body = cpb.ReviewBody(
        study_id=study.study_id,
        proposal_sha256=study.proposal_sha256 if sha is None else sha,
        decision=decision,
        comment=comment,
        reviewed_unix_ms=T0_MS,
    )
    payload = body.SerializeToString(deterministic=True)
    sig = (signer or member).sign("genogate.v1.ReviewBody", payload)
    return Review(payload=payload, reviewer_signature=sig, reviewer_key_id=member.key_id)


def approved(w: World, **overrides: object) -> Study:
    study = w.state.propose(signed(proposal(w.researcher, **overrides), w.researcher))
    w.state.review(review(w.members[0], study, cpb.REVIEW_DECISION_APPROVE))
    return w.state.review(review(w.members[1], study, cpb.REVIEW_DECISION_APPROVE))


def refused(exc_type: type[GenogateError], reason: Reason, exc: pytest.ExceptionInfo[GenogateError]) -> None:
    assert type(exc.value) is exc_type
    assert exc.value.reason == reason
