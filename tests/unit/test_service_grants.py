"""The node service under signed grants: the grant and the researcher's signature are verified by the
node itself, refusals charge nothing, and even a coordinator driving the node directly with a valid grant
cannot spend more than the grant's budget at this node."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from genogate.errors import PermissionDenied, Reason, ResourceExhausted, Unauthenticated
from genogate.wire.v1 import common_pb2 as pb
from node.backend import open_backend
from node.grants import GrantVerifier, RevocationCache
from node.ingest import ingest
from node.ledger import Ledger
from node.nonces import NonceStore
from node.service import Caller, QueryService
from tests.terms import filler_term
from tests.unit.test_grants import SITE, STALENESS_MS, STUDY, WINDOW_MS, World
from tests.unit.test_service import POLICY, SHEET, VCF, ZeroNoise


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[World, QueryService, NonceStore]]:
    (tmp_path / "c.vcf").write_text(VCF)
    (tmp_path / "s.tsv").write_text(SHEET)
    ingest(tmp_path / "store.duckdb", [tmp_path / "c.vcf"], tmp_path / "s.tsv", build="GRCh37")
    world = World()
    cache = RevocationCache(world.trusted, STALENESS_MS, world.clock)
    cache.update(world.revocations())
    ledger = Ledger(tmp_path / "ledger.sqlite")
    nonces = NonceStore(ledger, WINDOW_MS)
    verifier = GrantVerifier(
        site=SITE,
        trusted_committee=world.trusted,
        revocations=cache,
        nonces=nonces,
        timestamp_window_ms=WINDOW_MS,
        opted_in=None,
        refused=frozenset(),
        clock=world.clock,
    )
    svc = QueryService(
        name=SITE,
        backend=open_backend(tmp_path / "store.duckdb"),
        ledger=ledger,
        studies=dict,
        policy=POLICY,
        noise=ZeroNoise(),
        signer=world.committee,
        grants=verifier,
        clock=world.clock,
        coordinator_common_name="coordinator",
    )
    yield world, svc, nonces
    nonces.close()
    ledger.close()


def send(svc: QueryService, grant: pb.StudyGrant, signed: pb.SignedQuery) -> pb.ReleaseBody:
    release = svc.query(Caller("coordinator"), signed.payload, grant=grant, signature=signed.researcher_signature)
    return pb.ReleaseBody.FromString(release.payload)


def spent(svc: QueryService, world: World) -> float:
    return svc.budget(Caller("coordinator"), STUDY, world.grant()).epsilon_spent


def test_a_signed_query_under_a_valid_grant_is_answered_with_consent_applied(setup) -> None:  # type: ignore[no-untyped-def]
    world, svc, _ = setup
    body = send(svc, world.grant(), world.query())
    # Purpose HMB;NPU: P3's NPU is met now, P8 withdrew and P9 consented to C61 research only.
    assert body.result.cohort_count.count.estimate == 8 and body.study_id == STUDY
    assert spent(svc, world) == 0.1


@pytest.mark.parametrize(
    ("case", "error", "reason"),
    [
        ("forged grant", Unauthenticated, Reason.BAD_SIGNATURE),
        ("untrusted committee", PermissionDenied, Reason.UNTRUSTED_COMMITTEE),
        ("grant for another site", PermissionDenied, Reason.GRANT_WRONG_SITE),
        ("expired grant", PermissionDenied, Reason.GRANT_EXPIRED),
        ("kind not in grant", PermissionDenied, Reason.KIND_NOT_GRANTED),
        ("purpose refused by node", PermissionDenied, Reason.PURPOSE_REFUSED),
        ("signed by another researcher", Unauthenticated, Reason.BAD_SIGNATURE),
        ("stale timestamp", Unauthenticated, Reason.STALE_TIMESTAMP),
        ("revoked", PermissionDenied, Reason.GRANT_REVOKED),
    ],
)
def test_refusals_charge_nothing(setup, case: str, error: type, reason: Reason) -> None:  # type: ignore[no-untyped-def]
    from tests.unit.test_grants import signer

    world, svc, _ = setup
    grant, signed = world.grant(), world.query()
    match case:
        case "forged grant":
            grant = world.sign_grant(
                world.grant(epsilon_total=99.0).payload, by=signer(), key_id=world.committee.key_id
            )
        case "untrusted committee":
            grant = world.grant(by=signer())
        case "grant for another site":
            grant = world.grant(sites=["site-b"])
        case "expired grant":
            grant = world.grant(not_after_unix_ms=world.clock.ms - 1)
        case "kind not in grant":
            signed = world.query(
                query=pb.Query(
                    genotype_counts=pb.GenotypeCountsQuery(variant=pb.Variant(chrom="1", pos=100, ref="A", alt="G"))
                )
            )
        case "purpose refused by node":
            grant = world.grant(purpose="POA")
        case "signed by another researcher":
            signed = world.query(by=signer())
        case "stale timestamp":
            signed = world.query(timestamp_unix_ms=world.clock.ms - 10 * WINDOW_MS)
        case "revoked":
            svc._grants._revocations.update(world.revocations(revoked=(STUDY,), epoch=4))  # type: ignore[union-attr]
    with pytest.raises(error) as info:
        send(svc, grant, signed)
    assert info.value.reason is reason
    if case != "revoked":
        assert spent(svc, world) == 0.0


def test_a_replayed_nonce_is_refused_but_the_same_envelope_retried_is_answered_once(setup) -> None:  # type: ignore[no-untyped-def]
    world, svc, _ = setup
    grant, signed = world.grant(), world.query()
    first = send(svc, grant, signed)
    again = send(svc, grant, signed)  # an idempotent retry (e.g. after UNAVAILABLE): same answer, no charge
    assert again.result == first.result and spent(svc, world) == 0.1
    env = pb.QueryEnvelope.FromString(signed.payload)
    other = world.query(nonce=env.nonce, query_id="q-other", epsilon=0.05)
    with pytest.raises(Unauthenticated) as info:
        send(svc, grant, other)
    assert info.value.reason is Reason.REPLAYED_NONCE and spent(svc, world) == 0.1


def test_a_coordinator_cannot_spend_past_the_grant_at_this_node(setup) -> None:  # type: ignore[no-untyped-def]
    """Drive the node directly with a valid grant (epsilon_total 4.0, cap 0.1): 40 distinct queries pass,
    the 41st is refused by the node's own ledger."""
    world, svc, _ = setup
    grant = world.grant()
    for i in range(40):
        q = pb.Query(
            cohort_count=pb.CohortCountQuery(
                filter=pb.Filter(phenotype_has=pb.Filter.PhenotypeHas(term=filler_term(i)))
            )
        )
        send(svc, grant, world.query(query=q))
    with pytest.raises(ResourceExhausted) as info:
        send(
            svc,
            grant,
            world.query(
                query=pb.Query(
                    cohort_count=pb.CohortCountQuery(
                        filter=pb.Filter(phenotype_has=pb.Filter.PhenotypeHas(term=filler_term(999)))
                    )
                )
            ),
        )
    assert info.value.reason is Reason.BUDGET_EXHAUSTED
    assert Decimal(repr(spent(svc, world))) == Decimal("4.0")


