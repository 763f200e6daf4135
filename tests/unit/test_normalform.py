"""The canonical form of cohort filters (``genogate.normalform``) keeps the meaning exactly, on every kind of
row a store can hold, as the node's own evaluators see it.

The population is every combination a store can hold, ingested through the real ingest into a real DuckDB
store: each sex (F, M, U), each ancestry (labels the filters name, one they do not, unknown), each set of
three phenotype terms, and every birth year from 1850 (the earliest the sample sheet accepts) to 2026 plus
unknown: 25,632 rows. Filters also name a label and a term nobody has. Random
filters are evaluated before and after canonicalisation by the node's ``Cohorts.mask`` (the query path) and
``node.planner`` (SQL), in the year canonicalised and the next, and in years where the store holds birth years
after "now" (negative ages) or people older than any age bound (past 2050).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genogate.errors import InvalidArgument, Reason
from genogate.filter import format_filter, parse_filter
from genogate.kinds import canonical, canonical_bytes
from genogate.kinds.cohort_count import CohortCount
from genogate.normalform import MAX_CANONICAL_DEPTH, MAX_CANONICAL_NODES, MIN_BIRTH_YEAR, _size, normal_form
from genogate.query import (
    MAX_FILTER_NODES,
    AgeRange,
    AncestryIn,
    And,
    Everyone,
    Filter,
    Not,
    Or,
    PhenotypeHas,
    SexIs,
    check_filter_size,
)
from node.cohort import Cohorts
from node.ingest import ingest
from node.planner import compile_filter
from node.store import Store
from tests.unit.test_service import ask, make, study
from tests.unit.test_service import store as store  # noqa: F401 - the module-scoped store fixture

LAST_BIRTH_YEAR = 2026
BIRTH_YEARS = [*range(MIN_BIRTH_YEAR, LAST_BIRTH_YEAR + 1), None]
ANCESTRIES = ["EUR", "AFR", "EAS", "ZZZ", "SAS", None]  # SAS: in no filter; QQQ: in filters, not here
TERMS = ["HP:0001250", "ICD10:C50", "ICD10:C61"]  # ICD10:C34, also asked, is in the vocabulary; nobody holds it
PHENOTYPES = [
    tuple(t for t, bit in zip(TERMS, bits, strict=True) if bit) for bits in itertools.product((0, 1), repeat=3)
]
ROWS = list(itertools.product(["F", "M", "U"], BIRTH_YEARS, ANCESTRIES, PHENOTYPES))


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cohorts, Store]:
    d = tmp_path_factory.mktemp("normalform")
    lines = ["sample_id\tsex\tbirth_year\tancestry\tphenotypes\tconsent"]
    for i, (sex, year, anc, phen) in enumerate(ROWS):
        lines.append(f"P{i}\t{sex}\t{year or ''}\t{anc or ''}\t{';'.join(phen)}\tGRU")
    (d / "s.tsv").write_text("\n".join(lines) + "\n")
    names = "\t".join(f"P{i}" for i in range(len(ROWS)))
    calls = "\t".join("0/1" for _ in ROWS)
    (d / "c.vcf").write_text(
        '##fileformat=VCFv4.2\n##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n##contig=<ID=1>\n'
        f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{names}\n1\t100\t.\tA\tG\t.\t.\t.\tGT\t{calls}\n"
    )
    ingest(d / "store.duckdb", [d / "c.vcf"], d / "s.tsv", build="GRCh37")
    store = Store.open(d / "store.duckdb")
    return Cohorts(store), store


def test_the_store_holds_every_kind_of_row(cohorts: tuple[Cohorts, Store]) -> None:
    c, _ = cohorts
    assert c.n == len(ROWS) == 3 * 178 * 6 * 8
    assert set(c.sex) == {"F", "M", "U"} and c.ancestry_groups == ("AFR", "EAS", "EUR", "SAS", "ZZZ")
    known = c.birth_year[c.birth_year >= 0]
    assert known.min() == MIN_BIRTH_YEAR and known.max() == LAST_BIRTH_YEAR and (c.birth_year < 0).sum() == 3 * 6 * 8


_bounds = st.one_of(st.integers(0, 200), st.sampled_from([0, 1, 169, 170, 171, 175, 176, 177, 178, 199, 200]))
_atoms: st.SearchStrategy[Filter] = st.one_of(
    st.sampled_from(["F", "M", "U"]).map(SexIs),
    st.builds(AgeRange, _bounds, st.none()),
    st.builds(AgeRange, st.none(), _bounds),
    st.tuples(_bounds, _bounds).map(lambda b: AgeRange(min(b), max(b))),
    st.lists(st.sampled_from(["EUR", "eur", "AFR", "EAS", "ZZZ", "QQQ"]), min_size=1, max_size=3).map(
        lambda g: AncestryIn(tuple(g))
    ),
    st.sampled_from(["HP:0001250", "hp:0001250", "ICD10:C50", "ICD10:C61", "ICD10:C34"]).map(PhenotypeHas),
    st.just(Everyone()),
)
filters: st.SearchStrategy[Filter] = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=4).map(lambda x: And(tuple(x))),
        st.lists(inner, min_size=2, max_size=4).map(lambda x: Or(tuple(x))),
        inner.map(Not),
    ),
    max_leaves=24,
)
# (the year canonicalised in, the years it is evaluated in): 2020 with birth years up to 2026 stored (ages
# down to -6); 2026 and the next year; no year (nothing folded), evaluated in 2020, 2026 and 2060 (ages to 210).
YEARS: list[tuple[int | None, tuple[int, ...]]] = [
    (2020, (2020, 2021)),
    (2026, (2026, 2027)),
    (None, (2020, 2026, 2060)),
]


def _sql(store: Store, f: Filter, year: int) -> np.ndarray:  # type: ignore[type-arg]
    sql, params = compile_filter(f, year)
    rows = store.con.cursor().execute(f"SELECT sid FROM samples WHERE {sql} ORDER BY sid", params).fetchall()
    out = np.zeros(len(ROWS), dtype=bool)
    out[[r[0] for r in rows]] = True
    return out


# GENOGATE_FUZZ_EXAMPLES=10000 for the long run (it passed 10,000 when written); 400 in make test.
EXAMPLES = int(os.environ.get("GENOGATE_FUZZ_EXAMPLES", "400"))


@pytest.mark.timeout(300 + EXAMPLES // 5)  # ~75 ms an example on a busy 2-core VM
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filters, st.sampled_from(YEARS))
def test_the_canonical_form_selects_exactly_the_same_rows(
    cohorts: tuple[Cohorts, Store], f: Filter, years: tuple[int | None, tuple[int, ...]]
) -> None:
    """Meaning kept on every row, by Cohorts.mask and by the SQL planner; idempotent; a refusal only for a
    filter that selects nobody; never larger than the bound (and in practice not much larger than the input)."""
    c, store = cohorts
    this_year, evaluated_in = years
    try:
        check_filter_size(f)
    except InvalidArgument:
        return
    try:
        g = normal_form(f, this_year)
    except InvalidArgument as exc:
        assert exc.reason == Reason.INVALID_FILTER
        for y in evaluated_in:
            assert not c.mask(f, y).any()  # refused only where nobody is selected
        return
    for y in evaluated_in:
        want = c.mask(f, y)
        assert np.array_equal(c.mask(g, y), want), (format_filter(f), format_filter(g), y)
        assert np.array_equal(_sql(store, g, y), want), (format_filter(g), y)
    assert normal_form(g, this_year) == g  # idempotent
    assert normal_form(parse_filter(format_filter(g)), this_year) == g  # and its written form parses back to it
    nodes, depth = _size(g)
    assert nodes <= 2 * _size(f)[0] + 2 and depth <= MAX_CANONICAL_DEPTH


def _key(text: str, year: int | None = 2026) -> bytes:
    return canonical_bytes(canonical(CohortCount(parse_filter(text)), this_year=year))


# Phrasings of one question: the same canonical bytes (in 2026).
SAME = [
    ("not age<40", "not age<=39"),
    ("age>=40", "age>=40 and age<=200"),
    ("age>=40", "age>=40 and age<=177"),  # in 2026 (or 2027) nobody with a birth year from 1850 is older
    ("age>=40", "not not age>=40"),
    ("age>40", "age>=41"),
    ("not (sex=M or sex=U)", "sex=F"),
    ("sex!=F", "sex=M or sex=U"),
    ("not sex!=F", "sex=F"),
    ("sex=F or sex=M or sex=U", ""),
    ("sex=F or not sex=F", ""),
    ("ancestry=EUR or ancestry!=EUR", ""),
    ("age>=40 or not age>=40", ""),
    ("phenotype=HP:0001250 or phenotype!=hp:0001250", ""),
    ("ancestry in (EUR,AFR) and ancestry!=AFR", "ancestry=EUR"),
    ("ancestry=eur or ancestry=AFR", "ancestry in (AFR, EUR)"),
    ("ancestry!=EUR and ancestry!=AFR", "ancestry not in (AFR,EUR)"),
    ("not (age<40 or age>60)", "not age<40 and age<=60 or not age>=0 and not age<=200"),
    ("age>=40 and not age>60", "age>=40 and age<=60"),
    ("age>=30 and age>=40 and age<=70 and age<60", "age>=40 and age<=59"),
    ("age<=20 or age>=21", "age>=0 or age<1"),  # every known age; unknown ones excluded
    ("sex=F or (sex=F and age>40)", "sex=F"),
    ("sex=F and (sex=F or age>40)", "sex=F"),
    ("(sex=F and phenotype=ICD10:C50) or sex=M", "sex=M or (phenotype=ICD10:C50 and sex=F)"),
    ("phenotype=HP:0001250 and phenotype=hp:0001250", "phenotype=HP:0001250"),
]
# Not one question, whatever a given store holds: the canonical bytes differ.
DIFFERENT = [
    ("not age<40", "age>=40"),  # a person of unknown age is in the first, not the second
    ("ancestry not in (ZZZ)", ""),  # a ZZZ participant is possible: that none is there is a fact of the data
    ("ancestry!=EUR", "ancestry in (AFR,EAS,SAS,AMR)"),  # other labels and unknown ancestry
    ("age>=0", "age<=200"),  # a birth year after the node's year (negative age) is in the second only
    ("age<=176", "age<=177"),  # born 1850, aged 177 in 2027
    ("age<=20 or age>=21", ""),  # unknown ages
    ("phenotype=ICD10:C34", "phenotype=ICD10:C34 and sex=F"),  # nobody holds C34 in the store: still different
    ("phenotype=HP:0001250", "phenotype=HP:0001250 or phenotype=HP:0001251"),  # term logic is left alone
    ("sex=F", "sex=F and age>=0"),
    ("not (age<40 or age>60)", "age>=40 and age<=60"),  # unknown ages
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_equivalent_phrasings_are_one_question(a: str, b: str) -> None:
    assert _key(a) == _key(b), (
        format_filter(normal_form(parse_filter(a), 2026)),
        format_filter(normal_form(parse_filter(b), 2026)),
    )


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_phrasings_equal_only_on_some_data_stay_two_questions(a: str, b: str) -> None:
    assert _key(a) != _key(b)


@pytest.mark.parametrize(("a", "b"), SAME + DIFFERENT)
def test_the_listed_phrasings_are_what_the_evaluator_says(cohorts: tuple[Cohorts, Store], a: str, b: str) -> None:
    """Those said to be one question select the same rows of the every-kind store; for those said to be
    two, the store holds a row telling them apart (for C34 and HP:0001251, which nobody holds, a store could)."""
    c, _ = cohorts
    fa, fb = parse_filter(a), parse_filter(b)
    same = all(np.array_equal(c.mask(fa, y), c.mask(fb, y)) for y in (2026, 2027))
    if (a, b) in SAME:
        assert same
    elif "HP:0001251" not in b and "C34" not in a:
        assert not all(np.array_equal(c.mask(fa, y), c.mask(fb, y)) for y in (2020, 2026, 2027))


def test_the_age_fold_depends_on_the_year_only() -> None:
    """``age<=200`` is no bound until 2050 (birth years from 1850, the next year's ages included), then it is."""
    assert _key("age>=40 and age<=200", 2049) == _key("age>=40", 2049)
    assert _key("age>=40 and age<=200", 2050) != _key("age>=40", 2050)
    assert _key("age>=40 and age<=200", None) != _key("age>=40", None)  # without a year nothing is folded


@pytest.mark.parametrize("text", ["age>=40 and age<30", "sex=F and sex=M", "ancestry=EUR and ancestry=AFR",
                                  "phenotype=ICD10:C50 and not phenotype=icd10:c50", "not (sex=F or sex!=F)",
                                  "age>=178"])  # fmt: skip
def test_a_filter_that_selects_nobody_whatever_the_data_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        canonical(CohortCount(parse_filter(text)), this_year=2026)
    assert info.value.reason == Reason.INVALID_FILTER and "selects nobody" in str(info.value)


def test_everyone_is_the_empty_filter() -> None:
    assert normal_form(parse_filter("sex=F or sex=M or sex=U or age>=40")) == Everyone()
    assert normal_form(Not(Not(Everyone()))) == Everyone()


def test_pieces_no_single_range_says_are_written_with_the_atoms() -> None:
    assert normal_form(parse_filter("age<=10 and not age>=0")) == And((AgeRange(None, 0), Not(AgeRange(0, 0))))
    assert normal_form(parse_filter("age<=20 or age>=21")) == Or((AgeRange(None, 0), AgeRange(1, None)))
    assert normal_form(parse_filter("age>=150 and not age<=200")) == And((AgeRange(200, None), Not(AgeRange(200, 200))))
    assert normal_form(parse_filter("not (age<=20 or age>=21)")) == Not(Or((AgeRange(None, 0), AgeRange(1, None))))
    assert normal_form(parse_filter("ancestry not in (ZZZ)")) == Not(AncestryIn(("ZZZ",)))
    assert normal_form(parse_filter("sex!=U and phenotype!=HP:0001250")) == And(
        (Not(PhenotypeHas("HP:0001250")), Not(SexIs("U")))
    )


def _largest(n: int) -> Filter:
    """Filters at the input limits built to grow: every age piece that needs several atoms, nested."""
    piece = Not(And((AgeRange(None, 5), Not(AgeRange(0, None)))))
    return Or(tuple(And((piece, AgeRange(i, i + 1), SexIs("F"))) for i in range(n)))


def test_the_form_is_bounded_work_and_size() -> None:
    """At the input limits (256 terms) the form is found quickly and stays within its bound; deep nesting and
    many operands are measured, not timed against a threshold."""
    worst = 0.0
    candidates = [
        _largest(31),
        Or(tuple(Not(AgeRange(2 * i, 2 * i)) if i % 2 else AgeRange(2 * i, 2 * i) for i in range(100))),
        Or(tuple(And((AgeRange(i, i), AncestryIn((f"G{i}", f"H{i}")))) for i in range(80))),
        And(tuple(Or((AgeRange(i, None), SexIs("F"), PhenotypeHas("HP:0001250"))) for i in range(60))),
    ]
    deep: Filter = SexIs("F")
    for i in range(10):  # 15 levels deep
        deep = Not(Or((deep, AgeRange(i, i)))) if i % 2 else And((deep, Not(AgeRange(None, i))))
    candidates.append(deep)
    for f in candidates:
        check_filter_size(f)
        assert _size(f)[0] <= MAX_FILTER_NODES
        started = time.perf_counter()
        try:
            g = normal_form(f, 2026)
        except InvalidArgument as exc:
            assert "selects nobody" in str(exc)
            continue
        print(f"{_size(f)} -> {_size(g)} in {1000 * (time.perf_counter() - started):.1f} ms")
        worst = max(worst, _size(g)[0] / _size(f)[0])
        assert _size(g)[0] <= MAX_CANONICAL_NODES and _size(g)[1] <= MAX_CANONICAL_DEPTH
        assert normal_form(g, 2026) == g
    assert worst <= 2


def test_a_repeat_phrased_differently_is_answered_from_the_node_store_at_no_cost(store: Path, tmp_path: Path) -> None:
    """Through a real node (real store, real ledger; its clock in 2026): the second phrasing of a question
    gets the first's stored release, charged nothing; a phrasing that differs on unknown ages is charged."""
    svc = make(store, tmp_path)
    first = ask(svc, CohortCount(parse_filter("not (sex=M or sex=U)")), eps=0.5)
    again = ask(svc, CohortCount(parse_filter("sex=F")), eps=0.5)
    assert first.epsilon_charged == 0.5 and not first.from_store
    assert again.from_store and again.epsilon_charged == 0 and again.cached_query_id == first.query_id
    assert again.result == first.result
    older = ask(svc, CohortCount(parse_filter("age>=40 and age<=200")), eps=0.25)
    same = ask(svc, CohortCount(parse_filter("not not age>=40")), eps=0.25)
    assert same.from_store and same.epsilon_charged == 0 and same.result == older.result
    other = ask(svc, CohortCount(parse_filter("not age<40")), eps=0.25)  # unknown ages too: another question
    assert not other.from_store and other.epsilon_charged == 0.25
    assert svc.budget_pb(study()).epsilon_spent == 1.0
    with pytest.raises(InvalidArgument) as info:  # nobody whatever the data: refused, nothing charged
        ask(svc, CohortCount(parse_filter("age>=40 and age<30")), eps=0.25)
    assert info.value.reason == Reason.INVALID_FILTER
    assert svc.budget_pb(study()).epsilon_spent == 1.0


_DETERMINISM = """
import hashlib, random, sys
from genogate.kinds import canonical, canonical_bytes
from genogate.errors import InvalidArgument
from genogate.filter import parse_filter
from genogate.kinds.cohort_count import CohortCount
atoms = ["sex=F", "sex!=M", "age>=40", "age<30", "not age<=200", "ancestry in (eur,AFR,EAS)", "ancestry!=ZZZ",
         "phenotype=hp:0001250", "phenotype!=ICD10:C50", "age=0"]
rng, out = random.Random(5), hashlib.sha256()
def text(depth):
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(atoms)
    op, n = rng.choice([" and ", " or "]), rng.randint(2, 4)
    return ("not " if rng.random() < 0.3 else "") + "(" + op.join(text(depth - 1) for _ in range(n)) + ")"
for _ in range(300):
    try:
        out.update(canonical_bytes(canonical(CohortCount(parse_filter(text(4))), this_year=2026)))
    except InvalidArgument:
        out.update(b"nobody")
print(out.hexdigest())
"""


def test_the_canonical_bytes_are_the_same_in_every_process() -> None:
    """The ledger's same-question key must survive a restart: no set or dict order (string hashing is
    randomised per process) reaches the canonical bytes."""
    digests = {
        subprocess.run(
            [sys.executable, "-c", _DETERMINISM],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1 and len(next(iter(digests)).strip()) == 64
