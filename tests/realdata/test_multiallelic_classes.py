"""Per-ALT genotype classes of split multi-allelic sites on real 1000 Genomes data: the derivation of the
expected classes from plink2's multi-allelic columns (``tests.reference``, whose docstring states the rule),
and, independently, ``bcftools norm -m-`` then plink2 ``--geno-counts`` on the split file compared with every
split row. Every backend's classes equal the derived ones in ``tests/conformance/test_backend.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SUBSET, require_shared
from tests.reference import GCOUNT_COLUMNS, counts_of, key, per_alt_classes, read_table


def test_the_derivation_on_a_hand_made_row() -> None:
    # ALTs 1, 2: 0/0 x5, 0/1 x3, 0/2 x2, 1/1 x1, 1/2 x4, 2/2 x6, haploid 0 x7, 1 x8, 2 x9, missing x10
    row = {
        "ALT": "T,G",
        "HOM_REF_CT": "5",
        "HET_REF_ALT_CTS": "3,2",
        "TWO_ALT_GENO_CTS": "1,4,6",
        "HAP_REF_CT": "7",
        "HAP_ALT_CTS": "8,9",
        "MISSING_CT": "10",
    }
    assert per_alt_classes(row) == [(5 + 2 + 6, 3 + 4, 1, 7 + 9, 8, 10), (5 + 3 + 1, 2 + 4, 6, 7 + 8, 9, 10)]


@pytest.mark.tools
def test_every_split_row_equals_plink2_on_the_bcftools_split_file(subset_store: Path, tmp_path: Path) -> None:
    """``bcftools norm -m-`` splits the file as genogate does; plink2 ``--geno-counts`` on the split file
    (half-calls haploid, chrX PARs split, sexes from the sheet) then equals genogate's classes on all 26,250
    rows: biallelic sites, every split ALT, chrX half-calls included."""
    require_shared()
    for tool in ("bcftools", "plink2"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    vcf = SUBSET / "1KG_phase3_subset_allchr.vcf.gz"
    split = tmp_path / "split.vcf.gz"
    subprocess.run(["bcftools", "norm", "-m-", str(vcf), "-Oz", "-o", str(split)], check=True, capture_output=True)
    sexes = tmp_path / "sex.txt"
    rows = list(read_table(SUBSET / "1KG_phase3_subset_annot.tsv"))
    sexes.write_text("#IID\tSEX\n" + "".join(f"{r['sample.id']}\t{1 if r['sex'] == 'M' else 2}\n" for r in rows))
    subprocess.run(
        [
            "plink2", "--vcf", str(split), "--vcf-half-call", "haploid", "--split-par", "b37",
            "--update-sex", str(sexes), "--geno-counts", "--threads", "2", "--out", str(tmp_path / "split"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    # plink2's table has no POS and renames chrX PAR rows: zip with the original file's ALT alleles in order
    sites = subprocess.run(
        ["bcftools", "query", "-f", "%CHROM\t%POS\t%REF\t%ALT\n", str(vcf)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    keys = [(c, p, r, a) for c, p, r, alts in (line.split("\t") for line in sites) for a in alts.split(",")]
    ours = counts_of(subset_store)
    bad, n = [], 0
    for site, g in zip(keys, read_table(tmp_path / "split.gcount"), strict=True):
        assert (g["REF"], g["ALT"]) == site[2:]
        n += 1
        theirs = tuple(int(g[c]) for c in GCOUNT_COLUMNS)
        mine = ours[(None, key(*site))][2:]
        if mine != theirs:
            bad.append((site, theirs, mine))
    assert n == len(ours) == 26250
    assert not bad, f"{len(bad)} rows differ, first: {bad[:3]}"
