"""One spelling per variant on real 1000 Genomes data: every respelling of a file gives the same store.

The files are GRCh37 (``##reference`` hs37d5, ``##contig`` lengths and ``assembly=b37``) with contigs spelled
``1``..``22``, ``X``, ``MT``. Copies rewritten here with ``chr`` prefixes, lower-case alleles or RefSeq
accessions load to identical variants and counts. Left-alignment (``--reference``) equals
``bcftools norm -m- -f`` on a FASTA made of the records' REF alleles (N elsewhere).
"""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from genogate.errors import IngestError
from genogate.genome import REFSEQ, canonical_contig
from node import freq
from node.duckdb_backend import DuckDBBackend
from node.ingest import ingest
from node.store import Store
from tests.conftest import CHRMT, SUBSET, require_shared, write_chrmt_sheet, write_subset_sheet

CHR22 = SUBSET / "1KG_phase3_subset_chr22.vcf.gz"
CHRMT_VCF = CHRMT / "ALL.chrMT.phase3_callmom-v0_4.20130502.genotypes.vcf.gz"
CEU_NCBI36 = SUBSET.parents[1] / "holdout" / "ceu_exon_90" / "CEU_Exon.vcf.gz"


def _rows(store_path: Path) -> list[tuple[object, ...]]:
    backend = DuckDBBackend.open(store_path, point_reads=False)
    try:
        return list(freq.rows(backend))
    finally:
        backend.close()


def _rewrite(src: Path, dst: Path, edit: Callable[[list[str]], list[str]], header: Callable[[str], str]) -> Path:
    """A plain-text copy of ``src`` with each data line's fields and each header line edited."""
    with gzip.open(src, "rt") as fh, open(dst, "w") as out:
        for line in fh:
            if line.startswith("#"):
                out.write(header(line))
            else:
                fields = line.rstrip("\n").split("\t")
                out.write("\t".join(edit(fields)) + "\n")
    return dst


def _variants(store_path: Path) -> list[tuple[str, int, str, str]]:
    store = Store.open(store_path)
    try:
        v = store.variants()
        return [(str(v.chrom[i]), int(v.pos[i]), str(v.ref[i]), str(v.alt[i])) for i in range(len(v))]
    finally:
        store.close()


def test_allchr_store_has_canonical_contigs_and_the_inferred_build(subset_store: Path) -> None:
    store = Store.open(subset_store)
    try:
        assert store.build == "GRCh37"  # from the header: no --build was given
        assert store.contigs() == [*(str(i) for i in range(1, 23)), "X"]
        assert store.covered_regions() is None
        v = store.variants()
        assert all(str(r) == str(r).upper() for r in v.ref)
    finally:
        store.close()


@pytest.fixture(scope="module")
def chr22_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    require_shared()
    d = tmp_path_factory.mktemp("chr22")
    sheet = write_subset_sheet(d / "sheet.tsv")
    ingest(d / "plain.duckdb", [CHR22], sheet)
    return d / "plain.duckdb", sheet


def _chr_prefix(fields: list[str]) -> list[str]:
    return ["chr" + fields[0], *fields[1:]]


def _lower(fields: list[str]) -> list[str]:
    alts = ",".join(a if a.startswith("<") else a.lower() for a in fields[4].split(","))
    return [*fields[:3], fields[3].lower(), alts, *fields[5:]]


def _refseq(fields: list[str]) -> list[str]:
    return [REFSEQ["GRCh37"][fields[0]], *fields[1:]]


def _contig_header(rename: Callable[[str], str]) -> Callable[[str], str]:
    def edit(line: str) -> str:
        if line.startswith("##contig=<ID="):
            name = line[len("##contig=<ID=") :].split(",", 1)[0]
            return line.replace(f"<ID={name},", f"<ID={rename(name)},", 1)
        return line

    return edit


@pytest.mark.parametrize(
    ("edit", "header"),
    [
        (_chr_prefix, _contig_header(lambda n: "chr" + n)),
        (_lower, lambda line: line),
        (_refseq, _contig_header(lambda n: REFSEQ["GRCh37"].get(n, n))),
        (lambda f: _lower(_chr_prefix(f)), _contig_header(lambda n: "Chr" + n)),
    ],
    ids=["chr-prefix", "lower-case-alleles", "refseq-accessions", "Chr-and-lower-case"],
)
def test_respelled_copies_give_identical_variants_and_counts(
    tmp_path: Path,
    chr22_store: tuple[Path, Path],
    edit: Callable[[list[str]], list[str]],
    header: Callable[[str], str],
) -> None:
    plain, sheet = chr22_store
    copy = _rewrite(CHR22, tmp_path / "respelled.vcf", edit, header)
    ingest(tmp_path / "respelled.duckdb", [copy], sheet)
    ours = _rows(tmp_path / "respelled.duckdb")
    assert len(ours) > 1000
    assert ours == _rows(plain)


def test_a_refseq_accession_of_the_other_build_is_refused(tmp_path: Path, chr22_store: tuple[Path, Path]) -> None:
    _, sheet = chr22_store
    copy = _rewrite(CHR22, tmp_path / "grch38_acc.vcf", lambda f: [REFSEQ["GRCh38"]["22"], *f[1:]], lambda h: h)
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "s.duckdb", [copy], sheet)
    assert err.value.where.startswith(f"{copy}:")
    assert "NC_000022.11 is a GRCh38 accession, not GRCh37" in err.value.why
    assert not (tmp_path / "s.duckdb").exists()


