"""The node's query service on a real store and a real ledger file, with the noise injected as zero so
answers can be checked exactly (a separate test proves production wires OpenDP). Checks consent,
thresholding, zero-filling, case/control arms, carrier counts, every refusal, and the ledger rules."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate import privacy
from genogate.errors import (
    AlreadyExists,
    GenogateError,
    InvalidArgument,
    PermissionDenied,
    Reason,
    ResourceExhausted,
    Unauthenticated,
)
from genogate.filter import parse_filter
from genogate.kinds import KINDS, canonical, canonical_bytes
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.carrier_count import CarrierCount
from genogate.kinds.case_control import CaseControl
from genogate.kinds.cohort_count import CohortCount
from genogate.kinds.genotype_counts import GenotypeCounts
from genogate.nodeclient import envelope
from genogate.query import Kind, Region, Variant
from genogate.signing import Signer, verify
from genogate.wire.v1 import common_pb2 as pb
from node.backend import open_backend
from node.ingest import ingest
from node.ledger import Charged, Ledger
from node.memory import MemoryBackend
from node.service import Caller, Policy, QueryService
from node.studies import Study

# Ten participants. Consent decides who counts: P8 withdrew, P9 only consented to research on C61.
SHEET = """sample_id\tsex\tbirth_year\tancestry\tphenotypes\tconsent
P0\tF\t1950\tEUR\tHP:0001250\tGRU
P1\tM\t1960\tEUR\tHP:0001250\tHMB
P2\tF\t1970\tAFR\t\tGRU
P3\tM\t1980\tAFR\t\tGRU;NPU
P4\tF\t1990\tEAS\tHP:0001250\tGRU
P5\tM\t2000\tEAS\t\tHMB
P6\tF\t1955\tSAS\t\tGRU
P7\tM\t1965\tSAS\tHP:0001250\tGRU
P8\tF\t1975\tEUR\tHP:0001250\tWITHDRAWN
P9\tM\t1985\tAFR\tHP:0001250\tDS-C61
"""
# chr1:100 A>G carried by P0 (het), P1 (hom), P8 (hom, withdrawn), P9 (het, DS-C61 only); chrX:5000 haploid males.
VCF = """##fileformat=VCFv4.2
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##contig=<ID=1>
##contig=<ID=X>
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tP0\tP1\tP2\tP3\tP4\tP5\tP6\tP7\tP8\tP9
1\t100\t.\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t0/0\t0/0\t0/0\t0/0\t0/0\t1/1\t0/1
1\t200\t.\tC\tT,G\t.\t.\t.\tGT\t0/2\t0/0\t1/2\t0/0\t./.\t0/0\t0/1\t0/0\t0/0\t0/0
X\t5000\t.\tG\tA\t.\t.\t.\tGT\t0/1\t1\t0/0\t0\t1/1\t.\t0/0\t1\t0/0\t1
"""
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()
V100, V200T, V200G, VX = (
    Variant("1", 100, "A", "G"),
    Variant("1", 200, "C", "T"),
    Variant("1", 200, "C", "G"),
    Variant("X", 5000, "G", "A"),
)


class ZeroNoise:
    """Test double for ``dp.Noise``: releases the exact values (never available in the product)."""

    def draw(
        self, exact: npt.NDArray[np.int64], p: privacy.NoisePlan, sens: privacy.Sensitivity
    ) -> npt.NDArray[np.int64]:
        assert len(exact) == sens.length
        return exact.copy()


def study(purpose: str = "HMB", **kw: object) -> Study:
    from genogate import duo

    base: dict[str, object] = dict(
        study_id="S1",
        purpose=duo.parse_purpose(purpose),
        purpose_text=purpose,
        kinds=frozenset(Kind),
        epsilon_total=Decimal("3"),
        epsilon_per_query_cap=Decimal("1"),
        not_before=None,
        not_after=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
        researchers=frozenset({"alice"}),
    )
    base.update(kw)
    return Study(**base)  # type: ignore[arg-type]


POLICY = Policy(
    epsilon_per_query_cap=Decimal("2"),
    epsilon_per_study_cap=Decimal("10"),
    # The caps above the study are tested on their own (test_a_researcher_cap_spans_studies...): high here.
    epsilon_per_researcher_cap=Decimal("1000"),
    epsilon_per_node_cap=Decimal("1000"),
    delta_per_query=Decimal("1e-7"),
    delta_per_study_cap=Decimal("1e-5"),
    min_reportable_count=0,
    allowed_kinds=frozenset(Kind),
    allowed_purposes=frozenset({"GRU", "HMB", "DS"}),
    max_variants_per_query=3,
    rate_limit_per_study_per_minute=10_000,
    public_site_catalogue=True,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("svc")
    (d / "c.vcf").write_text(VCF)
    (d / "s.tsv").write_text(SHEET)
    ingest(d / "store.duckdb", [d / "c.vcf"], d / "s.tsv", build="GRCh37")
    return d / "store.duckdb"


@pytest.fixture(params=[0, 16], ids=["rows-from-duckdb", "rows-from-memory"])
def memory_mb(request: pytest.FixtureRequest) -> int:
    """Both ways a node reads a query's rows: a DuckDB statement each, or its in-memory copy of the calls."""
    return int(request.param)


