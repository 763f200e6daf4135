"""Ed25519 signatures over wire payloads, with domain separation (cryptography library only).

Every signature covers the ASCII full name of the body message (e.g. ``genogate.v1.ReleaseBody``), one zero
byte, then the payload bytes exactly as they travel: a signature over one kind of body can never be
replayed as another kind, and verification never re-encodes a message. A key id is the lowercase hex
SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from genogate.errors import ConfigError, Reason, Unauthenticated


def _message(body_name: str, payload: bytes) -> bytes:
    return body_name.encode("ascii") + b"\x00" + payload


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


class Signer:
    """Signs payloads with one Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey):
        self._key = private_key
        self.public_raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id(self.public_raw)

    @classmethod
    def from_pem_file(cls, path: Path) -> Signer:
        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: cannot load the Ed25519 private key ({type(exc).__name__})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path}: not an Ed25519 private key")
        return cls(key)

    def sign(self, body_name: str, payload: bytes) -> bytes:
        return self._key.sign(_message(body_name, payload))


def verify(public_raw: bytes, body_name: str, payload: bytes, signature: bytes) -> None:
    """Raise ``Unauthenticated`` (BAD_SIGNATURE) unless ``signature`` is valid for ``payload``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, _message(body_name, payload))
    except (InvalidSignature, ValueError):
        raise Unauthenticated(
            f"bad {body_name} signature", reason=Reason.BAD_SIGNATURE, message="a signature did not verify"
        ) from None
