"""A call that never reaches a server says which address, which certificate files and what to check, instead of
gRPC's "failed to connect to all addresses": the ``genogate`` command (a real subprocess) against a port nothing
listens on and against real mTLS servers on 127.0.0.1 whose certificates do not fit (another CA, another name,
a client certificate the server does not trust); the coordinator fan-out's Python TLS probe the same way."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from genogate import tls
from genogate.rpc import Peer, unreachable_message

GENOGATE = str(Path(sys.executable).with_name("genogate"))


@dataclass(frozen=True)
class Pki:
    root: Path
    ca: tuple[bytes, bytes]  # (key, cert) of the federation's CA
    other_ca: tuple[bytes, bytes]  # a CA nobody here trusts

    def issue(self, name: str, sans: list[str], *, server: bool, other: bool = False) -> tuple[Path, Path]:
        key = tls.new_key()
        ca_key, ca_cert = self.other_ca if other else self.ca
        cert = tls.issue(ca_key, ca_cert, tls.new_csr(key, name, sans), server=server, client=not server, days=2)
        key_path, cert_path = self.root / f"{name}.key", self.root / f"{name}.pem"
        key_path.write_bytes(key)
        cert_path.write_bytes(cert)
        return key_path, cert_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    p = Pki(root, tls.new_ca("federation CA", 2), tls.new_ca("another CA", 2))
    (root / "ca.pem").write_bytes(p.ca[1])
    p.issue("alice", [], server=False)
    p.issue("mallory", [], server=False, other=True)
    return p


@pytest.fixture
def server(pki: Pki) -> Iterator[Callable[..., str]]:
    started: list[grpc.Server] = []

    def start(name: str, sans: list[str], *, other: bool = False) -> str:
        key, cert = pki.issue(name, sans, server=True, other=other)
        s = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), s)
        creds = grpc.ssl_server_credentials(
            [(key.read_bytes(), cert.read_bytes())], root_certificates=pki.ca[1], require_client_auth=True
        )
        port = s.add_secure_port("127.0.0.1:0", creds)
        s.start()
        started.append(s)
        return f"127.0.0.1:{port}"

    yield start
    for s in started:
        s.stop(None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _genogate(pki: Pki, address: str, client: str = "alice") -> subprocess.CompletedProcess[str]:
    profile = pki.root / f"{client}-{address.replace(':', '_')}.toml"
    profile.write_text(
        f'[profile]\nname = "{client}"\ncoordinator = "{address}"\nca_cert = "ca.pem"\n'
        f'cert = "{client}.pem"\nkey = "{client}.key"\n'
    )
    return subprocess.run(
        [GENOGATE, "--profile", str(profile), "--timeout", "10", "nodes", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_nothing_listening_names_the_address_and_what_to_check(pki: Pki) -> None:
    address = f"127.0.0.1:{_free_port()}"
    run = _genogate(pki, address)
    assert run.returncode == 1 and run.stdout == ""
    err = run.stderr.strip()
    assert err.startswith(f"genogate: error: cannot connect to the coordinator at {address}: nothing listens")
    assert "is running" in err and "host and port" in err
    assert "failed to connect to all addresses" not in err and err.count("\n") == 0


def test_a_server_certificate_from_another_ca_names_the_ca_file(pki: Pki, server: Callable[..., str]) -> None:
    address = server("coordinator", ["localhost", "127.0.0.1"], other=True)
    err = _genogate(pki, address).stderr
    assert f"TLS handshake with the coordinator at {address} failed" in err
    assert f"not signed by the CA in {pki.root / 'ca.pem'}" in err
    assert "failed to connect to all addresses" not in err


def test_a_server_certificate_for_another_name_says_so(pki: Pki, server: Callable[..., str]) -> None:
    address = server("elsewhere", ["elsewhere.example.org"])
    err = _genogate(pki, address).stderr
    assert f"TLS handshake with the coordinator at {address} failed: its certificate does not name '127.0.0.1'" in err
    assert "CN and subject alternative names" in err


def test_a_client_certificate_the_server_does_not_trust_names_the_certificate(
    pki: Pki, server: Callable[..., str]
) -> None:
    address = server("coordinator", ["localhost", "127.0.0.1"])
    err = _genogate(pki, address, client="mallory").stderr
    assert f"the coordinator at {address} closed the connection during the TLS handshake" in err
    assert f"this client's certificate {pki.root / 'mallory.pem'}" in err


def _probe(pki: Pki, address: str, name: str) -> BaseException:
    """What the coordinator's fan-out meets when it opens its pinning connection (``fanout._check_pin``)."""
    host, _, port = address.rpartition(":")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=pki.ca[1].decode())
    ctx.load_cert_chain(pki.root / "alice.pem", pki.root / "alice.key")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=name):
            pass
    except (OSError, ssl.SSLError) as exc:
        return exc
    raise AssertionError("the connection succeeded")


def test_the_fanout_probe_says_what_to_check(pki: Pki, server: Callable[..., str]) -> None:
    refused = f"127.0.0.1:{_free_port()}"
    peer = Peer(refused, "node site-a", "site-a", client="the coordinator")
    assert "nothing listens there (connection refused)" in unreachable_message(_probe(pki, refused, "site-a"), peer)

    other_ca = server("site-a", ["site-a"], other=True)
    msg = unreachable_message(_probe(pki, other_ca, "site-a"), Peer(other_ca, "node site-a", "site-a"))
    assert f"TLS handshake with the node site-a at {other_ca} failed: its certificate is not signed by" in msg

    wrong_name = server("site-b", ["site-b"])
    msg = unreachable_message(_probe(pki, wrong_name, "site-a"), Peer(wrong_name, "node site-a", "site-a"))
    assert "its certificate does not name 'site-a'" in msg


def test_a_connection_closed_mid_call_is_not_blamed_on_certificates() -> None:
    from genogate.rpc import transport_message

    peer = Peer("127.0.0.1:7000", "node site-a", "site-a")
    assert transport_message("Socket closed", peer) == (
        "the connection to the node site-a at 127.0.0.1:7000 was closed before it answered (did it stop or restart?)"
    )
    refused_cert = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:7000: Socket closed"
    assert "during the TLS handshake" in transport_message(refused_cert, peer)