def make(
    store: Path, tmp_path: Path, *studies: Study, policy: Policy = POLICY, memory_mb: int = 0, **kw: Any
) -> QueryService:
    """A service on ``store`` with zero noise; ``kw`` are further ``QueryService`` arguments."""
    table = {s.study_id: s for s in (studies or (study(),))}
    svc = QueryService(
        name="site-a",
        backend=open_backend(store, "auto", memory_mb),
        ledger=Ledger(tmp_path / "ledger.sqlite"),
        studies=lambda: table,
        policy=policy,
        noise=ZeroNoise(),
        signer=Signer(Ed25519PrivateKey.generate()),
        clock=lambda: NOW,
        **kw,
    )
    assert isinstance(svc._backend, MemoryBackend) == (memory_mb > 0)  # the tiny store always fits
    return svc


def ask(svc: QueryService, q: object, eps: float = 0.5, who: str = "alice", **kw: object) -> pb.ReleaseBody:
    env = envelope(q, study_id=str(kw.pop("study_id", "S1")), epsilon=eps, **kw)  # type: ignore[arg-type]
    payload = env.SerializeToString()
    release = svc.query(Caller(who), payload)
    verify(svc._signer.public_raw, "genogate.v1.ReleaseBody", release.payload, release.node_signature)
    body = pb.ReleaseBody.FromString(release.payload)
    assert body.query_sha256 == hashlib.sha256(payload).digest()  # the receipt names exactly this request
    return body


def test_the_node_logs_where_it_reads_rows_from(store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="genogate.node"):
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        make(store, tmp_path / "a", memory_mb=16).close()
        make(store, tmp_path / "b", memory_mb=0).close()
    said = [(r.getMessage(), r.__dict__) for r in caplog.records if r.getMessage().startswith("store rows served")]
    assert [m for m, _ in said] == ["store rows served from memory", "store rows served from DuckDB"]
    assert said[0][1]["copy_mib"] >= 0 and said[1][1]["copy_would_take_mib"] >= 0 and said[1][1]["memory_mb"] == 0


def test_consent_restricts_every_count(store: Path, tmp_path: Path, memory_mb: int) -> None:
    """HMB admits GRU and HMB consents, not P3 (NPU: the study does not declare it), P8 (withdrawn) or P9
    (DS-C61 only); a DS-C61 study also admits P9."""
    svc = make(store, tmp_path, study("HMB"), study("DS-C61", study_id="S2"), memory_mb=memory_mb)
    assert ask(svc, CohortCount()).result.cohort_count.count.estimate == 7
    assert ask(svc, CohortCount(parse_filter("phenotype=HP:0001250"))).result.cohort_count.count.estimate == 4
    assert (
        ask(svc, CohortCount(parse_filter("phenotype=HP:0001250")), study_id="S2").result.cohort_count.count.estimate
        == 5
    )
    af = ask(svc, AlleleFrequency((V100,))).result.allele_frequency.variants[0]
    assert (af.allele_count.estimate, af.allele_number.estimate) == (3, 14)
    af2 = ask(svc, AlleleFrequency((V100,)), study_id="S2").result.allele_frequency.variants[0]
    assert (af2.allele_count.estimate, af2.allele_number.estimate) == (4, 16)  # P9's allele counts here only


