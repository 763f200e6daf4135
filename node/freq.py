"""Exact allele and genotype counts for the node operator's own offline checks.

This is the operator's view of their own data on their own machine (``genogate-node freq``): it never
runs over the network and adds no noise. Output rows follow bcftools ``+fill-tags`` (AC, AN; a half-call
counts as one allele) and plink2 ``--geno-counts`` (genotype classes).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Literal

import numpy as np
import numpy.typing as npt

from genogate.errors import UsageError
from genogate.genome import BuildError, canonical_contig, contig_list
from genogate.query import Everyone, Filter, Region
from node.backend import GenotypeBackend
from node.cohort import Cohorts
from node.store import VariantRows

COLUMNS = (
    "CHROM",
    "POS",
    "REF",
    "ALT",
    "AC",
    "AN",
    "HOM_REF",
    "HET",
    "HOM_ALT",
    "HEMI_REF",
    "HEMI_ALT",
    "NO_CALL",
)
GroupBy = Literal["sex", "ancestry", "phenotype"]
EVERYONE = Everyone()
_CHUNK = 16384  # variants counted at a time


@dataclass(frozen=True)
class Group:
    name: str | None
    mask: npt.NDArray[np.bool_]


def store_region(backend: GenotypeBackend, region: Region) -> Region:
    """``region`` on the store's canonical contig name (``chr22`` on a store of ``22``); a ``UsageError``
    when the store holds no variant on that contig, or the region lies wholly outside its covered regions."""
    try:
        chrom = canonical_contig(region.chrom, backend.build)
    except BuildError as exc:
        raise UsageError(f"--region {region}: {exc}") from None
    contigs = backend.contigs()
    if chrom not in contigs:
        raise UsageError(
            f"--region {region}: the store holds no variant on contig {chrom!r}; its contigs are "
            f"{contig_list(contigs) or 'none (it holds no variants)'}"
        )
    region = Region(chrom, region.start, region.end)
    covered = backend.covered_regions()
    if covered is not None and not any(
        c.chrom == chrom and c.start <= region.end and region.start <= c.end for c in covered
    ):
        raise UsageError(f"--region {region}: outside the store's covered regions (its data says nothing there)")
    return region


def allele_counts(classes: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(AC, AN) from class counts (columns HOM_REF, HET, HOM_ALT, HEMI_REF, HEMI_ALT, NO_CALL)."""
    hom_ref, het, hom_alt, hemi_ref, hemi_alt = (classes[:, i] for i in range(5))
    return het + 2 * hom_alt + hemi_alt, 2 * (hom_ref + het + hom_alt) + hemi_ref + hemi_alt


def groups(backend: GenotypeBackend, where: Filter, by: GroupBy | None, this_year: int | None = None) -> list[Group]:
    """The cohort (``where``) split by a sample attribute; one unnamed group without ``by``. A term outside
    the store's vocabulary is refused (``InvalidArgument``, UNKNOWN_TERM), as a serving node refuses it.
    Groups are sorted by name: sexes; ancestries as the sheet spelled them (``unknown`` for none); the
    phenotype terms cohort members are annotated with (each group: those annotated with that very term)."""
    cohorts = Cohorts(backend)
    cohorts.terms.check(where)
    cohort = cohorts.mask(where, this_year or _dt.date.today().year)
    if by is None:
        return [Group(None, cohort)]
    people = backend.participants()
    if by == "phenotype":
        annotated: dict[str, list[int]] = {}
        for sid in cohort.nonzero()[0].tolist():
            for term in set(people.phenotypes[sid]):
                annotated.setdefault(term, []).append(sid)
        return [Group(t, _mask(len(cohort), annotated[t])) for t in sorted(annotated)]
    values = people.sex if by == "sex" else tuple("unknown" if a is None else a for a in people.ancestry)
    column = np.array(values, dtype=object)
    return [Group(str(v), cohort & (column == v)) for v in sorted(set(column[cohort].tolist()))]


def _mask(n: int, members: list[int]) -> npt.NDArray[np.bool_]:
    out = np.zeros(n, dtype=bool)
    out[members] = True
    return out


def iter_all_counts(
    backend: GenotypeBackend, mask: npt.NDArray[np.bool_], region: Region | None = None
) -> Iterator[tuple[VariantRows, npt.NDArray[np.int64]]]:
    """(variants, class counts) for every variant (or a region), a chunk at a time, bounded memory."""
    rows = backend.variants(region)
    for start in range(0, len(rows), _CHUNK):
        part = VariantRows(*(a[start : start + _CHUNK] for a in (rows.vid, rows.chrom, rows.pos, rows.ref, rows.alt)))
        yield part, backend.class_counts(part.vid, mask)


def rows(
    backend: GenotypeBackend, where: Filter = EVERYONE, by: GroupBy | None = None, region: Region | None = None
) -> Iterator[tuple[object, ...]]:
    """One tuple per (group, ALT allele): [GROUP,] CHROM POS REF ALT AC AN and the six classes."""
    for group in groups(backend, where, by):
        for variants, classes in iter_all_counts(backend, group.mask, region):
            ac, an = allele_counts(classes)
            for i in range(len(variants)):
                row = (
                    str(variants.chrom[i]),
                    int(variants.pos[i]),
                    str(variants.ref[i]),
                    str(variants.alt[i]),
                    int(ac[i]),
                    int(an[i]),
                    *(int(c) for c in classes[i]),
                )
                yield ((group.name, *row) if by else row)


def write(
    out: IO[str],
    backend: GenotypeBackend,
    where: Filter,
    by: GroupBy | None,
    region: Region | None,
    fmt: Literal["tsv", "json"],
) -> int:
    """Write the counts as TSV (header first) or a JSON array of objects; returns the number of rows."""
    header = (("GROUP",) if by else ()) + COLUMNS
    n = 0
    if fmt == "tsv":
        out.write("\t".join(header) + "\n")
        for row in rows(backend, where, by, region):
            out.write("\t".join(map(str, row)) + "\n")
            n += 1
        return n
    out.write("[")
    for row in rows(backend, where, by, region):
        out.write(("," if n else "") + "\n" + json.dumps(dict(zip(header, row, strict=True))))
        n += 1
    out.write("\n]\n")
    return n
