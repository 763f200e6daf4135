"""Through the whole node service with production OpenDP noise: the 95% intervals it releases cover the
true count at their stated rate, for single draws (cohort count, AC) and for AN (a sum of two draws whose
interval is a union bound).

False-failure rate: each interval covers with probability >= 0.95 independently (fresh noise per distinct
query). With n releases, Hoeffding gives P(observed coverage < 0.95 - t) <= exp(-2 n t^2); t is chosen so
that bound is 1e-7 per check, 3e-7 for the file.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate.filter import parse_filter
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.cohort_count import CohortCount
from genogate.nodeclient import envelope
from genogate.signing import Signer
from genogate.wire.v1 import common_pb2 as pb
from node.backend import open_backend
from node.dp import OpenDPNoise
from node.ingest import ingest
from node.ledger import Ledger
from node.service import Caller, QueryService
from tests.terms import filler
from tests.unit.test_service import NOW, POLICY, SHEET, V100, VCF, study

N = 600
T = math.sqrt(math.log(1e7) / (2 * N))  # Hoeffding margin for a 1e-7 false-failure bound


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> QueryService:
    d = tmp_path_factory.mktemp("cov")
    (d / "c.vcf").write_text(VCF)
    (d / "s.tsv").write_text(SHEET)
    ingest(d / "store.duckdb", [d / "c.vcf"], d / "s.tsv", build="GRCh37")
    s = study("HMB", epsilon_total=Decimal("10000"), epsilon_per_query_cap=Decimal("1"))
    return QueryService(
        name="site-a",
        backend=open_backend(d / "store.duckdb"),
        ledger=Ledger(d / "ledger.sqlite"),
        studies=lambda: {"S1": s},
        policy=replace(
            POLICY,
            epsilon_per_study_cap=Decimal("10000"),
            epsilon_per_researcher_cap=Decimal("10000"),
            epsilon_per_node_cap=Decimal("10000"),
        ),
        noise=OpenDPNoise(),
        signer=Signer(Ed25519PrivateKey.generate()),
        clock=lambda: NOW,
    )


def _release(svc: QueryService, q: object) -> pb.ReleaseBody:
    env = envelope(q, study_id="S1", epsilon=0.5)  # type: ignore[arg-type]
    return pb.ReleaseBody.FromString(svc.query(Caller("alice"), env.SerializeToString()).payload)


def _covers(v: pb.NoisyValue, truth: int) -> bool:
    assert not v.below_threshold  # min_reportable_count is 0 here
    return v.ci95_low <= truth <= v.ci95_high


def test_cohort_count_intervals_cover(service: QueryService) -> None:
    # Distinct filters (so each draw is fresh) that all select the same 7 consented participants.
    hits = sum(
        _covers(_release(service, CohortCount(parse_filter(f"age>=0 or {filler(i)}"))).result.cohort_count.count, 7)
        for i in range(N)
    )
    assert hits / N >= 0.95 - T


def test_allele_count_and_number_intervals_cover(service: QueryService) -> None:
    ac_hits = an_hits = 0
    for i in range(N):
        q = AlleleFrequency((V100,), filter=parse_filter(f"age>=0 or {filler(i)}"))
        row = _release(service, q).result.allele_frequency.variants[0]
        ac_hits += _covers(row.allele_count, 3)
        an_hits += _covers(row.allele_number, 14)
    assert ac_hits / N >= 0.95 - T
    assert an_hits / N >= 0.95 - T
