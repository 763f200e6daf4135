"""Phenotype term spellings, the ontologies ingest reads, the MONDO file reader, and DS-<disease> subsumption."""

from __future__ import annotations

from pathlib import Path

import pytest

from genogate import duo
from genogate.errors import ConfigError, InvalidArgument, Reason
from genogate.filter import parse_filter
from genogate.kinds import canonical, canonical_bytes
from genogate.kinds.cohort_count import CohortCount
from genogate.ontology import canonical_term
from genogate.query import AncestryIn, PhenotypeHas, normalise_filter
from node import ontology


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("HP:0001250", "HP:0001250"),
        ("hp:0001250", "HP:0001250"),
        ("Hp:0001250", "HP:0001250"),
        ("ICD10:G40.9", "ICD10:G40.9"),
        ("icd10:g40.9", "ICD10:G40.9"),
        ("ICD10:G409", "ICD10:G40.9"),
        ("icd10:g40-g47", "ICD10:G40-G47"),
        ("ICD10:vi", "ICD10:VI"),
        ("local:x", "local:x"),  # no ontology of ours: left for the node to refuse as unknown
    ],
)
def test_term_spellings_have_one_canonical_form(text: str, canonical: str) -> None:
    assert canonical_term(text) == canonical
    assert normalise_filter(PhenotypeHas(text)) == PhenotypeHas(canonical)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hp:1250", "seven digits"),
        ("HP:00012500", "seven digits"),
        ("HP:000125x", "seven digits"),
        ("ICD10:G4", "not a WHO ICD-10 code"),
        ("ICD10:G40.123", "not a WHO ICD-10 code"),
    ],
)
def test_malformed_ids_are_refused_with_a_hint(text: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter(f"phenotype={text}")
    assert info.value.reason is Reason.INVALID_FILTER and words in str(info.value)


def test_spellings_of_one_question_have_the_same_canonical_bytes() -> None:
    pairs = [
        ("phenotype=hp:0001250", "phenotype=HP:0001250"),
        ("ancestry=eur", "ancestry=EUR"),
        ("ancestry in (afr, Eur, EUR)", "ancestry in (EUR,AFR)"),
        ("phenotype=icd10:g409 and sex=F", "sex=F and phenotype=ICD10:G40.9"),
    ]
    for a, b in pairs:
        qa, qb = canonical(CohortCount(parse_filter(a))), canonical(CohortCount(parse_filter(b)))
        assert canonical_bytes(qa) == canonical_bytes(qb), (a, b)
    assert normalise_filter(AncestryIn(("eur", "afr"))) == AncestryIn(("AFR", "EUR"))


def test_ingest_ontologies_hpo_descendants_and_icd10_hierarchy() -> None:
    onto = ontology.load()
    assert onto.releases["HPO"] == "2025-11-24" and "2019" in onto.releases["ICD-10"]
    hpo = [t for t in set(onto.vocabulary.values()) if t.startswith("HP:")]
    seizure = [t for t in hpo if t != "HP:0001250" and "HP:0001250" in onto.ancestors(t)]
    assert len(seizure) == 346  # HP:0001250 (Seizure) has 346 descendants in HPO 2025-11-24
    assert onto.ancestors("ICD10:G40.9")[:4] == ("ICD10:G40.9", "ICD10:G40", "ICD10:G40-G47", "ICD10:VI")
    assert onto.vocabulary["HP:0009062"] == "HP:0008936"  # an obsolete id stands for its replacement
    assert "ICD10:G40.91" not in onto.vocabulary  # ICD-10-CM, not WHO ICD-10


MONDO_OBO = """format-version: 1.2
data-version: http://purl.obolibrary.org/obo/mondo/releases/2025-01-07/mondo.obo
ontology: mondo

[Term]
id: MONDO:0000001
name: disease

[Term]
id: MONDO:0005015
name: diabetes mellitus
is_a: MONDO:0000001 ! disease

[Term]
id: MONDO:0005148
name: type 2 diabetes mellitus
is_a: MONDO:0005015 ! diabetes mellitus
is_a: MONDO:0000001 {source="x"} ! disease

[Term]
id: MONDO:0100001
name: an unrelated disease
is_a: MONDO:0000001 ! disease

[Typedef]
id: part_of
is_a: MONDO:0005015
"""


def test_mondo_file_is_read_into_is_a_parents(tmp_path: Path) -> None:
    path = tmp_path / "mondo.obo"
    path.write_text(MONDO_OBO)
    parents, release = ontology.read_mondo(path)
    assert release.endswith("2025-01-07/mondo.obo")
    assert parents["MONDO:0005148"] == {"MONDO:0005015", "MONDO:0000001"}
    assert parents["MONDO:0000001"] == frozenset() and "part_of" not in parents
    (tmp_path / "empty.obo").write_text("format-version: 1.2\n")
    with pytest.raises(ConfigError, match="no MONDO terms"):
        ontology.read_mondo(tmp_path / "empty.obo")
    with pytest.raises(ConfigError, match="cannot read"):
        ontology.read_mondo(tmp_path / "absent.obo")


@pytest.mark.parametrize(
    ("consent", "purpose", "admitted"),
    [
        (["DS-C50"], "DS-C50.9", True),  # a subcategory of the consented category
        (["DS-C50"], "DS-ICD10:C50.9", True),
        (["DS-ICD10:C50"], "DS-C50", True),
        (["DS-C50.9"], "DS-C50", False),  # the study is broader than the consent
        (["DS-C50"], "DS-C51", False),
        (["DS-C00-C75"], "DS-C50.9", True),  # a block admits its categories' studies
        (["DS-C50"], "DS-C50.99", False),  # not a WHO ICD-10 code: only an exact match could admit it
        (["CC"], "CC", True),
        (["CC"], "GRU", False),  # clinical care use is not research use
        (["CC"], "HMB", False),
        (["GRU"], "CC", False),  # nor research consent clinical care
        (["HMB"], "CC", False),
        (["NRES"], "CC", True),
        (["DS-MONDO:0005015"], "DS-MONDO:0005148", False),  # without the MONDO file: exact matches only
        (["DS-MONDO:0005015"], "DS-MONDO:0005015", True),
    ],
)
def test_disease_specific_consent_by_subsumption(consent: list[str], purpose: str, admitted: bool) -> None:
    assert duo.admits(duo.normalise_codes(consent), duo.parse_purpose(purpose)) is admitted


def test_mondo_subsumption_with_the_operators_file(tmp_path: Path) -> None:
    path = tmp_path / "mondo.obo"
    path.write_text(MONDO_OBO)
    diseases = duo.Diseases(ontology.read_mondo(path)[0])
    consent = duo.normalise_codes(["DS-MONDO:0005015"])
    assert duo.admits(consent, duo.parse_purpose("DS-MONDO:0005148"), diseases)
    assert duo.admits(consent, duo.parse_purpose("DS-MONDO:0005015"), diseases)
    assert not duo.admits(consent, duo.parse_purpose("DS-MONDO:0000001"), diseases)  # broader
    assert not duo.admits(consent, duo.parse_purpose("DS-MONDO:0100001"), diseases)  # a sibling
    assert not duo.admits(consent, duo.parse_purpose("DS-C50"), diseases)
    assert duo.admits(duo.normalise_codes(["DS-C50"]), duo.parse_purpose("DS-C50.9"), diseases)  # ICD-10 still


def test_cc_is_a_duo_permission() -> None:
    assert duo.normalise_code("DUO:0000043") == duo.normalise_code("cc") == "CC"
    assert duo.parse_purpose("CC;IRB") == ("CC", frozenset({"IRB"}))


def test_the_mondo_setting_resolves_against_the_config_file_and_must_exist(tmp_path: Path) -> None:
    from node.config import check_files, load_node_config

    text = (
        '[node]\nname = "site-a"\n[tls]\nca_certs = "ca.pem"\ncert = "node.pem"\nkey = "node.key"\n'
        '[keys]\nidentity_key = "identity.key"\npseudonym_key = "pseudonym.key"\n[ontologies]\nmondo = "mondo.obo"\n'
    )
    (tmp_path / "node.toml").write_text(text)
    cfg = load_node_config(tmp_path / "node.toml", env={})
    assert cfg.ontologies.mondo == tmp_path / "mondo.obo"
    for name in ("ca.pem", "node.pem", "node.key", "identity.key", "pseudonym.key"):
        (tmp_path / name).write_text("x")
    with pytest.raises(ConfigError, match=r"\[ontologies\] mondo"):
        check_files(cfg)
    (tmp_path / "mondo.obo").write_text(MONDO_OBO)
    check_files(cfg)