def test_a_filter_cannot_widen_consent(store: Path, tmp_path: Path, memory_mb: int) -> None:
    svc = make(store, tmp_path, memory_mb=memory_mb)
    withdrawn_only = parse_filter("ancestry=EUR and sex=F and age>=50")  # matches P0 and P8; P8 withdrew
    assert ask(svc, CohortCount(withdrawn_only)).result.cohort_count.count.estimate == 1


def test_multiallelic_haploid_and_absent_variants(store: Path, tmp_path: Path, memory_mb: int) -> None:
    svc = make(store, tmp_path, memory_mb=memory_mb)
    absent = Variant("1", 300, "A", "T")
    rows = ask(svc, AlleleFrequency((V200T, absent, V200G))).result.allele_frequency.variants
    got = {(r.variant.pos, r.variant.alt): (r.allele_count.estimate, r.allele_number.estimate) for r in rows}
    assert got == {(200, "T"): (2, 12), (300, "T"): (0, 14), (200, "G"): (2, 12)}  # P4 ./. is a no-call
    g = ask(svc, GenotypeCounts(VX)).result.genotype_counts
    assert [
        g.hom_ref.estimate,
        g.het.estimate,
        g.hom_alt.estimate,
        g.hemi_ref.estimate,
        g.hemi_alt.estimate,
        g.no_call.estimate,
    ] == [2, 1, 1, 0, 2, 1]


def test_case_control_arms_are_disjoint(store: Path, tmp_path: Path, memory_mb: int) -> None:
    svc = make(store, tmp_path, memory_mb=memory_mb)
    q = CaseControl((V100,), parse_filter("phenotype=HP:0001250"), parse_filter(""))  # controls = everyone else
    t = ask(svc, q).result.case_control.tables[0]
    assert [t.case_alt.estimate, t.case_ref.estimate, t.control_alt.estimate, t.control_ref.estimate] == [3, 5, 0, 6]


def test_carrier_count_with_and_without_a_frequency_cut(store: Path, tmp_path: Path, memory_mb: int) -> None:
    svc = make(store, tmp_path, memory_mb=memory_mb)
    region = Region("1", 1, 1000)
    assert ask(svc, CarrierCount(region)).result.carrier_count.carriers.estimate == 4
    # AF over consented participants: V100 3/14 > 0.2 drops out; V200 T and G (2/12) stay: P0, P2, P6.
    body = ask(svc, CarrierCount(region, 0.2))
    assert body.result.carrier_count.carriers.estimate == 3
    assert Decimal(repr(body.epsilon_charged)) == Decimal("0.5")  # two releases of 0.25 each


def test_small_counts_are_reported_as_fewer_than_k(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path, policy=_policy(min_reportable_count=5))
    value = ask(svc, CohortCount(parse_filter("phenotype=HP:0001250"))).result.cohort_count.count
    assert value.below_threshold and value.threshold == 5 and value.estimate == 0 and value.ci95_high == 0
    big = ask(svc, CohortCount()).result.cohort_count.count
    assert not big.below_threshold and big.estimate == 7 and big.ci95_low < 7 < big.ci95_high


def test_release_carries_noise_metadata(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path)
    value = ask(svc, CohortCount(), eps=0.5).result.cohort_count.count
    p = privacy.plan(KINDS[Kind.COHORT_COUNT].sensitivity(1), Decimal("0.5"), Decimal(0))
    assert value.mechanism == pb.NOISE_MECHANISM_DISCRETE_LAPLACE
    assert value.noise_scale == p.scale and value.noise_stddev == p.stddev
    assert value.ci95_high - value.estimate == pytest.approx(p.ci95_halfwidth)


def _policy(**kw: object) -> Policy:
    from dataclasses import replace

    return replace(POLICY, **kw)  # type: ignore[arg-type]


