"""A real node server on 127.0.0.1 (port 0) with real mutual TLS over the real 1000 Genomes subset:
every query kind, transport refusals, error statuses, the ledger under concurrency, averaging attacks."""

from __future__ import annotations

import concurrent.futures
import csv
import datetime as dt
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from genogate import results
from genogate.errors import GenogateError, PermissionDenied, Reason, ResourceExhausted
from genogate.filter import parse_filter
from genogate.kinds import result_to_pb
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.carrier_count import CarrierCount
from genogate.kinds.case_control import CaseControl
from genogate.kinds.cohort_count import CohortCount
from genogate.kinds.genotype_counts import GenotypeCounts
from genogate.nodeclient import ClientTLS, NodeClient, envelope, release_text, released
from genogate.query import Region, Variant
from node.app import create_server
from node.config import load_node_config
from node.ingest import ingest
from tests.conftest import CASE_TERM, CONTROL_TERM, REFERENCE, SUBSET, require_shared, write_subset_sheet
from tests.nodes import client_tls, make_ca, make_node, study_toml
from tests.terms import filler

# Interval checks: a 95% interval misses with probability <= 0.05; "within 6 half-widths" of a discrete
# Laplace draw fails with probability < 1e-9 per value, so over the < 100 values here < 1e-7 overall.
WIDE = 6


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    require_shared()
    root = tmp_path_factory.mktemp("fed")
    ca = make_ca(root / "ca")
    node = make_node(root / "site-a", "site-a", ca)
    ingest(node.store, [SUBSET / "1KG_phase3_subset_allchr.vcf.gz"], write_subset_sheet(root / "sheet.tsv"))
    (node.dir / "studies.toml").write_text(
        study_toml("S1", epsilon_total="1000", cap="5")
        + study_toml("TIGHT", epsilon_total="1.0", cap="0.25")
        + study_toml("RACE", epsilon_total="5.0", cap="0.1")
        + study_toml("POA-1", purpose="POA")
        + study_toml("SHARED", researchers=("alice", "bob"))
    )
    config = load_node_config(
        node.config,
        env={
            "GENOGATE_NODE_STUDIES__LOCAL": "true",
            "GENOGATE_NODE_POLICY__PUBLIC_SITE_CATALOGUE": "true",
            "GENOGATE_NODE_POLICY__EPSILON_PER_QUERY_CAP": "5",
            "GENOGATE_NODE_POLICY__EPSILON_PER_STUDY_CAP": "1000",
            "GENOGATE_NODE_POLICY__EPSILON_PER_RESEARCHER_CAP": "1000",
            "GENOGATE_NODE_POLICY__EPSILON_PER_NODE_CAP": "100000",
            "GENOGATE_NODE_POLICY__ALLOWED_PURPOSES": "GRU,HMB,DS",
            "GENOGATE_NODE_POLICY__RATE_LIMIT_PER_STUDY_PER_MINUTE": "100000",
            "GENOGATE_NODE_SERVER__MAX_WORKERS": "16",
            "GENOGATE_NODE_GRANTS__COORDINATOR_COMMON_NAME": "coord",
        },
    )
    server, port, service = create_server(config)
    server.start()
    other_ca = make_ca(root / "other-ca")
    try:
        yield {
            "address": f"127.0.0.1:{port}",
            "node": node,
            "ca": ca,
            "alice": client_tls(ca, "alice", root / "clients"),
            "bob": client_tls(ca, "bob", root / "clients"),
            "coord": client_tls(ca, "coord", root / "clients"),
            "eve": client_tls(other_ca, "eve", root / "eve"),
        }
    finally:
        server.stop(0).wait()
        service.close()


def client(fed: dict[str, object], who: str = "alice") -> NodeClient:
    return NodeClient(str(fed["address"]), fed[who])  # type: ignore[arg-type]


def ask(
    fed: dict[str, object], q: object, study: str = "S1", eps: float = 1.0, who: str = "alice"
) -> results.ReleaseBody:
    with client(fed, who) as c:
        return c.send(envelope(q, study_id=study, epsilon=eps))[1]  # type: ignore[arg-type]


def near(value: results.NoisyValue, truth: int) -> bool:
    half = (value.ci95_high - value.ci95_low) / 2
    return not value.below_threshold and abs(value.estimate - truth) <= WIDE * max(half, 1)


