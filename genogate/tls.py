"""Keys, certificate requests and certificates for mutual TLS, and the node's Ed25519 identity key.

Everything cryptographic comes from the ``cryptography`` library: ECDSA P-256 keys, SHA-256 signatures,
X.509 built with its builders. PEM text goes in and out as ``bytes``; nothing here logs or prints key
material, and ``write_secret`` creates key files with mode 0600 atomically. Malformed input raises
``ValueError`` with a readable reason; callers add which file it came from.

``new_ca`` and ``issue`` serve a development CA (``genogate-node dev-ca``) and tests. A production
deployment gets its certificates from the institution's own CA; the node only needs the resulting PEM files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Backdate validity a little so that a peer whose clock runs slightly behind accepts a fresh certificate.
_CLOCK_SKEW = dt.timedelta(minutes=5)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _private_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_ec_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ValueError("not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an ECDSA private key")
    return key


def _load_cert(cert_pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ValueError("not a PEM certificate") from None


def _name(common_name: str) -> x509.Name:
    if not common_name or len(common_name) > 64:
        raise ValueError("a common name is 1-64 characters")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_name(san: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        pass
    if not san or not san.isascii() or any(c.isspace() for c in san):
        raise ValueError(f"{san!r} is neither an IP address nor a DNS name")
    return x509.DNSName(san)


def _validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    if days < 1:
        raise ValueError("a certificate must be valid for at least one day")
    now = _now()
    return now - _CLOCK_SKEW, now + dt.timedelta(days=days)


def new_key() -> bytes:
    """A new ECDSA P-256 private key, PEM (PKCS#8, unencrypted: protect it with file permissions)."""
    return _private_pem(ec.generate_private_key(ec.SECP256R1()))


def new_identity_key() -> bytes:
    """A new Ed25519 private key, PEM (PKCS#8), for signing release receipts and audit entries."""
    return _private_pem(ed25519.Ed25519PrivateKey.generate())


def new_ca(common_name: str, days: int) -> tuple[bytes, bytes]:
    """A self-signed CA: (key PEM, certificate PEM). It may sign leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    not_before, not_after = _validity(days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _private_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def new_csr(key_pem: bytes, common_name: str, sans: list[str]) -> bytes:
    """A certificate signing request for ``key_pem`` with subject CN=``common_name`` and the given subject
    alternative names (DNS names, or IP addresses such as ``127.0.0.1``)."""
    key = _load_ec_key(key_pem)
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    unique = list(dict.fromkeys(sans))
    if unique:
        names = [_general_name(s) for s in unique]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _load_ca(ca_key_pem: bytes, ca_cert_pem: bytes) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        ca_key = _load_ec_key(ca_key_pem)
    except ValueError as exc:
        raise ValueError(f"CA key: {exc}") from None
    try:
        ca_cert = _load_cert(ca_cert_pem)
    except ValueError as exc:
        raise ValueError(f"CA certificate: {exc}") from None
    if ca_cert.public_key() != ca_key.public_key():
        raise ValueError("the CA key does not belong to the CA certificate")
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError("the CA certificate is not a CA certificate (basicConstraints CA:true)")
    return ca_key, ca_cert


def check_ca(ca_key_pem: bytes, ca_cert_pem: bytes) -> None:
    """``ValueError`` unless the pair is a usable CA: an ECDSA key and the CA certificate of that key."""
    _load_ca(ca_key_pem, ca_cert_pem)


def issue(ca_key_pem: bytes, ca_cert_pem: bytes, csr_pem: bytes, *, server: bool, client: bool, days: int) -> bytes:
    """Sign a CSR with the CA: a leaf certificate (PEM) for TLS servers, clients, or both.

    Copies the CSR's subject and subject alternative names, nothing else it asks for. Refuses a CSR whose
    signature does not verify, a CA key that does not match the CA certificate, and a server certificate
    without names to check the host against. Validity ends no later than the CA's."""
    if not (server or client):
        raise ValueError("a certificate must be for a server, a client, or both")
    ca_key, ca_cert = _load_ca(ca_key_pem, ca_cert_pem)
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise ValueError("not a PEM certificate signing request") from None
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, InvalidSignature):
        signature_ok = False
    if not signature_ok:
        raise ValueError("the certificate signing request's signature does not verify")
    try:
        sans: list[x509.GeneralName] = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    if server and not sans:
        raise ValueError("a server certificate needs subject alternative names (DNS names or IP addresses)")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not names[0].value:
        # Authorization reads the one common name: a subject such as "CN=operator, CN=alice" must not exist.
        raise ValueError("the certificate signing request must name exactly one, non-empty common name")

    not_before, not_after = _validity(days)
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ValueError("the request's key must be ECDSA or Ed25519")
    try:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def sole_common_name(cert_pem: bytes) -> str | None:
    """The subject's common name when it has exactly one, non-empty; else None (no CN, an empty one, or
    several: a caller whose identity is ambiguous)."""
    try:
        attrs = _load_cert(cert_pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    if len(attrs) != 1:
        return None
    value = attrs[0].value
    text = value if isinstance(value, str) else value.decode(errors="replace")
    return text or None


def common_name(cert_pem: bytes) -> str:
    """The subject common name of a certificate (how a node names its caller)."""
    attrs = _load_cert(cert_pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        raise ValueError("the certificate has no common name")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode()


def fingerprint_sha256(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex (what operators compare out of band)."""
    return _load_cert(cert_pem).fingerprint(hashes.SHA256()).hex()


def write_file(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically with exactly ``mode``: readers see the whole file or none.

    The bytes go to a new temporary file (``O_EXCL``, created with ``mode``) in the same directory, are
    fsynced, and the file is then linked into place, which fails if ``path`` exists (no race), or renamed
    over it when ``overwrite``. ``FileExistsError`` if ``path`` exists and ``overwrite`` is false. On any
    failure the temporary file is removed."""
    path = Path(path)
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} already exists; refusing to overwrite it") from None
            except OSError:
                # File systems without hard links: check, then rename (a narrow race, still never partial).
                if path.exists():
                    raise FileExistsError(f"{path} already exists; refusing to overwrite it") from None
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(directory)


def write_secret(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """``write_file`` with mode 0600: for private keys and other secrets."""
    write_file(path, data, mode=0o600, overwrite=overwrite)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)
