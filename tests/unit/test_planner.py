"""Compiled filters select exactly the participants a direct Python evaluation selects.

Phenotype terms match their descendants: the Python reference expands each participant's terms to their
is-a ancestors with the real HPO and ICD-10 (``node.ontology``), independently of the store's closure table.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from genogate.query import AgeRange, AncestryIn, And, Everyone, Filter, Not, Or, PhenotypeHas, SexIs
from node import ontology
from node.cohort import Cohorts
from node.planner import compile_filter
from node.store import Store
from tests.unit.test_filter import _filters

YEAR = 2026
PEOPLE = [
    # sid, sex, birth_year, ancestry, phenotypes
    (0, "F", 1950, "EUR", ["HP:0001250"]),
    (1, "M", 1990, "AFR", []),
    (2, "U", None, None, ["ICD10:C50.9", "HP:0001250"]),
    (3, "F", 2010, "EAS", ["HP:0002373"]),  # febrile seizure, under seizure
    (4, "M", 1930, "SAS", ["HP:0000118"]),
    (5, "F", None, "AMR", []),
]
ONTOLOGIES = ontology.load()
ANNOTATED = {t for p in PEOPLE for t in p[4]}
# The filters' terms, each with the participants' terms under it (HPO and ICD-10 is-a, computed here).
UNDER = {t: {a for a in ANNOTATED if t in ONTOLOGIES.ancestors(a)} for t in ("HP:0001250", "ICD10:C50", "HP:0000118")}


def _known(f: Filter) -> Filter:
    """The shared filter strategy's filters with its one non-ontology term replaced by febrile seizure."""
    if isinstance(f, PhenotypeHas):
        return PhenotypeHas("HP:0002373") if f.term == "local:case" else f
    if isinstance(f, Not):
        return Not(_known(f.item))
    if isinstance(f, And | Or):
        return type(f)(tuple(_known(i) for i in f.items))
    return f


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(
        "CREATE TABLE samples (sid INTEGER, sex VARCHAR, birth_year SMALLINT, ancestry VARCHAR, phenotypes VARCHAR[])"
    )
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", PEOPLE)
    ontology.write(con, ANNOTATED, ONTOLOGIES)
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
        return anc is not None and anc.upper() in {g.upper() for g in f.groups}
    if isinstance(f, PhenotypeHas):
        term = f.term.upper()
        under = UNDER.get(term) or {a for a in ANNOTATED if term in ONTOLOGIES.ancestors(a)}
        return bool(under & set(phen))
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
    f = _known(f)
    sql, params = compile_filter(f, YEAR)
    got = sorted(r[0] for r in CON.cursor().execute(f"SELECT sid FROM samples WHERE {sql}", params).fetchall())
    assert got == [p[0] for p in PEOPLE if _holds(f, p)]


def test_values_travel_only_as_parameters() -> None:
    sql, params = compile_filter(PhenotypeHas("hp:0001250"), YEAR)
    assert "0001250" not in sql and params == ["HP:0001250"]


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
    f = _known(f)
    sql, params = compile_filter(f, YEAR)
    expected = sorted(r[0] for r in CON.cursor().execute(f"SELECT sid FROM samples WHERE {sql}", params).fetchall())
    got = sorted(int(i) for i in COHORTS.mask(f, YEAR).nonzero()[0])
    assert got == expected


def _cohorts() -> Cohorts:
    con = duckdb.connect(":memory:")
    con.execute(
        "CREATE TABLE samples (sid INTEGER, sex VARCHAR, birth_year SMALLINT, ancestry VARCHAR, "
        "phenotypes VARCHAR[], consent VARCHAR[], pseudonym VARCHAR)"
    )
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.executemany(
        "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ['GRU'], 'p' || ?::VARCHAR)", [(*p, p[0]) for p in PEOPLE]
    )
    ontology.write(con, ANNOTATED, ONTOLOGIES)
    return Cohorts(Store(con, Path(":memory:")))


COHORTS = _cohorts()


def test_a_term_matches_its_descendants_in_sql_and_in_memory() -> None:
    for text, expected in [
        ("HP:0001250", [0, 2, 3]),  # seizure: annotated, and febrile seizure under it
        ("hp:0002373", [3]),
        ("HP:0000118", [0, 2, 3, 4]),  # phenotypic abnormality: every HPO-annotated participant
        ("ICD10:C50", [2]),  # the category holds C50.9
        ("icd10:c50.9", [2]),
        ("ICD10:II", [2]),  # the neoplasms chapter
        ("ICD10:C51", []),  # a valid code nobody has
    ]:
        sql, params = compile_filter(PhenotypeHas(text), YEAR)
        got = sorted(r[0] for r in CON.execute(f"SELECT sid FROM samples WHERE {sql}", params).fetchall())
        assert got == expected, text
        assert sorted(int(i) for i in COHORTS.mask(PhenotypeHas(text), YEAR).nonzero()[0]) == expected, text


def test_ancestry_labels_compare_case_insensitively() -> None:
    sql, params = compile_filter(AncestryIn(("eur", "Afr")), YEAR)
    got = sorted(r[0] for r in CON.execute(f"SELECT sid FROM samples WHERE {sql}", params).fetchall())
    assert got == [0, 1] == sorted(int(i) for i in COHORTS.mask(AncestryIn(("eur", "Afr")), YEAR).nonzero()[0])
