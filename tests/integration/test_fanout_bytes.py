"""What each site receives is the researcher's envelope, byte for byte (issue 16, item 2).

Three real nodes (real servers on 127.0.0.1 with mutual TLS, each with its own DuckDB store), each behind a
recording relay that presents the node's own certificate (so the fan-out's pin check passes) and forwards
every call's raw bytes both ways. The fan-out serialises the ``QueryRequest`` once per query and hands the
same bytes to every site and every retry: the bytes recorded at every site are exactly the ``QueryRequest``
layout (field 1: the ``SignedQuery`` with the researcher's payload and signature as they came; field 2: the
grant) built here by hand, not by protobuf.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate import envelope
from genogate.kinds.base import as_filter
from genogate.kinds.cohort_count import CohortCount
from genogate.rpc import max_envelope_bytes
from genogate.signing import Signer
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from tests.integration.test_fanout_decodes_once import SITES, Federation
from tests.integration.test_fanout_decodes_once import federation as federation  # the three real nodes

QUERY = "/genogate.v1.NodeService/Query"


@dataclass
class Recorder(grpc.GenericRpcHandler):
    """Forwards every call to ``target`` as raw bytes, recording each request; ``drop_queries`` Query
    responses are dropped after the node answered (UNAVAILABLE to the caller), as a lost reply would be."""

    target: grpc.Channel
    seen: list[tuple[str, bytes]] = field(default_factory=list)
    drop_queries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = details.method  # type: ignore[attr-defined]
        forward = self.target.unary_unary(method)  # no (de)serialisers: bytes in, bytes out

        def handle(request: bytes, context: grpc.ServicerContext) -> Any:
            with self.lock:
                self.seen.append((method, request))
                drop = method == QUERY and self.drop_queries > 0
                self.drop_queries -= drop
            try:
                response = forward(request, timeout=30)
            except grpc.RpcError as exc:
                context.abort(exc.code(), exc.details() or "")  # type: ignore[attr-defined]
            if drop:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the reply was lost on the way")
            return response

        return grpc.unary_unary_rpc_method_handler(handle)

    def queries(self) -> list[bytes]:
        with self.lock:
            return [b for m, b in self.seen if m == QUERY]


@dataclass
class Relayed:
    nodes: list[cpb.NodeInfo]
    recorders: dict[str, Recorder]
    federation: Federation


@pytest.fixture(scope="module")
def relayed(federation: Federation) -> Iterator[Relayed]:
    ca = (federation.root / "ca" / "ca.pem").read_bytes()
    clients = federation.root / "clients"
    client_creds = grpc.ssl_channel_credentials(
        ca, (clients / "coord.key").read_bytes(), (clients / "coord.pem").read_bytes()
    )
    servers, channels = [], []
    nodes, recorders = [], {}
    try:
        for node in federation.nodes:
            tls = federation.root / node.name / "tls"
            channel = grpc.secure_channel(
                node.endpoint, client_creds, options=[("grpc.ssl_target_name_override", node.name)]
            )
            channels.append(channel)
            recorder = Recorder(channel)
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[recorder])
            creds = grpc.ssl_server_credentials(
                [((tls / "node.key").read_bytes(), (tls / "node.pem").read_bytes())],
                root_certificates=ca,
                require_client_auth=True,
            )
            port = server.add_secure_port("127.0.0.1:0", creds)
            server.start()
            servers.append(server)
            recorders[node.name] = recorder
            nodes.append(cpb.NodeInfo(name=node.name, endpoint=f"127.0.0.1:{port}", cert_sha256=node.cert_sha256))
        yield Relayed(nodes, recorders, federation)
    finally:
        for server in servers:
            server.stop(0).wait()
        for channel in channels:
            channel.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def query_request_bytes(payload: bytes, signature: bytes, grant: bytes) -> bytes:
    """``QueryRequest {signed_query = 1 {payload = 1, researcher_signature = 2}, grant = 2}``, by hand."""
    return _field(1, _field(1, payload) + _field(2, signature)) + _field(2, grant)


def _signed(signer: Signer, where: str) -> envelope.OpenedEnvelope:
    """A fresh cohort count; a distinct filter per query keeps the nodes from answering it with the stored
    release of an earlier identical question."""
    query = CohortCount(as_filter(where))
    payload, signature = envelope.sign(envelope.build(query, study_id="S1", epsilon=0.5), signer)
    return envelope.open_envelope(payload, signature, signer.public_raw, max_bytes=max_envelope_bytes(10))


def test_every_site_receives_the_researchers_envelope_byte_for_byte(relayed: Relayed) -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    for where in ("sex=F", "sex=M"):  # the second query runs over the links and multi-callables the first opened
        opened = _signed(signer, where)
        before = {site: len(r.queries()) for site, r in relayed.recorders.items()}
        results = relayed.federation.fanout.run(relayed.nodes, opened, pb.StudyGrant(), timeout_ms=30_000)

        assert [r.status for r in results] == [pb.SITE_STATUS_ANSWERED] * len(SITES), results
        expected = query_request_bytes(opened.payload, opened.signature, b"")
        for site in SITES:
            got = relayed.recorders[site].queries()[before[site] :]
            assert got == [expected], site  # one call per site, exactly the researcher's bytes in their layout
            assert opened.payload in got[0]


def test_a_retry_after_a_lost_reply_sends_the_same_bytes_and_charges_once(relayed: Relayed) -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    opened = _signed(signer, "not sex=F")
    site = SITES[1]
    recorder = relayed.recorders[site]
    before = len(recorder.queries())
    recorder.drop_queries = 1
    results = relayed.federation.fanout.run(relayed.nodes, opened, pb.StudyGrant(), timeout_ms=30_000)

    assert [r.status for r in results] == [pb.SITE_STATUS_ANSWERED] * len(SITES), results
    retried = next(r for r in results if r.site == site)
    sent = recorder.queries()[before:]
    assert len(sent) == 2 and retried.attempts == 2
    assert sent[0] == sent[1] == query_request_bytes(opened.payload, opened.signature, b"")
    assert retried.body is not None and retried.body.query_id == opened.query_id
    assert retried.body.from_store is False  # this query id's own release, kept by the node since the first try
    assert retried.epsilon_charged == 0.5  # charged by the first attempt, not again by the retry
