"""Compiled filters select exactly the participants a direct Python evaluation selects."""

from __future__ import annotations

from pathlib import Path

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from genogate.query import AgeRange, AncestryIn, And, Everyone, Filter, Not, Or, PhenotypeHas, SexIs
from node.cohort import Cohorts
from node.planner import compile_filter
from node.store import Store
from tests.unit.test_filter import _filters

YEAR = 2026
PEOPLE = [
    # sid, sex, birth_year, ancestry, phenotypes
    (0, "F", 1950, "EUR", ["HP:0001250"]),
    (1, "M", 1990, "AFR", []),
    (2, "U", None, None, ["ICD10:C50", "HP:0001250"]),
    (3, "F", 2010, "EAS", ["local:case"]),
    (4, "M", 1930, "SAS", ["HP:0000118"]),
    (5, "F", None, "AMR", []),
]


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(
        "CREATE TABLE samples (sid INTEGER, sex VARCHAR, birth_year SMALLINT, ancestry VARCHAR, phenotypes VARCHAR[])"
    )
    con.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", PEOPLE)
    return con


def _holds(f: Filter, person: tuple) -> bool:  # type: ignore[type-arg]
    _, sex, birth, anc, phen = person
    if isinstance(f, Everyone):
        return True
    if isinstance(f, SexIs):
        return sex == f.sex
    if isinstance(f, AgeRange):
        if birth is None:
            return False
        age = YEAR - birth
        return (f.min_years is None or age >= f.min_years) and (f.max_years is None or age <= f.max_years)
    if isinstance(f, AncestryIn):
        return anc in f.groups
    if isinstance(f, PhenotypeHas):
        return f.term in phen
    if isinstance(f, Not):
        return not _holds(f.item, person)
    if isinstance(f, And):
        return all(_holds(i, person) for i in f.items)
    assert isinstance(f, Or)
    return any(_holds(i, person) for i in f.items)


CON = _con()


@settings(max_examples=300)
@given(st.one_of(st.just(Everyone()), _filters))
def test_sql_matches_python(f: Filter) -> None:
    sql, params = compile_filter(f, YEAR)
    got = sorted(r[0] for r in CON.cursor().execute(f"SELECT sid FROM samples WHERE {sql}", params).fetchall())
    assert got == [p[0] for p in PEOPLE if _holds(f, p)]


def test_values_travel_only_as_parameters() -> None:
    sql, params = compile_filter(PhenotypeHas("HP:0001250"), YEAR)
    assert "HP:0001250" not in sql and params == ["HP:0001250"]


def test_not_is_the_complement_even_for_unknown_values() -> None:
    f = AgeRange(40, None)
    sql, params = compile_filter(f, YEAR)
    nsql, nparams = compile_filter(Not(f), YEAR)
    a = {r[0] for r in CON.execute(f"SELECT sid FROM samples WHERE {sql}", params).fetchall()}
    b = {r[0] for r in CON.execute(f"SELECT sid FROM samples WHERE {nsql}", nparams).fetchall()}
    assert a | b == {p[0] for p in PEOPLE} and not a & b


@settings(max_examples=300)
@given(st.one_of(st.just(Everyone()), _filters))
def test_in_memory_cohorts_match_the_sql_planner(f: Filter) -> None:
    """node.cohort (used on the query path) and node.planner (SQL) select the same participants."""

    sql, params = compile_filter(f, YEAR)
    expected = sorted(r[0] for r in CON.cursor().execute(f"SELECT sid FROM samples WHERE {sql}", params).fetchall())
    got = sorted(int(i) for i in COHORTS.mask(f, YEAR).nonzero()[0])
    assert got == expected


def _cohorts() -> Cohorts:
    con = duckdb.connect(":memory:")
    con.execute(
        "CREATE TABLE samples (sid INTEGER, sex VARCHAR, birth_year SMALLINT, ancestry VARCHAR, "
        "phenotypes VARCHAR[], consent VARCHAR[])"
    )
    con.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ['GRU'])", PEOPLE)
    return Cohorts(Store(con, Path(":memory:")))


COHORTS = _cohorts()
