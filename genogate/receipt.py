"""A node's signed release, as the coordinator's audit log records it: digests and the signature, not the body.

A release (``Release``) is the node's signature over a serialized ``ReleaseBody``; almost all of its bytes are
the released values (field 5, ``result``: a 1,000-variant answer is ~100 KB), and the node's ledger already
keeps exactly those bytes (its ``charges.result``, what the node's audit entry digests as ``result_sha256``).
So the coordinator records, per site (``digest``):

* ``payload_sha256``: SHA-256 of the signed payload, ``signature`` and ``key_id``: the receipt itself;
* ``result_sha256``: SHA-256 of the ``result`` field's bytes, the key into the node's ledger;
* ``header``: the payload without its ``result`` field (query id, study, site, request hash, what was charged,
  the budget after, the release time: a few hundred bytes whatever the number of variants).

``rebuild(header, result)`` puts the ``result`` field back where deterministic serialization puts it (fields in
ascending number: before the first field numbered above 5), which gives back the signed bytes exactly: ``digest``
checks that it does before it drops the body, and keeps the payload inline (the v1 form) for a release it
could not take apart and put back byte for byte. At reconcile the node's export supplies the result; the
rebuilt payload must match ``payload_sha256`` and carry the node's signature.

Only top-level wire fields are read here (no protobuf decoding), so this module costs a scan of the payload's
top-level fields and one copy.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from genogate import varint
from genogate.audit import b64

RESULT_FIELD = 5
"""``ReleaseBody.result``."""
_RESULT_TAG = bytes([RESULT_FIELD << 3 | 2])  # length-delimited


def _fields(payload: bytes) -> list[tuple[int, int, int, int]]:
    """Each top-level field as (number, start of its key, start of its value, end); ``ValueError`` if the
    bytes are not protobuf wire data."""
    out = []
    i = 0
    while i < len(payload):
        start = i
        key, i = varint.read(payload, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, i = varint.read(payload, i)
            value_at = start
        elif wire_type == 1:
            value_at, i = i, i + 8
        elif wire_type == 5:
            value_at, i = i, i + 4
        elif wire_type == 2:
            length, value_at = varint.read(payload, i)
            i = value_at + length
        else:
            raise ValueError(f"wire type {wire_type}")
        if number == 0 or i > len(payload):
            raise ValueError("truncated")
        out.append((number, start, value_at, i))
    return out


def split(payload: bytes) -> tuple[bytes, bytes]:
    """(header, result): the payload without its one ``result`` field, and that field's bytes. ``ValueError``
    if the payload is not wire data or has no, or more than one, ``result`` field."""
    found = [(s, v, e) for n, s, v, e in _fields(payload) if n == RESULT_FIELD]
    if len(found) != 1:
        raise ValueError(f"{len(found)} result fields")
    start, value_at, end = found[0]
    return payload[:start] + payload[end:], payload[value_at:end]


def rebuild(header: bytes, result: bytes) -> bytes:
    """The payload ``split`` took apart: ``result`` put back before the first field numbered above 5."""
    at = next((s for n, s, _, _ in _fields(header) if n > RESULT_FIELD), len(header))
    return header[:at] + _RESULT_TAG + varint.encode(len(result)) + result + header[at:]


def digest(payload: bytes, signature: bytes, key_id: str) -> dict[str, Any]:
    """What the coordinator's audit entry records of one release (see the module docstring): the digests, the
    signature and the header; the whole payload (the v1 form) only if taking it apart would not give it back."""
    receipt: dict[str, Any] = {"signature": b64(signature), "key_id": key_id}
    try:
        header, result = split(payload)
        if rebuild(header, result) != payload:
            raise ValueError("not in deterministic field order")
    except ValueError:
        return {"payload": b64(payload), **receipt}
    return {
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "result_sha256": hashlib.sha256(result).hexdigest(),
        "header": b64(header),
        **receipt,
    }


def payload_of(receipt: Mapping[str, Any], result: bytes | None) -> bytes:
    """The signed payload a recorded receipt stands for: inline (v1), or rebuilt from its header and
    ``result`` (the body from the node's ledger). ``ValueError`` if the receipt is malformed, or (v2) there is
    no result or the rebuilt payload does not match the recorded digest."""
    if "payload" in receipt:
        return base64.b64decode(receipt["payload"], validate=True)
    if result is None:
        raise ValueError("no release body")
    payload = rebuild(base64.b64decode(receipt["header"], validate=True), result)
    if hashlib.sha256(payload).hexdigest() != receipt["payload_sha256"]:
        raise ValueError("the release body does not match the recorded digest")
    return payload
