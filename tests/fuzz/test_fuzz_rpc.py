"""Fuzzing every RPC of a node and a coordinator, each a real server process on 127.0.0.1 with real mTLS:
raw bytes through a generic channel (random, and valid messages with bytes flipped, cut or appended),
oversized messages, and well-formed messages with extreme values (ε from 5e-324 to 1e308, NaN, ±inf,
negative; deep filter nesting; many variants; huge strings), signed by the real researcher key.

Checked for every call: the answer is OK or a gRPC status carrying a genogate reason (never INTERNAL, never
a status without a reason, except gRPC's own RESOURCE_EXHAUSTED for a message over the server's limit,
which never reaches our code). Then: both processes are still up and answer an honest query; neither log
holds a traceback, nor an ERROR line but for a reasoned server-side refusal; an undecodable message logs
exactly one line; and the processes' peak resident memory (VmHWM) stayed under 1 GiB (deploy/k8s limits the
coordinator to 1 GiB and a node to 4 GiB; both are held to the tighter bound here).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from genogate.convert import proposal_from_pb
from genogate.coordclient import CoordinatorClient
from genogate.errors import Reason
from genogate.kinds.cohort_count import CohortCount, CohortCountResult
from genogate.nodeclient import ClientTLS, NodeClient, envelope
from genogate.rpc import MAX_MESSAGE_BYTES, REASON_KEY, error_from_rpc
from genogate.signing import Signer
from genogate.studies import NodeInfo, ReviewDecision, Study, StudyState
from genogate.tls import fingerprint_sha256, new_identity_key, write_secret
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import node_pb2 as npb
from node.ingest import ingest
from tests.fuzz.cases import fuzz, record
from tests.integration.conftest import many_records, sheet_text, vcf_text
from tests.nodes import client_tls, make_ca, make_coordinator, make_node, study_toml
from tests.processes import Proc, start_coordinator, start_node

MAX_MESSAGE_MB = 8
PEAK_RSS_LIMIT = 2**30  # deploy/k8s: limits.memory 1Gi for the coordinator (4Gi for a node)
SITE = "site-a"


@dataclass(repr=False)
class Fed:
    node: Proc
    coordinator: Proc
    alice_tls: ClientTLS
    operator: ClientTLS
    alice: Signer
    committee: list[Signer]
    study: Study
    node_channel: grpc.Channel
    coord_channel: grpc.Channel
    operator_channel: grpc.Channel


def _channel(address: str, tls: ClientTLS) -> grpc.Channel:
    limit = 4 * MAX_MESSAGE_MB * 2**20
    options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    return grpc.secure_channel(address, tls.credentials(), options=options)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    root = tmp_path_factory.mktemp("rpcfuzz")
    ca = make_ca(root / "ca")
    committee = [Signer(Ed25519PrivateKey.generate()) for _ in range(2)]
    cdir = make_coordinator(
        root, ca, operators=("operator",), members=[(f"m{i}", m.public_raw) for i, m in enumerate(committee)]
    )
    committee_key = Signer.from_pem_file(cdir / "keys" / "committee.key")
    operator = client_tls(ca, "operator", root / "clients")
    alice_tls = client_tls(ca, "alice", root / "clients")
    limits = {"GENOGATE_COORDINATOR_SERVER__MAX_MESSAGE_MB": str(MAX_MESSAGE_MB)}
    coordinator = start_coordinator(cdir / "coordinator.toml", operator, log=root / "coordinator.log", env=limits)
    node_proc = None
    try:
        node = make_node(root / SITE, SITE, ca, client=True)
        vcf = root / "in.vcf"
        vcf.write_text(vcf_text(many_records("1", 200)))
        sheet = root / "sheet.tsv"
        sheet.write_text(sheet_text())
        ingest(node.store, [vcf], sheet)
        (node.dir / "studies.toml").write_text(study_toml("LOCAL", epsilon_total="100000", cap="1000"))
        env = {
            "GENOGATE_NODE_GRANTS__COMMITTEE_KEYS": committee_key.public_raw.hex(),
            "GENOGATE_NODE_GRANTS__COORDINATOR": coordinator.address,
            "GENOGATE_NODE_GRANTS__REVOCATION_REFRESH_SECONDS": "1",
            "GENOGATE_NODE_STUDIES__LOCAL": "true",
            "GENOGATE_NODE_POLICY__MIN_REPORTABLE_COUNT": "0",
            "GENOGATE_NODE_POLICY__EPSILON_PER_STUDY_CAP": "100000",
            "GENOGATE_NODE_POLICY__EPSILON_PER_RESEARCHER_CAP": "100000",
            "GENOGATE_NODE_POLICY__EPSILON_PER_NODE_CAP": "100000",
            "GENOGATE_NODE_POLICY__EPSILON_PER_QUERY_CAP": "1000",
            "GENOGATE_NODE_POLICY__RATE_LIMIT_PER_STUDY_PER_MINUTE": "10000000",
            "GENOGATE_NODE_SERVER__MAX_MESSAGE_MB": str(MAX_MESSAGE_MB),
        }
        node_proc = start_node(node.config, operator, log=root / "node.log", env=env)
        alice_key = root / "alice.key"
        write_secret(alice_key, new_identity_key())
        alice = Signer.from_pem_file(alice_key)
        with CoordinatorClient(coordinator.address, operator) as c:
            c.register_node(
                NodeInfo(
                    name=SITE,
                    endpoint=node_proc.address,
                    cert_sha256=fingerprint_sha256((node.dir / "tls" / "node.pem").read_bytes()),
                    genome_build="GRCh37",
                )
            )
            c.register_researcher("alice", "a university", alice.public_raw)
            study = c.propose(proposal_from_pb(_proposal(alice, 1000.0, 10.0)), alice)
            for member in committee:
                study = c.review(study, ReviewDecision.APPROVE, "ok", member)
        assert study.state == StudyState.APPROVED
        node_channel, coord_channel = _channel(node_proc.address, alice_tls), _channel(coordinator.address, alice_tls)
        operator_channel = _channel(coordinator.address, operator)
        try:
            yield Fed(
                node_proc, coordinator, alice_tls, operator, alice, committee, study, node_channel, coord_channel,
                operator_channel,
            )  # fmt: skip
        finally:
            for channel in (node_channel, coord_channel, operator_channel):
                channel.close()
    finally:
        if node_proc is not None:
            node_proc.stop()
        coordinator.stop()


def _proposal(alice: Signer, total: float, cap: float, **more: object) -> cpb.StudyProposal:
    fields: dict[str, object] = {
        "title": "fuzz",
        "purpose": "HMB",
        "kinds": [pb.QUERY_KIND_COHORT_COUNT, pb.QUERY_KIND_ALLELE_FREQUENCY, pb.QUERY_KIND_GENOTYPE_COUNTS],
        "sites": [SITE],
        "epsilon_total_per_site": total,
        "epsilon_per_query_cap": cap,
        "duration_days": 30,
        "researcher_key_fingerprint": alice.key_id,
    }
    fields.update(more)
    return cpb.StudyProposal(**fields)  # type: ignore[arg-type]


NODE_METHODS = {
    "/genogate.v1.NodeService/Query": npb.QueryRequest,
    "/genogate.v1.NodeService/GetBudget": npb.GetBudgetRequest,
    "/genogate.v1.NodeService/GetNodeInfo": npb.GetNodeInfoRequest,
    "/genogate.v1.NodeService/DescribePolicy": npb.DescribePolicyRequest,
}
COORD_METHODS = {
    f"/genogate.v1.CoordinatorService/{m.name}": getattr(cpb, m.input_type.name)
    for m in cpb.DESCRIPTOR.services_by_name["CoordinatorService"].methods
}
HEALTH = "/grpc.health.v1.Health/Check"


def call(channel: grpc.Channel, method: str, raw: bytes) -> tuple[grpc.StatusCode, str, bytes]:
    """Send ``raw`` as the request of ``method``; the status, the genogate reason ("" if none) and the
    response's bytes (empty unless OK)."""
    stub = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        response = stub(raw, timeout=120)
    except grpc.RpcError as exc:
        reason = dict(exc.trailing_metadata() or ()).get(REASON_KEY, "")
        too_big = exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (exc.details() or "")
        if not reason and too_big:
            # gRPC's own size limit (the largest legitimate request) refused it unread: the SDK reads that as
            # INVALID_QUERY (genogate.rpc.error_from_rpc), and so does this check.
            reason = error_from_rpc(exc).reason.name
        return exc.code(), reason if isinstance(reason, str) else reason.decode(), b""
    return grpc.StatusCode.OK, "", bytes(response)


