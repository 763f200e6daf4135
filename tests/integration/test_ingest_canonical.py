"""Canonical identity at ingest on small VCFs: alleles, symbolic and breakend ALTs, the build, covered regions,
``freq`` regions, and version-1 stores. The real ``genogate-node`` runs as a subprocess where the exit code
and message are the point; elsewhere ``node.ingest.ingest`` is called directly.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest

from genogate.errors import IngestError, StoreError
from genogate.genome import LENGTHS
from genogate.query import Region
from node.ingest import ingest
from node.ingest.normalise import SKIP_BREAKEND, SKIP_CONTIG, SKIP_NON_REF
from node.store import Store
from tests.integration.conftest import SAMPLES, run_node, sheet_text, vcf_text

GT = ["0/1", "1/1", "0/0", "./."]  # one per sample of SAMPLES
assert len(GT) == len(SAMPLES)


def rec(chrom: str, pos: int, ref: str, alt: str, gts: list[str] = GT) -> list[str]:
    return [chrom, str(pos), ".", ref, alt, ".", "PASS", ".", "GT", *gts]


@pytest.fixture
def sheet(tmp_path: Path) -> Path:
    p = tmp_path / "sheet.tsv"
    p.write_text(sheet_text())
    return p


def write(path: Path, records: list[list[str]], **kw: object) -> Path:
    path.write_text(vcf_text(records, **kw))  # type: ignore[arg-type]
    return path


def variants(store_path: Path) -> list[tuple[str, int, str, str]]:
    store = Store.open(store_path)
    try:
        v = store.variants()
        return [(str(v.chrom[i]), int(v.pos[i]), str(v.ref[i]), str(v.alt[i])) for i in range(len(v))]
    finally:
        store.close()


def line_of(path: Path, record: int) -> str:
    lines = path.read_text().splitlines()
    header = sum(1 for line in lines if line.startswith("#"))
    return f"{path}:{header + record + 1}"


# Alleles -------------------------------------------------------------------------------------------------


def test_alleles_are_upper_cased_trimmed_and_symbolic_ones_kept(tmp_path: Path, sheet: Path) -> None:
    vcf = write(
        tmp_path / "a.vcf",
        [
            rec("chr1", 100, "a", "g"),
            rec("chr1", 200, "GCA", "GA,GCT", ["0/1", "1/2", "0/0", "2/2"]),  # split: GC>G at 200, A>T at 202
            rec("1", 300, "AC", "AT"),  # 301 C>T
            rec("1", 400, "T", "<DEL>"),
            rec("1", 500, "T", "<INS:ME:ALU>"),
        ],
        contigs=("chr1",),
    )
    summary = ingest(tmp_path / "s.duckdb", [vcf], sheet)
    assert variants(tmp_path / "s.duckdb") == [
        ("1", 100, "A", "G"),
        ("1", 200, "GC", "G"),
        ("1", 202, "A", "T"),
        ("1", 301, "C", "T"),
        ("1", 400, "T", "<DEL>"),
        ("1", 500, "T", "<INS:ME:ALU>"),
    ]
    assert summary.normalised == 4 and summary.alleles == 6


def test_non_ref_and_breakend_alts_are_dropped_and_counted(tmp_path: Path, sheet: Path) -> None:
    vcf = write(
        tmp_path / "g.vcf",
        [
            rec("1", 100, "A", "G,<NON_REF>", ["0/1", "0/2", "0/0", "1/1"]),
            rec("1", 200, "C", "<*>", ["0/0", "0/1", "0/0", "0/0"]),
            rec("1", 300, "G", "G[13:123456["),
            rec("1", 400, "T", "]2:321681]T"),
            rec("1", 500, "A", ".A"),
            rec("HLA-A*01:01:01:01", 10, "A", "G"),  # a GRCh38 alt contig no query can name
        ],
        contigs=None,
    )
    summary = ingest(tmp_path / "s.duckdb", [vcf], sheet)
    assert variants(tmp_path / "s.duckdb") == [("1", 100, "A", "G")]
    assert summary.skipped_records == {SKIP_NON_REF: 2, SKIP_BREAKEND: 3, SKIP_CONTIG: 1}
    text = "\n".join(summary.lines())
    assert "skipped      2 records: symbolic <NON_REF> or <*> ALT" in text
    store = Store.open(tmp_path / "s.duckdb")
    try:  # the <NON_REF> half-call of S2 (0/2) counts as a reference allele of G, as other ALTs do
        counts = store.class_counts(np.array([0], dtype=np.int32), np.ones(4, dtype=bool))
    finally:
        store.close()
    assert counts[0].tolist() == [2, 1, 1, 0, 0, 0]  # HOM_REF (S2 0/2, S3), HET (S1), HOM_ALT (S4)


@pytest.mark.parametrize(
    ("ref", "alt", "words"),
    [
        ("A", "Z", "ALT 'Z' is not a base (A, C, G, T or N)"),
        ("A", "AZ", "ALT 'AZ' has a character outside A, C, G, T, N"),
        ("R", "A", "REF 'R' is not a base (A, C, G, T or N)"),
        ("A" * 50 + "X", "A", "REF 'AAAAAAAAAAAAAAAAAAAA'... (51 characters) has a character outside A, C, G, T, N"),
        ("A", "a", "ALT 'a' is the same allele as REF 'A'"),
        ("A", "<DEL ME>", "symbolic ALT '<DEL ME>' must be <ID>"),
    ],
)
def test_bad_alleles_are_refused_with_file_and_line(
    tmp_path: Path, sheet: Path, ref: str, alt: str, words: str
) -> None:
    vcf = write(tmp_path / "bad.vcf", [rec("1", 100, "A", "G"), rec("1", 200, ref, alt)])
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "s.duckdb", [vcf], sheet)
    assert err.value.where == line_of(vcf, 1)
    assert words in err.value.why
    assert not (tmp_path / "s.duckdb").exists()


def test_records_that_become_one_variant_are_refused_naming_both_lines(tmp_path: Path, sheet: Path) -> None:
    vcf = write(tmp_path / "d.vcf", [rec("1", 100, "A", "G"), rec("chr1", 100, "ac", "gc")], contigs=("1", "chr1"))
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "s.duckdb", [vcf], sheet)
    assert err.value.where == line_of(vcf, 1)
    assert err.value.why == f"variant 1-100-A-G appears twice (also at {line_of(vcf, 0)})"


# Left-alignment with a reference -------------------------------------------------------------------------


def test_reference_mismatch_is_refused_and_indels_left_align(tmp_path: Path, sheet: Path) -> None:
    fasta = tmp_path / "ref.fa"
    fasta.write_text(">chr1\nGATTTTTTCAGCAGCAGTT\n")  # a run of T at 3-8, CAG repeated at 9-17
    ok = write(tmp_path / "ok.vcf", [rec("chr1", 8, "T", "TT"), rec("chr1", 14, "GCAG", "G")], contigs=("chr1",))
    ingest(tmp_path / "s.duckdb", [ok], sheet, reference=fasta)
    # the T insertion moves to the start of the T run, the CAG deletion to the start of the repeat
    expected = [("1", 2, "A", "AT"), ("1", 8, "TCAG", "T")]
    assert variants(tmp_path / "s.duckdb") == expected
    norm = subprocess.run(["bcftools", "norm", "-m-", "-f", str(fasta), str(ok)], capture_output=True, text=True)
    theirs = [line.split("\t") for line in norm.stdout.splitlines() if not line.startswith("#")]
    assert [(f[0].removeprefix("chr"), int(f[1]), f[3], f[4]) for f in theirs] == expected, norm.stderr
    bad = write(tmp_path / "bad.vcf", [rec("1", 3, "G", "C")])
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "s2.duckdb", [bad], sheet, reference=fasta)
    assert err.value.where == line_of(bad, 0)
    assert err.value.why == "REF 'G' does not match the reference ref.fa at 1:3 ('T')"


# Build --------------------------------------------------------------------------------------------------


def _contigs_of(build: str) -> str:
    return f"##contig=<ID=1,length={LENGTHS[build]['1']}>"


def test_build_is_inferred_from_contig_lengths_and_recorded(tmp_path: Path, sheet: Path) -> None:
    text = vcf_text([rec("1", 100, "A", "G")], reference=None, contigs=()).replace(
        "##FORMAT", _contigs_of("GRCh38") + "\n##FORMAT"
    )
    (tmp_path / "a.vcf").write_text(text)
    summary = ingest(tmp_path / "s.duckdb", [tmp_path / "a.vcf"], sheet)
    assert (summary.build, summary.build_from) == ("GRCh38", "from the file header")
    store = Store.open(tmp_path / "s.duckdb")
    try:
        assert store.build == "GRCh38" and store.meta("genome_build") == "GRCh38"
    finally:
        store.close()


def test_a_header_that_contradicts_itself_is_refused(tmp_path: Path, sheet: Path) -> None:
    text = vcf_text([rec("1", 100, "A", "G")], reference="GRCh38", contigs=()).replace(
        "##FORMAT", _contigs_of("GRCh37") + "\n##FORMAT"
    )
    (tmp_path / "a.vcf").write_text(text)
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "s.duckdb", [tmp_path / "a.vcf"], sheet)
    assert err.value.where == str(tmp_path / "a.vcf")
    assert "more than one build" in err.value.why and "GRCh37" in err.value.why and "GRCh38" in err.value.why


def test_build_option_against_the_header_is_refused(tmp_path: Path, sheet: Path) -> None:
    vcf = write(tmp_path / "a.vcf", [rec("1", 100, "A", "G")])  # ##reference=GRCh37
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "s.duckdb", [vcf], sheet, build="GRCh38")
    assert (err.value.where, err.value.why) == (str(vcf), "its header says GRCh37, not --build GRCh38")


def test_files_of_one_run_must_agree(tmp_path: Path, sheet: Path) -> None:
    a = write(tmp_path / "a.vcf", [rec("1", 100, "A", "G")])
    b = write(tmp_path / "b.vcf", [rec("2", 100, "A", "G")], reference="GRCh38")
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "s.duckdb", [a, b], sheet)
    assert err.value.where == str(b)
    assert f"its header says GRCh38 but {a}'s says GRCh37" in err.value.why


def test_no_evidence_needs_build_for_a_new_store_and_uses_the_stores_after(tmp_path: Path, sheet: Path) -> None:
    a = write(tmp_path / "a.vcf", [rec("1", 100, "A", "G")], reference=None)
    res = run_node("ingest", "--store", tmp_path / "s.duckdb", "--vcf", a, "--samples", sheet, cwd=tmp_path)
    assert res.returncode == 4
    assert res.stderr.strip().endswith("give --build GRCh37 or --build GRCh38"), res.stderr
    assert str(a) in res.stderr
    summary = ingest(tmp_path / "s.duckdb", [a], sheet, build="GRCh38")
    assert (summary.build, summary.build_from) == ("GRCh38", "--build")
    b = write(tmp_path / "b.vcf", [rec("2", 100, "A", "G")], reference=None)
    summary = ingest(tmp_path / "s.duckdb", [b], sheet)
    assert (summary.build, summary.build_from) == ("GRCh38", "the store's; 1 file states none")
    assert "build        GRCh38 (the store's; 1 file states none)" in summary.lines()


# Covered regions and freq ------------------------------------------------------------------------------


def test_covered_regions_are_stored_and_freq_refuses_outside_them(tmp_path: Path, sheet: Path) -> None:
    bed = tmp_path / "targets.bed"
    bed.write_text("track name=exome\nchr1\t99\t150\nchr1\t140\t250\n# a comment\nchr2\t0\t10\n")
    vcf = write(tmp_path / "a.vcf", [rec("1", 100, "A", "G"), rec("1", 200, "C", "T")])
    summary = ingest(tmp_path / "s.duckdb", [vcf], sheet, covered_regions=bed)
    assert "covered      2 regions, 161 bp" in "\n".join(summary.lines())
    store = Store.open(tmp_path / "s.duckdb")
    try:
        assert store.covered_regions() == [Region("1", 100, 250), Region("2", 1, 10)]
        assert store.contigs() == ["1"]
    finally:
        store.close()
    inside = run_node("freq", "--store", tmp_path / "s.duckdb", "--region", "chr1:1-120", cwd=tmp_path)
    assert inside.returncode == 0 and inside.stdout.splitlines()[1].startswith("1\t100\tA\tG\t"), inside.stderr
    outside = run_node("freq", "--store", tmp_path / "s.duckdb", "--region", "1:300-400", cwd=tmp_path)
    assert outside.returncode == 2 and outside.stdout == ""
    assert "outside the store's covered regions" in outside.stderr
    # a later file without its coverage is refused; a whole-genome store cannot be narrowed later
    more = write(tmp_path / "b.vcf", [rec("2", 5, "A", "G")])
    with pytest.raises(IngestError, match="give --covered-regions"):
        ingest(tmp_path / "s.duckdb", [more], sheet)
    whole = write(tmp_path / "w.vcf", [rec("1", 100, "A", "G")])
    ingest(tmp_path / "w.duckdb", [whole], sheet)
    with pytest.raises(IngestError, match="coverage cannot be narrowed later"):
        ingest(tmp_path / "w.duckdb", [more], sheet, covered_regions=bed)


def test_freq_region_is_canonical_and_an_unknown_contig_is_refused(tmp_path: Path, sheet: Path) -> None:
    vcf = write(tmp_path / "a.vcf", [rec("1", 100, "A", "G"), rec("X", 200, "C", "T", ["0", "1", "0/1", "1/1"])])
    ingest(tmp_path / "s.duckdb", [vcf], sheet)
    plain = run_node("freq", "--store", tmp_path / "s.duckdb", "--region", "X:1-1000", cwd=tmp_path)
    for spelling in ("chrX:1-1000", "23:1-1000", f"NC_0000{23}.10:1-1000"):
        res = run_node("freq", "--store", tmp_path / "s.duckdb", "--region", spelling, cwd=tmp_path)
        assert res.returncode == 0 and res.stdout == plain.stdout, (spelling, res.stderr)
    assert plain.stdout.splitlines()[1].startswith("X\t200\tC\tT\t")
    res = run_node("freq", "--store", tmp_path / "s.duckdb", "--region", "chr22:1-100", cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == (
        "genogate-node: error: --region chr22:1-100: the store holds no variant on contig '22'; its contigs are 1, X"
    )
    wrong = run_node("freq", "--store", tmp_path / "s.duckdb", "--region", "NC_000001.11", cwd=tmp_path)
    assert wrong.returncode == 2 and "is a GRCh38 accession, not GRCh37" in wrong.stderr


def test_a_version_1_store_is_refused_with_how_to_rebuild(tmp_path: Path, sheet: Path) -> None:
    vcf = write(tmp_path / "a.vcf", [rec("1", 100, "A", "G")])
    ingest(tmp_path / "s.duckdb", [vcf], sheet)
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match=re.escape("re-ingest its VCFs into a new store: genogate-node ingest")):
        Store.open(tmp_path / "s.duckdb")
    res = run_node("freq", "--store", tmp_path / "s.duckdb", cwd=tmp_path)
    assert res.returncode == 5 and "schema version 1" in res.stderr
    with pytest.raises(StoreError, match="schema version 1"):
        ingest(tmp_path / "s.duckdb", [write(tmp_path / "b.vcf", [rec("2", 1, "A", "G")])], sheet)


def test_store_contigs_are_in_natural_order(tmp_path: Path, sheet: Path) -> None:
    records = [rec(c, 10, "A", "G") for c in ("chrM", "10", "2", "chrX", "1", "GL000192.1", "Y")]
    vcf = write(tmp_path / "a.vcf", records, contigs=None)
    ingest(tmp_path / "s.duckdb", [vcf], sheet)
    store = Store.open(tmp_path / "s.duckdb")
    try:
        assert store.contigs() == ["1", "2", "10", "X", "Y", "MT", "GL000192.1"]
        assert [v[0] for v in variants(tmp_path / "s.duckdb")] == store.contigs()
    finally:
        store.close()


def test_a_compressed_reference_is_refused_clearly(tmp_path: Path, sheet: Path) -> None:
    fasta = tmp_path / "ref.fa"
    fasta.write_text(">1\nGATTTTTTCAGCAGCAGTT\n")
    subprocess.run(["bgzip", str(fasta)], check=True)
    vcf = write(tmp_path / "a.vcf", [rec("1", 2, "A", "G")])
    with pytest.raises(IngestError) as err:
        ingest(tmp_path / "s.duckdb", [vcf], sheet, reference=tmp_path / "ref.fa.gz")
    assert err.value.where == str(tmp_path / "ref.fa.gz")
    assert "compressed: decompress it (bgzip -d)" in err.value.why
    assert not (tmp_path / "s.duckdb").exists()
