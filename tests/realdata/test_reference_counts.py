"""Exact counts from the store equal bcftools +fill-tags and plink2 --geno-counts on real 1000 Genomes data.

Covers SNPs, indels, symbolic SVs, 516 split multi-allelic sites (AC and AN here; their genotype classes in
``test_multiallelic_classes.py``), chrX male half-calls (one allele each) and haploid chrMT, overall and per
super-population, sex and case/control status.

The store holds each split allele in its minimal form (``genogate.genome.minimal``, as ``bcftools norm -m-``
trims), while the reference tables list the file's own spelling: their keys are trimmed the same way here.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from genogate.filter import parse_filter
from genogate.genome import minimal
from node import freq
from node.ingest import ingest
from node.ingest.normalise import Normaliser
from node.ingest.vcf import VcfSource
from node.store import DuckDBBackend
from tests.conftest import CASE_TERM, CHRMT, CONTROL_TERM, REFERENCE, ROOT, SUBSET, require_shared, write_subset_sheet

Key = tuple[str, str, str, str]


def _read(path: Path) -> Iterator[dict[str, str]]:
    with open(path) as fh:
        yield from csv.DictReader(fh, delimiter="\t")


def _ours(store_path: Path, where: str = "", by: str | None = None) -> dict[tuple[str | None, Key], tuple[int, ...]]:
    backend = DuckDBBackend.open(store_path, point_reads=False)
    try:
        out = {}
        for row in freq.rows(backend, parse_filter(where), by):  # type: ignore[arg-type]
            group, rest = (row[0], row[1:]) if by else (None, row)
            out[(group, tuple(map(str, rest[:4])))] = tuple(int(x) for x in rest[4:])  # type: ignore[arg-type]
        return out
    finally:
        backend.close()


def _key(chrom: str, pos: str, ref: str, alt: str) -> Key:
    """A reference table's allele as the store spells it (symbolic ALTs are kept as written)."""
    p, r, a = minimal(int(pos), ref, alt)
    return (chrom, str(p), r, a)


def _expected_acan(path: Path, group: str | None = None) -> dict[Key, tuple[int, int]]:
    """Per split ALT allele: (AC, AN) from a bcftools fill-tags table (optionally one group's columns)."""
    sfx = f"_{group}" if group else ""
    out = {}
    for r in _read(path):
        for alt, ac in zip(r["ALT"].split(","), r[f"AC{sfx}"].split(","), strict=True):
            out[_key(r["CHROM"], r["POS"], r["REF"], alt)] = (int(ac), int(r[f"AN{sfx}"]))
    return out


def _compare_acan(
    ours: dict[tuple[str | None, Key], tuple[int, ...]],
    group: str | None,
    expected: dict[Key, tuple[int, int]],
) -> None:
    assert len(expected) > 1000
    bad = [
        (k, v, ours.get((group, k), (None, None))[:2]) for k, v in expected.items() if ours.get((group, k), ())[:2] != v
    ]
    assert not bad, f"{len(bad)} alleles differ, first: {bad[:3]}"


def test_overall_ac_an_equal_bcftools(subset_store: Path) -> None:
    ours = _ours(subset_store)
    expected = _expected_acan(REFERENCE / "1kg_subset_1126" / "bcftools_filltags_all.tsv")
    assert len(ours) == len(expected) == 26250  # 25,709 records, multi-allelics split
    _compare_acan(ours, None, expected)


@pytest.mark.parametrize(
    ("by", "table", "groups"),
    [
        ("ancestry", "superpop", {"AFR": "AFR", "AMR": "AMR", "EAS": "EAS", "EUR": "EUR", "SAS": "SAS"}),
        ("sex", "sex", {"F": "female", "M": "male"}),
        ("phenotype", "status", {CASE_TERM: "case", CONTROL_TERM: "control"}),
    ],
)
def test_grouped_ac_an_equal_bcftools(subset_store: Path, by: str, table: str, groups: dict[str, str]) -> None:
    ours = _ours(subset_store, by=by)
    path = REFERENCE / "1kg_subset_1126" / f"bcftools_filltags_by_{table}.tsv"
    for our_group, their_group in groups.items():
        _compare_acan(ours, our_group, _expected_acan(path, their_group))


def _expected_gcount(path: Path, filltags: Path) -> dict[Key, tuple[int, ...]]:
    """plink2 genotype classes of biallelic sites (plink2's table has no POS: zip with bcftools' rows)."""
    out = {}
    for g, b in zip(_read(path), _read(filltags), strict=True):
        # plink2 renames chrX pseudo-autosomal rows PAR1/PAR2 (--split-par b37)
        assert (g["REF"], g["ALT"]) == (b["REF"], b["ALT"])
        assert g["#CHROM"] == b["CHROM"] or (g["#CHROM"] in ("PAR1", "PAR2") and b["CHROM"] == "X")
        if "," in b["ALT"]:
            continue
        out[_key(b["CHROM"], b["POS"], b["REF"], b["ALT"])] = tuple(
            int(g[c])
            for c in (
                "HOM_REF_CT",
                "HET_REF_ALT_CTS",
                "TWO_ALT_GENO_CTS",
                "HAP_REF_CT",
                "HAP_ALT_CTS",
                "MISSING_CT",
            )
        )
    return out