def check(code: grpc.StatusCode, reason: str, size: int) -> None:
    """OK, or a status with a genogate reason that is not INTERNAL (see the module docstring)."""
    if code is grpc.StatusCode.OK:
        return
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and not reason and size > MAX_MESSAGE_MB * 2**20:
        return  # gRPC refused the message before any of our code saw it
    assert reason in Reason.__members__, f"{code.name} without a genogate reason"
    assert reason not in ("INTERNAL", "UNSPECIFIED"), f"{code.name} {reason}"
    assert code is not grpc.StatusCode.UNKNOWN


# Raw bytes ------------------------------------------------------------------------------------------------

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 2**20), st.just(0)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=40), st.just(0)),
)


def _valid_bytes(fed: Fed, message: type) -> bytes:
    """A valid, plausible request for the message type (the seed that mutations damage)."""
    if message is npb.QueryRequest:
        env = envelope(CohortCount(), study_id="LOCAL", epsilon=0.5)
        return npb.QueryRequest(signed_query=pb.SignedQuery(payload=env.SerializeToString())).SerializeToString()
    if message is cpb.PreviewStudyRequest:
        return cpb.PreviewStudyRequest(proposal=_proposal(fed.alice, 10, 1)).SerializeToString()
    if message is npb.DescribePolicyRequest:
        return npb.DescribePolicyRequest(
            purpose="HMB;NPU", kinds=[pb.QUERY_KIND_COHORT_COUNT, pb.QUERY_KIND_CARRIER_COUNT]
        ).SerializeToString()
    if message is npb.GetBudgetRequest:
        return npb.GetBudgetRequest(study_id="LOCAL").SerializeToString()
    if message is cpb.GetStudyRequest:
        return cpb.GetStudyRequest(study_id=fed.study.study_id).SerializeToString()
    return bytes(message().SerializeToString())


