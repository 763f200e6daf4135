"""Shared fixtures: paths to the real 1000 Genomes data beside the checkout, and store builders."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
SUBSET = DATA / "1kg_subset_1126"
CHRMT = DATA / "1kg_chrMT_2534"
REFERENCE = DATA / "reference"
# The subset's case/control status as phenotype terms: cases have seizures (HPO), controls had a general
# medical examination (ICD-10 Z00.0); neither term is under the other.
CASE_TERM = "HP:0001250"
CONTROL_TERM = "ICD10:Z00.0"


def require_shared() -> None:
    """Real-data tests need ../shared/data; CI always has it, so there a missing copy is a failure."""
    if not DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{DATA} is missing (CI must have ../shared beside the checkout)")
        pytest.skip(f"{DATA} not present beside the checkout")


def write_subset_sheet(path: Path) -> Path:
    """The 1126-sample sheet: sex, super-population as ancestry, case/control status as phenotype."""
    with open(SUBSET / "1KG_phase3_subset_annot.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    with open(path, "w") as out:
        out.write("sample_id\tsex\tancestry\tphenotypes\tconsent\n")
        for r in rows:
            status = CASE_TERM if r["status"] == "1" else CONTROL_TERM
            out.write(f"{r['sample.id']}\t{r['sex']}\t{r['super_pop']}\t{status}\tGRU\n")
    return path


def write_chrmt_sheet(path: Path) -> Path:
    import cyvcf2

    samples = cyvcf2.VCF(str(next(CHRMT.glob("*.vcf.gz")))).samples
    with open(path, "w") as out:
        out.write("sample_id\tconsent\n")
        for s in samples:
            out.write(f"{s}\tGRU\n")
    return path


@pytest.fixture(scope="session")
def subset_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1126-sample subset (BGZF, all chromosomes) ingested once per session."""
    require_shared()
    from node.ingest import ingest

    d = tmp_path_factory.mktemp("subset")
    store = d / "subset.duckdb"
    ingest(store, [SUBSET / "1KG_phase3_subset_allchr.vcf.gz"], write_subset_sheet(d / "sheet.tsv"))
    return store


@pytest.fixture(scope="session")
def chrmt_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_shared()
    from node.ingest import ingest

    d = tmp_path_factory.mktemp("chrmt")
    store = d / "chrmt.duckdb"
    ingest(store, [next(CHRMT.glob("*.vcf.gz"))], write_chrmt_sheet(d / "sheet.tsv"))
    return store
