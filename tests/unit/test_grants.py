"""Grant and signed-query verification at a node (``node.grants``): a valid query yields the right ``Study``;
every refusal carries its exact reason and a fixed public message; the revocation list must be signed, fresh,
at least as new as the grant, and never rolled back; nonces are durable, refuse a replay under another payload
but accept the same signed envelope again, and are recorded only when every other check passed.

Keys are real Ed25519 keys made per test; every nonce store lives in ``tmp_path`` and is closed by its fixture.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate.errors import (
    ConfigError,
    FailedPrecondition,
    GenogateError,
    InvalidArgument,
    PermissionDenied,
    Reason,
    ResourceExhausted,
    StoreError,
    Unauthenticated,
)
from genogate.query import Kind
from genogate.signing import Signer
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from node.grants import GrantVerifier, RevocationCache, VerifiedGrants, VerifiedQuery
from node.ledger import Charged, Ledger, Pending
from node.nonces import NonceClaim, NonceStore

NOW_MS = 1_780_000_000_000
DAY_MS = 86_400_000
WINDOW_MS = 60_000
STALENESS_MS = 600_000
SITE = "site-a"
STUDY = "S-2026-001"


class Clock:
    """A settable clock in seconds, like ``time.time``."""

    def __init__(self, ms: int = NOW_MS) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


# The caller of ``verify`` in most tests: the coordinator, as the node is told (grants here grant no breakdown).
AS_COORDINATOR: dict[str, str] = {"caller": "coordinator", "coordinator_common_name": "coordinator"}


@dataclass
class World:
    committee: Signer = field(default_factory=signer)
    researcher: Signer = field(default_factory=signer)
    clock: Clock = field(default_factory=Clock)
    nonce_count: int = 0

    @property
    def trusted(self) -> dict[str, bytes]:
        return {self.committee.key_id: self.committee.public_raw}

    def grant(self, *, by: Signer | None = None, key_id: str | None = None, **terms: Any) -> pb.StudyGrant:
        """A grant for ``STUDY`` at ``SITE`` and ``site-b``, valid a day either side of now; ``terms`` override."""
        fields: dict[str, Any] = {
            "study_id": STUDY,
            "researcher_key_fingerprint": self.researcher.key_id,
            "researcher_public_key": self.researcher.public_raw,
            "purpose": "HMB;NPU",
            "kinds": [pb.QUERY_KIND_COHORT_COUNT, pb.QUERY_KIND_ALLELE_FREQUENCY],
            "sites": [SITE, "site-b"],
            "epsilon_total": 4.0,
            "epsilon_per_query_cap": 0.1,
            "not_before_unix_ms": NOW_MS - DAY_MS,
            "not_after_unix_ms": NOW_MS + DAY_MS,
            "revocation_epoch": 3,
            "assembly": "GRCh37",  # the build of the stores these tests query
        }
        fields.update(terms)
        return self.sign_grant(pb.GrantBody(**fields).SerializeToString(), by=by, key_id=key_id)

    def sign_grant(self, payload: bytes, *, by: Signer | None = None, key_id: str | None = None) -> pb.StudyGrant:
        by = by or self.committee
        return pb.StudyGrant(
            payload=payload,
            committee_signature=by.sign("genogate.v1.GrantBody", payload),
            committee_key_id=key_id or by.key_id,
        )

    def query(self, *, by: Signer | None = None, **fields: Any) -> pb.SignedQuery:
        """A cohort-count envelope for ``STUDY``, stamped now, with a fresh nonce; ``fields`` override."""
        self.nonce_count += 1
        env: dict[str, Any] = {
            "query_id": f"q-{self.nonce_count}",
            "study_id": STUDY,
            "query": pb.Query(cohort_count=pb.CohortCountQuery()),
            "epsilon": 0.1,
            "nonce": self.nonce_count.to_bytes(16, "big"),
            "timestamp_unix_ms": self.clock.ms,
        }
        env.update(fields)
        payload = pb.QueryEnvelope(**env).SerializeToString()
        return pb.SignedQuery(
            payload=payload, researcher_signature=(by or self.researcher).sign("genogate.v1.QueryEnvelope", payload)
        )

    def revocations(
        self, *, revoked: tuple[str, ...] = (), epoch: int = 3, issued_ms: int | None = None, by: Signer | None = None
    ) -> cpb.SignedRevocationList:
        body = cpb.RevocationList(
            revoked_study_ids=sorted(revoked),
            epoch=epoch,
            issued_unix_ms=self.clock.ms if issued_ms is None else issued_ms,
        )
        payload = body.SerializeToString()
        by = by or self.committee
        return cpb.SignedRevocationList(
            payload=payload,
            committee_signature=by.sign("genogate.v1.RevocationList", payload),
            committee_key_id=by.key_id,
        )


@pytest.fixture
def world() -> World:
    return World()


_LEDGERS: list[Ledger] = []


def open_nonces(path: Path, legacy: Path | None = None) -> NonceStore:
    """A nonce store in the ledger file at ``path`` (the ledger is closed after the test)."""
    ledger = Ledger(path)
    _LEDGERS.append(ledger)
    return NonceStore(ledger, WINDOW_MS, legacy=legacy)


@pytest.fixture(autouse=True)
def _close_ledgers() -> Iterator[None]:
    yield
    while _LEDGERS:
        _LEDGERS.pop().close()


@pytest.fixture
def nonces(tmp_path: Path) -> Iterator[NonceStore]:
    store = open_nonces(tmp_path / "ledger.sqlite")
    yield store
    store.close()


@pytest.fixture
def cache(world: World) -> RevocationCache:
    cache = RevocationCache(world.trusted, STALENESS_MS, world.clock)
    cache.update(world.revocations())
    return cache


def make_verifier(
    world: World,
    cache: RevocationCache,
    nonces: NonceStore,
    *,
    opted_in: frozenset[str] | None = None,
    refused: frozenset[str] = frozenset(),
    site: str = SITE,
) -> GrantVerifier:
    return GrantVerifier(
        site=site,
        trusted_committee=world.trusted,
        revocations=cache,
        nonces=nonces,
        timestamp_window_ms=WINDOW_MS,
        opted_in=opted_in,
        refused=refused,
        clock=world.clock,
    )


@pytest.fixture
def verifier(world: World, cache: RevocationCache, nonces: NonceStore) -> GrantVerifier:
    return make_verifier(world, cache, nonces)


def refused_with(
    cls: type[GenogateError], reason: Reason, fn: Callable[[], object], message: str | None = None
) -> GenogateError:
    """Assert ``fn`` raises exactly ``cls`` with ``reason`` and a public message (which may echo what the request
    and the grant say: ids, sites, dates; never anything the node holds)."""
    with pytest.raises(cls) as info:
        fn()
    exc = info.value
    assert type(exc) is cls
    assert exc.reason is reason, exc.detail
    assert exc.message and exc.message[0].islower()
    if message is not None:
        assert exc.message == message
    return exc


# The accepted path -------------------------------------------------------------------------------------


def test_a_valid_query_yields_the_study_of_the_grant(world: World, verifier: GrantVerifier) -> None:
    signed = world.query()
    got = verifier.verify(world.grant(), signed, **AS_COORDINATOR)
    assert isinstance(got, VerifiedQuery)
    assert got.payload == signed.payload
    assert got.envelope.query_id == "q-1" and got.envelope.study_id == STUDY
    assert got.grant.study_id == STUDY
    study = got.study
    assert study.study_id == STUDY
    assert study.purpose == ("HMB", frozenset({"NPU"}))
    assert study.purpose_text == "HMB;NPU"
    assert study.kinds == frozenset({Kind.COHORT_COUNT, Kind.ALLELE_FREQUENCY})
    assert study.epsilon_total == Decimal("4.0")
    assert study.epsilon_per_query_cap == Decimal("0.1")  # repr of the double, not 0.1000000000000000055...
    assert study.not_before == dt.datetime.fromtimestamp((NOW_MS - DAY_MS) / 1000, tz=dt.UTC)
    assert study.not_after == dt.datetime.fromtimestamp((NOW_MS + DAY_MS) / 1000, tz=dt.UTC)
    assert study.not_after is not None and study.not_after.tzinfo is not None
    assert study.researchers == frozenset({world.researcher.key_id})


def test_an_envelope_naming_this_site_is_accepted(world: World, verifier: GrantVerifier) -> None:
    verifier.verify(world.grant(), world.query(sites=["site-b", SITE]), **AS_COORDINATOR)


def test_a_study_the_steward_opted_into_is_accepted(world: World, cache: RevocationCache, nonces: NonceStore) -> None:
    v = make_verifier(world, cache, nonces, opted_in=frozenset({STUDY}))
    v.verify(world.grant(), world.query(), **AS_COORDINATOR)


# The grant ----------------------------------------------------------------------------------------------


def test_untrusted_committee_key(world: World, verifier: GrantVerifier) -> None:
    stranger = signer()
    grant = world.grant(by=stranger)
    exc = refused_with(
        PermissionDenied, Reason.UNTRUSTED_COMMITTEE, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR)
    )
    assert exc.message.startswith("the grant is signed by a committee key this node does not trust: it names key ")
    assert stranger.key_id in exc.message and "this site trusts 1 committee key " in exc.message


def test_forged_grant_signature(world: World, verifier: GrantVerifier) -> None:
    # Signed by another key that claims the trusted committee's key id.
    grant = world.grant(by=signer(), key_id=world.committee.key_id)
    refused_with(Unauthenticated, Reason.BAD_SIGNATURE, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR))


def test_grant_terms_changed_after_signing(world: World, verifier: GrantVerifier) -> None:
    grant = world.grant()
    body = pb.GrantBody.FromString(grant.payload)
    body.epsilon_total = 400.0
    grant.payload = body.SerializeToString()
    refused_with(Unauthenticated, Reason.BAD_SIGNATURE, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR))


def test_grant_body_signed_as_another_kind_of_message(world: World, verifier: GrantVerifier) -> None:
    grant = world.grant()
    grant.committee_signature = world.committee.sign("genogate.v1.RevocationList", grant.payload)
    refused_with(Unauthenticated, Reason.BAD_SIGNATURE, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR))


def test_researcher_key_not_matching_its_fingerprint(world: World, verifier: GrantVerifier) -> None:
    grant = world.grant(researcher_public_key=signer().public_raw)
    refused_with(InvalidArgument, Reason.INVALID_STUDY, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR))


@pytest.mark.parametrize(
    "terms",
    [
        {"study_id": ""},
        {"study_id": "S" * 129},
        {"researcher_public_key": b""},
        {"researcher_public_key": b"\x01" * 31},
        {"researcher_key_fingerprint": ""},
        {"purpose": ""},
        {"purpose": "NPU"},
        {"purpose": "NOT-A-CODE"},
        {"kinds": []},
        {"kinds": [pb.QUERY_KIND_UNSPECIFIED]},
        {"kinds": [99]},
        {"sites": []},
        {"sites": [SITE, ""]},
        {"epsilon_total": 0.0},
        {"epsilon_total": float("nan")},
        {"epsilon_per_query_cap": -1.0},
        {"epsilon_per_query_cap": float("inf")},
        {"not_after_unix_ms": 0},
        {"not_before_unix_ms": NOW_MS + DAY_MS},
        {"not_after_unix_ms": 2**62},
    ],
    ids=lambda t: repr(t)[:40],
)
def test_malformed_grant_terms(world: World, verifier: GrantVerifier, terms: dict[str, Any]) -> None:
    refused_with(
        InvalidArgument,
        Reason.INVALID_STUDY,
        lambda: verifier.verify(world.grant(**terms), world.query(), **AS_COORDINATOR),
    )


def test_undecodable_grant_body(world: World, verifier: GrantVerifier) -> None:
    grant = world.sign_grant(b"\xff\xff\xff")
    refused_with(InvalidArgument, Reason.INVALID_STUDY, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR))


def test_grant_validity_window_edges(world: World, verifier: GrantVerifier) -> None:
    grant = world.grant(not_before_unix_ms=NOW_MS, not_after_unix_ms=NOW_MS + 1)
    verifier.verify(grant, world.query(), **AS_COORDINATOR)  # not_before is inclusive
    world.clock.ms = NOW_MS - 1
    at = f"{dt.datetime.fromtimestamp(NOW_MS / 1000, tz=dt.UTC):%Y-%m-%d %H:%M} UTC"
    refused_with(
        PermissionDenied,
        Reason.GRANT_NOT_YET_VALID,
        lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR),
        message=f"the study grant is not yet valid: study {STUDY} starts at {at}",
    )
    world.clock.ms = NOW_MS + 1
    refused_with(
        PermissionDenied,
        Reason.GRANT_EXPIRED,
        lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR),
        message=f"the study grant has expired: study {STUDY} ended at {at}",
    )


def test_expired_grant(world: World, verifier: GrantVerifier) -> None:
    grant = world.grant(not_before_unix_ms=NOW_MS - 2 * DAY_MS, not_after_unix_ms=NOW_MS - DAY_MS)
    refused_with(
        PermissionDenied, Reason.GRANT_EXPIRED, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR)
    )


def test_grant_not_yet_valid(world: World, verifier: GrantVerifier) -> None:
    grant = world.grant(not_before_unix_ms=NOW_MS + DAY_MS, not_after_unix_ms=NOW_MS + 2 * DAY_MS)
    refused_with(
        PermissionDenied, Reason.GRANT_NOT_YET_VALID, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR)
    )


def test_grant_for_other_sites(world: World, verifier: GrantVerifier) -> None:
    grant = world.grant(sites=["site-b", "site-c"])
    refused_with(
        PermissionDenied,
        Reason.GRANT_WRONG_SITE,
        lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR),
        message=f"the grant does not name this site: this is {SITE}; the grant of study {STUDY} names site-b, site-c",
    )


# The node's own steward ----------------------------------------------------------------------------------


def test_study_refused_by_the_steward(world: World, cache: RevocationCache, nonces: NonceStore) -> None:
    v = make_verifier(world, cache, nonces, refused=frozenset({STUDY}), opted_in=frozenset({STUDY}))
    refused_with(
        PermissionDenied,
        Reason.STUDY_REFUSED,
        lambda: v.verify(world.grant(), world.query(), **AS_COORDINATOR),
        message=f"this node's policy refuses this study: study {STUDY} is refused by this site's data steward",
    )


def test_study_not_opted_in(world: World, cache: RevocationCache, nonces: NonceStore) -> None:
    v = make_verifier(world, cache, nonces, opted_in=frozenset({"S-other"}))
    exc = refused_with(
        PermissionDenied,
        Reason.STUDY_REFUSED,
        lambda: v.verify(world.grant(), world.query(), **AS_COORDINATOR),
        message=f"this node's policy refuses this study: study {STUDY} is not among the studies this site opted in to",
    )
    assert "S-other" not in exc.message  # the steward's list of other studies is not disclosed


# Revocations --------------------------------------------------------------------------------------------


def test_revoked_study(world: World, cache: RevocationCache, verifier: GrantVerifier) -> None:
    cache.update(world.revocations(revoked=(STUDY, "S-x"), epoch=4))
    refused_with(
        PermissionDenied,
        Reason.GRANT_REVOKED,
        lambda: verifier.verify(world.grant(), world.query(), **AS_COORDINATOR),
        message=f"the study was revoked: study {STUDY} is on the committee's revocation list (epoch 4)",
    )


def test_revocation_is_final_even_on_a_stale_list(world: World, cache: RevocationCache) -> None:
    cache.update(world.revocations(revoked=(STUDY,), epoch=4))
    world.clock.ms += STALENESS_MS + 1
    refused_with(PermissionDenied, Reason.GRANT_REVOKED, lambda: cache.check(STUDY, 0))


def test_revocation_list_never_fetched(world: World, nonces: NonceStore) -> None:
    empty = RevocationCache(world.trusted, STALENESS_MS, world.clock)
    assert empty.epoch is None
    v = make_verifier(world, empty, nonces)
    refused_with(
        PermissionDenied,
        Reason.REVOCATION_UNCONFIRMED,
        lambda: v.verify(world.grant(), world.query(), **AS_COORDINATOR),
    )


def test_revocation_list_stale_by_fetch_time(world: World, cache: RevocationCache, verifier: GrantVerifier) -> None:
    world.clock.ms += STALENESS_MS  # exactly at the limit: still fresh
    grant = world.grant()
    verifier.verify(grant, world.query(), **AS_COORDINATOR)
    world.clock.ms += 1
    refused_with(
        PermissionDenied, Reason.REVOCATION_UNCONFIRMED, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR)
    )


def test_revocation_list_stale_by_signing_time(world: World, nonces: NonceStore) -> None:
    # Freshly fetched, but signed long ago: an old list replayed to the node stays old.
    cache = RevocationCache(world.trusted, STALENESS_MS, world.clock)
    cache.update(world.revocations(issued_ms=NOW_MS - STALENESS_MS - 1))
    v = make_verifier(world, cache, nonces)
    refused_with(
        PermissionDenied,
        Reason.REVOCATION_UNCONFIRMED,
        lambda: v.verify(world.grant(), world.query(), **AS_COORDINATOR),
    )


def test_revocation_list_older_than_the_grant(world: World, verifier: GrantVerifier) -> None:
    grant = world.grant(revocation_epoch=4)  # the list held is epoch 3
    refused_with(
        PermissionDenied,
        Reason.REVOCATION_UNCONFIRMED,
        lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR),
        message="this node cannot yet confirm that the study is not revoked: the grant names revocation epoch 4, the"
        " list held is epoch 3",
    )


def test_refresh_adopts_a_newer_list(world: World, cache: RevocationCache, verifier: GrantVerifier) -> None:
    world.clock.ms += 1000
    assert cache.refresh(lambda: world.revocations(epoch=4))
    assert cache.epoch == 4 and cache.last_error is None
    verifier.verify(world.grant(revocation_epoch=4), world.query(), **AS_COORDINATOR)
    # The same list again (an unchanged epoch, re-signed later) is accepted and renews freshness.
    world.clock.ms += STALENESS_MS
    assert cache.refresh(lambda: world.revocations(epoch=4))
    verifier.verify(world.grant(revocation_epoch=4), world.query(), **AS_COORDINATOR)


def test_revocation_list_rollback_refused(world: World, cache: RevocationCache) -> None:
    cache.update(world.revocations(revoked=(STUDY,), epoch=5))
    world.clock.ms += 1000
    old = world.revocations(epoch=4)
    refused_with(FailedPrecondition, Reason.FAILED_PRECONDITION, lambda: cache.update(old))
    assert not cache.refresh(lambda: old)
    assert isinstance(cache.last_error, FailedPrecondition)
    assert cache.epoch == 5
    refused_with(PermissionDenied, Reason.GRANT_REVOKED, lambda: cache.check(STUDY, 5))


def test_same_epoch_signed_earlier_or_with_other_contents_refused(world: World, cache: RevocationCache) -> None:
    held_at = world.clock.ms
    world.clock.ms += 1000
    refused_with(
        FailedPrecondition, Reason.FAILED_PRECONDITION, lambda: cache.update(world.revocations(issued_ms=held_at - 1))
    )
    refused_with(
        FailedPrecondition, Reason.FAILED_PRECONDITION, lambda: cache.update(world.revocations(revoked=("x",)))
    )


def test_forged_revocation_list_refused(world: World, cache: RevocationCache) -> None:
    forged = world.revocations(epoch=9, by=signer())
    forged.committee_key_id = world.committee.key_id
    refused_with(Unauthenticated, Reason.BAD_SIGNATURE, lambda: cache.update(forged))
    untrusted = world.revocations(epoch=9, by=signer())
    refused_with(PermissionDenied, Reason.UNTRUSTED_COMMITTEE, lambda: cache.update(untrusted))
    tampered = world.revocations(epoch=9)
    tampered.payload = cpb.RevocationList(epoch=10, issued_unix_ms=NOW_MS).SerializeToString()
    refused_with(Unauthenticated, Reason.BAD_SIGNATURE, lambda: cache.update(tampered))
    assert not cache.refresh(lambda: forged)
    assert cache.epoch == 3


def test_refresh_keeps_the_old_list_when_the_fetch_fails(world: World, cache: RevocationCache) -> None:
    def boom() -> cpb.SignedRevocationList:
        raise ConnectionError("coordinator down")

    assert not cache.refresh(boom)
    assert cache.epoch == 3 and cache.last_error is not None
    cache.check(STUDY, 3)


# The signed query ---------------------------------------------------------------------------------------


def test_query_signed_by_another_researcher(world: World, verifier: GrantVerifier) -> None:
    refused_with(
        Unauthenticated,
        Reason.BAD_SIGNATURE,
        lambda: verifier.verify(world.grant(), world.query(by=signer()), **AS_COORDINATOR),
    )


def test_payload_tampered_after_signing(world: World, verifier: GrantVerifier) -> None:
    signed = world.query()
    env = pb.QueryEnvelope.FromString(signed.payload)
    env.epsilon = 5.0
    signed.payload = env.SerializeToString()
    refused_with(
        Unauthenticated, Reason.BAD_SIGNATURE, lambda: verifier.verify(world.grant(), signed, **AS_COORDINATOR)
    )


def test_envelope_for_another_study(world: World, verifier: GrantVerifier) -> None:
    exc = refused_with(
        PermissionDenied,
        Reason.GRANT_MISSING,
        lambda: verifier.verify(world.grant(), world.query(study_id="S-other"), **AS_COORDINATOR),
        message=f"the grant is for another study: the query is for S-other, the grant for {STUDY}",
    )
    assert exc.detail not in exc.message


def test_envelope_naming_other_sites(world: World, verifier: GrantVerifier) -> None:
    refused_with(
        PermissionDenied,
        Reason.GRANT_WRONG_SITE,
        lambda: verifier.verify(world.grant(), world.query(sites=["site-b", "site-c"]), **AS_COORDINATOR),
        message=f"the query is not addressed to this site: this is {SITE}; the query names site-b, site-c",
    )


def test_undecodable_envelope(world: World, verifier: GrantVerifier) -> None:
    payload = b"\xff\xff\xff"
    signed = pb.SignedQuery(
        payload=payload, researcher_signature=world.researcher.sign("genogate.v1.QueryEnvelope", payload)
    )
    refused_with(
        InvalidArgument, Reason.INVALID_QUERY, lambda: verifier.verify(world.grant(), signed, **AS_COORDINATOR)
    )


@pytest.mark.parametrize("offset_ms", [-WINDOW_MS - 1, WINDOW_MS + 1, -10 * DAY_MS])
def test_stale_or_future_timestamp(world: World, verifier: GrantVerifier, offset_ms: int) -> None:
    signed = world.query(timestamp_unix_ms=NOW_MS + offset_ms)
    refused_with(
        Unauthenticated, Reason.STALE_TIMESTAMP, lambda: verifier.verify(world.grant(), signed, **AS_COORDINATOR)
    )


@pytest.mark.parametrize("offset_ms", [-WINDOW_MS, WINDOW_MS])
def test_timestamp_at_the_window_edge_accepted(world: World, verifier: GrantVerifier, offset_ms: int) -> None:
    verifier.verify(world.grant(), world.query(timestamp_unix_ms=NOW_MS + offset_ms), **AS_COORDINATOR)


def test_short_nonce(world: World, verifier: GrantVerifier) -> None:
    signed = world.query(nonce=b"\x01" * 15)
    refused_with(
        InvalidArgument, Reason.INVALID_QUERY, lambda: verifier.verify(world.grant(), signed, **AS_COORDINATOR)
    )


# Nonces -------------------------------------------------------------------------------------------------


def test_replayed_nonce_with_another_payload(world: World, verifier: GrantVerifier) -> None:
    grant, nonce = world.grant(), b"n" * 16
    verifier.verify(grant, world.query(nonce=nonce), **AS_COORDINATOR)
    replay = world.query(nonce=nonce)  # another query id, same nonce
    refused_with(Unauthenticated, Reason.REPLAYED_NONCE, lambda: verifier.verify(grant, replay, **AS_COORDINATOR))


def test_the_same_signed_envelope_again_is_an_idempotent_retry(world: World, verifier: GrantVerifier) -> None:
    grant, signed = world.grant(), world.query()
    first = verifier.verify(grant, signed, **AS_COORDINATOR)
    world.clock.ms += 5_000
    again = verifier.verify(grant, signed, **AS_COORDINATOR)
    assert again.payload == first.payload and again.study == first.study


def test_nonces_survive_reopening_the_store(world: World, cache: RevocationCache, tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    grant, nonce = world.grant(), b"r" * 16
    store = open_nonces(path)
    try:
        make_verifier(world, cache, store).verify(grant, world.query(nonce=nonce), **AS_COORDINATOR)
    finally:
        store.close()
    store = open_nonces(path)
    try:
        v = make_verifier(world, cache, store)
        refused_with(
            Unauthenticated, Reason.REPLAYED_NONCE, lambda: v.verify(grant, world.query(nonce=nonce), **AS_COORDINATOR)
        )
        assert len(store) == 1
    finally:
        store.close()


FAILURES: dict[str, Callable[[World], tuple[pb.StudyGrant, dict[str, Any]]]] = {
    "bad query signature": lambda w: (w.grant(), {"by": signer()}),
    "another study": lambda w: (w.grant(), {"study_id": "S-other"}),
    "another site": lambda w: (w.grant(), {"sites": ["site-b"]}),
    "stale timestamp": lambda w: (w.grant(), {"timestamp_unix_ms": NOW_MS - 2 * WINDOW_MS}),
    "revocation unconfirmed": lambda w: (w.grant(revocation_epoch=99), {}),
    "expired grant": lambda w: (w.grant(not_after_unix_ms=NOW_MS - 1, not_before_unix_ms=0), {}),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_check_records_no_nonce(
    world: World, verifier: GrantVerifier, nonces: NonceStore, failure: str
) -> None:
    nonce = b"f" * 16
    grant, query_fields = FAILURES[failure](world)
    with pytest.raises(GenogateError):
        verifier.verify(grant, world.query(nonce=nonce, **query_fields), **AS_COORDINATOR)
    assert len(nonces) == 0
    verifier.verify(world.grant(), world.query(nonce=nonce), **AS_COORDINATOR)  # the nonce is still fresh
    assert len(nonces) == 1


def test_nonce_store_prunes_and_refuses_anything_before_its_horizon(nonces: NonceStore) -> None:
    sha = hashlib.sha256(b"p").hexdigest()
    nonces.check_and_record(b"a" * 16, sha, NOW_MS, NOW_MS, "coordinator")
    nonces.check_and_record(b"b" * 16, sha, NOW_MS + 3 * WINDOW_MS, NOW_MS + 3 * WINDOW_MS, "coordinator")
    assert len(nonces) == 1  # "a" was more than 2 windows old
    # A clock stepped back cannot readmit the pruned nonce: its timestamp precedes the horizon.
    refused_with(
        Unauthenticated,
        Reason.STALE_TIMESTAMP,
        lambda: nonces.check_and_record(b"a" * 16, "0" * 64, NOW_MS, NOW_MS, "coordinator"),
    )


def test_nonce_store_idempotent_retry_and_replay(nonces: NonceStore) -> None:
    one, two = hashlib.sha256(b"1").hexdigest(), hashlib.sha256(b"2").hexdigest()
    nonces.check_and_record(b"x" * 16, one, NOW_MS, NOW_MS, "coordinator")
    nonces.check_and_record(b"x" * 16, one, NOW_MS, NOW_MS + 1, "coordinator")
    refused_with(
        Unauthenticated,
        Reason.REPLAYED_NONCE,
        lambda: nonces.check_and_record(b"x" * 16, two, NOW_MS, NOW_MS, "coordinator"),
    )
    refused_with(
        InvalidArgument, Reason.INVALID_QUERY, lambda: nonces.check_and_record(b"", one, NOW_MS, NOW_MS, "coordinator")
    )
    refused_with(
        InvalidArgument,
        Reason.INVALID_QUERY,
        lambda: nonces.check_and_record(b"x" * 257, one, NOW_MS, NOW_MS, "coordinator"),
    )
    assert len(nonces) == 1


def test_one_nonce_is_accepted_once_under_concurrency(nonces: NonceStore, tmp_path: Path) -> None:
    # Two stores on one file stand in for two processes; SQLite's write lock serialises them.
    second = open_nonces(tmp_path / "ledger.sqlite")
    outcomes: list[str] = []
    start = threading.Barrier(16)

    def attempt(i: int) -> None:
        store = nonces if i % 2 else second
        start.wait()
        try:
            store.check_and_record(
                b"c" * 16, hashlib.sha256(str(i).encode()).hexdigest(), NOW_MS, NOW_MS, "coordinator"
            )
            outcomes.append("accepted")
        except Unauthenticated as exc:
            outcomes.append(exc.reason.name)

    try:
        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        second.close()
    assert sorted(outcomes) == ["REPLAYED_NONCE"] * 15 + ["accepted"]


def test_nonce_store_refuses_foreign_files(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError):
        open_nonces(other)
    text = tmp_path / "text"
    text.write_text("not a database at all, just some text that is long enough\n" * 10)
    with pytest.raises(StoreError):
        open_nonces(text)


def test_closed_nonce_store_refuses(tmp_path: Path) -> None:
    store = open_nonces(tmp_path / "n.sqlite")
    store.close()
    store.close()
    with pytest.raises(StoreError):
        store.check_and_record(b"x" * 16, "0" * 64, NOW_MS, NOW_MS, "coordinator")


# Configuration ------------------------------------------------------------------------------------------


def test_trusted_keys_must_match_their_ids(world: World, nonces: NonceStore) -> None:
    with pytest.raises(ConfigError):
        RevocationCache({"0" * 64: world.committee.public_raw}, STALENESS_MS, world.clock)
    cache = RevocationCache(world.trusted, STALENESS_MS, world.clock)
    with pytest.raises(ConfigError):
        GrantVerifier(
            site=SITE,
            trusted_committee={world.committee.key_id: b"short"},
            revocations=cache,
            nonces=nonces,
            timestamp_window_ms=WINDOW_MS,
            opted_in=None,
            refused=frozenset(),
        )


def test_timestamp_window_must_fit_the_nonce_window(world: World, cache: RevocationCache, nonces: NonceStore) -> None:
    for window in (0, WINDOW_MS + 1):
        with pytest.raises(ConfigError):
            GrantVerifier(
                site=SITE,
                trusted_committee=world.trusted,
                revocations=cache,
                nonces=nonces,
                timestamp_window_ms=window,
                opted_in=None,
                refused=frozenset(),
            )


# Issue 13, item 6: size and signature before anything is decoded.
AS_COORDINATOR = {"caller": "coordinator", "coordinator_common_name": "coordinator"}


def test_an_oversized_envelope_is_refused_before_the_grant_or_its_bytes_are_read(
    world: World, cache: RevocationCache, nonces: NonceStore
) -> None:
    from node.grants import MAX_GRANT_BYTES

    v = GrantVerifier(
        site=SITE,
        trusted_committee=world.trusted,
        revocations=cache,
        nonces=nonces,
        timestamp_window_ms=WINDOW_MS,
        opted_in=None,
        refused=frozenset(),
        clock=world.clock,
        max_payload_bytes=4096,
    )
    big = pb.SignedQuery(payload=b"\xff" * 4097, researcher_signature=b"")  # not even an envelope
    forged = pb.StudyGrant(payload=b"x", committee_signature=b"", committee_key_id="nobody")
    exc = refused_with(InvalidArgument, Reason.INVALID_QUERY, lambda: v.verify(forged, big, **AS_COORDINATOR))
    assert "at most 4096" in exc.detail
    huge_grant = world.sign_grant(b"\x00" * (MAX_GRANT_BYTES + 1))
    exc = refused_with(
        InvalidArgument, Reason.INVALID_STUDY, lambda: v.verify(huge_grant, world.query(), **AS_COORDINATOR)
    )
    assert f"at most {MAX_GRANT_BYTES}" in exc.detail  # refused by its size, not by decoding it
    assert isinstance(
        v.verify(world.grant(), world.query(), **AS_COORDINATOR), VerifiedQuery
    )  # at the limit and under: as ever


def test_an_undecodable_envelope_signed_by_another_key_is_refused_by_its_signature(
    world: World, verifier: GrantVerifier
) -> None:
    """The researcher's signature over the raw bytes is checked before they are parsed: garbage signed by
    anyone else is BAD_SIGNATURE (never an undecodable-envelope error, which would mean it was parsed)."""
    garbage = b"\xff\xff\xff\xff"
    signed = pb.SignedQuery(payload=garbage, researcher_signature=signer().sign("genogate.v1.QueryEnvelope", garbage))
    refused_with(
        Unauthenticated, Reason.BAD_SIGNATURE, lambda: verifier.verify(world.grant(), signed, **AS_COORDINATOR)
    )
    by_researcher = pb.SignedQuery(
        payload=garbage, researcher_signature=world.researcher.sign("genogate.v1.QueryEnvelope", garbage)
    )
    refused_with(
        InvalidArgument, Reason.INVALID_QUERY, lambda: verifier.verify(world.grant(), by_researcher, **AS_COORDINATOR)
    )


def test_a_nonce_is_accepted_again_only_from_its_first_caller(nonces: NonceStore) -> None:
    one = hashlib.sha256(b"1").hexdigest()
    nonces.check_and_record(b"y" * 16, one, NOW_MS, NOW_MS, "coordinator")
    refused_with(
        Unauthenticated, Reason.REPLAYED_NONCE, lambda: nonces.check_and_record(b"y" * 16, one, NOW_MS, NOW_MS, "eve")
    )
    nonces.check_and_record(b"y" * 16, one, NOW_MS, NOW_MS + 1, "coordinator")  # the sender's own retry
    assert len(nonces) == 1


def test_the_same_signed_bytes_from_another_caller_are_a_replay(world: World, verifier: GrantVerifier) -> None:
    grant, signed = world.grant(per_site_breakdown=True), world.query()
    verifier.verify(grant, signed, caller="alice-laptop", coordinator_common_name="coordinator")
    refused_with(
        Unauthenticated,
        Reason.REPLAYED_NONCE,
        lambda: verifier.verify(grant, signed, caller="coordinator", coordinator_common_name="coordinator"),
    )
    verifier.verify(grant, signed, caller="alice-laptop", coordinator_common_name="coordinator")


@pytest.mark.parametrize("coordinator", ["coordinator", ""])
def test_without_the_breakdown_only_the_coordinator_is_answered_and_no_nonce_is_spent(
    world: World, verifier: GrantVerifier, nonces: NonceStore, coordinator: str
) -> None:
    grant, signed = world.grant(per_site_breakdown=False), world.query()
    err = refused_with(
        PermissionDenied,
        Reason.NOT_AUTHORIZED,
        lambda: verifier.verify(grant, signed, caller="alice", coordinator_common_name=coordinator),
    )
    assert ("coordinator_common_name" in err.message) == (coordinator == "")
    assert len(nonces) == 0  # refused before the nonce is recorded: the coordinator may still forward it
    if coordinator:
        verifier.verify(grant, signed, caller=coordinator, coordinator_common_name=coordinator)
        assert len(nonces) == 1
    # With the breakdown granted, the researcher may ask the site directly.
    verifier.verify(world.grant(per_site_breakdown=True), world.query(), caller="alice", coordinator_common_name="")


def _legacy_nonce_store(path: Path, version: int, rows: list[str], horizon: int = 0) -> None:
    """A separate nonce store as versions before ledger schema 5 wrote it (version 1: no caller column)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    caller = ", caller TEXT NOT NULL DEFAULT ''" if version == 2 else ""
    for statement in (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT",
        "CREATE TABLE nonces (nonce BLOB PRIMARY KEY, payload_sha256 TEXT NOT NULL,"
        f" timestamp_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL{caller}) STRICT, WITHOUT ROWID",
        "CREATE INDEX nonces_by_time ON nonces (timestamp_ms)",
        f"INSERT INTO meta VALUES ('pruned_before_ms', {horizon})",
        *rows,
        f"PRAGMA application_id = {0x47474E43}",
        f"PRAGMA user_version = {version}",
    ):
        con.execute(statement)
    con.close()


