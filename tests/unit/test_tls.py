"""genogate.tls: certificates it issues pass a real TLS handshake (Python's ``ssl``, strict X.509 checks) in
both directions, and what should be refused is; key files are 0600 and never overwritten."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from genogate import tls


@dataclass
class Party:
    cert: Path
    key: Path


@dataclass
class Outcome:
    server_error: BaseException | None
    client_error: BaseException | None
    peer_common_name: str | None


def _party(tmp: Path, name: str, ca: tuple[bytes, bytes], sans: list[str], *, server: bool, client: bool) -> Party:
    key = tls.new_key()
    cert = tls.issue(ca[0], ca[1], tls.new_csr(key, name, sans), server=server, client=client, days=2)
    (tmp / f"{name}.pem").write_bytes(cert)
    tls.write_secret(tmp / f"{name}.key", key)
    return Party(tmp / f"{name}.pem", tmp / f"{name}.key")


def _context(side: ssl._SSLMethod, ca_pem: bytes, me: Party | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(side)
    ctx.load_verify_locations(cadata=ca_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if me is not None:
        ctx.load_cert_chain(me.cert, me.key)
    return ctx


def handshake(ca_pem: bytes, server: Party, client: Party | None, hostname: str = "localhost") -> Outcome:
    """Mutual TLS over a socketpair: the server requires a client certificate from ``ca_pem``'s CA, the
    client checks the server's certificate and ``hostname``. The server sends b"ok" once it accepts."""
    server_ctx = _context(ssl.PROTOCOL_TLS_SERVER, ca_pem, server)
    client_ctx = _context(ssl.PROTOCOL_TLS_CLIENT, ca_pem, client)
    left, right = socket.socketpair()
    left.settimeout(10)
    right.settimeout(10)
    result: dict[str, object] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(left, server_side=True) as conn:
                der = conn.getpeercert(binary_form=True)
                assert der is not None
                result["cn"] = tls.common_name(ssl.DER_cert_to_PEM_cert(der).encode())
                conn.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            result["error"] = exc
        finally:
            left.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client_error: BaseException | None = None
    try:
        with client_ctx.wrap_socket(right, server_hostname=hostname) as conn:
            if conn.recv(2) != b"ok":
                raise ConnectionError("the server closed the connection")
    except (ssl.SSLError, OSError) as exc:
        client_error = exc
    finally:
        right.close()
        thread.join(10)
    error = result.get("error")
    cn = result.get("cn")
    return Outcome(
        error if isinstance(error, BaseException) else None, client_error, cn if isinstance(cn, str) else None
    )


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return tls.new_ca("test CA", days=2)


@pytest.fixture
def node(tmp_path: Path, ca: tuple[bytes, bytes]) -> Party:
    return _party(tmp_path, "node-a", ca, ["node-a", "localhost", "127.0.0.1"], server=True, client=False)


@pytest.fixture
def alice(tmp_path: Path, ca: tuple[bytes, bytes]) -> Party:
    return _party(tmp_path, "alice", ca, [], server=False, client=True)


def test_mutual_tls_handshake_succeeds(ca: tuple[bytes, bytes], node: Party, alice: Party) -> None:
    for hostname in ("localhost", "127.0.0.1", "node-a"):
        outcome = handshake(ca[1], node, alice, hostname)
        assert outcome.client_error is None and outcome.server_error is None, outcome
        assert outcome.peer_common_name == "alice"


def test_a_client_without_a_certificate_is_refused(ca: tuple[bytes, bytes], node: Party) -> None:
    outcome = handshake(ca[1], node, None)
    assert isinstance(outcome.server_error, ssl.SSLError)
    assert outcome.client_error is not None
    assert outcome.peer_common_name is None


def test_a_client_from_another_ca_is_refused(tmp_path: Path, ca: tuple[bytes, bytes], node: Party) -> None:
    other = tls.new_ca("other CA", days=2)
    mallory = _party(tmp_path, "mallory", other, [], server=False, client=True)
    outcome = handshake(ca[1], node, mallory)
    assert isinstance(outcome.server_error, ssl.SSLCertVerificationError)
    assert outcome.peer_common_name is None


def test_the_server_name_is_checked(ca: tuple[bytes, bytes], node: Party, alice: Party) -> None:
    outcome = handshake(ca[1], node, alice, hostname="node-b")
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)


def test_a_client_certificate_cannot_serve(tmp_path: Path, ca: tuple[bytes, bytes], alice: Party) -> None:
    impostor = _party(tmp_path, "impostor", ca, ["localhost"], server=False, client=True)
    outcome = handshake(ca[1], impostor, alice)
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)


