"""The readable filter language: parses to the structured model, round-trips, and refuses bad input clearly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genogate.errors import InvalidArgument, Reason
from genogate.filter import format_filter, parse_filter
from genogate.query import AgeRange, AncestryIn, And, Everyone, Filter, Not, Or, PhenotypeHas, SexIs


def test_documented_example() -> None:
    f = parse_filter("sex=F and ancestry in (EUR,AFR) and phenotype=HP:0001250")
    assert f == And((SexIs("F"), AncestryIn(("EUR", "AFR")), PhenotypeHas("HP:0001250")))


def test_precedence_and_binds_tighter_than_or_and_not_applies_to_a_factor() -> None:
    f = parse_filter("sex=M or sex=F and not age>=40")
    assert f == Or((SexIs("M"), And((SexIs("F"), Not(AgeRange(40, None))))))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Everyone()),
        ("  ", Everyone()),
        ("sex=female", SexIs("F")),
        ("SEX = m", SexIs("M")),
        ("sex!=U", Not(SexIs("U"))),
        ("age>40", AgeRange(41, None)),
        ("age<40", AgeRange(None, 39)),
        ("age=50", AgeRange(50, 50)),
        ("ancestry!=EUR", Not(AncestryIn(("EUR",)))),
        ("ancestry not in (EAS, SAS)", Not(AncestryIn(("EAS", "SAS")))),
        ("phenotype!=ICD10:C50", Not(PhenotypeHas("ICD10:C50"))),
        ("((sex=F))", SexIs("F")),
    ],
)
def test_forms(text: str, expected: Filter) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("sex=X", "sex"),
        ("height>3", "unknown field"),
        ("age>=forty", "whole number"),
        ("sex=F and", "ends too early"),
        ("(sex=F", "ends too early"),
        ("sex=F)", "unexpected"),
        ("phenotype=seizures", "PREFIX:CODE"),
        ("ancestry in ()", "expected"),
        ("sex=F; DROP TABLE samples", "unexpected character"),
        ("age>=300", "between 0 and 200"),
        ("age<0", "age takes"),
        ("not " * 20 + "sex=F", "nest"),
    ],
)
def test_errors_name_the_problem(text: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter(text)
    assert info.value.reason is Reason.INVALID_FILTER
    assert words in str(info.value)
    assert info.value.message == "the cohort filter is malformed"  # the fixed public message


_terms = st.sampled_from(["HP:0001250", "ICD10:C50", "HP:0000118", "local:case"])
_groups = st.sampled_from(["EUR", "AFR", "EAS", "SAS", "AMR"])
_atoms: st.SearchStrategy[Filter] = st.one_of(
    st.sampled_from(["F", "M", "U"]).map(SexIs),
    st.builds(AgeRange, st.integers(0, 120), st.none()),
    st.builds(AgeRange, st.none(), st.integers(0, 120)),
    st.integers(0, 120).map(lambda y: AgeRange(y, y)),
    st.lists(_groups, min_size=1, max_size=3).map(lambda g: AncestryIn(tuple(g))),
    _terms.map(PhenotypeHas),
)
_filters: st.SearchStrategy[Filter] = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda x: And(tuple(x))),
        st.lists(inner, min_size=2, max_size=3).map(lambda x: Or(tuple(x))),
        inner.map(Not),
    ),
    max_leaves=8,
)


def _flatten(f: Filter) -> Filter:
    """Nested And-in-And (Or-in-Or) is the same filter; the printed form flattens it."""
    if isinstance(f, And | Or):
        items: list[Filter] = []
        for item in (_flatten(i) for i in f.items):
            items.extend(item.items if type(item) is type(f) else (item,))  # type: ignore[union-attr]
        return type(f)(tuple(items))
    if isinstance(f, Not):
        return Not(_flatten(f.item))
    return f


@given(_filters)
def test_format_then_parse_is_the_same_filter(f: Filter) -> None:
    assert _flatten(parse_filter(format_filter(f))) == _flatten(f)


@pytest.mark.parametrize(
    "text",
    ["(" * 400 + "sex=F" + ")" * 400, "not " * 5000 + "sex=F", "(" * 17 + "sex=F" + ")" * 17, "(" * 100_000],
)
def test_deep_nesting_is_refused_not_a_crash(text: str) -> None:
    """Nesting is bounded while parsing (it used to raise RecursionError at ~400 parentheses)."""
    with pytest.raises(InvalidArgument) as info:
        parse_filter(text)
    assert info.value.reason == Reason.INVALID_FILTER


_soup = st.lists(
    st.sampled_from(
        [
            "(",
            ")",
            "not",
            "and",
            "or",
            "sex",
            "age",
            "ancestry",
            "phenotype",
            "in",
            "=",
            "!=",
            ">=",
            "<",
            ",",
            "F",
            "EUR",
            "40",
            "HP:0001250",
            "hp:1250",
            "ICD10:G40",
            "x",
            "-1",
            "é",
            "\x00",
            "  ",
        ]
    ),  # fmt: skip
    max_size=60,
)


@given(_soup)
def test_any_token_soup_parses_or_is_refused_cleanly(tokens: list[str]) -> None:
    """Fuzzing the parser: whatever the input, a filter or an INVALID_FILTER refusal, never another error."""
    try:
        parse_filter(" ".join(tokens))
    except InvalidArgument as exc:
        assert exc.reason == Reason.INVALID_FILTER
