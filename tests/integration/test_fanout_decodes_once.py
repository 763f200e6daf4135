"""One decode per process (issue 14, item 4): the coordinator opens a researcher's envelope once and its fan-out
to three real nodes (real servers on 127.0.0.1 with mutual TLS, each with its own DuckDB store) reads the
opened envelope: every ``QueryEnvelope`` parse in this process is counted, and there is exactly one for the
coordinator plus one per node that answered."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.config import FanoutSettings
from coordinator.fanout import ClientIdentity, FanOut
from genogate import envelope
from genogate.kinds.cohort_count import CohortCount
from genogate.rpc import max_envelope_bytes
from genogate.signing import Signer
from genogate.tls import fingerprint_sha256
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from node.app import create_server
from node.config import load_node_config
from node.ingest import ingest
from node.service import QueryService
from tests.integration.conftest import BASE_RECORDS, sheet_text, vcf_text
from tests.nodes import client_tls, make_ca, make_node, study_toml

SITES = ("site-a", "site-b", "site-c")


@dataclass
class Federation:
    nodes: list[cpb.NodeInfo]
    fanout: FanOut
    root: Path  # ca/ (the CA), clients/coord.* (the fan-out's identity), one directory per node


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("fanout")
    ca = make_ca(root / "ca")
    client_tls(ca, "coord", root / "clients")  # the fan-out's identity; a local study's researcher here
    (root / "in.vcf").write_text(vcf_text(BASE_RECORDS))
    (root / "sheet.tsv").write_text(sheet_text())
    servers: list[tuple[object, QueryService]] = []
    nodes = []
    try:
        for name in SITES:
            node = make_node(root / name, name, ca)
            ingest(node.store, [root / "in.vcf"], root / "sheet.tsv")
            (node.dir / "studies.toml").write_text(study_toml("S1", researchers=("coord",)))
            config = load_node_config(
                node.config,
                env={"GENOGATE_NODE_STUDIES__LOCAL": "true", "GENOGATE_NODE_POLICY__ALLOWED_PURPOSES": "GRU,HMB"},
            )
            server, port, service = create_server(config)
            server.start()
            servers.append((server, service))
            pem = (node.dir / "tls" / "node.pem").read_bytes()
            nodes.append(cpb.NodeInfo(name=name, endpoint=f"127.0.0.1:{port}", cert_sha256=fingerprint_sha256(pem)))
        identity = ClientIdentity(ca / "ca.pem", root / "clients" / "coord.pem", root / "clients" / "coord.key")
        fanout = FanOut(identity, FanoutSettings())
        try:
            yield Federation(nodes, fanout, root)
        finally:
            fanout.close()
    finally:
        for server, service in servers:
            server.stop(0).wait()  # type: ignore[attr-defined]
            service.close()


def test_a_query_to_three_sites_is_decoded_once_by_the_coordinator(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = Signer(Ed25519PrivateKey.generate())  # a local study: the nodes check the caller's certificate
    payload, signature = envelope.sign(envelope.build(CohortCount(), study_id="S1", epsilon=0.5), signer)
    parses: list[int] = []
    original = pb.QueryEnvelope.FromString

    def counted(data: bytes) -> pb.QueryEnvelope:
        parses.append(len(data))
        return original(data)

    monkeypatch.setattr(pb.QueryEnvelope, "FromString", staticmethod(counted))
    opened = envelope.open_envelope(payload, signature, signer.public_raw, max_bytes=max_envelope_bytes(10))
    assert len(parses) == 1  # the coordinator's one decode

    results = federation.fanout.run(federation.nodes, opened, pb.StudyGrant(), timeout_ms=30_000)

    assert [r.site for r in results] == list(SITES)
    assert all(r.status == pb.SITE_STATUS_ANSWERED and r.body is not None for r in results), results
    assert all(r.body.query_id == opened.query_id and r.body.epsilon_charged == 0.5 for r in results if r.body)
    # One parse for the coordinator, one per node (each node opens the bytes it received once): none per site in
    # the fan-out, whose release check reads the ids from the opened envelope.
    assert len(parses) == 1 + len(SITES)
    assert parses == [len(payload)] * (1 + len(SITES))  # the same bytes everywhere, forwarded unchanged
