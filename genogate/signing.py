"""Ed25519 signatures over wire payloads, with domain separation (cryptography library only).

Every signature covers the ASCII full name of the body message (e.g. ``genogate.v1.ReleaseBody``), one zero
byte, then the payload bytes exactly as they travel: a signature over one kind of body can never be
replayed as another kind, and verification never re-encodes a message. A key id is the lowercase hex
SHA-256 of the raw 32-byte public key.

The ``cryptography`` modules are imported when a key is first used, not here (the command lines import this
module for commands that never sign). A private key file in the one form genogate writes (PEM, unencrypted
PKCS#8 of an Ed25519 key, RFC 8410) is read without ``cryptography``'s serialization package, whose import
alone costs more than the rest of a signature: the 32-byte seed sits at a fixed offset behind a fixed DER
header and goes to ``Ed25519PrivateKey.from_private_bytes``. Any other file goes through
``load_pem_private_key`` as before, which accepts or refuses it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from genogate.errors import ConfigError, Reason, Unauthenticated

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# PrivateKeyInfo { version 0, AlgorithmIdentifier { id-Ed25519 (1.3.101.112) }, OCTET STRING { OCTET STRING
# (32 bytes) } }: the whole DER of an unencrypted PKCS#8 Ed25519 key but its last 32 bytes (RFC 8410, 10.3).
_PKCS8_ED25519_HEAD = bytes.fromhex("302e020100300506032b657004220420")
_PEM = re.compile(rb"\A\s*-----BEGIN PRIVATE KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END PRIVATE KEY-----\s*\Z")


def _pkcs8_ed25519_seed(pem: bytes) -> bytes | None:
    """The 32-byte seed of an unencrypted PKCS#8 Ed25519 PEM key; None for anything else."""
    m = _PEM.match(pem)
    if m is None:
        return None
    try:
        der = base64.b64decode(m[1].replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(der) != len(_PKCS8_ED25519_HEAD) + 32 or not der.startswith(_PKCS8_ED25519_HEAD):
        return None
    return der[len(_PKCS8_ED25519_HEAD) :]


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``pem`` (see the module docstring); ``ValueError`` or ``TypeError`` when it
    holds none (``load_pem_private_key``'s own errors), ``ConfigError`` for a key of another type."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = _pkcs8_ed25519_seed(pem)
    if seed is not None:
        return Ed25519PrivateKey.from_private_bytes(seed)
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("not an Ed25519 private key")
    return key


def _message(body_name: str, payload: bytes) -> bytes:
    return body_name.encode("ascii") + b"\x00" + payload


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


class Signer:
    """Signs payloads with one Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey):
        self._key = private_key
        self.public_raw = private_key.public_key().public_bytes_raw()
        self.key_id = key_id(self.public_raw)

    @classmethod
    def from_pem_file(cls, path: Path) -> Signer:
        try:
            key = load_private_key(Path(path).read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: cannot load the Ed25519 private key ({type(exc).__name__})") from None
        except ConfigError:
            raise ConfigError(f"{path}: not an Ed25519 private key") from None
        return cls(key)

    def sign(self, body_name: str, payload: bytes) -> bytes:
        return self._key.sign(_message(body_name, payload))


def verify(public_raw: bytes, body_name: str, payload: bytes, signature: bytes) -> None:
    """Raise ``Unauthenticated`` (BAD_SIGNATURE) unless ``signature`` is valid for ``payload``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, _message(body_name, payload))
    except (InvalidSignature, ValueError):
        raise Unauthenticated(
            f"bad {body_name} signature", reason=Reason.BAD_SIGNATURE, message="a signature did not verify"
        ) from None
