"""Per-ALT genotype classes of split multi-allelic sites, exactly, on real 1000 Genomes data.

genogate splits a site with ALT alleles 1..m into m rows; in the row of ALT ``j`` every *other* ALT allele
counts as reference (what ``bcftools norm -m-`` writes). So for ALT ``j`` a sample's class is:

=========================  =============================================================================
class                      genotypes (diploid ``a/b``, haploid or half-call ``a``; ``0`` = REF)
=========================  =============================================================================
HOM_REF                    ``a/b`` with neither allele ``j``: ``0/0``, ``0/i``, ``i/i``, ``i/l`` (i, l != j)
HET                        exactly one ``j``: ``0/j`` and ``i/j`` (i != j); a ``1/2`` sample is HET for
                           ALT 1 *and* for ALT 2
HOM_ALT                    ``j/j``
HEMI_REF                   haploid or half-call ``0`` or ``i`` (i != j)
HEMI_ALT                   haploid or half-call ``j``
NO_CALL                    missing
=========================  =============================================================================

This is *not* what plink2 ``--geno-counts`` prints per row of an unsplit multi-allelic site (its HOM_REF_CT
counts only ``0/0``; its two-ALT column lists every ``i/l`` pair), so the expected classes are derived here
from plink2's multi-allelic columns: ``HOM_REF_CT``, ``HET_REF_ALT_CTS`` (``0/i`` per ALT),
``TWO_ALT_GENO_CTS`` (``i/l`` in plink2's order 1/1, 1/2, 2/2, 1/3, 2/3, 3/3, ...), ``HAP_REF_CT``,
``HAP_ALT_CTS`` (per ALT) and ``MISSING_CT``. Independently, the ``tools`` test runs ``bcftools norm -m-``
and then plink2 ``--geno-counts`` on the split file and compares every split row.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CASE_TERM, CONTROL_TERM, REFERENCE, SUBSET, require_shared
from tests.realdata.test_reference_counts import Key, _key, _ours, _read

Classes = tuple[int, int, int, int, int, int]


def _pairs(m: int) -> list[tuple[int, int]]:
    """plink2's order of two-ALT genotypes for m ALT alleles: (1,1), (1,2), (2,2), (1,3), (2,3), (3,3), ..."""
    return [(i, j) for j in range(1, m + 1) for i in range(1, j + 1)]


def per_alt_classes(row: dict[str, str]) -> list[Classes]:
    """The split classes of each ALT of one plink2 ``--geno-counts`` row (see the module docstring)."""
    alts = row["ALT"].split(",")
    m = len(alts)
    het_ref = [int(x) for x in row["HET_REF_ALT_CTS"].split(",")]
    two = dict(zip(_pairs(m), (int(x) for x in row["TWO_ALT_GENO_CTS"].split(",")), strict=True))
    hap_alt = [int(x) for x in row["HAP_ALT_CTS"].split(",")]
    hom_ref0, hap_ref, missing = int(row["HOM_REF_CT"]), int(row["HAP_REF_CT"]), int(row["MISSING_CT"])
    out: list[Classes] = []
    for j in range(1, m + 1):
        hom_ref = hom_ref0 + sum(n for i, n in enumerate(het_ref, 1) if i != j)
        hom_ref += sum(n for (a, b), n in two.items() if j not in (a, b))
        het = het_ref[j - 1] + sum(n for (a, b), n in two.items() if (a == j) != (b == j))
        hom_alt = two[(j, j)]
        hemi_ref = hap_ref + sum(n for i, n in enumerate(hap_alt, 1) if i != j)
        out.append((hom_ref, het, hom_alt, hemi_ref, hap_alt[j - 1], missing))
    return out


