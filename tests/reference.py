"""The bcftools/plink2 reference tables of ``../shared/data/reference`` (see its README), read as genogate
spells variants, and a backend's exact counts in the same shape (``counts``).

Used by the backend conformance suite (``tests/conformance``: every backend's counts equal the tables) and
the real-data tests of ingest and the operator's ``freq`` (``tests/realdata``).

Split multi-allelic sites: genogate splits a site with ALT alleles 1..m into m rows; in the row of ALT ``j``
every *other* ALT allele counts as reference (what ``bcftools norm -m-`` writes). So for ALT ``j`` a
sample's class is:

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
``HAP_ALT_CTS`` (per ALT) and ``MISSING_CT``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from genogate.filter import parse_filter
from genogate.genome import minimal
from node import freq
from node.backend import GenotypeBackend
from node.duckdb_backend import DuckDBBackend

Key = tuple[str, str, str, str]
Classes = tuple[int, int, int, int, int, int]
Counts = dict[tuple[str | None, Key], tuple[int, ...]]
GCOUNT_COLUMNS = ("HOM_REF_CT", "HET_REF_ALT_CTS", "TWO_ALT_GENO_CTS", "HAP_REF_CT", "HAP_ALT_CTS", "MISSING_CT")


def read_table(path: Path) -> Iterator[dict[str, str]]:
    with open(path) as fh:
        yield from csv.DictReader(fh, delimiter="\t")


def counts(backend: GenotypeBackend, where: str = "", by: str | None = None) -> Counts:
    """(group, allele) -> AC, AN and the six genotype classes, as the operator's ``freq`` computes them."""
    out = {}
    for row in freq.rows(backend, parse_filter(where), by):  # type: ignore[arg-type]
        group, rest = (row[0], row[1:]) if by else (None, row)
        out[(group, tuple(map(str, rest[:4])))] = tuple(int(x) for x in rest[4:])  # type: ignore[arg-type]
    return out


def counts_of(store: Path, where: str = "", by: str | None = None) -> Counts:
    """``counts`` of the store at ``store``, read through DuckDB."""
    backend = DuckDBBackend.open(store, point_reads=False)
    try:
        return counts(backend, where, by)
    finally:
        backend.close()


def key(chrom: str, pos: str, ref: str, alt: str) -> Key:
    """A reference table's allele as the store spells it (symbolic ALTs are kept as written)."""
    p, r, a = minimal(int(pos), ref, alt)
    return (chrom, str(p), r, a)


def expected_acan(path: Path, group: str | None = None) -> dict[Key, tuple[int, int]]:
    """Per split ALT allele: (AC, AN) from a bcftools fill-tags table (optionally one group's columns)."""
    sfx = f"_{group}" if group else ""
    out = {}
    for r in read_table(path):
        for alt, ac in zip(r["ALT"].split(","), r[f"AC{sfx}"].split(","), strict=True):
            out[key(r["CHROM"], r["POS"], r["REF"], alt)] = (int(ac), int(r[f"AN{sfx}"]))
    return out


def acan_differences(ours: Counts, group: str | None, expected: dict[Key, tuple[int, int]]) -> list[object]:
    """The alleles whose (AC, AN) differ from the table's (more than 1000 expected)."""
    assert len(expected) > 1000
    return [
        (k, v, ours.get((group, k), (None, None))[:2]) for k, v in expected.items() if ours.get((group, k), ())[:2] != v
    ]


def expected_gcount(path: Path, filltags: Path) -> dict[Key, tuple[int, ...]]:
    """plink2 genotype classes of biallelic sites (plink2's table has no POS: zip with bcftools' rows)."""
    out = {}
    for g, b in zip(read_table(path), read_table(filltags), strict=True):
        # plink2 renames chrX pseudo-autosomal rows PAR1/PAR2 (--split-par b37)
        assert (g["REF"], g["ALT"]) == (b["REF"], b["ALT"])
        assert g["#CHROM"] == b["CHROM"] or (g["#CHROM"] in ("PAR1", "PAR2") and b["CHROM"] == "X")
        if "," in b["ALT"]:
            continue
        out[key(b["CHROM"], b["POS"], b["REF"], b["ALT"])] = tuple(int(g[c]) for c in GCOUNT_COLUMNS)
    return out


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


def expected_split(gcount: Path, filltags: Path, group: str = "") -> dict[Key, Classes]:
    """Per split ALT of every multi-allelic site (plink2's table has no POS: zip with bcftools' rows, whose
    AC/AN, of ``group`` when given, also restore the half-calls plink2 dropped)."""
    sfx = f"_{group}" if group else ""
    out: dict[Key, Classes] = {}
    for g, b in zip(read_table(gcount), read_table(filltags), strict=True):
        assert (g["REF"], g["ALT"]) == (b["REF"], b["ALT"])
        if "," not in b["ALT"]:
            continue
        ac = [int(x) for x in b[f"AC{sfx}"].split(",")]
        classes = _half_calls_plink2_dropped(per_alt_classes(g), ac, int(b[f"AN{sfx}"]))
        for alt, c in zip(b["ALT"].split(","), classes, strict=True):
            out[key(b["CHROM"], b["POS"], b["REF"], alt)] = c  # as the store spells it (minimal)
    return out