@pytest.mark.parametrize(
    ("where", "gcount"),
    [
        ("", "plink2.gcount"),
        (f"phenotype={CASE_TERM}", "plink2_bystatus.case.gcount"),
        (f"phenotype={CONTROL_TERM}", "plink2_bystatus.control.gcount"),
    ],
)
def test_genotype_classes_equal_plink2(subset_store: Path, where: str, gcount: str) -> None:
    ref = REFERENCE / "1kg_subset_1126"
    expected = _expected_gcount(ref / gcount, ref / "bcftools_filltags_all.tsv")
    ours = _ours(subset_store, where=where)
    assert len(expected) == 25193
    bad = [(k, v, ours[(None, k)][2:]) for k, v in expected.items() if ours[(None, k)][2:] != v]
    assert not bad, f"{len(bad)} sites differ, first: {bad[:3]}"


def test_chrmt_haploid_equal_bcftools_and_plink2(chrmt_store: Path) -> None:
    ref = REFERENCE / "1kg_chrMT_2534"
    ours = _ours(chrmt_store)
    _compare_acan(ours, None, _expected_acan(ref / "bcftools_filltags_all.tsv"))
    expected = _expected_gcount(ref / "plink2.gcount", ref / "bcftools_filltags_all.tsv")
    bad = [k for k, v in expected.items() if ours[(None, k)][2:] != v]
    assert not bad, f"{len(bad)} sites differ, first: {bad[:3]}"
    assert all(v[2] == v[3] == v[4] == 0 for v in ours.values())  # no diploid calls on chrMT


def test_per_chromosome_plain_gzip_files_equal_the_bgzf_concatenation(tmp_path: Path, subset_store: Path) -> None:
    """23 plain-gzip files given in shell-glob order (chr1, chr10, ...) load to the same store content."""
    require_shared()
    files = sorted(SUBSET.glob("1KG_phase3_subset_chr*.vcf.gz"))
    assert len(files) == 23
    store = tmp_path / "perchrom.duckdb"
    ingest(store, files, write_subset_sheet(tmp_path / "sheet.tsv"))
    assert _ours(store) == _ours(subset_store)


def test_freq_cli_tsv_region_and_json(subset_store: Path) -> None:
    """The operator's CLI: header, canonical CHROM, region limits and the JSON form agree."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "node.cli", "freq", "--store", str(subset_store), "--region", "X:1-3000000"]
    tsv = subprocess.run(run, capture_output=True, text=True, env=env, check=True).stdout.splitlines()
    assert tsv[0].split("\t") == list(freq.COLUMNS)
    body = [line.split("\t") for line in tsv[1:]]
    assert body and all(r[0] == "X" and 1 <= int(r[1]) <= 3_000_000 for r in body)
    assert [int(r[1]) for r in body] == sorted(int(r[1]) for r in body)
    js = subprocess.run([*run, "--format", "json"], capture_output=True, text=True, env=env, check=True).stdout
    import json

    rows = json.loads(js)
    assert [[str(r[c]) for c in freq.COLUMNS] for r in rows] == body


@pytest.mark.parametrize(
    "vcf",
    [
        SUBSET / "1KG_phase3_subset_allchr.vcf.gz",  # BGZF; chrX half-calls; 516 multi-allelic sites
        SUBSET / "1KG_phase3_subset_chr22.vcf.gz",  # plain gzip
        CHRMT / "ALL.chrMT.phase3_callmom-v0_4.20130502.genotypes.vcf.gz",  # haploid, up to 5 ALTs
    ],
    ids=["bgzf-allchr", "gzip-chr22", "haploid-chrMT"],
)
def test_numpy_text_parser_equals_htslib_record_for_record(vcf: Path) -> None:
    """The fast GT-only text path and cyvcf2/htslib yield identical calls, origins and skip counts, and the
    same canonical variants once normalised as ingest stores them."""
    require_shared()

    def calls(fast: bool) -> tuple[list[tuple[object, ...]], int, dict[str, int], dict[str, int], int]:
        src = VcfSource(vcf, fast_text=fast)
        norm = Normaliser("GRCh37")
        try:
            out = []
            for c in src.records():
                n = norm(c)
                stored = None if n is None else (n.chrom, n.pos, n.ref, n.alt)
                out.append((c.chrom, c.pos, c.ref, c.alt, c.sids.tobytes(), c.cls.tobytes(), c.origin, stored))
            return out, src.records_read, dict(src.skipped), dict(norm.skipped), norm.changed
        finally:
            src.close()

    fast, slow = calls(True), calls(False)
    assert len(fast[0]) > 1000
    assert fast[4] > 0  # some split alleles were trimmed (138 of allchr's, 146 of chrMT's)
    assert fast == slow
