"""Reading Ed25519 private keys (``genogate.signing.load_private_key``): the PKCS#8 PEM genogate writes is read
without ``cryptography``'s serialization package and gives the very key ``load_pem_private_key`` gives; any
other file takes the library's own path, which accepts other encodings of an Ed25519 key and refuses the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate.errors import ConfigError
from genogate.signing import Signer, _pkcs8_ed25519_seed, load_private_key, verify
from genogate.tls import new_identity_key

ROOT = Path(__file__).resolve().parents[2]


def _pem(key: Ed25519PrivateKey, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


@pytest.mark.parametrize("seed", [bytes(32), bytes(range(32)), b"\xff" * 32])
def test_the_fast_path_reads_the_same_key_as_the_library(seed: bytes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    pem = _pem(key)
    assert _pkcs8_ed25519_seed(pem) == seed  # the fast path is the one taken
    assert _raw(load_private_key(pem)) == _raw(key)
    library = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(library, Ed25519PrivateKey) and _raw(library) == seed


def test_keys_genogate_writes_take_the_fast_path_and_sign() -> None:
    pem = new_identity_key()
    assert _pkcs8_ed25519_seed(pem) is not None
    signer = Signer(load_private_key(pem))
    library = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(library, Ed25519PrivateKey)
    assert signer.public_raw == library.public_key().public_bytes_raw()
    verify(signer.public_raw, "genogate.v1.Test", b"payload", signer.sign("genogate.v1.Test", b"payload"))


def test_other_files_take_the_librarys_path() -> None:
    key = Ed25519PrivateKey.generate()
    openssh = _pem(key, serialization.PrivateFormat.OpenSSH)
    assert _pkcs8_ed25519_seed(openssh) is None
    with pytest.raises(ValueError):  # the library's own refusal of a format it does not read here
        load_private_key(openssh)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    assert _pkcs8_ed25519_seed(encrypted) is None
    with pytest.raises(TypeError):  # encrypted: the library asks for a password
        load_private_key(encrypted)
    with pytest.raises(ValueError):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_a_key_of_another_type_is_refused(tmp_path: Path) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert _pkcs8_ed25519_seed(pem) is None  # PKCS#8 all the same, but not the Ed25519 header
    with pytest.raises(ConfigError):
        load_private_key(pem)
    path = tmp_path / "ec.pem"
    path.write_bytes(pem)
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        Signer.from_pem_file(path)


def test_a_pem_with_a_tampered_header_is_not_read_as_a_seed() -> None:
    """Only the exact RFC 8410 header: a key of another algorithm with the same layout (X25519) falls through to
    the library, which reads it as what it is, and is refused as not Ed25519."""
    import base64

    pem = _pem(Ed25519PrivateKey.generate())
    der = bytearray(base64.b64decode(b"".join(pem.splitlines()[1:-1])))
    assert der[11] == 0x70  # id-Ed25519 (1.3.101.112)
    der[11] = 0x6E  # id-X25519 (1.3.101.110)
    forged = b"-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(bytes(der)) + b"\n-----END PRIVATE KEY-----\n"
    assert _pkcs8_ed25519_seed(forged) is None
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        load_private_key(forged)


def test_signing_with_a_genogate_key_loads_no_serialization_package(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(new_identity_key())
    probe = (
        "import json, sys\nfrom pathlib import Path\nfrom genogate.signing import Signer\n"
        f"Signer.from_pem_file(Path({str(path)!r})).sign('genogate.v1.Test', b'x')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in loaded
    assert "cryptography.hazmat.primitives.serialization" not in loaded
    assert "cryptography.x509" not in loaded