def test_a_version_1_nonce_store_is_imported_and_its_nonces_belong_to_no_caller(tmp_path: Path) -> None:
    path, one = tmp_path / "nonces.sqlite", hashlib.sha256(b"1").hexdigest()
    _legacy_nonce_store(path, 1, [f"INSERT INTO nonces VALUES (x'{'7a' * 16}', '{one}', {NOW_MS}, {NOW_MS})"])
    store = open_nonces(tmp_path / "ledger.sqlite", legacy=path)
    try:
        assert len(store) == 1
        refused_with(
            Unauthenticated,
            Reason.REPLAYED_NONCE,
            lambda: store.check_and_record(b"z" * 16, one, NOW_MS, NOW_MS, "coordinator"),
        )
        store.check_and_record(b"w" * 16, one, NOW_MS, NOW_MS, "coordinator")
    finally:
        store.close()
    con = sqlite3.connect(path)  # the old file is read, never changed
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM nonces").fetchone()[0] == 1
    con.close()


def test_a_version_2_nonce_store_is_imported_once_with_its_horizon(tmp_path: Path) -> None:
    """Its nonces (with their callers) and its horizon move into the ledger; importing again on the next start
    adds nothing; a nonce it had pruned stays refused."""
    path, one = tmp_path / "nonces.sqlite", hashlib.sha256(b"1").hexdigest()
    horizon = NOW_MS - WINDOW_MS
    _legacy_nonce_store(
        path,
        2,
        [
            f"INSERT INTO nonces VALUES (x'{'61' * 16}', '{one}', {NOW_MS}, {NOW_MS}, 'coordinator')",
            f"INSERT INTO nonces VALUES (x'{'62' * 16}', '{one}', {horizon - 1}, {NOW_MS}, 'coordinator')",
        ],
        horizon=horizon,
    )
    ledger_path = tmp_path / "ledger.sqlite"
    for _ in range(2):
        store = open_nonces(ledger_path, legacy=path)
        try:
            assert len(store) == 1  # the row below its own horizon is not imported
            store.check_and_record(b"a" * 16, one, NOW_MS, NOW_MS + 1, "coordinator")  # its sender's retry
            for nonce, payload, caller, ts, reason in (
                (b"a" * 16, one, "eve", NOW_MS, Reason.REPLAYED_NONCE),
                (b"a" * 16, "0" * 64, "coordinator", NOW_MS, Reason.REPLAYED_NONCE),
                (b"b" * 16, one, "coordinator", horizon - 1, Reason.STALE_TIMESTAMP),
            ):
                refused_with(
                    Unauthenticated,
                    reason,
                    lambda s=store, n=nonce, p=payload, c=caller, t=ts: s.check_and_record(n, p, t, NOW_MS, c),
                )
        finally:
            store.close()


