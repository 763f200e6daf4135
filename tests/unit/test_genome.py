"""``genogate.genome``: natural contig order and build inference edge cases (the rest is exercised by ingest)."""

from __future__ import annotations

import pytest

from genogate.genome import LENGTHS, REFSEQ, BuildError, canonical_contig, contig_rank, contig_sort_key, infer_build


def test_natural_order() -> None:
    names = ["MT", "GL000192.1", "X", "10", "2", "Y", "1", "hs37d5"]
    assert sorted(names, key=contig_sort_key) == ["1", "2", "10", "X", "Y", "MT", "GL000192.1", "hs37d5"]
    assert contig_rank("22") < contig_rank("X") < contig_rank("Y") < contig_rank("MT") < contig_rank("KI270706.1")


def test_hg19_chrm_is_not_the_rcrs_mt() -> None:
    assert infer_build({"chrM": 16569, "chr1": LENGTHS["GRCh37"]["1"]}) == "GRCh37"
    with pytest.raises(BuildError, match="hg19's chrM is NC_001807"):
        infer_build({"chrM": 16571, "chr1": LENGTHS["GRCh37"]["1"]})


def test_refseq_accessions_name_their_build() -> None:
    assert [canonical_contig(REFSEQ[b]["X"], b) for b in ("GRCh37", "GRCh38")] == ["X", "X"]
    assert infer_build({REFSEQ["GRCh38"]["22"]: None}) == "GRCh38"
    with pytest.raises(BuildError, match="GRCh37 accession, not GRCh38"):
        canonical_contig("NC_000001.10", "GRCh38")


def test_common_reference_file_names() -> None:
    assert infer_build({}, "file:///ref/Homo_sapiens_assembly38.fasta") == "GRCh38"
    assert infer_build({}, "file:///ref/Homo_sapiens_assembly19.fasta") == "GRCh37"
    assert infer_build({}, "ftp://ftp.1000genomes.ebi.ac.uk/.../hs37d5.fa.gz") == "GRCh37"
    assert infer_build({}, "human_b36_both.fasta") == "NCBI36"
    assert infer_build({"1": None}, None) is None
