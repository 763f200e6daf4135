"""One canonical identity for a variant, at the node: every spelling of one allele is one question (the same
exact count, the same stored release), and what the node cannot answer truthfully is refused before anything
is read or charged: a contig it does not have, a position its data does not cover, another genome build."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genogate import genome
from genogate.errors import ConfigError, GenogateError, Reason
from genogate.kinds import canonical, canonical_bytes
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.carrier_count import CarrierCount
from genogate.kinds.genotype_counts import GenotypeCounts
from genogate.query import Region, Variant
from tests.unit.test_service import ask, make, study
from tests.unit.test_service import store as store  # noqa: F401 - the module-scoped store fixture

SPELLINGS = [
    Variant("1", 100, "A", "G"),
    Variant("chr1", 100, "A", "G"),
    Variant("CHR1", 100, "a", "g"),
    Variant("NC_000001.10", 100, "A", "G"),  # GRCh37's RefSeq accession of chromosome 1 (the store's build)
    Variant("1", 100, "AT", "GT"),  # not minimal: the common suffix is dropped
    Variant("1", 99, "CA", "CG"),  # not minimal: the common prefix is dropped, POS moves to 100
]


def refusal(fn: object) -> GenogateError:
    with pytest.raises(GenogateError) as info:
        fn()  # type: ignore[operator]
    return info.value


@pytest.mark.parametrize("spelling", SPELLINGS, ids=str)
def test_every_spelling_is_the_same_canonical_question(spelling: Variant) -> None:
    want = canonical_bytes(canonical(AlleleFrequency((SPELLINGS[0],)), "GRCh37"))
    assert canonical_bytes(canonical(AlleleFrequency((spelling,)), "GRCh37")) == want
    assert canonical_variant_text(spelling) == "1-100-A-G"


def canonical_variant_text(v: Variant) -> str:
    return str(canonical(GenotypeCounts(v), "GRCh37").variant)  # type: ignore[union-attr]


def test_every_spelling_gets_one_answer_and_one_charge(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path)
    first = ask(svc, AlleleFrequency((SPELLINGS[0],)))
    assert first.epsilon_charged == 0.5 and not first.from_store
    row = first.result.allele_frequency.variants[0]
    assert (row.allele_count.estimate, row.allele_number.estimate) == (3, 14)
    for spelling in SPELLINGS[1:]:
        again = ask(svc, AlleleFrequency((spelling,)))
        assert again.from_store and again.result == first.result  # the stored release: no second draw
        assert again.result.allele_frequency.variants[0].variant.chrom == "1"  # output names the canonical contig
    assert svc._ledger.budget("S1", Decimal(3), Decimal(1)).epsilon_spent == Decimal("0.5")


def test_a_refseq_accession_of_another_build_is_refused(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path)
    err = refusal(lambda: ask(svc, AlleleFrequency((Variant("NC_000001.11", 100, "A", "G"),))))
    assert err.reason == Reason.WRONG_ASSEMBLY and "GRCh38 accession, not GRCh37" in err.message


def test_an_unknown_contig_is_refused_naming_the_contigs_and_charging_nothing(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path)
    for q in (
        AlleleFrequency((SPELLINGS[0], Variant("chr2", 100, "A", "G"))),
        GenotypeCounts(Variant("Y", 5, "A", "G")),
        AlleleFrequency(region=Region("chr22", 1, 1000)),
        CarrierCount(Region("MT", 1, 100)),
    ):
        err = refusal(lambda q=q: ask(svc, q))
        assert err.reason == Reason.UNKNOWN_CONTIG, q
        assert "its contigs are 1, X" in err.message
    assert svc._ledger.budget("S1", Decimal(3), Decimal(1)).epsilon_spent == 0
    # chrX and 23 are X, which the node has: answered.
    assert ask(svc, GenotypeCounts(Variant("23", 5000, "G", "A"))).result.genotype_counts.het.estimate == 1


def test_a_position_past_the_end_of_a_chromosome_is_refused(store: Path, tmp_path: Path) -> None:
    """GRCh37's chromosome 1 has 249,250,621 bp: a position past it (another build's coordinate, a typo) is
    refused, not answered as an absent variant; a whole-chromosome region is fine."""
    svc = make(store, tmp_path)
    err = refusal(lambda: ask(svc, GenotypeCounts(Variant("1", 249_250_622, "A", "G"))))
    assert err.reason == Reason.INVALID_VARIANT and "past the end of chromosome 1 on GRCh37" in err.message
    err = refusal(lambda: ask(svc, AlleleFrequency(region=Region("1", 249_250_700, 249_250_800))))
    assert err.reason == Reason.INVALID_REGION
    assert ask(svc, GenotypeCounts(Variant("1", 249_250_621, "A", "G"))).epsilon_charged == 0.5
    assert len(ask(svc, AlleleFrequency(region=Region.parse("chr1"))).result.allele_frequency.variants) == 3


def test_positions_outside_the_covered_regions_are_refused_not_counted(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path, covered_regions=[Region("1", 50, 150)])
    assert ask(svc, GenotypeCounts(Variant("1", 100, "A", "G"))).epsilon_charged == 0.5
    for q in (
        GenotypeCounts(Variant("1", 200, "C", "T")),
        GenotypeCounts(Variant("X", 5000, "G", "A")),
        AlleleFrequency(region=Region("1", 1, 120)),  # partly outside
    ):
        err = refusal(lambda q=q: ask(svc, q))
        assert err.reason == Reason.NOT_COVERED, q
    assert svc.catalogue.covered_regions() == [Region("1", 50, 150)]


@pytest.mark.parametrize(("asked", "study_build"), [("GRCh38", ""), ("", "GRCh38"), ("GRCh37", "GRCh38"), ("hg19", "")])
def test_another_build_is_refused(store: Path, tmp_path: Path, asked: str, study_build: str) -> None:
    """The store is on GRCh37: a query or study on GRCh38 (or naming no known build) is refused."""
    svc = make(store, tmp_path, study(assembly=study_build))
    err = refusal(lambda: ask(svc, GenotypeCounts(SPELLINGS[0]), assembly=asked))
    assert err.reason == Reason.WRONG_ASSEMBLY
    assert svc._ledger.budget("S1", Decimal(3), Decimal(1)).epsilon_spent == 0


def test_the_query_names_its_build_and_the_node_answers_on_it(store: Path, tmp_path: Path) -> None:
    svc = make(store, tmp_path, study(assembly="GRCh37"))
    assert ask(svc, GenotypeCounts(SPELLINGS[0]), assembly="GRCh37").epsilon_charged == 0.5
    assert ask(svc, GenotypeCounts(SPELLINGS[1]), assembly="").from_store  # the study's build: the same question


def test_a_node_refuses_to_start_when_its_config_and_store_disagree_on_the_build(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "store.duckdb"
    shutil.copy(store, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("INSERT OR REPLACE INTO meta VALUES ('genome_build', 'GRCh38')")
    with pytest.raises(ConfigError, match="GRCh38 but the node's config says genome_build = 'GRCh37'"):
        make(copy, tmp_path, build="GRCh37")
    svc = make(copy, tmp_path, build="")  # no build configured: the store's
    assert svc.catalogue.build == "GRCh38"
    svc.close()


# genogate.genome ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canon"),
    [
        ("chr1", "1"),
        ("1", "1"),
        ("Chr22", "22"),
        ("chrX", "X"),
        ("23", "X"),
        ("x", "X"),
        ("chrY", "Y"),
        ("24", "Y"),
        ("chrM", "MT"),
        ("chrMT", "MT"),
        ("M", "MT"),
        ("MT", "MT"),
        ("NC_000023.10", "X"),
        ("NC_000023.11", "X"),
        ("NC_012920.1", "MT"),
        ("hs37d5", "hs37d5"),
        ("chr1_KI270706v1_random", "chr1_KI270706v1_random"),
        ("GL000192.1", "GL000192.1"),
    ],
)
def test_contig_aliases(name: str, canon: str) -> None:
    assert genome.canonical_contig(name) == canon


def test_refseq_accessions_name_their_build() -> None:
    for build, table in genome.REFSEQ.items():
        other = "GRCh37" if build == "GRCh38" else "GRCh38"
        for name, acc in table.items():
            assert genome.canonical_contig(acc, build) == name
            if name != "MT":  # rCRS is the same accession in both
                with pytest.raises(genome.BuildError):
                    genome.canonical_contig(acc, other)


def test_build_inference_from_headers() -> None:
    assert genome.infer_build({"1": 249250621, "2": 243199373}, "hs37d5.fa.gz") == "GRCh37"
    assert genome.infer_build({"chr1": 248956422}) == "GRCh38"
    assert genome.infer_build({"MT": 16569}) is None  # the same rCRS in both builds
    assert genome.infer_build({}, None) is None
    with pytest.raises(genome.BuildError, match="more than one build"):
        genome.infer_build({"chr1": 248956422}, "ftp://.../hs37d5.fa.gz")
    with pytest.raises(genome.BuildError, match="neither GRCh37's"):
        genome.infer_build({"1": 1000})


bases = st.text("ACGT", min_size=1, max_size=6)


@given(st.integers(1, 10**6), bases, bases, bases)
def test_minimal_is_minimal_and_idempotent(pos: int, ref: str, alt: str, suffix: str) -> None:
    """The minimal form keeps one anchor base, shares no last base and (unless an indel's anchor) no first
    base, moves POS only right, and is its own minimal form; a shared suffix never changes it."""
    if ref == alt:
        return
    p, r, a = genome.minimal(pos, ref, alt)
    assert r and a and p >= pos and len(r) <= len(ref)
    assert r[-1] != a[-1] or min(len(r), len(a)) == 1
    assert r[0] != a[0] or min(len(r), len(a)) == 1
    assert genome.minimal(p, r, a) == (p, r, a)
    assert genome.minimal(pos, ref + suffix, alt + suffix) == (p, r, a)


def test_the_sdk_echoes_what_was_typed_beside_the_canonical_spelling() -> None:
    from genogate.client import _canonical_text, _spellings

    q = AlleleFrequency((Variant("chr5", 117882594, "t", "a"), Variant("9", 10707272, "T", "A")))
    assert _spellings(q) == {"chr5-117882594-t-a": "5-117882594-T-A"}  # only what differs
    assert _spellings(CarrierCount(Region("chrX", 1, 10))) == {"chrX:1-10": "X:1-10"}
    assert _canonical_text("CHR1-99-CA-CG") == "1-100-A-G" and _canonical_text("not a variant") == "not a variant"
