"""Variants and regions validate themselves and parse their written forms."""

from __future__ import annotations

import pytest

from genogate.errors import InvalidArgument, Reason
from genogate.query import MAX_POS, Region, Variant


def test_variant_parse_and_str() -> None:
    v = Variant.parse("chr1-12345-a-g")
    assert v == Variant("chr1", 12345, "A", "G") and str(v) == "chr1-12345-A-G"
    assert Variant.parse("X:100:AT:A") == Variant("X", 100, "AT", "A")
    assert Variant.parse("2-122092147-A-<CN0>").alt == "<CN0>"


@pytest.mark.parametrize(
    "text",
    [
        "1-2-3",
        "1-x-A-G",
        "1-0-A-G",
        "1-5-A-A",
        "1-5--G",
        "1-5-A-Z",
        f"1-{MAX_POS + 1}-A-G",
        "bad chrom-5-A-G",
    ],
)
def test_bad_variants(text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Variant.parse(text)
    assert info.value.reason is Reason.INVALID_VARIANT


def test_region_parse() -> None:
    assert Region.parse("1:1,000-2,000") == Region("1", 1000, 2000)
    assert Region.parse("X") == Region("X", 1, MAX_POS)
    assert str(Region("22", 5, 9)) == "22:5-9"
    for bad in ("1:5-1", "1:0-5", "1:a-b", ""):
        with pytest.raises(InvalidArgument) as info:
            Region.parse(bad)
        assert info.value.reason is Reason.INVALID_REGION