def test_without_the_breakdown_the_node_answers_only_the_coordinator_and_charges_nothing_else(setup) -> None:  # type: ignore[no-untyped-def]
    world, svc, nonces = setup
    grant, signed = world.grant(per_site_breakdown=False), world.query()
    with pytest.raises(PermissionDenied) as info:
        svc.query(Caller("alice"), signed.payload, grant=grant, signature=signed.researcher_signature)
    assert info.value.reason is Reason.NOT_AUTHORIZED and len(nonces) == 0 and spent(svc, world) == 0.0
    body = send(svc, grant, signed)  # the coordinator forwarding the same bytes is answered
    assert body.epsilon_charged == 0.1 and spent(svc, world) == 0.1
    # The coordinator's bytes replayed by anyone else: refused too (the breakdown check comes first).
    with pytest.raises(PermissionDenied):
        svc.query(Caller("alice"), signed.payload, grant=grant, signature=signed.researcher_signature)
    open_grant = world.grant(per_site_breakdown=True)
    replayed = world.query()
    send(svc, open_grant, replayed)
    with pytest.raises(Unauthenticated) as replay:
        svc.query(Caller("alice"), replayed.payload, grant=open_grant, signature=replayed.researcher_signature)
    assert replay.value.reason is Reason.REPLAYED_NONCE and spent(svc, world) == 0.1  # the same question: stored


def test_a_budget_under_a_grant_is_given_to_the_coordinator_only(setup) -> None:  # type: ignore[no-untyped-def]
    world, svc, _ = setup
    send(svc, world.grant(), world.query())
    b = svc.budget(Caller("coordinator"), STUDY, world.grant())
    assert (b.epsilon_spent, b.researcher_epsilon_spent, b.consent_epoch) == (0.1, 0.1, svc.epoch)
    for caller in ("alice", "site-b", ""):
        with pytest.raises(PermissionDenied) as info:
            svc.budget(Caller(caller), STUDY, world.grant())
        assert info.value.reason is Reason.NOT_AUTHORIZED
    svc.coordinator_common_name = ""  # not configured: nobody
    with pytest.raises(PermissionDenied) as unset:
        svc.budget(Caller("coordinator"), STUDY, world.grant())
    assert "coordinator_common_name" in unset.value.message


def test_a_nonce_refused_after_its_check_is_still_recorded(setup) -> None:  # type: ignore[no-untyped-def]
    """A signed query refused after the nonce check (here: a kind the grant does not name) records its nonce
    with the refusal's audit entry: the same bytes from another caller are a replay, not a new query."""
    world, svc, nonces = setup
    grant = world.grant(per_site_breakdown=True)
    signed = world.query(
        query=pb.Query(genotype_counts=pb.GenotypeCountsQuery(variant=pb.Variant(chrom="1", pos=100, ref="A", alt="G")))
    )
    with pytest.raises(PermissionDenied) as info:
        send(svc, grant, signed)
    assert info.value.reason is Reason.KIND_NOT_GRANTED and len(nonces) == 1
    with pytest.raises(Unauthenticated) as replay:
        svc.query(Caller("alice"), signed.payload, grant=grant, signature=signed.researcher_signature)
    assert replay.value.reason is Reason.REPLAYED_NONCE and spent(svc, world) == 0.0


def test_a_charged_query_records_its_nonce_in_the_ledger_file(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    world, svc, nonces = setup
    send(svc, world.grant(), world.query())
    assert len(nonces) == 1 and not (tmp_path / "nonces.sqlite").exists()
    con = sqlite3.connect(tmp_path / "ledger.sqlite")
    try:
        assert con.execute("SELECT count(*) FROM nonces").fetchone()[0] == 1
    finally:
        con.close()
