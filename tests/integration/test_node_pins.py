"""What the coordinator's fan-out pins of a node, with real certificates and a real node server on 127.0.0.1
(mutual TLS, a DuckDB store): a certificate pin accepts exactly one certificate; a CA pin accepts any
certificate its CA issued for the node's name, so a renewed certificate (new key, same name, same CA) keeps
working with no registry change, while a certificate for the same name from another CA the coordinator also
trusts is refused. And one fan-out, never restarted, reaches a node at its new endpoint as soon as it is handed
the updated registration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from coordinator.config import FanoutSettings
from coordinator.fanout import ClientIdentity, FanOut
from genogate import tls
from genogate.studies import NodeInfo
from node.app import create_server
from node.config import load_node_config
from node.ingest import ingest
from node.service import QueryService
from tests.integration.conftest import BASE_RECORDS, sheet_text, vcf_text
from tests.nodes import Node, client_tls, make_ca, make_node

SITE = "site-a"


@dataclass
class World:
    root: Path
    ca: Path  # the CA that issues the node's certificates
    other: Path  # another CA the coordinator also trusts
    node: Node
    identity: ClientIdentity
    servers: list[tuple[Any, QueryService]]

    def start(self, port: int = 0) -> int:
        """Start the node (``port`` 0: any free port) and return its port."""
        env = {"GENOGATE_NODE_SERVER__LISTEN": f"127.0.0.1:{port}"}
        server, bound, service = create_server(load_node_config(self.node.config, env=env))
        server.start()
        self.servers.append((server, service))
        return bound

    def stop(self) -> None:
        while self.servers:
            server, service = self.servers.pop()
            server.stop(0).wait()
            service.close()

    def fanout(self) -> FanOut:
        return FanOut(self.identity, FanoutSettings())

    def cert_sha256(self) -> str:
        return tls.fingerprint_sha256((self.node.dir / "tls" / "node.pem").read_bytes())

    def renew(self, ca: Path) -> None:
        """A new key and a certificate for the same name from ``ca``, in place of the node's own."""
        key = tls.new_key()
        csr = tls.new_csr(key, SITE, [SITE, "localhost", "127.0.0.1"])
        cert = tls.issue(
            (ca / "ca.key").read_bytes(), (ca / "ca.pem").read_bytes(), csr, server=True, client=False, days=30
        )
        tls.write_secret(self.node.dir / "tls" / "node.key", key, overwrite=True)
        tls.write_file(self.node.dir / "tls" / "node.pem", cert, overwrite=True)


def ca_sha256(ca: Path) -> str:
    return tls.fingerprint_sha256((ca / "ca.pem").read_bytes())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    ca, other = make_ca(tmp_path / "ca"), make_ca(tmp_path / "other-ca")
    client_tls(ca, "coord", tmp_path / "clients")
    bundle = tmp_path / "trusted.pem"  # the coordinator trusts both CAs
    bundle.write_bytes((ca / "ca.pem").read_bytes() + (other / "ca.pem").read_bytes())
    node = make_node(tmp_path / SITE, SITE, ca)
    # The node trusts both CAs too, so its TLS handshake never decides what the coordinator's pin must.
    (node.dir / "tls" / "ca.pem").write_bytes(bundle.read_bytes())
    (tmp_path / "in.vcf").write_text(vcf_text(BASE_RECORDS))
    (tmp_path / "sheet.tsv").write_text(sheet_text())
    ingest(node.store, [tmp_path / "in.vcf"], tmp_path / "sheet.tsv")
    identity = ClientIdentity(bundle, tmp_path / "clients" / "coord.pem", tmp_path / "clients" / "coord.key")
    w = World(tmp_path, ca, other, node, identity, [])
    try:
        yield w
    finally:
        w.stop()


def _reached(fanout: FanOut, node: NodeInfo) -> bool:
    return fanout.infos([node], timeout_ms=5_000)[0] is not None