def _damaged(seed: bytes, mutations: list[tuple[str, object, object]]) -> bytes:
    data = seed
    for kind, a, b in mutations:
        if kind == "flip" and data:
            i = int(a) % len(data)  # type: ignore[call-overload]
            data = data[:i] + bytes([data[i] ^ (1 << int(b))]) + data[i + 1 :]  # type: ignore[call-overload]
        elif kind == "cut" and data:
            data = data[: int(a) % len(data)]  # type: ignore[call-overload]
        elif kind == "append":
            data += bytes(a)  # type: ignore[call-overload]
    return data


_raw = st.one_of(
    st.tuples(st.just("random"), st.binary(max_size=512), st.just([])),
    st.tuples(st.just("damaged"), st.just(b""), st.lists(_mutation, min_size=1, max_size=4)),
    st.tuples(st.just("oversized"), st.just(b""), st.sampled_from([MAX_MESSAGE_MB * 2**20 + 1, 3 * 2**20])),
)


def _raw_request(fed: Fed, message: type, how: tuple[str, bytes, list]) -> bytes:  # type: ignore[type-arg]
    kind, data, mutations = how
    if kind == "random":
        return data
    if kind == "damaged":
        return _damaged(_valid_bytes(fed, message), mutations)
    size = int(mutations)  # type: ignore[call-overload]
    return b"\x0a" + b"\xff" * 4 + b"\x7f" + os.urandom(size)  # a length-delimited field 1 that lies