def test_split_multiallelic_alleles_are_stored_minimal(chrmt_store: Path) -> None:
    """chrMT has records such as 42 TCC>CCC,T and 64 CT>TT,AT,TC: each split ALT is trimmed on its own."""
    variants = set(_variants(chrmt_store))
    assert ("MT", 42, "T", "C") in variants  # TCC>CCC
    assert ("MT", 42, "TCC", "T") in variants  # already minimal
    assert ("MT", 64, "C", "T") in variants and ("MT", 64, "C", "A") in variants  # CT>TT, CT>AT
    assert ("MT", 64, "CT", "TC") in variants  # an MNP stays whole
    assert ("MT", 55, "TA", "T") in variants  # TATTTT>TTTTT: the common suffix TTTT dropped
    assert not any(len(r) > 1 and len(a) > 1 and r[-1] == a[-1] for _, _, r, a in variants)


def _fasta_of_refs(vcf: Path, out: Path) -> Path:
    """A FASTA holding each record's REF at its position and N elsewhere (what the records tell of the genome)."""
    seqs: dict[str, dict[int, str]] = {}
    with gzip.open(vcf, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            chrom, pos, _id, ref = line.split("\t", 4)[:4]
            seq = seqs.setdefault(chrom, {})
            for i, base in enumerate(ref.upper()):
                assert seq.setdefault(int(pos) - 1 + i, base) == base
    with open(out, "w") as fh:
        for chrom, seq in seqs.items():
            buf = bytearray(b"N" * (max(seq) + 100))
            for i, base in seq.items():
                buf[i] = ord(base)
            fh.write(f">{chrom}\n")
            fh.writelines(buf[i : i + 60].decode() + "\n" for i in range(0, len(buf), 60))
    return out


def _bcftools_norm(vcf: Path, fasta: Path) -> list[tuple[str, int, str, str]]:
    norm = subprocess.run(
        ["bcftools", "norm", "-m-", "-f", str(fasta), str(vcf)], capture_output=True, text=True, check=True
    ).stdout
    return sorted(
        (canonical_contig(f[0]), int(f[1]), f[3].upper(), f[4])
        for f in (line.split("\t") for line in norm.splitlines() if not line.startswith("#"))
    )


def test_reference_left_alignment_equals_bcftools_norm(tmp_path: Path) -> None:
    require_shared()
    fasta = _fasta_of_refs(CHR22, tmp_path / "ref.fa")
    expected = _bcftools_norm(CHR22, fasta)
    summary = ingest(tmp_path / "s.duckdb", [CHR22], write_subset_sheet(tmp_path / "sheet.tsv"), reference=fasta)
    assert sorted(_variants(tmp_path / "s.duckdb")) == expected
    assert summary.normalised > 0


def test_records_that_left_align_to_one_variant_are_refused_naming_both(tmp_path: Path) -> None:
    """chrMT line 142 (313 CCC>C,CC) and line 143 (314 CC>C) both hold the deletion of one C from a run of
    C's, which left-aligns to 310 TC>T; bcftools norm writes it twice. The store refuses instead of keeping
    two rows for one variant."""
    require_shared()
    fasta = _fasta_of_refs(CHRMT_VCF, tmp_path / "ref.fa")
    theirs = _bcftools_norm(CHRMT_VCF, fasta)
    assert [v for v in set(theirs) if theirs.count(v) > 1] == [("MT", 310, "TC", "T")]
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "s.duckdb", [CHRMT_VCF], write_chrmt_sheet(tmp_path / "sheet.tsv"), reference=fasta)
    assert err.value.where == f"{CHRMT_VCF}:143"
    assert err.value.why == f"variant MT-310-TC-T appears twice (also at {CHRMT_VCF}:142)"
    assert not (tmp_path / "s.duckdb").exists()


def test_ncbi36_file_is_refused(tmp_path: Path) -> None:
    require_shared()
    sheet = tmp_path / "sheet.tsv"
    import cyvcf2

    sheet.write_text("sample_id\n" + "".join(f"{s}\n" for s in cyvcf2.VCF(str(CEU_NCBI36)).samples))
    for build in (None, "GRCh37"):
        with pytest.raises(IngestError) as err:
            ingest(tmp_path / "s.duckdb", [CEU_NCBI36], sheet, build=build)
        assert err.value.where == str(CEU_NCBI36)
        assert "NCBI36" in err.value.why and "lift" in err.value.why
    assert not (tmp_path / "s.duckdb").exists()


def test_a_second_file_of_another_build_is_refused(tmp_path: Path, chr22_store: tuple[Path, Path]) -> None:
    """The store is GRCh37 (from chr22's header); chr21 with its header edited to GRCh38 is refused."""
    plain, sheet = chr22_store
    store = tmp_path / "s.duckdb"
    ingest(store, [CHR22], sheet)

    def header(line: str) -> str:  # a GRCh38 reference, and no GRCh37 contig lengths
        if line.startswith("##reference="):
            return "##reference=GRCh38\n"
        return "" if line.startswith("##contig=") else line

    grch38 = _rewrite(SUBSET / "1KG_phase3_subset_chr21.vcf.gz", tmp_path / "chr21_grch38.vcf", lambda f: f, header)
    before = store.read_bytes()
    with pytest.raises(IngestError) as err:
        ingest(store, [grch38], sheet)
    assert err.value.where == str(grch38)
    assert "holds GRCh37 data and this is GRCh38" in err.value.why
    assert store.read_bytes() == before
