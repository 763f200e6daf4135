"""Synthetic cohorts: the participants, the variant records and a ``SiteCalls`` stream, all from one seed (the
sample sheet, truth and BGZF VCF files are written from them by ``node.ingest.synth_files``).

The generator is four modules: ``node.ingest.synth_spec`` (``SynthSpec``, the genome, the participants
``cohort`` draws, ``Part``), ``node.ingest.synth_sites`` (each chromosome's sites and frequencies, the
``planted`` variants), ``node.ingest.synth_sample`` (the genotypes: ``SiteRecord``s from ``site_records``) and
this one, the ``GenotypeSource`` ingest reads (``SynthSource``: the records as ``SiteCalls``, per ALT).

For demos, tests and benchmarks at biobank scale without real participants. The cohort has unequal ancestry
groups with Balding-Nichols allele frequencies, a rare-dominated site-frequency spectrum, chrX haploid males
outside the PARs, ~0.5% missing calls, ~1% tri-allelic records, and a case phenotype with a few *planted*
associated variants (``planted``/``truth.json`` name them) so a case/control demo has something to find.

The three drawing modules (``synth_spec``, ``synth_sites``, ``synth_sample``) are the ONE place in the
product allowed a PRNG (numpy's seeded ``Generator``; tests/unit/test_dp.py and the ruff per-file ignores
name exactly them): they make *data*, reproducibly from ``SynthSpec.seed``; they never draw privacy noise,
which comes from OpenDP only. This module draws nothing.

How genotypes are drawn (per block of variants, so cost follows the calls, not samples x variants):

* each record's per-sample GT is a *code* (``GT_CODES``); a record lists only samples whose code differs from the
  layout's baseline (``0/0``, or ``0`` for males on non-PAR chrX). The VCF text and the ``SiteCalls`` are
  both derived from that one list, so they agree exactly;
* rare variants: carriers are positions of a Bernoulli process drawn by geometric skips at the largest
  per-stratum carrier probability and thinned to each sample's stratum (ancestry x case x ploidy), which is
  exact Hardy-Weinberg sampling without touching non-carriers; missing calls are one Bernoulli process over
  the block's samples x variants; common variants (carrier probability > ``_DENSE_P``) draw densely;
* every record carries at least one ALT allele (a site seen in the cohort, as in a joint-called VCF): a draw
  with none gets one random carrier.

Output is a pure function of the spec for a given version of these modules and of numpy (its Generator
streams, and float maths such as ``log``/``exp`` that may differ in the last bit between CPUs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from node.ingest.synth_sample import SiteRecord, class_table, site_records
from node.ingest.synth_spec import BUILD, U8, WHOLE, Cohort, Part, SynthSpec, check_part, cohort
from node.records import SiteCalls

# ------------------------------------------------------------------------------------ SiteCalls source


def _classes(rec: SiteRecord, k: int) -> tuple[npt.NDArray[np.int32], U8]:
    """Non-hom-ref calls of ALT ``k`` (0-based): haploid baselines are listed too, as HEMI_REF."""
    table = class_table()[k]
    if rec.layout.haploid:
        full = rec.layout.base.copy()
        full[rec.cols] = rec.codes
        cls = table[full]
        sids = np.flatnonzero(cls != 0).astype(np.int32)
        return sids, cls[sids]
    cls = table[rec.codes]
    if len(rec.alts) == 1:  # biallelic diploid: every listed code is a non-hom-ref class
        return rec.cols, cls
    keep = cls != 0
    return rec.cols[keep], cls[keep]


class SynthSource:
    """A ``GenotypeSource`` over a synthetic cohort: the exact calls ``synth_files.write_vcf`` writes, split
    per ALT."""

    def __init__(self, spec: SynthSpec, part: Part = WHOLE) -> None:
        self._spec = spec
        self._cohort = cohort(spec)
        self._part = check_part(part)
        self._sites_done = 0

    @property
    def size(self) -> int:
        """Progress units of the whole source: its variant sites."""
        return self._spec.variants

    def position(self) -> int:
        """Variant sites generated so far (ingest's progress)."""
        return self._sites_done

    @property
    def samples(self) -> Sequence[str]:
        first, step = self._part
        return self._cohort.ids[first::step]

    @property
    def name(self) -> str:
        first, step = self._part
        return f"synthetic(seed={self._spec.seed})" + (f" part {first + 1}/{step}" if step > 1 else "")

    @property
    def spec(self) -> SynthSpec:
        return self._spec

    @property
    def header_build(self) -> str:
        """The build the cohort's positions are on (what a VCF header would state)."""
        return BUILD

    @property
    def cohort(self) -> Cohort:
        return self._cohort

    def records(self) -> Iterator[SiteCalls]:
        """One ``SiteCalls`` per ALT allele, sorted by chromosome (spec order) and position."""
        first, step = self._part
        self._sites_done = 0
        for rec in site_records(self._spec, self._cohort):
            self._sites_done += 1
            origin = f"synthetic:{rec.chrom}:{rec.pos}"
            for k, alt in enumerate(rec.alts):
                sids, cls = _classes(rec, k)
                if step > 1:  # this institution's participants, renumbered in its own column order
                    mine = sids % step == first
                    sids, cls = (sids[mine] // step).astype(np.int32), cls[mine]
                yield SiteCalls(rec.chrom, rec.pos, rec.ref, alt, sids, cls, origin)
