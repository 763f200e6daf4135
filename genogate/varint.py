"""Protobuf's base-128 varints, read and written by hand where the coordinator reads a message's top-level
fields without parsing what is nested (``coordinator.queries.study_id_of``) and where a release's header and
result are put back together byte for byte (``genogate.receipt``)."""

from __future__ import annotations


def read(data: bytes, i: int) -> tuple[int, int]:
    """The varint at ``data[i:]`` and the index after it; ``ValueError`` when it is truncated or longer than
    ten bytes (more than 64 bits), so the work is bounded."""
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def encode(n: int) -> bytes:
    """``n`` (at least 0) as a varint."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