@fuzz(200, deadline_s=60)
@given(st.sampled_from(sorted(NODE_METHODS) + [HEALTH]), _raw)
def test_node_rpcs_with_raw_bytes(fed: Fed, method: str, how: tuple[str, bytes, list]) -> None:  # type: ignore[type-arg]
    record("rpc-node")
    raw = _raw_request(fed, NODE_METHODS.get(method, npb.GetNodeInfoRequest), how)
    code, reason, _ = call(fed.node_channel, method, raw)
    check(code, reason, len(raw))


@fuzz(200, deadline_s=60)
@given(st.sampled_from(sorted(COORD_METHODS) + [HEALTH]), _raw)
def test_coordinator_rpcs_with_raw_bytes(fed: Fed, method: str, how: tuple[str, bytes, list]) -> None:  # type: ignore[type-arg]
    record("rpc-coordinator")
    raw = _raw_request(fed, COORD_METHODS.get(method, cpb.ListNodesRequest), how)
    code, reason, _ = call(fed.coord_channel, method, raw)
    check(code, reason, len(raw))


# Extreme values ---------------------------------------------------------------------------------------------

EXTREME_EPSILONS = [
    5e-324,
    1e-300,
    1e-15,
    1e-10,
    6.4e-6,
    1e-3,
    0.5,
    1.0,
    999.0,
    1e6,
    1e308,
    math.inf,
    -math.inf,
    math.nan,
    -1.0,
    0.0,
    -0.0,
]
_epsilon = st.one_of(st.sampled_from(EXTREME_EPSILONS), st.floats(allow_nan=True, allow_infinity=True))
_text = st.one_of(st.text(max_size=40), st.sampled_from(["", "LOCAL", "x" * 100_000, "site-a", "\x00", "é" * 1000]))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand (see ``_deep_filter``)."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _field(message: type, name: str) -> int:
    return int(message.DESCRIPTOR.fields_by_name[name].number)


def _deep_filter(depth: int, wide: int) -> bytes:
    """``depth`` nested NOTs around an ancestry test with ``wide`` groups (or a sex test), as bytes: the
    Python runtime refuses to build a message nested deeper than 100 levels, which is what the server must
    see. Headers are built inside out and joined once (linear in ``depth``)."""
    bottom = pb.Filter(ancestry_in=pb.Filter.AncestryIn(groups=[f"G{i}" for i in range(wide)]))
    if not wide:
        bottom = pb.Filter(sex_is=pb.Filter.SexIs(sex=pb.SEX_FEMALE))
    f = bottom.SerializeToString()
    item, negation = _field(pb.Filter.Not, "item") << 3 | 2, _field(pb.Filter, "negation") << 3 | 2
    headers, size = [], len(f)
    for _ in range(depth):
        inner = _varint(item) + _varint(size)
        size += len(inner)
        outer = _varint(negation) + _varint(size)
        size += len(outer)
        headers.append(outer + inner)
    return b"".join(reversed(headers)) + f


@st.composite
def _query(draw: st.DrawFn) -> pb.Query | bytes:
    kind = draw(st.sampled_from(["cohort", "af", "af-region", "genotype"]))
    n = draw(st.sampled_from([0, 1, 2, 1000, 100_000]))
    pos = draw(st.sampled_from([1, 100, 2**31 - 1, 2**31, 2**63, 2**64 - 1]))
    chrom = draw(st.sampled_from(["1", "chr1", "", "zz" * 40]))
    variants = [pb.Variant(chrom=chrom, pos=min(pos + i % 7, 2**64 - 1), ref="A", alt="G") for i in range(n)]
    if kind == "cohort":
        depth = draw(st.sampled_from([0, 3, 16, 17, 99, 100, 101, 1000, 100_000]))
        flt = _deep_filter(depth, draw(st.sampled_from([0, 3, 100_000])))
        return _ld(_field(pb.Query, "cohort_count"), _ld(_field(pb.CohortCountQuery, "filter"), flt))
    if kind == "af":
        return pb.Query(allele_frequency=pb.AlleleFrequencyQuery(variants=variants))
    if kind == "af-region":
        region = pb.Region(
            chrom="1", start=draw(st.sampled_from([0, 1, 2**63])), end=draw(st.sampled_from([0, 10**6, 2**64 - 1]))
        )
        return pb.Query(allele_frequency=pb.AlleleFrequencyQuery(region=region))
    return pb.Query(genotype_counts=pb.GenotypeCountsQuery(variant=variants[0] if variants else pb.Variant()))


