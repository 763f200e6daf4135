"""Real 1000 Genomes data through ingest and the operator's ``freq``: per-chromosome plain-gzip files load to
the same store as their BGZF concatenation, the ``freq`` CLI's TSV/JSON output, and the numpy text parser
equals htslib record for record.

That a store's exact counts equal bcftools +fill-tags and plink2 --geno-counts (SNPs, indels, symbolic SVs,
split multi-allelic sites, chrX male half-calls, haploid chrMT; overall and per super-population, sex and
case/control status) is checked for every storage backend by ``tests/conformance/test_backend.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from node import freq
from node.ingest import ingest
from node.ingest.normalise import Normaliser
from node.ingest.vcf import VcfSource
from tests.conftest import CHRMT, ROOT, SUBSET, require_shared, write_subset_sheet
from tests.reference import counts_of


def test_per_chromosome_plain_gzip_files_equal_the_bgzf_concatenation(tmp_path: Path, subset_store: Path) -> None:
    """23 plain-gzip files given in shell-glob order (chr1, chr10, ...) load to the same store content."""
    require_shared()
    files = sorted(SUBSET.glob("1KG_phase3_subset_chr*.vcf.gz"))
    assert len(files) == 23
    store = tmp_path / "perchrom.duckdb"
    ingest(store, files, write_subset_sheet(tmp_path / "sheet.tsv"))
    assert counts_of(store) == counts_of(subset_store)


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