def _half_calls_plink2_dropped(classes: list[Classes], ac: list[int], an: int) -> list[Classes]:
    """plink2 2.00a3.5 (``--vcf-half-call haploid``) keeps a half-call of REF or the first ALT (``0/.``,
    ``1/.``) as a haploid call but turns one of a later ALT (``2/.``: 22 alleles on chrX) into a missing
    call, while bcftools counts it as one allele (so does genogate: in ALT 2's row it is ``1/.``). The
    difference of bcftools' AN and plink2's called alleles counts them (``d``), that of the ACs says which
    ALT each carries: move them from MISSING to HEMI_ALT of their ALT and HEMI_REF of the others."""
    called = [2 * (c[0] + c[1] + c[2]) + c[3] + c[4] for c in classes]
    assert len(set(called)) == 1  # the same samples are called in every ALT's row
    d = an - called[0]
    if d == 0:
        return classes
    out = []
    for c, their_ac in zip(classes, ac, strict=True):
        extra_alt = their_ac - (c[1] + 2 * c[2] + c[4])
        assert 0 <= extra_alt <= d <= c[5]
        out.append((c[0], c[1], c[2], c[3] + d - extra_alt, c[4] + extra_alt, c[5] - d))
    return out


def _expected(gcount: Path, filltags: Path, group: str = "") -> dict[Key, Classes]:
    """Per split ALT of every multi-allelic site (plink2's table has no POS: zip with bcftools' rows, whose
    AC/AN, of ``group`` when given, also restore the half-calls plink2 dropped)."""
    sfx = f"_{group}" if group else ""
    out: dict[Key, Classes] = {}
    for g, b in zip(_read(gcount), _read(filltags), strict=True):
        assert (g["REF"], g["ALT"]) == (b["REF"], b["ALT"])
        if "," not in b["ALT"]:
            continue
        ac = [int(x) for x in b[f"AC{sfx}"].split(",")]
        classes = _half_calls_plink2_dropped(per_alt_classes(g), ac, int(b[f"AN{sfx}"]))
        for alt, c in zip(b["ALT"].split(","), classes, strict=True):
            out[_key(b["CHROM"], b["POS"], b["REF"], alt)] = c  # as the store spells it (minimal)
    return out


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


@pytest.mark.parametrize(
    ("where", "gcount", "group"),
    [
        ("", "plink2.gcount", ""),
        (f"phenotype={CASE_TERM}", "plink2_bystatus.case.gcount", "case"),
        (f"phenotype={CONTROL_TERM}", "plink2_bystatus.control.gcount", "control"),
    ],
)
def test_split_multiallelic_classes_equal_plink2_multiallelic_columns(
    subset_store: Path, where: str, gcount: str, group: str
) -> None:
    ref = REFERENCE / "1kg_subset_1126"
    filltags = ref / ("bcftools_filltags_by_status.tsv" if group else "bcftools_filltags_all.tsv")
    expected = _expected(ref / gcount, filltags, group)
    ours = _ours(subset_store, where=where)
    assert len(expected) == 1057  # the ALT alleles of the 516 multi-allelic sites
    bad = [(k, v, ours[(None, k)][2:]) for k, v in expected.items() if ours[(None, k)][2:] != v]
    assert not bad, f"{len(bad)} alleles differ, first: {bad[:3]}"


def test_chrmt_split_multiallelic_classes_equal_plink2(chrmt_store: Path) -> None:
    ref = REFERENCE / "1kg_chrMT_2534"
    expected = _expected(ref / "plink2.gcount", ref / "bcftools_filltags_all.tsv")
    ours = _ours(chrmt_store)
    assert len(expected) > 100
    bad = [(k, v, ours[(None, k)][2:]) for k, v in expected.items() if ours[(None, k)][2:] != v]
    assert not bad, f"{len(bad)} alleles differ, first: {bad[:3]}"


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
    rows = list(_read(SUBSET / "1KG_phase3_subset_annot.tsv"))
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
    ours = _ours(subset_store)
    columns = ("HOM_REF_CT", "HET_REF_ALT_CTS", "TWO_ALT_GENO_CTS", "HAP_REF_CT", "HAP_ALT_CTS", "MISSING_CT")
    bad, n = [], 0
    for key, g in zip(keys, _read(tmp_path / "split.gcount"), strict=True):
        assert (g["REF"], g["ALT"]) == key[2:]
        n += 1
        theirs = tuple(int(g[c]) for c in columns)
        mine = ours[(None, _key(*key))][2:]
        if mine != theirs:
            bad.append((key, theirs, mine))
    assert n == len(ours) == 26250
    assert not bad, f"{len(bad)} rows differ, first: {bad[:3]}"
