"""The real data the attacks use: the 1126-sample 1000 Genomes subset in ``../shared/data/``, split into the
members a node holds and the non-members it does not.

The split and the synthetic birth years (the subset has no ages) come from a seeded ``numpy`` generator: they
make the *experiment*, never noise. Genotypes for the attacker's side (targets and a reference panel) are read
with cyvcf2 from the same file; only autosomal biallelic SNPs are used as attack variants.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from genogate.query import Variant
from node.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SUBSET = DATA / "1kg_subset_1126"
VCF = SUBSET / "1KG_phase3_subset_allchr.vcf.gz"
ANNOT = SUBSET / "1KG_phase3_subset_annot.tsv"
CASE_TERM, CONTROL_TERM = "HP:0001250", "ICD10:Z00.0"  # the subset's status, as tests/conftest.py spells it
BIRTH_YEARS = (1940, 2005)  # inclusive; synthetic (the subset has no ages)


@dataclass(frozen=True)
class Cohort:
    """Every sample of the subset with its attributes, which of them the node holds, and their genotypes."""

    samples: list[str]
    sex: list[str]
    population: list[str]
    status: list[str]
    birth_year: npt.NDArray[np.int64]
    member: npt.NDArray[np.bool_]  # held by the node
    variants: list[Variant]  # autosomal biallelic SNPs
    dosage: npt.NDArray[np.int8]  # variants x samples: ALT alleles 0, 1, 2, or -1 for a missing call

    @property
    def members(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.member)

    @property
    def non_members(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(~self.member)

    def age(self, i: int) -> int:
        """The age a node computes today (this year minus the birth year)."""
        return dt.datetime.now(tz=dt.UTC).year - int(self.birth_year[i])


def available() -> bool:
    return VCF.is_file() and ANNOT.is_file()


def load(seed: int) -> Cohort:
    """Read the subset; half the samples (seeded) are members."""
    import cyvcf2

    with open(ANNOT) as fh:
        rows = {r["sample.id"]: r for r in csv.DictReader(fh, delimiter="\t")}
    vcf = cyvcf2.VCF(str(VCF))
    samples = list(vcf.samples)
    rng = np.random.default_rng(seed)
    member = np.zeros(len(samples), dtype=bool)
    member[rng.permutation(len(samples))[: len(samples) // 2]] = True
    birth = rng.integers(BIRTH_YEARS[0], BIRTH_YEARS[1] + 1, size=len(samples)).astype(np.int64)
    variants: list[Variant] = []
    dosage: list[npt.NDArray[np.int8]] = []
    code = np.array([0, 1, -1, 2], dtype=np.int8)  # cyvcf2 gt_types: HOM_REF, HET, UNKNOWN, HOM_ALT
    for rec in vcf:
        if rec.CHROM in ("X", "Y", "MT") or len(rec.ALT) != 1 or len(rec.REF) != 1 or len(rec.ALT[0]) != 1:
            continue
        if rec.ALT[0] not in "ACGT":
            continue
        variants.append(Variant(rec.CHROM, int(rec.POS), rec.REF, rec.ALT[0]))
        dosage.append(code[rec.gt_types])
    vcf.close()
    return Cohort(
        samples=samples,
        sex=[rows[s]["sex"] for s in samples],
        population=[rows[s]["Population"] for s in samples],
        status=[rows[s]["status"] for s in samples],
        birth_year=birth,
        member=member,
        variants=variants,
        dosage=np.stack(dosage),
    )


def member_store(cohort: Cohort, work: Path) -> Path:
    """Ingest the members (their columns of the VCF, their sheet: sex, synthetic birth year, population as
    ancestry, case/control status as phenotype, consent GRU) into a store; returns its path."""
    import cyvcf2

    work.mkdir(parents=True, exist_ok=True)
    keep = [cohort.samples[i] for i in cohort.members]
    vcf_out = work / "members.vcf.gz"
    src = cyvcf2.VCF(str(VCF), samples=keep)
    writer = cyvcf2.Writer(str(vcf_out), src)
    for rec in src:
        writer.write_record(rec)
    writer.close()
    src.close()
    sheet = work / "members.tsv"
    with open(sheet, "w") as out:
        out.write("sample_id\tsex\tbirth_year\tancestry\tphenotypes\tconsent\n")
        for i in cohort.members:
            term = CASE_TERM if cohort.status[i] == "1" else CONTROL_TERM
            out.write(
                f"{cohort.samples[i]}\t{cohort.sex[i]}\t{cohort.birth_year[i]}\t{cohort.population[i]}\t{term}\tGRU\n"
            )
    store = work / "members.duckdb"
    store.unlink(missing_ok=True)
    ingest(store, [vcf_out], sheet)
    return store