def _ref_rows() -> dict[tuple[str, int, str, str], tuple[int, int]]:
    out = {}
    with open(REFERENCE / "1kg_subset_1126" / "bcftools_filltags_all.tsv") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            for alt, ac in zip(r["ALT"].split(","), r["AC"].split(","), strict=True):
                out[(r["CHROM"], int(r["POS"]), r["REF"], alt)] = (int(ac), int(r["AN"]))
    return out


def test_every_query_kind_answers_near_the_truth(federation: dict[str, object]) -> None:
    ref = _ref_rows()
    common = [k for k, (ac, an) in ref.items() if k[0] == "22" and 200 < ac < an - 200][:5]
    variants = tuple(Variant(c, p, r, a) for c, p, r, a in common)
    body = ask(federation, CohortCount())
    assert body.site == "site-a" and near(body.result.count, 1126)
    af = ask(federation, AlleleFrequency(variants), eps=4.0).result.variants
    assert [(v.variant.chrom, v.variant.pos) for v in af] == [(v.chrom, v.pos) for v in variants]
    for v in af:
        ac, an = ref[(v.variant.chrom, v.variant.pos, v.variant.ref, v.variant.alt)]
        assert near(v.allele_count, ac) and near(v.allele_number, an)
    g = ask(federation, GenotypeCounts(variants[0]), eps=4.0).result
    total = sum(x.estimate for x in (g.hom_ref, g.het, g.hom_alt, g.hemi_ref, g.hemi_alt, g.no_call))
    assert abs(total - 1126) < 6 * 6 * 10
    cc = ask(
        federation,
        CaseControl(variants[:2], parse_filter(f"phenotype={CASE_TERM}"), parse_filter(f"phenotype={CONTROL_TERM}")),
        eps=4.0,
    ).result
    assert len(cc.tables) == 2
    assert near(
        results.NoisyValue(
            estimate=cc.tables[0].case_alt.estimate + cc.tables[0].case_ref.estimate, ci95_low=-30, ci95_high=30
        ),
        216,
    )  # 108 cases x 2 alleles
    carriers = ask(federation, CarrierCount(Region("22", 1, 20_000_000)), eps=4.0).result.carriers
    assert not carriers.below_threshold and 0 < carriers.estimate <= 1126 + 30


def test_region_allele_frequency_lists_the_catalogue(federation: dict[str, object]) -> None:
    rows = ask(federation, AlleleFrequency(region=Region("22", 1, 17_000_000)), eps=2.0).result.variants
    assert rows and all(r.variant.chrom == "22" and r.variant.pos <= 17_000_000 for r in rows)


def test_refused_without_a_client_certificate(federation: dict[str, object]) -> None:
    tls: ClientTLS = federation["alice"]  # type: ignore[assignment]
    channel = grpc.secure_channel(str(federation["address"]), grpc.ssl_channel_credentials(root_certificates=tls.ca))
    from genogate.wire.v1 import node_pb2, node_pb2_grpc

    with pytest.raises(grpc.RpcError) as info:
        node_pb2_grpc.NodeServiceStub(channel).GetNodeInfo(node_pb2.GetNodeInfoRequest(), timeout=5)
    channel.close()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake is refused


def test_refused_with_a_certificate_from_another_ca(federation: dict[str, object]) -> None:
    eve: ClientTLS = federation["eve"]  # type: ignore[assignment]
    alice: ClientTLS = federation["alice"]  # type: ignore[assignment]
    with NodeClient(str(federation["address"]), ClientTLS(alice.ca, eve.key, eve.cert), timeout_s=5) as c:
        with pytest.raises(GenogateError) as info:
            c.info()
    assert info.value.reason is Reason.UNAVAILABLE


def _forged_identity(ca: Path, out: Path, subject: x509.Name) -> ClientTLS:
    """A client certificate the CA signed for ``subject`` directly (the dev CA itself refuses such CSRs)."""
    ca_key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "c.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (out / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ClientTLS.from_files(ca / "ca.pem", out / "c.key", out / "c.pem")


@pytest.mark.parametrize(
    "subject",
    [
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice"), x509.NameAttribute(NameOID.COMMON_NAME, "bob")]),
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "no common name")]),
    ],
    ids=["two common names", "no common name"],
)
def test_a_certificate_without_exactly_one_common_name_is_refused(
    federation: dict[str, object], tmp_path: Path, subject: x509.Name
) -> None:
    """Authorization names the caller by the certificate's one common name: none or several is refused."""
    tls = _forged_identity(federation["ca"], tmp_path, subject)  # type: ignore[arg-type]
    with NodeClient(str(federation["address"]), tls, timeout_s=10) as c:
        with pytest.raises(GenogateError) as info:
            c.send(envelope(CohortCount(), study_id="S1", epsilon=1.0))
    assert info.value.reason is Reason.UNAUTHENTICATED
    assert info.value.message == "the client certificate must name exactly one common name"


