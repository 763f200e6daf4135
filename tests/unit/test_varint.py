"""``genogate.varint`` against protobuf's own encoding of the same numbers."""

from __future__ import annotations

import pytest
from google.protobuf.internal.encoder import _VarintBytes
from hypothesis import given
from hypothesis import strategies as st

from genogate import varint


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_round_trip_matches_protobuf(n: int) -> None:
    data = varint.encode(n)
    assert data == _VarintBytes(n)  # the bytes protobuf itself writes
    assert varint.read(data, 0) == (n, len(data))
    assert varint.read(b"\x01" + data + b"\x02", 1) == (n, 1 + len(data))


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff" * 9, b"\xff" * 11])
def test_truncated_or_overlong_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="truncated or overlong"):
        varint.read(data, 0)