def test_a_foreign_file_is_not_imported_as_a_nonce_store(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a genogate nonce store"):
        open_nonces(tmp_path / "ledger.sqlite", legacy=other)


def test_a_nonce_store_without_its_horizon_is_refused_with_a_reason(tmp_path: Path) -> None:
    old = tmp_path / "nonces.sqlite"
    _legacy_nonce_store(old, 2, ["DELETE FROM meta"])
    with pytest.raises(StoreError, match="no pruning horizon"):
        open_nonces(tmp_path / "ledger.sqlite", legacy=old)


# Issue 16, item 3: a grant's bytes are verified once (``VerifiedGrants``); the rest is checked every time.


def test_a_grant_is_verified_once_and_its_bytes_are_remembered(world: World, verifier: GrantVerifier) -> None:
    grant = world.grant()
    first = verifier.verify(grant, world.query(), **AS_COORDINATOR)
    again = verifier.verify(pb.StudyGrant.FromString(grant.SerializeToString()), world.query(), **AS_COORDINATOR)
    assert again.grant is first.grant and again.study is first.study  # the second call decoded nothing
    assert len(verifier._verified) == 1


def test_a_forged_or_altered_grant_is_refused_after_the_valid_one_was_cached(
    world: World, verifier: GrantVerifier
) -> None:
    grant = world.grant()
    verifier.verify(grant, world.query(), **AS_COORDINATOR)
    # The same payload under another key's signature claiming the committee's key id.
    forged = world.sign_grant(grant.payload, by=signer(), key_id=world.committee.key_id)
    # The payload changed (a higher budget) under the cached grant's own signature.
    body = pb.GrantBody.FromString(grant.payload)
    body.epsilon_total = 400.0
    altered = pb.StudyGrant(
        payload=body.SerializeToString(),
        committee_signature=grant.committee_signature,
        committee_key_id=grant.committee_key_id,
    )
    # The signature's last byte flipped; the signature cut short; the valid grant under an untrusted key id.
    flipped = pb.StudyGrant()
    flipped.CopyFrom(grant)
    flipped.committee_signature = grant.committee_signature[:-1] + bytes([grant.committee_signature[-1] ^ 1])
    short = pb.StudyGrant()
    short.CopyFrom(grant)
    short.committee_signature = grant.committee_signature[:-1]
    stranger = pb.StudyGrant()
    stranger.CopyFrom(grant)
    stranger.committee_key_id = signer().key_id
    for _ in range(2):  # a refusal is not remembered either: refused again, in full
        for bad in (forged, altered, flipped, short):
            refused_with(
                Unauthenticated, Reason.BAD_SIGNATURE, lambda g=bad: verifier.verify(g, world.query(), **AS_COORDINATOR)
            )
        refused_with(
            PermissionDenied,
            Reason.UNTRUSTED_COMMITTEE,
            lambda: verifier.verify(stranger, world.query(), **AS_COORDINATOR),
        )
    assert len(verifier._verified) == 1
    verifier.verify(grant, world.query(), **AS_COORDINATOR)  # the valid one still is


def test_a_cached_grant_is_refused_once_expired_revoked_or_unconfirmed(
    world: World, cache: RevocationCache, verifier: GrantVerifier
) -> None:
    grant = world.grant(not_after_unix_ms=NOW_MS + 1000)
    verifier.verify(grant, world.query(), **AS_COORDINATOR)
    assert len(verifier._verified) == 1
    world.clock.ms = NOW_MS + 1000
    cache.update(world.revocations())  # fresh at the new time: only the grant's own window refuses
    refused_with(
        PermissionDenied, Reason.GRANT_EXPIRED, lambda: verifier.verify(grant, world.query(), **AS_COORDINATOR)
    )
    lasting = world.grant()
    verifier.verify(lasting, world.query(), **AS_COORDINATOR)
    world.clock.ms += STALENESS_MS + 1  # the list held is now too old to vouch for the grant
    refused_with(
        PermissionDenied,
        Reason.REVOCATION_UNCONFIRMED,
        lambda: verifier.verify(lasting, world.query(), **AS_COORDINATOR),
    )
    cache.update(world.revocations(revoked=(STUDY,), epoch=4))
    refused_with(
        PermissionDenied, Reason.GRANT_REVOKED, lambda: verifier.verify(lasting, world.query(), **AS_COORDINATOR)
    )
    refused_with(PermissionDenied, Reason.GRANT_REVOKED, lambda: verifier.verify_grant(lasting))


def test_a_cached_grant_is_refused_before_it_is_valid_and_at_another_site(
    world: World, cache: RevocationCache, nonces: NonceStore
) -> None:
    early = world.grant(not_before_unix_ms=NOW_MS + 1000)
    elsewhere = make_verifier(world, cache, nonces, site="site-c")
    for v in (make_verifier(world, cache, nonces), elsewhere):
        world.clock.ms = NOW_MS
        refused_with(
            PermissionDenied, Reason.GRANT_NOT_YET_VALID, lambda v=v: v.verify(early, world.query(), **AS_COORDINATOR)
        )
    grant = world.grant()
    make_verifier(world, cache, nonces).verify(grant, world.query(), **AS_COORDINATOR)
    # Another verifier (another site) keeps its own cache: the site check runs whatever is cached.
    refused_with(
        PermissionDenied, Reason.GRANT_WRONG_SITE, lambda: elsewhere.verify(grant, world.query(), **AS_COORDINATOR)
    )


def test_verified_grants_keep_the_most_recently_used(world: World, verifier: GrantVerifier) -> None:
    cached = VerifiedGrants(max_entries=2)
    grants = [world.grant(study_id=f"S-{i}") for i in range(3)]
    digests = [VerifiedGrants.digest(g) for g in grants]
    assert len(set(digests)) == 3
    entry = verifier.verify_grant(grants[0])
    cached.put(digests[0], entry)
    cached.put(digests[1], entry)
    assert cached.get(digests[0]) is entry  # now the most recent
    cached.put(digests[2], entry)
    assert len(cached) == 2
    assert cached.get(digests[1]) is None and cached.get(digests[0]) is entry and cached.get(digests[2]) is entry
    # The digest separates its parts: moving bytes between key id, payload and signature changes it.
    g = grants[0]
    moved = pb.StudyGrant(
        payload=g.payload + g.committee_signature[:1],
        committee_signature=g.committee_signature[1:],
        committee_key_id=g.committee_key_id,
    )
    assert VerifiedGrants.digest(moved) != digests[0]


def test_nonces_recorded_together_keep_each_outcome_and_all_are_durable(tmp_path: Path) -> None:
    """Concurrent nonces share one transaction (group commit): a replay refused in a batch undoes nothing of
    the others, and every accepted nonce is on disk when its caller returns."""
    path = tmp_path / "nonces.sqlite"
    store = open_nonces(path)
    first = hashlib.sha256(b"first").hexdigest()
    store.check_and_record(b"r" * 16, first, NOW_MS, NOW_MS, "coordinator")
    start = threading.Barrier(24)
    outcomes: dict[int, str] = {}

    def attempt(i: int) -> None:
        nonce, payload = (i.to_bytes(16, "big"), hashlib.sha256(str(i).encode()).hexdigest())
        if i % 3 == 1:  # the recorded nonce under another payload: a replay
            nonce, payload = b"r" * 16, hashlib.sha256(b"other").hexdigest()
        elif i % 3 == 2:  # the same signed envelope again from its sender: a retry
            nonce, payload = b"r" * 16, first
        start.wait()
        try:
            store.check_and_record(nonce, payload, NOW_MS, NOW_MS, "coordinator")
            outcomes[i] = "accepted"
        except Unauthenticated as exc:
            outcomes[i] = exc.reason.name

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert outcomes == {i: "REPLAYED_NONCE" if i % 3 == 1 else "accepted" for i in range(24)}
    reopened = open_nonces(path)
    try:
        assert len(reopened) == 1 + 8
        for i in range(0, 24, 3):  # each fresh nonce is now a replay under another payload
            with pytest.raises(Unauthenticated):
                reopened.check_and_record(i.to_bytes(16, "big"), first, NOW_MS, NOW_MS, "coordinator")
    finally:
        reopened.close()


def _charge(ledger: Ledger, query_id: str, payload: str, claim: NonceClaim, cap: str = "1") -> object:
    return ledger.begin(
        study_id=STUDY,
        query_id=query_id,
        payload_sha256=payload,
        canonical_sha256=hashlib.sha256(query_id.encode()).hexdigest(),
        epsilon=Decimal("0.5"),
        delta=Decimal(0),
        epsilon_cap=Decimal(cap),
        delta_cap=Decimal(0),
        now_ms=NOW_MS,
        researcher="alice",
        caller=claim.caller,
        nonce=claim,
    )


def test_a_nonce_commits_with_its_charge_or_its_refusal_and_races_are_decided_there(tmp_path: Path) -> None:
    """``check`` records nothing; the charging transaction records the nonce, and refuses one that another
    sending recorded after both passed ``check`` (nothing charged); a charge refused over the cap leaves no
    nonce, and the refusal's audit commit records it."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    _LEDGERS.append(ledger)
    store = NonceStore(ledger, WINDOW_MS)
    one, two = hashlib.sha256(b"one").hexdigest(), hashlib.sha256(b"two").hexdigest()
    try:
        mine = store.check(b"k" * 16, one, NOW_MS, NOW_MS, "coordinator")
        theirs = store.check(b"k" * 16, two, NOW_MS, NOW_MS, "coordinator")  # passes too: nothing recorded
        eves = store.check(b"k" * 16, one, NOW_MS, NOW_MS, "eve")
        assert len(store) == 0
        assert _charge(ledger, "q1", one, mine) == Charged(1)
        assert len(store) == 1
        for claim, query_id, payload in ((theirs, "q2", two), (eves, "q3", one)):
            refused_with(
                Unauthenticated,
                Reason.REPLAYED_NONCE,
                lambda c=claim, q=query_id, p=payload: _charge(ledger, q, p, c),
            )
        assert ledger.budget(STUDY, Decimal(1), Decimal(0)).epsilon_spent == Decimal("0.5")
        # The same envelope again from its sender: a retry, answered from the ledger, recorded once.
        assert _charge(ledger, "q1", one, store.check(b"k" * 16, one, NOW_MS, NOW_MS + 1, "coordinator")) == Pending(1)
        over = store.check(b"m" * 16, two, NOW_MS, NOW_MS, "coordinator")
        with pytest.raises(ResourceExhausted):
            _charge(ledger, "q4", two, over, cap="0.7")
        assert len(store) == 1  # rolled back with the refused charge
        ledger.record({"event": "query"}, now_ms=NOW_MS, nonce=over)  # no audit signer: the nonce alone
        ledger.record({"event": "query"}, now_ms=NOW_MS, nonce=over)  # recorded once, never refused
        assert len(store) == 2
        refused_with(
            Unauthenticated,
            Reason.REPLAYED_NONCE,
            lambda: store.check(b"m" * 16, two, NOW_MS, NOW_MS, "eve"),
        )
    finally:
        store.close()