# What each refusal's public message states: what was asked and what is allowed (issue 15).
SAYS = {
    "unknown study": ["no study 'nope' here"],
    "other researcher": ["mallory is not among the researchers of study S1"],
    "expired": ["study S1 ended at 2026-01-01 00:00 UTC"],
    "not yet valid": ["study S1 starts at 2026-12-01 00:00 UTC"],
    "kind not granted": ["this query kind: cohort_count; the grant names allele_frequency"],
    "kind refused by node": ["this query kind: cohort_count; this site answers allele_frequency"],
    "purpose refused by node": ["the study's purpose is HMB; this site accepts GRU"],
    "epsilon over study cap": [
        "the query asks ε 1.5, the cap is ε 1 (the study's grant allows ε 1 per query, this site's policy ε 2)"
    ],
    "epsilon zero": ["a positive finite number"],
    "epsilon nan": ["a positive finite number"],
    "epsilon below the floor": ["epsilon 0.000999 is below", "may ask from ε 0.001 to ε 1 per query here"],
    "too many variants": ["at most 3 variants per query"],
    "other site": ["this is site-a; the query names site-b"],
    "region without public catalogue": ["does not publish its site list"],
}


@pytest.mark.parametrize(
    ("case", "error", "reason"),
    [
        ("unknown study", PermissionDenied, Reason.GRANT_MISSING),
        ("other researcher", PermissionDenied, Reason.RESEARCHER_MISMATCH),
        ("expired", PermissionDenied, Reason.GRANT_EXPIRED),
        ("not yet valid", PermissionDenied, Reason.GRANT_NOT_YET_VALID),
        ("kind not granted", PermissionDenied, Reason.KIND_NOT_GRANTED),
        ("kind refused by node", PermissionDenied, Reason.KIND_REFUSED),
        ("purpose refused by node", PermissionDenied, Reason.PURPOSE_REFUSED),
        ("epsilon over study cap", ResourceExhausted, Reason.EPSILON_OVER_CAP),
        ("epsilon zero", InvalidArgument, Reason.INVALID_EPSILON),
        ("epsilon nan", InvalidArgument, Reason.INVALID_EPSILON),
        ("epsilon below the floor", InvalidArgument, Reason.INVALID_EPSILON),
        ("epsilon 5e-324", InvalidArgument, Reason.INVALID_EPSILON),
        ("too many variants", InvalidArgument, Reason.TOO_MANY_VARIANTS),
        ("envelope too large to decode", InvalidArgument, Reason.TOO_MANY_VARIANTS),
        ("other site", PermissionDenied, Reason.GRANT_WRONG_SITE),
        ("region without public catalogue", PermissionDenied, Reason.KIND_REFUSED),
        ("bad query id", InvalidArgument, Reason.INVALID_QUERY),
    ],
)
def test_refusals_charge_nothing(
    store: Path, tmp_path: Path, case: str, error: type[GenogateError], reason: Reason
) -> None:
    s, policy, kw, q, eps = study(), POLICY, {}, CohortCount(), 0.5
    match case:
        case "unknown study":
            kw = {"study_id": "nope"}
        case "other researcher":
            kw = {"who": "mallory"}
        case "expired":
            s = study(not_after=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        case "not yet valid":
            s = study(not_before=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
        case "kind not granted":
            s = study(kinds=frozenset({Kind.ALLELE_FREQUENCY}))
        case "kind refused by node":
            policy = _policy(allowed_kinds=frozenset({Kind.ALLELE_FREQUENCY}))
        case "purpose refused by node":
            policy = _policy(allowed_purposes=frozenset({"GRU"}))
        case "epsilon over study cap":
            eps = 1.5
        case "epsilon zero":
            eps = 0.0
        case "epsilon nan":
            eps = float("nan")
        case "epsilon below the floor":
            eps = 0.000999
        case "epsilon 5e-324":
            eps = 5e-324
        case "too many variants":
            q = AlleleFrequency((V100, V200T, V200G, VX))
        case "envelope too large to decode":  # refused from its size, before decoding or any signature check
            q = AlleleFrequency(tuple(Variant("1", 1000 + i, "A", "G") for i in range(20_000)))
        case "other site":
            kw = {"sites": ("site-b",)}
        case "region without public catalogue":
            policy, q = _policy(public_site_catalogue=False), AlleleFrequency(region=Region("1", 1, 1000))
        case "bad query id":
            kw = {"query_id": "has space"}
    svc = make(store, tmp_path, s, policy=policy)
    with pytest.raises(error) as info:
        ask(svc, q, eps=eps, **kw)
    assert info.value.reason is reason
    assert info.value.message and "HP:" not in info.value.message
    for said in SAYS.get(case, []):
        assert said in info.value.message
    assert svc.budget_pb(s).epsilon_spent == 0.0


def test_the_rate_limit_refusal_states_the_limit_and_when_to_try_again(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path, policy=_policy(rate_limit_per_study_per_minute=2))
    ask(svc, CohortCount(parse_filter("sex=F")))
    ask(svc, CohortCount(parse_filter("sex=M")))
    with pytest.raises(ResourceExhausted) as info:
        ask(svc, CohortCount(parse_filter("sex=U")))
    assert info.value.reason is Reason.RATE_LIMITED
    assert "this site answers at most 2 queries per study per minute (try again in 60 s)" in info.value.message


def test_epsilon_at_the_floor_is_answered(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path, policy=_policy(epsilon_per_query_min=Decimal("0.01")))
    assert ask(svc, CohortCount(), eps=0.01).epsilon_charged == 0.01
    with pytest.raises(InvalidArgument, match="below this site's floor of 0.01 per query"):
        ask(svc, CohortCount(parse_filter("sex=F")), eps=0.0099)


def test_budget_exactly_at_the_cap_and_one_past(store: Path, tmp_path: Path) -> None:
    s = study(epsilon_total=Decimal("1.5"))
    svc = make(store, tmp_path, s)
    for i in range(3):
        ask(svc, CohortCount(parse_filter(f"age>={i}")), eps=0.5)
    with pytest.raises(ResourceExhausted) as info:
        ask(svc, CohortCount(parse_filter("age>=9")), eps=0.1)
    assert info.value.reason is Reason.BUDGET_EXHAUSTED
    assert "the query asks ε 0.1; the study has ε 0 left of its cap of ε 1.5 at this site" in info.value.message
    b = svc.budget_pb(s)
    assert (b.epsilon_spent, b.epsilon_remaining, b.queries_answered) == (1.5, 0.0, 3)


def test_same_question_same_answer_at_no_cost(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path)
    first = ask(svc, AlleleFrequency((V100, V200T), filter=parse_filter("sex=F and ancestry in (EUR,AFR)")), eps=1.0)
    again = ask(
        svc, AlleleFrequency((V200T, V100, V100), filter=parse_filter("ancestry in (AFR,EUR) and sex=F")), eps=0.2
    )
    assert again.from_store and again.cached_query_id == first.query_id and again.epsilon_charged == 0
    assert again.original_epsilon_charged == 1.0 and again.consent_epoch == first.consent_epoch == 1
    assert again.result == first.result and again.query_sha256 != first.query_sha256  # each binds its own request
    assert svc.budget_pb(study()).epsilon_spent == 1.0


def test_retry_is_idempotent_and_a_reused_id_is_refused(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path, study(researchers=frozenset({"alice", "bob"})))
    env = envelope(CohortCount(), study_id="S1", epsilon=0.5, query_id="q-1")
    r1 = pb.ReleaseBody.FromString(svc.query(Caller("alice"), env.SerializeToString()).payload)
    r2 = pb.ReleaseBody.FromString(svc.query(Caller("alice"), env.SerializeToString()).payload)
    # The retry's receipt says what it paid now (nothing) and what the answer was charged when first made.
    assert r1.result == r2.result and not r2.from_store and r2.epsilon_charged == 0
    assert (r1.epsilon_charged, r1.original_epsilon_charged, r2.original_epsilon_charged) == (0.5, 0.5, 0.5)
    assert r1.consent_epoch == r2.consent_epoch == svc.epoch == 1
    assert svc.budget_pb(study()).epsilon_spent == 0.5
    # The same bytes from another researcher of the study are a replay, refused before anything is read.
    with pytest.raises(Unauthenticated) as replay:
        svc.query(Caller("bob"), env.SerializeToString())
    assert replay.value.reason is Reason.REPLAYED_NONCE
    with pytest.raises(AlreadyExists) as info:
        ask(svc, CohortCount(parse_filter("sex=F")), query_id="q-1")
    assert info.value.reason is Reason.QUERY_ID_REUSED


def test_rate_limit_per_study(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path, policy=_policy(rate_limit_per_study_per_minute=2))
    ask(svc, CohortCount(), eps=0.1)
    ask(svc, CohortCount(parse_filter("sex=F")), eps=0.1)
    with pytest.raises(ResourceExhausted) as info:
        ask(svc, CohortCount(parse_filter("sex=M")), eps=0.1)
    assert info.value.reason is Reason.RATE_LIMITED


def test_every_outcome_is_audited_with_the_release_in_the_same_transaction(store: Path, tmp_path: Path) -> None:
    import json

    from genogate import audit

    signer = Signer(Ed25519PrivateKey.generate())
    table = {"S1": study()}
    svc = QueryService(
        name="site-a",
        backend=open_backend(store),
        ledger=Ledger(tmp_path / "ledger.sqlite", audit_signer=signer),
        studies=lambda: table,
        policy=POLICY,
        noise=ZeroNoise(),
        signer=signer,
        clock=lambda: NOW,
    )
    q = CohortCount(parse_filter("sex=F"))
    env = envelope(q, study_id="S1", epsilon=0.5)
    payload = env.SerializeToString()
    first = pb.ReleaseBody.FromString(svc.query(Caller("alice"), payload).payload)
    svc.query(Caller("alice"), payload)  # a retry of the same bytes
    with pytest.raises(PermissionDenied):
        svc.query(Caller("mallory"), envelope(q, study_id="S1", epsilon=0.5).SerializeToString())
    rows = svc._ledger.audit_rows()  # type: ignore[attr-defined]
    entries = [json.loads(r.entry) for r in rows]
    assert [e["decision"] for e in entries] == ["charged", "answered", "retry", "refused"]
    assert entries[1]["result_sha256"] == hashlib.sha256(first.result.SerializeToString(deterministic=True)).hexdigest()
    assert entries[3]["caller"] == "mallory" and entries[3]["reason"] == "RESEARCHER_MISMATCH"
    assert all(e["study"] == "S1" for e in entries) and entries[0]["epsilon"] == "0.5"
    assert entries[0]["researcher"] == "cn:alice" and entries[0]["consent_epoch"] == 1
    assert audit.check(rows, audit.keys(signer.public_raw)).ok
    svc.close()


class BrokenNoise:
    """A noise source that fails after the charge (a stand-in for any bug past the ledger)."""

    def draw(
        self, exact: npt.NDArray[np.int64], p: privacy.NoisePlan, sens: privacy.Sensitivity
    ) -> npt.NDArray[np.int64]:
        raise ValueError("the noise source broke")


def test_an_unexpected_failure_after_the_charge_is_internal_and_audited(store: Path, tmp_path: Path) -> None:
    """No unhandled error path: a bug is an Internal error with a reason for the caller, and the audit log
    records the failure together with the charge it made (the ledger keeps the charge: it may not be refunded)."""
    import json

    from genogate.errors import Internal

    signer = Signer(Ed25519PrivateKey.generate())
    svc = QueryService(
        name="site-a",
        backend=open_backend(store),
        ledger=Ledger(tmp_path / "ledger.sqlite", audit_signer=signer),
        studies=lambda: {"S1": study()},
        policy=POLICY,
        noise=BrokenNoise(),
        signer=signer,
        clock=lambda: NOW,
    )
    try:
        with pytest.raises(Internal) as failed:
            svc.query(
                Caller("alice"),
                envelope(CohortCount(parse_filter("sex=F")), study_id="S1", epsilon=0.5).SerializeToString(),
            )
        assert failed.value.reason is Reason.INTERNAL and "broke" not in failed.value.message
        entries = [json.loads(r.entry) for r in svc._ledger.audit_rows()]  # type: ignore[attr-defined]
        assert [e["decision"] for e in entries] == ["charged", "failed"]
        assert entries[1]["reason"] == "INTERNAL" and entries[1]["epsilon"] == "0.5"
        assert svc.budget_pb(study()).epsilon_spent == 0.5
    finally:
        svc.close()


def test_a_researcher_cap_spans_studies_and_each_receipt_says_the_researchers_spending(
    store: Path, tmp_path: Path
) -> None:
    studies = [study(study_id=f"S{i}", researchers=frozenset({"alice", "bob"})) for i in (1, 2, 3)]
    policy = _policy(epsilon_per_researcher_cap=Decimal("1.5"), epsilon_per_node_cap=Decimal("2.5"))
    svc = make(store, tmp_path, *studies, policy=policy)
    a = ask(svc, CohortCount(), eps=1.0, study_id="S1")
    b = ask(svc, CohortCount(), eps=0.5, study_id="S2")  # a new study, the same researcher: exactly at the cap
    assert (a.budget_after.researcher_epsilon_spent, b.budget_after.researcher_epsilon_spent) == (1.0, 1.5)
    assert b.budget_after.researcher_epsilon_cap == 1.5 and b.budget_after.budget_period_days == 365
    assert b.budget_after.consent_epoch == svc.epoch
    with pytest.raises(ResourceExhausted) as err:
        ask(svc, CohortCount(), eps=0.1, study_id="S3")
    assert err.value.reason is Reason.RESEARCHER_BUDGET_EXHAUSTED and "365 days" in err.value.message
    assert "asks ε 0.1; the researcher has ε 0 left of this site's cap of ε 1.5" in err.value.message
    assert svc.budget_pb(studies[2]).epsilon_spent == 0
    # Another researcher has their own cap, but the node's is shared: 2.5 in all.
    ask(svc, CohortCount(), eps=1.0, study_id="S3", who="bob")
    with pytest.raises(ResourceExhausted) as node:
        ask(svc, CohortCount(parse_filter("sex=F")), eps=0.5, study_id="S3", who="bob")
    assert node.value.reason is Reason.NODE_BUDGET_EXHAUSTED
    assert "asks ε 0.5 and this site's cap across everyone is ε 2.5 per 365 days" in node.value.message
    assert "1.5" not in node.value.message and "2.6" not in node.value.message  # nobody's spending
    assert svc.budget(Caller("bob"), "S3").researcher_epsilon_spent == 1.0
    # A stored answer is still served at no cost once the caps are reached.
    assert ask(svc, CohortCount(), eps=0.1, study_id="S1", who="bob").from_store


def test_a_query_joining_an_identical_charge_claims_no_epsilon(store: Path, tmp_path: Path) -> None:
    """Two query ids, one question, the first not yet answered (its charge is pending): the second joins
    it and its receipt claims nothing charged now, the first query id's charge as the original."""
    svc = make(store, tmp_path)
    q = CohortCount(parse_filter("sex=F"))
    first = envelope(q, study_id="S1", epsilon=0.5, query_id="q-first")
    charge_sha = hashlib.sha256(canonical_bytes(canonical(q))).hexdigest()
    begun = svc._ledger.begin(  # what the first query's thread has done when the second arrives
        study_id="S1",
        query_id="q-first",
        payload_sha256=hashlib.sha256(first.SerializeToString()).hexdigest(),
        canonical_sha256=charge_sha,
        epsilon=Decimal("0.5"),
        delta=Decimal(0),
        epsilon_cap=Decimal(3),
        delta_cap=Decimal(1),
        now_ms=int(NOW * 1000),
        researcher="cn:alice",
        caller="alice",
        epoch=svc.epoch,
    )
    assert isinstance(begun, Charged)
    second = ask(svc, q, eps=0.5, query_id="q-second")
    assert second.epsilon_charged == 0 and second.original_epsilon_charged == 0.5
    assert second.from_store and second.cached_query_id == "q-first"
    retried = pb.ReleaseBody.FromString(svc.query(Caller("alice"), first.SerializeToString()).payload)
    assert retried.result == second.result and retried.epsilon_charged == 0 and not retried.from_store
    assert svc.budget_pb(study()).epsilon_spent == 0.5


def test_get_budget_answers_the_studys_researchers_and_the_coordinator_only(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path, coordinator_common_name="coord")
    ask(svc, CohortCount(), eps=0.5)
    assert svc.budget(Caller("alice"), "S1").epsilon_spent == 0.5
    assert svc.budget(Caller("alice"), "S1").researcher_epsilon_spent == 0.5
    assert svc.budget(Caller("coord"), "S1").epsilon_spent == 0.5
    with pytest.raises(PermissionDenied) as err:
        svc.budget(Caller("mallory"), "S1")
    assert err.value.reason is Reason.RESEARCHER_MISMATCH
    with pytest.raises(PermissionDenied):
        svc.budget(Caller("coord"), "S-unknown")