def test_a_certificate_pin_accepts_one_certificate_and_a_ca_pin_only_its_own_ca(world: World) -> None:
    port = world.start()
    by_cert = NodeInfo(SITE, f"127.0.0.1:{port}", world.cert_sha256(), "GRCh38")
    by_ca = replace(by_cert, cert_sha256="", ca_sha256=ca_sha256(world.ca))
    for node, expected in (
        (by_cert, True),
        (replace(by_cert, cert_sha256="ab" * 32), False),
        (by_ca, True),
        (replace(by_ca, ca_sha256=ca_sha256(world.other)), False),  # trusted, but not the node's issuer
        (replace(by_ca, ca_sha256="cd" * 32), False),  # not a CA the coordinator trusts at all
    ):
        fanout = world.fanout()  # a fresh fan-out: nothing cached, the pin is checked
        try:
            assert _reached(fanout, node) is expected, node.pin
        finally:
            fanout.close()
    fanout = world.fanout()
    try:
        assert fanout.trusts_ca(ca_sha256(world.ca)) and fanout.trusts_ca(ca_sha256(world.other))
        assert not fanout.trusts_ca("cd" * 32)
    finally:
        fanout.close()


def test_a_renewed_certificate_keeps_working_under_a_ca_pin_and_another_cas_certificate_does_not(
    world: World,
) -> None:
    port = world.start()
    old_cert = world.cert_sha256()
    world.stop()
    world.renew(world.ca)  # same name, same CA, new key and certificate
    assert world.cert_sha256() != old_cert
    world.start(port)
    endpoint = f"127.0.0.1:{port}"
    checks = (
        (NodeInfo(SITE, endpoint, "", "GRCh38", ca_sha256=ca_sha256(world.ca)), True),  # no registry change
        (NodeInfo(SITE, endpoint, old_cert, "GRCh38"), False),  # the old certificate pin: 'nodes update --cert'
        (NodeInfo(SITE, endpoint, world.cert_sha256(), "GRCh38"), True),  # ... with the new certificate
    )
    for node, expected in checks:
        fanout = world.fanout()
        try:
            assert _reached(fanout, node) is expected, node.pin
        finally:
            fanout.close()

    world.stop()
    world.renew(world.other)  # a certificate for the same name from another CA the coordinator trusts
    world.start(port)
    for node, expected in (
        (NodeInfo(SITE, endpoint, "", "GRCh38", ca_sha256=ca_sha256(world.ca)), False),
        (NodeInfo(SITE, endpoint, world.cert_sha256(), "GRCh38"), True),  # the handshake itself succeeds
    ):
        fanout = world.fanout()
        try:
            assert _reached(fanout, node) is expected, node.pin
        finally:
            fanout.close()


def test_one_fan_out_reaches_a_moved_node_as_soon_as_it_is_handed_the_updated_registration(world: World) -> None:
    first = world.start()
    node = NodeInfo(SITE, f"127.0.0.1:{first}", "", "GRCh38", ca_sha256=ca_sha256(world.ca), version=1)
    fanout = world.fanout()
    try:
        assert _reached(fanout, node)
        world.stop()
        second = world.start()
        assert second != first
        moved = replace(node, endpoint=f"127.0.0.1:{second}", version=2)
        # What an update asks first: the node at its new endpoint, on a channel of its own; the queries' channel
        # is left alone until the registry says otherwise.
        assert fanout.probe(moved) is not None
        assert fanout.probe(replace(moved, ca_sha256=ca_sha256(world.other))) is None
        assert fanout._links[SITE].node.endpoint == node.endpoint
        assert _reached(fanout, moved)  # at once, with no restart: the channel and info follow the registration
        assert fanout._links[SITE].node.endpoint == moved.endpoint
        fanout.forget(SITE)  # a removed node: its channel is closed and nothing of it is cached
        assert SITE not in fanout._links and SITE not in fanout._infos
    finally:
        fanout.close()
