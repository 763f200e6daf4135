"""The record stream every genotype source produces and ingest consumes.

A source (a VCF/BCF file read with cyvcf2, or the synthetic cohort generator writing straight into a
store) yields one ``SiteCalls`` per ALT allele: multi-allelic sites are already split. Only the calls that
are not diploid homozygous-reference are listed (``sids``/``cls``), so rare variants cost what they carry.

Genotype classes (per sample, per ALT allele after splitting; other ALT alleles count as reference, as
``bcftools norm -m-`` does):

====  ==========  ==========================================================================
code  name        meaning
====  ==========  ==========================================================================
0     HOM_REF     diploid, no copy of this ALT (implicit: never listed)
1     HET         diploid, one copy
2     HOM_ALT     diploid, two copies
3     HEMI_REF    haploid call (chrMT, male chrX) or half-call (``0/.``) without this ALT
4     HEMI_ALT    haploid call or half-call carrying this ALT
5     NO_CALL     missing (``./.``, ``.``)
====  ==========  ==========================================================================

AC = HET + 2*HOM_ALT + HEMI_ALT and AN = 2*(HOM_REF + HET + HOM_ALT) + HEMI_REF + HEMI_ALT, which is what
``bcftools +fill-tags`` reports (a half-call contributes one allele) and what plink2 ``--geno-counts``
reports with ``--vcf-half-call haploid``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

HOM_REF, HET, HOM_ALT, HEMI_REF, HEMI_ALT, NO_CALL = range(6)
N_CLASSES = 6
CLASS_NAMES = ("HOM_REF", "HET", "HOM_ALT", "HEMI_REF", "HEMI_ALT", "NO_CALL")


@dataclass(frozen=True, slots=True)
class SiteCalls:
    """The non-hom-ref calls of one ALT allele.

    ``sids`` are column indices into the source's ``samples`` (int32); ``cls`` the class codes 1..5
    (uint8), same length. ``origin`` names where the record came from (``file:line``) for errors.
    """

    chrom: str
    pos: int
    ref: str
    alt: str
    sids: npt.NDArray[np.int32]
    cls: npt.NDArray[np.uint8]
    origin: str


class GenotypeSource(Protocol):
    """Anything ingest can load: sample ids in column order, and the calls of each ALT allele."""

    @property
    def samples(self) -> Sequence[str]: ...

    @property
    def name(self) -> str: ...

    def records(self) -> Iterator[SiteCalls]: ...