def test_errors_carry_status_reason_and_a_clean_message(federation: dict[str, object]) -> None:
    with pytest.raises(PermissionDenied) as info:
        ask(federation, CohortCount(), who="bob")
    assert info.value.reason is Reason.RESEARCHER_MISMATCH
    assert info.value.message.startswith("the caller is not a researcher of this study: bob is not among")
    with pytest.raises(PermissionDenied) as info:
        ask(federation, CohortCount(), study="POA-1")  # node policy: GRU, HMB, DS only
    assert info.value.reason is Reason.PURPOSE_REFUSED
    with pytest.raises(ResourceExhausted) as info2:
        ask(federation, CohortCount(), eps=6.0)
    assert info2.value.reason is Reason.EPSILON_OVER_CAP
    assert "the query asks ε 6, the cap is ε " in info2.value.message  # the numbers survive the RPC boundary


def test_budget_exactly_at_the_cap_then_refused(federation: dict[str, object]) -> None:
    for i in range(4):
        ask(federation, CohortCount(parse_filter(filler(i))), study="TIGHT", eps=0.25)
    with pytest.raises(ResourceExhausted) as info:
        ask(federation, CohortCount(parse_filter(filler(9))), study="TIGHT", eps=0.01)
    assert info.value.reason is Reason.BUDGET_EXHAUSTED
    assert "the query asks ε 0.01; the study has ε 0 left of its cap of ε 1 at this site" in info.value.message
    with client(federation) as c:
        b = c.budget("TIGHT")
    assert (b.epsilon_spent, b.epsilon_remaining, b.queries_answered) == (1.0, 0.0, 4)


def test_200_concurrent_queries_never_overspend(federation: dict[str, object]) -> None:
    """Cap 5.0 at 0.1 per query allows exactly 50 of 200 distinct concurrent queries."""

    def one(i: int) -> str:
        try:
            ask(federation, CohortCount(parse_filter(f"age>={i % 150} or {filler(i)}")), study="RACE", eps=0.1)
            return "ok"
        except ResourceExhausted as exc:
            return exc.reason.name

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(one, range(200)))
    assert outcomes.count("ok") == 50 and outcomes.count("BUDGET_EXHAUSTED") == 150
    with client(federation) as c:
        b = c.budget("RACE")
    assert math.isclose(b.epsilon_spent, 5.0) and b.queries_answered == 50


def test_averaging_attack_gets_one_value_charged_once(federation: dict[str, object]) -> None:
    q = AlleleFrequency((Variant("22", 16050075, "A", "G"), Variant("22", 16050115, "G", "A")))
    with client(federation) as c:
        before = c.budget("S1").epsilon_spent
        answers = {
            result_to_pb(c.send(envelope(q, study_id="S1", epsilon=0.5))[1].result).SerializeToString(  # type: ignore[arg-type]
                deterministic=True
            )
            for _ in range(1000)
        }
        after = c.budget("S1").epsilon_spent
    assert len(answers) == 1
    assert math.isclose(after - before, 0.5)


def test_empty_and_large_cohorts_both_release_normally(federation: dict[str, object]) -> None:
    """No error, and the same shape of answer, whether the cohort is empty or holds everyone."""
    empty = ask(federation, CohortCount(parse_filter(filler(1234)))).result.count
    full = ask(federation, CohortCount(parse_filter(f"not {filler(1234)}"))).result.count
    assert empty.below_threshold or empty.estimate < 10 + WIDE * 10
    assert near(full, 1126)
    for v in (empty, full):
        assert v.mechanism == "discrete_laplace" and v.noise_scale > 0 and v.threshold == 10


