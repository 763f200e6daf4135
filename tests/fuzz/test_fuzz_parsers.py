"""Fuzzing the text parsers a request passes through: the filter parser and its canonical form, and the
variant, region and contig parsers. Whatever the text (token soup, deep nesting, megabytes, any Unicode),
the answer is a value or an ``InvalidArgument`` with the parser's own reason, never another exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from genogate.errors import GenogateError, InvalidArgument, Reason
from genogate.filter import format_filter, parse_filter
from genogate.genome import BUILDS, BuildError, canonical_contig
from genogate.query import MAX_POS, Region, Variant, canonical_region, canonical_variant, normalise_filter
from tests.fuzz.cases import fuzz, record

_TOKENS = (
    "(", ")", "not", "and", "or", "sex", "age", "ancestry", "phenotype", "in", "=", "!=", ">=", "<=", "<", ">",
    ",", "F", "M", "U", "EUR", "40", "0", "-1", "999999999999999999999", "HP:0001250", "hp:1250", "ICD10:G40",
    "x", "é", "\x00", "\u202e", "𝟘", "٣", "²", "  ", "\t", "\n",
)  # fmt: skip
_soup = st.lists(st.sampled_from(_TOKENS), max_size=80).map(" ".join)
_nested = st.tuples(
    st.sampled_from(["(", "not ", "not (", "((", "sex=F and (", "sex=F or ("]),
    st.integers(0, 20_000),
    st.sampled_from(["sex=F", "age>=40", "", "ancestry in (EUR"]),
    st.booleans(),
).map(lambda t: t[0] * t[1] + t[2] + (")" * t[1] if t[3] else ""))
_huge = st.tuples(
    st.sampled_from(["sex=F or ", "ancestry in (EUR", ",AFR", "age>=1 and ", "x" * 1000]), st.integers(1, 40_000)
).map(lambda t: t[0] * t[1] + "sex=M")
_filter_text = st.one_of(_soup, _nested, _huge, st.text(max_size=300), st.text(alphabet="()notandsexF= ", max_size=400))


@fuzz(300, deadline_s=10)
@given(_filter_text)
def test_filter_text_parses_or_is_refused_as_invalid_filter(text: str) -> None:
    record("filter")
    try:
        f = parse_filter(text)
    except InvalidArgument as exc:
        assert exc.reason == Reason.INVALID_FILTER
        assert exc.message and "\n" not in exc.message
        return
    # a parsed filter formats, reparses to itself and has a canonical form that is a fixed point
    assert parse_filter(format_filter(f)) == f or format_filter(parse_filter(format_filter(f))) == format_filter(f)
    canon = normalise_filter(f)
    assert normalise_filter(canon) == canon


_pos_text = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(
        ["0", "00001", str(MAX_POS), str(MAX_POS + 1), "9" * 5000, "²", "٣", "１", "1e9", "0x10", "", " 1"]
    ),
    st.text(max_size=12),
)
_chrom_text = st.one_of(
    st.sampled_from(
        ["1", "chr1", "CHR1", "chrX", "x", "MT", "chrM", "M", "23", "NC_000001.10", "NC_000001.11", "nc_000023.11"]
    ),
    st.sampled_from(["chr", "", "chrchr1", "1" * 65, "chr1\x00", "ｃｈｒ１", "chr_1", "HLA-A*01:01", "GL000192.1"]),
    st.text(max_size=70),
)
_allele_text = st.one_of(
    st.sampled_from(["A", "G", "AT", "N", "*", "<DEL>", "a", "", "AAAA" * 300]), st.text(max_size=8)
)
_variant_text = st.one_of(
    st.tuples(_chrom_text, _pos_text, _allele_text, _allele_text, st.sampled_from("-:")).map(
        lambda t: t[4].join(t[:4])
    ),
    st.text(max_size=200),
)
_region_text = st.one_of(
    st.tuples(_chrom_text, _pos_text, _pos_text).map(lambda t: f"{t[0]}:{t[1]}-{t[2]}"),
    _chrom_text,
    st.text(max_size=200),
)


def _canonical_ok(call: object) -> None:
    """The canonical form of a parsed variant or region: a value, or a typed refusal (never another error)."""
    assert callable(call)
    try:
        call()
    except GenogateError as exc:
        assert exc.reason is not Reason.INTERNAL


@fuzz(500, deadline_s=10)
@given(_variant_text, _region_text, st.sampled_from([None, *BUILDS]))
def test_variant_and_region_text_parse_or_are_refused_with_their_reason(
    vtext: str, rtext: str, build: str | None
) -> None:
    record("variant-region")
    try:
        v = Variant.parse(vtext)
    except InvalidArgument as exc:
        assert exc.reason == Reason.INVALID_VARIANT
    else:
        assert 1 <= v.pos <= MAX_POS and Variant.parse(str(v)) == v
        _canonical_ok(lambda: canonical_variant(v, build))
    try:
        r = Region.parse(rtext)
    except InvalidArgument as exc:
        assert exc.reason == Reason.INVALID_REGION
    else:
        assert 1 <= r.start <= r.end <= MAX_POS
        _canonical_ok(lambda: canonical_region(r, build))


@fuzz(300, deadline_s=10)
@given(_chrom_text, st.sampled_from([None, *BUILDS]))
def test_contig_spellings_are_named_or_a_build_error(name: str, build: str | None) -> None:
    record("variant-region")
    try:
        canon = canonical_contig(name, build)
    except BuildError:
        return
    assert isinstance(canon, str) and canonical_contig(canon, build) == canon