@st.composite
def _envelope(draw: st.DrawFn, study_id: str, epsilon: st.SearchStrategy[float] = _epsilon) -> bytes:
    """A serialized envelope (the query is appended as bytes when it is nested too deep to build)."""
    query = draw(_query())
    env = pb.QueryEnvelope(
        query_id=draw(st.sampled_from(["", "q"])) + os.urandom(8).hex(),
        study_id=draw(st.one_of(st.just(study_id), _text)),
        query=query if isinstance(query, pb.Query) else None,
        epsilon=draw(epsilon),
        nonce=draw(st.one_of(st.just(os.urandom(16)), st.binary(max_size=300))),
        timestamp_unix_ms=draw(st.one_of(st.just(int(time.time() * 1000)), st.integers(-(2**63), 2**63 - 1))),
        sites=draw(st.lists(_text, max_size=3)),
        assembly=draw(st.sampled_from(["", "GRCh37", "GRCh38", "x" * 1000])),
    )
    raw = env.SerializeToString()
    return raw if isinstance(query, pb.Query) else raw + _ld(_field(pb.QueryEnvelope, "query"), query)


@fuzz(60, deadline_s=120)
@given(st.data())
def test_node_query_with_extreme_values(fed: Fed, data: st.DataObject) -> None:
    record("rpc-node")
    payload = data.draw(_envelope("LOCAL"))
    raw = npb.QueryRequest(
        signed_query=pb.SignedQuery(
            payload=payload, researcher_signature=fed.alice.sign("genogate.v1.QueryEnvelope", payload)
        )
    ).SerializeToString()
    code, reason, response = call(fed.node_channel, "/genogate.v1.NodeService/Query", raw)
    check(code, reason, len(raw))
    if code is grpc.StatusCode.OK:  # no release without a charge (or the stored release it repeats)
        body = pb.ReleaseBody.FromString(npb.QueryResponse.FromString(response).release.payload)
        assert body.epsilon_charged > 0 or body.from_store, body


@fuzz(60, deadline_s=120)
@given(st.data())
def test_coordinator_with_extreme_values(fed: Fed, data: st.DataObject) -> None:
    record("rpc-coordinator")
    which = data.draw(st.sampled_from(["run", "preview", "propose", "budget"]))
    if which == "run":
        # Any ε, tiny ones included: the coordinator refuses below the sites' floors before fan-out and bounds
        # the noise support it builds (issue 13, item 5).
        payload = data.draw(_envelope(fed.study.study_id, _epsilon))
        signed = pb.SignedQuery(
            payload=payload, researcher_signature=fed.alice.sign("genogate.v1.QueryEnvelope", payload)
        )
        method, raw = (
            "RunQuery",
            cpb.RunQueryRequest(
                signed_query=signed, site_timeout_ms=data.draw(st.sampled_from([0, 1, 10_000, 2**32 - 1]))
            ).SerializeToString(),
        )
    elif which in ("preview", "propose"):
        # Any ε (PreviewStudy once raised decimal.DivisionImpossible for extreme ones: issue 13, item 6).
        proposal = _proposal(
            fed.alice,
            data.draw(_epsilon),
            data.draw(_epsilon),
            duration_days=data.draw(st.sampled_from([0, 1, 30, 2**32 - 1])),
            sites=data.draw(st.lists(_text, max_size=3)),
            purpose=data.draw(st.sampled_from(["HMB", "", "GRU;NPU", "x" * 10_000])),
        )
        if which == "preview":
            method, raw = "PreviewStudy", cpb.PreviewStudyRequest(proposal=proposal).SerializeToString()
        else:
            payload = proposal.SerializeToString()
            signed = cpb.SignedProposal(
                payload=payload, researcher_signature=fed.alice.sign("genogate.v1.StudyProposal", payload)
            )
            method, raw = "ProposeStudy", cpb.ProposeStudyRequest(proposal=signed).SerializeToString()
    else:
        method, raw = (
            "GetStudyBudget",
            cpb.GetStudyBudgetRequest(
                study_id=data.draw(st.one_of(st.just(fed.study.study_id), _text)),
                sites=data.draw(st.lists(_text, max_size=3)),
            ).SerializeToString(),
        )
    code, reason, response = call(fed.coord_channel, f"/genogate.v1.CoordinatorService/{method}", raw)
    check(code, reason, len(raw))
    if code is grpc.StatusCode.OK and method == "RunQuery":  # no site's answer without its charge
        for site in cpb.RunQueryResponse.FromString(response).sites:
            if site.status == pb.SITE_STATUS_ANSWERED:
                assert site.epsilon_charged > 0 or site.from_store, site