def test_a_suppressed_value_reads_as_fewer_than_k_through_the_node_client(federation: dict[str, object]) -> None:
    """Genotype counts of a variant nobody carries (22-16050075-A-T; the site holds A>G): its het, hom-alt
    and hemi classes are truly 0, so each is withheld as "< 10" unless its noise (Laplace, scale 1 at ε=1)
    reaches 10 (P < 3.3e-5 each); all four released happens with probability < 1e-17. The typed view and
    the printed table say "< 10", never the raw message's zero fields."""
    body = ask(federation, GenotypeCounts(Variant("22", 16050075, "A", "T")), eps=1.0)
    values = {quantity: v for _, quantity, v in released(body)}
    assert set(values) == {"hom_ref", "het", "hom_alt", "hemi_ref", "hemi_alt", "no_call"}
    assert not values["hom_ref"].suppressed and values["hom_ref"].estimate is not None  # everyone (~1126)
    hidden = [q for q, v in values.items() if v.suppressed]
    assert hidden
    text = release_text(body)
    for q in hidden:
        v = values[q]
        assert (v.estimate, v.ci95_low, v.ci95_high, v.threshold, str(v)) == (None, None, None, 10, "< 10")
        line = next(line for line in text.splitlines() if f" {q} " in line)
        assert "< 10" in line and "suppressed" in line and " 0 " not in line


def test_get_budget_answers_the_studys_researcher_and_the_coordinator_only(federation: dict[str, object]) -> None:
    """Real certificates of three common names: the study's researcher and the node's configured
    coordinator are answered; another certificate of the same CA is not."""
    ask(federation, CohortCount(parse_filter(filler(21))), study="S1", eps=0.5)
    with client(federation, "alice") as c:
        mine = c.budget("S1")
    assert mine.epsilon_spent >= 0.5 and mine.researcher_epsilon_spent >= mine.epsilon_spent
    assert (mine.researcher_epsilon_cap, mine.budget_period_days, mine.consent_epoch) == (1000.0, 365, 1)
    with client(federation, "coord") as c:
        assert c.budget("S1").epsilon_spent == mine.epsilon_spent
    with client(federation, "bob") as c, pytest.raises(PermissionDenied) as info:
        c.budget("S1")
    assert info.value.reason is Reason.RESEARCHER_MISMATCH


def test_the_same_bytes_from_another_certificate_are_a_replay(federation: dict[str, object]) -> None:
    env = envelope(CohortCount(parse_filter(filler(22))), study_id="SHARED", epsilon=0.5)
    with client(federation, "alice") as c:
        _, first = c.send(env)
    with client(federation, "bob") as c, pytest.raises(GenogateError) as info:
        c.send(env)  # bob is a researcher of the study too, but did not send these bytes
    assert info.value.reason is Reason.REPLAYED_NONCE
    with client(federation, "alice") as c:
        _, again = c.send(env)  # alice's own retry: her first answer, nothing charged now
        budget = c.budget("SHARED")
    assert again.result == first.result and not again.from_store
    assert (first.epsilon_charged, again.epsilon_charged, again.original_epsilon_charged) == (0.5, 0.0, 0.5)
    assert budget.epsilon_spent == 0.5 and again.consent_epoch == first.consent_epoch == 1


def test_node_info_states_the_caps_above_the_study(federation: dict[str, object]) -> None:
    with client(federation, "bob") as c:
        info = c.info()
    assert (info.epsilon_total_cap, info.epsilon_per_researcher_cap, info.epsilon_per_node_cap) == (
        1000.0,
        1000.0,
        100000.0,
    )
    assert info.budget_period_days == 365 and info.epsilon_per_query_min == 0.001


def test_an_answered_rpc_is_logged_at_debug_only_and_a_refused_one_always(
    federation: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 16, item 3: no per-RPC log line on the hot path unless the ``genogate.rpc`` logger is at DEBUG; a
    refusal is logged at INFO. The server logs before it sends its answer, so the lines are there once the
    client has it."""

    def rpc_lines() -> list[tuple[str, str, str]]:
        return [
            (r.rpc, r.outcome, r.levelname)  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "genogate.rpc" and r.getMessage() == "rpc"
        ]

    caplog.set_level(logging.INFO, logger="genogate.rpc")
    ask(federation, CohortCount(parse_filter(filler(700))), eps=0.1)
    with client(federation) as c:
        c.budget("S1")
    assert rpc_lines() == []
    with pytest.raises(PermissionDenied):
        ask(federation, CohortCount(parse_filter(filler(701))), who="bob")
    assert rpc_lines() == [("Query", "permission_denied", "INFO")]

    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="genogate.rpc")
    ask(federation, CohortCount(parse_filter(filler(702))), eps=0.1)
    with client(federation) as c:
        c.budget("S1")
    lines = rpc_lines()  # the client's own GetNodeInfo calls among them
    assert {("Query", "ok", "DEBUG"), ("GetBudget", "ok", "DEBUG")} <= set(lines)
    assert {level for _, outcome, level in lines if outcome == "ok"} == {"DEBUG"}
