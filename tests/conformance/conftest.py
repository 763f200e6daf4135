"""Every storage backend, built from the same store files: the suite in ``test_backend.py`` runs once per
backend (``[store] backend`` = ``duckdb`` and ``memory``). A new backend joins by adding its kind to
``KINDS`` (and ``node.backend.open_backend``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.backend import BackendKind, GenotypeBackend, open_backend
from node.ingest import default_key_path, ingest, pseudonym
from node.store import Store

KINDS: tuple[BackendKind, ...] = ("duckdb", "memory")
MEMORY_MB = 1 << 14  # the in-memory copy of any test store fits

# Ten participants with every attribute and consent the query path distinguishes.
TINY_SHEET = """sample_id\tsex\tbirth_year\tancestry\tphenotypes\tconsent
P0\tF\t1950\tEUR\tHP:0001250\tGRU
P1\tM\t1960\tEUR\tHP:0001250\tHMB
P2\tF\t1970\tAFR\t\tGRU
P3\tM\t1980\tAFR\t\tGRU;NPU
P4\tF\t1990\tEAS\tHP:0001250\tGRU
P5\tM\t2000\tEAS\t\tHMB
P6\tF\t1955\tSAS\tICD10:Z00.0\tGRU
P7\tM\t\t\tHP:0001250\tGRU
P8\tF\t1975\tEUR\tHP:0001250\tWITHDRAWN
P9\tM\t1985\tAFR\tHP:0001250\tDS-C61
"""
# 1:100 biallelic; 1:200 multi-allelic (split into T and G); X:5000 diploid females, haploid males, a no-call;
# Y:3000 haploid males, missing for females. With ten participants every class is stored as a bitset.
TINY_VCF = """##fileformat=VCFv4.2
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##contig=<ID=1>
##contig=<ID=X>
##contig=<ID=Y>
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tP0\tP1\tP2\tP3\tP4\tP5\tP6\tP7\tP8\tP9
1\t100\t.\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t0/0\t0/0\t0/0\t0/0\t0/0\t1/1\t0/1
1\t200\t.\tC\tT,G\t.\t.\t.\tGT\t0/2\t0/0\t1/2\t0/0\t./.\t0/0\t0/1\t0/0\t0/0\t0/0
X\t5000\t.\tG\tA\t.\t.\t.\tGT\t0/1\t1\t0/0\t0\t1/1\t.\t0/0\t1\t0/0\t1
Y\t3000\t.\tC\tT\t.\t.\t.\tGT\t.\t1\t.\t0\t.\t1\t.\t0\t.\t.
"""


@pytest.fixture(scope="session", params=KINDS)
def kind(request: pytest.FixtureRequest) -> BackendKind:
    kind: BackendKind = request.param
    return kind


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    (d / "c.vcf").write_text(TINY_VCF)
    (d / "s.tsv").write_text(TINY_SHEET)
    ingest(d / "tiny.duckdb", [d / "c.vcf"], d / "s.tsv", build="GRCh37")
    return d / "tiny.duckdb"


@pytest.fixture(scope="session")
def tiny_sid(tiny_store: Path) -> dict[str, int]:
    """The tiny store's sample id of each participant of the sheet (sids follow pseudonym order)."""
    key = bytes.fromhex(default_key_path(tiny_store).read_text().strip())
    store = Store.open(tiny_store)
    try:
        sid_of = dict(store.con.execute("SELECT pseudonym, sid FROM samples").fetchall())
    finally:
        store.close()
    return {f"P{i}": int(sid_of[pseudonym(key, f"P{i}")]) for i in range(10)}


def _backend(path: Path, kind: BackendKind) -> Iterator[GenotypeBackend]:
    backend = open_backend(path, kind, MEMORY_MB)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="session")
def tiny(tiny_store: Path, kind: BackendKind) -> Iterator[GenotypeBackend]:
    """The hand-made ten-participant store, through each backend."""
    yield from _backend(tiny_store, kind)


@pytest.fixture(scope="session")
def subset(subset_store: Path, kind: BackendKind) -> Iterator[GenotypeBackend]:
    """The 1000 Genomes subset (1126 x 25,709, ``../shared/data``; skipped without it), through each backend."""
    yield from _backend(subset_store, kind)


@pytest.fixture(scope="session")
def chrmt(chrmt_store: Path, kind: BackendKind) -> Iterator[GenotypeBackend]:
    """The 1000 Genomes chrMT (2534 haploid samples), through each backend."""
    yield from _backend(chrmt_store, kind)