def test_a_server_certificate_cannot_be_a_client(tmp_path: Path, ca: tuple[bytes, bytes], node: Party) -> None:
    other_node = _party(tmp_path, "node-b", ca, ["node-b"], server=True, client=False)
    outcome = handshake(ca[1], node, other_node)
    assert isinstance(outcome.server_error, ssl.SSLCertVerificationError)


def test_certificate_contents(ca: tuple[bytes, bytes]) -> None:
    ca_cert = x509.load_pem_x509_certificate(ca[1])
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    key = tls.new_key()
    pem = tls.issue(*ca, tls.new_csr(key, "node-a", ["node-a", "127.0.0.1"]), server=True, client=True, days=10_000)
    cert = x509.load_pem_x509_certificate(pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["node-a"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == {x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc <= ca_cert.not_valid_after_utc  # never outlives its CA
    assert tls.common_name(pem) == "node-a"
    der = cert.public_bytes(serialization.Encoding.DER)
    assert tls.fingerprint_sha256(pem) == hashlib.sha256(der).hexdigest()


def test_a_csr_with_a_bad_signature_is_refused(ca: tuple[bytes, bytes]) -> None:
    csr = x509.load_pem_x509_csr(tls.new_csr(tls.new_key(), "node-a", ["localhost"]))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the ECDSA signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match="signature does not verify"):
        tls.issue(*ca, tampered, server=True, client=False, days=1)


def test_a_csr_with_an_altered_subject_is_refused(ca: tuple[bytes, bytes]) -> None:
    """Alice's signed request with the name changed to someone else's: the signature no longer covers it."""
    csr = x509.load_pem_x509_csr(tls.new_csr(tls.new_key(), "alice", []))
    tbs = csr.tbs_certrequest_bytes
    der = csr.public_bytes(serialization.Encoding.DER).replace(tbs, tbs.replace(b"alice", b"bobby"))
    forged = x509.load_der_x509_csr(der)
    assert forged.subject != csr.subject
    with pytest.raises(ValueError, match="signature does not verify"):
        tls.issue(*ca, forged.public_bytes(serialization.Encoding.PEM), server=False, client=True, days=1)


def test_issue_refuses_bad_requests(ca: tuple[bytes, bytes]) -> None:
    csr = tls.new_csr(tls.new_key(), "node-a", ["localhost"])
    other = tls.new_ca("other CA", days=1)
    with pytest.raises(ValueError, match="CA key does not belong"):
        tls.issue(other[0], ca[1], csr, server=True, client=False, days=1)
    with pytest.raises(ValueError, match="server, a client, or both"):
        tls.issue(*ca, csr, server=False, client=False, days=1)
    with pytest.raises(ValueError, match="needs subject alternative names"):
        tls.issue(*ca, tls.new_csr(tls.new_key(), "node-a", []), server=True, client=False, days=1)
    with pytest.raises(ValueError, match="not a PEM certificate signing request"):
        tls.issue(
            *ca,
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            server=False,
            client=True,
            days=1,
        )
    leaf_key = tls.new_key()
    leaf = tls.issue(*ca, tls.new_csr(leaf_key, "leaf", []), server=False, client=True, days=1)
    with pytest.raises(ValueError, match="not a CA certificate"):
        tls.issue(leaf_key, leaf, csr, server=False, client=True, days=1)
    with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
        tls.new_csr(tls.new_key(), "node-a", ["two words"])


def test_identity_key_is_ed25519() -> None:
    key = serialization.load_pem_private_key(tls.new_identity_key(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)


def test_write_secret_is_0600_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        tls.write_secret(path, b"first")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        tls.write_secret(path, b"second")
    assert path.read_bytes() == b"first"
    tls.write_secret(path, b"third", overwrite=True)
    assert path.read_bytes() == b"third"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]  # no temporary files left behind


def test_write_file_leaves_nothing_on_failure(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        tls.write_file(tmp_path / "cert.pem", "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cns", [["operator", "alice"], []], ids=["two common names", "none"])
def test_the_dev_ca_signs_only_subjects_with_exactly_one_common_name(ca: tuple[bytes, bytes], cns: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns] or [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "no common name")
    ]
    subject = x509.Name(names)
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    with pytest.raises(ValueError, match="exactly one, non-empty common name"):
        tls.issue(*ca, csr.public_bytes(serialization.Encoding.PEM), server=False, client=True, days=2)