@fuzz(60, deadline_s=60)
@given(
    st.sampled_from(["node", "researcher", "review"]),
    _text,
    _text,
    st.one_of(st.binary(max_size=64), st.just(bytes(32))),
    st.sampled_from(["", "GRCh37", "GRCh38", "hg19", "x" * 5000]),
)
def test_operator_and_committee_rpcs_with_extreme_values(
    fed: Fed, which: str, name: str, other: str, key: bytes, build: str
) -> None:
    """As the operator (registrations) and a committee member (reviews of studies that do not exist or
    carry junk): huge, empty and odd names, endpoints, fingerprints and keys."""
    record("rpc-coordinator")
    if which == "node":
        node = cpb.NodeInfo(name=name, endpoint=other, cert_sha256=key.hex(), genome_build=build)
        method, raw = "RegisterNode", cpb.RegisterNodeRequest(node=node).SerializeToString()
    elif which == "researcher":
        request = cpb.RegisterResearcherRequest(name=name, affiliation=other, public_key=key)
        method, raw = "RegisterResearcher", request.SerializeToString()
    else:
        body = cpb.ReviewBody(study_id=name, proposal_sha256=key, decision=len(other) % 5, comment=other)
        payload = body.SerializeToString()
        member = fed.committee[len(name) % 2]
        review = cpb.Review(
            payload=payload,
            reviewer_signature=member.sign("genogate.v1.ReviewBody", payload),
            reviewer_key_id=member.key_id,
        )
        method, raw = "ReviewStudy", cpb.ReviewStudyRequest(review=review).SerializeToString()
    code, reason, _ = call(fed.operator_channel, f"/genogate.v1.CoordinatorService/{method}", raw)
    check(code, reason, len(raw))


def test_a_refusal_naming_100000_unknown_labels_keeps_its_reason(fed: Fed) -> None:
    """Found by the long run: the coordinator's UNKNOWN_LABEL message lists every label asked for, and at
    100,000 of them (789 kB) gRPC dropped the response past its metadata limit (RESOURCE_EXHAUSTED, no
    reason). Status messages are now cut at the boundary (``genogate.rpc.MAX_MESSAGE_BYTES``)."""
    query = _ld(_field(pb.Query, "cohort_count"), _ld(_field(pb.CohortCountQuery, "filter"), _deep_filter(0, 100_000)))
    env = pb.QueryEnvelope(
        query_id=os.urandom(8).hex(),
        study_id=fed.study.study_id,
        epsilon=1.0,
        nonce=os.urandom(16),
        timestamp_unix_ms=int(time.time() * 1000),
    )
    payload = env.SerializeToString() + _ld(_field(pb.QueryEnvelope, "query"), query)
    signed = pb.SignedQuery(payload=payload, researcher_signature=fed.alice.sign("genogate.v1.QueryEnvelope", payload))
    stub = fed.coord_channel.unary_unary("/genogate.v1.CoordinatorService/RunQuery")
    with pytest.raises(grpc.RpcError) as info:
        stub(cpb.RunQueryRequest(signed_query=signed).SerializeToString(), timeout=120)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert dict(info.value.trailing_metadata() or ())[REASON_KEY] == "UNKNOWN_LABEL"
    assert len((info.value.details() or "").encode()) <= MAX_MESSAGE_BYTES


def test_a_million_variants_are_refused_with_a_reason(fed: Fed) -> None:
    """17 MiB of variants: over the message limit here, so gRPC refuses it; under it, the node's variant cap."""
    for n in (1_000_000, 300_000):
        variants = [pb.Variant(chrom="1", pos=1 + i, ref="A", alt="G") for i in range(n)]
        env = pb.QueryEnvelope(
            query_id=os.urandom(8).hex(),
            study_id="LOCAL",
            epsilon=1.0,
            nonce=os.urandom(16),
            timestamp_unix_ms=int(time.time() * 1000),
            query=pb.Query(allele_frequency=pb.AlleleFrequencyQuery(variants=variants)),
        )
        payload = env.SerializeToString()
        raw = npb.QueryRequest(signed_query=pb.SignedQuery(payload=payload)).SerializeToString()
        code, reason, _ = call(fed.node_channel, "/genogate.v1.NodeService/Query", raw)
        check(code, reason, len(raw))
        assert code is not grpc.StatusCode.OK


# After the fuzzing ------------------------------------------------------------------------------------------


def test_an_undecodable_message_logs_one_line_without_a_traceback(fed: Fed) -> None:
    for proc, channel, method in (
        (fed.node, fed.node_channel, "/genogate.v1.NodeService/Query"),
        (fed.coordinator, fed.coord_channel, "/genogate.v1.CoordinatorService/RunQuery"),
    ):
        before = proc.log.read_bytes()
        code, reason, _ = call(channel, method, b"\xff\xff\xff")
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_QUERY")
        time.sleep(0.2)  # the log line is written before the status is sent; let the file catch up
        new = [json.loads(line) for line in proc.log.read_bytes()[len(before) :].splitlines() if line.strip()]
        undecodable = [r for r in new if r.get("msg") == "undecodable request"]
        assert len(undecodable) == 1 and "exc" not in undecodable[0], new
        assert undecodable[0]["rpc"] == method and undecodable[0]["level"] == "warning"
        assert all("exc" not in r and r["level"] != "error" for r in new), new


def test_both_processes_are_up_and_answer_an_honest_query(fed: Fed) -> None:
    assert fed.node.popen.poll() is None and fed.coordinator.popen.poll() is None
    with NodeClient(fed.node.address, fed.alice_tls) as c:
        _, body = c.send(envelope(CohortCount(), study_id="LOCAL", epsilon=0.987))
    assert body.site == SITE and isinstance(body.result, CohortCountResult)
    assert body.epsilon_charged == 0.987 or body.from_store  # the same question may have been fuzzed already
    with CoordinatorClient(fed.coordinator.address, fed.alice_tls) as c:
        env = envelope(CohortCount(), study_id=fed.study.study_id, epsilon=1.0)
        payload = env.SerializeToString()
        reply = c.run_query(
            pb.SignedQuery(payload=payload, researcher_signature=fed.alice.sign("genogate.v1.QueryEnvelope", payload))
        )
    assert [s.site for s in reply.sites] == [SITE]


def test_no_traceback_or_error_in_either_log(fed: Fed) -> None:
    for proc in (fed.node, fed.coordinator):
        text = proc.log.read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        # ERROR lines are allowed only for a reasoned server-side refusal (an operator registering a node
        # that cannot be reached is told UNAVAILABLE, and the operator's log says why); never a traceback
        bad = [
            r
            for r in records
            if "exc" in r
            or r.get("level") == "critical"
            or (r.get("level") == "error" and r.get("reason") in (None, "", "INTERNAL", "UNSPECIFIED"))
        ]
        assert not bad, bad[:5]


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_peak_memory_stayed_under_the_kubernetes_limit(fed: Fed) -> None:
    """Runs last in this module: the peak covers every fuzz case above (module order is file order)."""
    for proc in (fed.node, fed.coordinator):
        peak = _peak_rss(proc.popen.pid)
        print(f"peak RSS {proc.log.stem}: {peak / 2**20:.0f} MiB")
        assert peak < PEAK_RSS_LIMIT, f"{proc.log.stem} peaked at {peak / 2**20:.0f} MiB"
